"""The command line writes the promised files and turns bad input into one sentence.

In this process (``clihelpers.run_cli``), apart from the one subprocess smoke test of the default
subcommand, explain: ``python -m clipcam`` runs as a program and writes every promised file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clihelpers import ROOT, run_cli, run_cli_subprocess
from PIL import Image

from clipcam.__main__ import main


@pytest.mark.slow
def test_writes_overlays_grid_scores_and_arrays(tiny_dir, tmp_path):
    """The explain subcommand's subprocess smoke test."""
    out = tmp_path / "out"
    proc = run_cli_subprocess(ROOT / "assets/chelsea.png", "--prompt", "a photo of a cat.", "--prompt", "a photo of a dog.",
                   "--model", tiny_dir, "--layer", "1", "--sublayer", "self_attn.v_proj", "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01-a-photo-of-a-cat.png", "02-a-photo-of-a-dog.png", "grid.png", "heatmaps.npz", "scores.json"]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["prompts"] == ["a photo of a cat.", "a photo of a dog."]
    assert sum(scores["probs"]) == np.float64(1.0) or abs(sum(scores["probs"]) - 1) < 1e-9
    assert (scores["layer"], scores["sublayer"]) == (1, "self_attn.v_proj")
    assert scores["seconds"] > 0
    arrays = np.load(out / "heatmaps.npz")
    assert arrays["grid_maps"].shape == (2, 4, 4)
    assert arrays["image_maps"].shape == (2, 300, 451)  # the original image's own size
    assert Image.open(out / "01-a-photo-of-a-cat.png").size == (451, 300)


def test_sweep(tiny_dir, tmp_path):
    out = tmp_path / "sweep"
    proc = run_cli(ROOT / "assets/coffee.png", "-p", "a cup of coffee.", "-p", "a spoon.", "--model", tiny_dir,
                   "--sweep", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "sweep.png").exists()
    assert np.load(out / "heatmaps.npz")["grid_maps"].shape == (2, 2, 4, 4)
    assert json.loads((out / "scores.json").read_text())["layers"] == [1, 2]


def test_bad_input_is_one_sentence(tiny_dir, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    proc = run_cli(bad, "-p", "a cat", "--model", tiny_dir, "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr == "clipcam: 'notes.png' is not an image clipcam can read; please give a PNG, JPEG, WebP, GIF, BMP or TIFF file.\n"
    proc = run_cli(ROOT / "assets/chelsea.png", "-p", "a cat", "--model", tiny_dir, "--layer", "9", "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr == "clipcam: Layer 9 is out of range: this model's vision encoder has layers 1 to 2.\n"
    assert "Traceback" not in proc.stderr


def test_chefer_from_the_command_line(tiny_dir, tmp_path):
    out = tmp_path / "chefer"
    proc = run_cli(ROOT / "assets/chelsea.png", "-p", "a cat", "-p", "a dog", "--model", tiny_dir,
                   "--method", "chefer", "--layer", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert (scores["method"], scores["layer"]) == ("chefer", 1)


@pytest.mark.parametrize("method", ["gradeclip", "legrad", "scorecam"])
def test_other_methods_from_the_command_line(tiny_dir, tmp_path, method):
    out = tmp_path / method
    assert main([str(ROOT / "assets" / "chelsea.png"), "-p", "a cat", "-p", "a dog", "-m", str(tiny_dir),
                 "--method", method, "--layer", "2", "--sublayer", "self_attn.v_proj", "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert (scores["method"], scores["layer"]) == (method, 2)
    assert np.load(out / "heatmaps.npz")["grid_maps"].shape == (2, 4, 4)


def test_help_is_complete():
    proc = run_cli("--help")
    for flag in ("--prompt", "--model", "--layer", "--sublayer", "--sweep", "--out", "--colormap", "--alpha", "--device",
                 "--method", "--target"):
        assert flag in proc.stdout


def test_word_relevance_in_scores_and_one_strip_per_prompt(tiny_dir, tmp_path):
    out = tmp_path / "words"
    proc = run_cli(ROOT / "assets/chelsea.png", "-p", "a photo of a cat.", "-p", "a red zebra.", "--model", tiny_dir,
                   "--words", "gradinput", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {"01-a-photo-of-a-cat-words.png", "02-a-red-zebra-words.png"} <= {p.name for p in out.iterdir()}
    words = json.loads((out / "scores.json").read_text())["word_relevance"]
    assert (words["method"], words["signed"], words["layer"]) == ("gradinput", True, None)
    zebra = words["prompts"][1]
    assert zebra["words"] == ["a", "red", "zebra", "."] and len(zebra["tokens"]) == 8
    assert zebra["word_relevance"][2] == pytest.approx(sum(zebra["token_relevance"][2:7]), rel=1e-5)
    strip = Image.open(out / "02-a-red-zebra-words.png")
    assert strip.size[0] > 100 and len(set(strip.getdata())) > 4  # shaded boxes, not a blank image
    proc = run_cli(ROOT / "assets/chelsea.png", "-p", "a cat", "--model", tiny_dir, "--words", "chefer",
                   "--words-layer", "5", "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr == "clipcam: Text layer 5 is out of range: this model has text layers 1 to 2.\n"
