"""``clipcam batch``: inputs → rows → Parquet, resume, bad images, argument errors, and Ray = in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelpers import run_cli, run_cli_subprocess
from PIL import Image

from clipcam.eval.batch import Settings, item_rows, read_inputs, read_results
from clipcam.eval.engine import run_in_process, run_ray

PROMPTS = ["a photo of a cat.", "a photo of a dog."]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five noise images of different sizes (one in a subfolder) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir()
    for i in range(5):
        pixels = (np.random.RandomState(i).rand(36 + 9 * i, 50, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / ("sub" if i == 4 else ".") / f"im{i}.png")
    (folder / "notes.png").write_text("hello")
    return folder


def settings(tiny_dir, **kw) -> Settings:
    return Settings(model=str(tiny_dir), device="cpu", layer=1, sublayer="self_attn.v_proj", **kw)


def sorted_rows(folder: Path) -> list[dict]:
    return read_results(folder).sort_by([("image_id", "ascending"), ("layer", "ascending"),
                                         ("prompt_index", "ascending")]).to_pylist()


def test_folder_rows_equal_the_explainer_and_a_bad_image_is_recorded(images, tiny_dir, explainer, tmp_path):
    items = read_inputs(images, PROMPTS)
    assert [it.id for it in items] == ["im0.png", "im1.png", "im2.png", "im3.png", "notes.png", "sub/im4.png"]
    assert run_in_process(items, settings(tiny_dir), tmp_path, chunk=4, progress=False, explainer=explainer) == 6
    assert len(list(tmp_path.glob("*.parquet"))) == 2  # a file per chunk of 4 images
    rows = sorted_rows(tmp_path)
    assert len(rows) == 12
    bad = [r for r in rows if r["image_id"] == "notes.png"]
    assert [r["prompt"] for r in bad] == PROMPTS
    assert bad[0]["error"] == "'notes.png' is not an image clipcam can read; please give a PNG, JPEG, WebP, GIF, BMP or TIFF file."
    assert bad[0]["logit"] is None and bad[0]["grid_map"] is None
    res = explainer.explain(images / "im2.png", PROMPTS, layer=1, sublayer="self_attn.v_proj")
    good = [r for r in rows if r["image_id"] == "im2.png"]
    for k, row in enumerate(good):
        assert (row["prompt_index"], row["prompt"], row["layer"], row["error"]) == (k, PROMPTS[k], 1, None)
        assert (row["width"], row["height"]) == (50, 54)
        np.testing.assert_allclose(row["logit"], res.logits[k], rtol=1e-6)
        np.testing.assert_allclose(row["prob"], res.probs[k], rtol=1e-6)
        grid = np.array(row["grid_map"], np.float32).reshape(row["grid_shape"])
        np.testing.assert_allclose(grid, res.grid_maps[k], atol=1e-6)
        assert (row["model"], row["method"], row["sublayer"], row["target"]) == (str(tiny_dir), "gradcam",
                                                                               "self_attn.v_proj", "logit")


def test_resume_skips_done_images_and_refuses_other_settings(images, tiny_dir, explainer, tmp_path):
    items = read_inputs(images, PROMPTS)
    assert run_in_process(items[:3], settings(tiny_dir), tmp_path, progress=False, explainer=explainer) == 3
    assert run_in_process(items, settings(tiny_dir), tmp_path, progress=False, explainer=explainer) == 3
    assert run_in_process(items, settings(tiny_dir), tmp_path, progress=False, explainer=explainer) == 0
    rows = sorted_rows(tmp_path)
    assert len(rows) == 12 and len({(r["image_id"], r["prompt_index"]) for r in rows}) == 12
    with pytest.raises(ValueError, match="already holds results with method 'gradcam', not 'layercam'"):
        run_in_process(items, settings(tiny_dir, method="layercam"), tmp_path, progress=False, explainer=explainer)


def test_sweep_gives_a_row_per_layer(images, tiny_dir, explainer, tmp_path):
    item = read_inputs(images, PROMPTS)[0]
    rows = item_rows(explainer, item, settings(tiny_dir, sweep=True, method="chefer"))
    assert [(r["layer"], r["prompt_index"]) for r in rows] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {r["sublayer"] for r in rows} == {"self_attn"}
    sweep = explainer.sweep(item.image, PROMPTS, method="chefer")
    np.testing.assert_allclose(np.array(rows[3]["grid_map"]).reshape(4, 4), sweep.layer_maps[1, 1], atol=1e-6)


def test_manifests_and_saved_datasets(images, tiny_dir, explainer, tmp_path):
    (tmp_path / "list.csv").write_text(f"image,prompts\n{images}/im0.png,a cat|a dog\nsub/x.png,\n")
    with pytest.raises(ValueError, match="Row 2 of 'list.csv' names no prompts; add a 'prompts' column or give --prompt."):
        read_inputs(tmp_path / "list.csv")
    items = read_inputs(tmp_path / "list.csv", ["a bird"])
    assert [(it.id, it.prompts) for it in items] == [(f"{images}/im0.png", ("a cat", "a dog")), ("sub/x.png", ("a bird",))]
    assert items[1].image == str(tmp_path / "sub" / "x.png")  # relative to the manifest
    lines = [{"id": "a", "image": str(images / "im1.png"), "prompts": PROMPTS},
             {"id": "a", "image": str(images / "im2.png"), "prompts": PROMPTS}]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    with pytest.raises(ValueError, match="Row 2 of 'list.jsonl' repeats the id 'a'; give each row a distinct 'id' column."):
        read_inputs(tmp_path / "list.jsonl")

    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [str(images / "im3.png"), str(images / "notes.png")],
                                     "prompts": [PROMPTS, PROMPTS]}).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ds"))
    items = read_inputs(tmp_path / "ds")
    assert [it.id for it in items] == ["0", "1"] and isinstance(items[0].image, bytes)
    rows = item_rows(explainer, items[0], settings(tiny_dir))
    res = explainer.explain(images / "im3.png", PROMPTS, layer=1, sublayer="self_attn.v_proj")
    np.testing.assert_allclose([r["logit"] for r in rows], res.logits, rtol=1e-6)
    assert item_rows(explainer, items[1], settings(tiny_dir))[0]["error"].startswith("Item 1 is not an image")


@pytest.mark.slow
def test_command_line_writes_parquet(images, tiny_dir, tmp_path):
    """The batch subcommand's subprocess smoke test."""
    out = tmp_path / "out"
    proc = run_cli_subprocess("batch", images, "-p", "a cat", "-p", "a dog", "-m", tiny_dir, "--device", "cpu",
                              "--out", out, "--overlays", tmp_path / "png", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("explained 6 images (0 already in")
    assert read_results(out).num_rows == 12
    assert len(list((tmp_path / "png").glob("*.png"))) == 10  # two per readable image


def test_command_line_argument_errors_are_one_sentence(images, tiny_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("batch", images, "-p", "a cat", "-m", tiny_dir, "--out", out, "--method", "nope")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("python -m clipcam batch: Argument --method: invalid choice")
    proc = run_cli("batch", images, "-m", tiny_dir, "--out", out)
    assert (proc.returncode, proc.stderr) == (2, "clipcam batch: A folder of images needs its prompts: give --prompt "
                                                 "once per prompt.\n")
    proc = run_cli("batch", tmp_path / "missing", "-p", "a cat", "-m", tiny_dir, "--out", out)
    assert proc.returncode == 2 and "does not exist; give a folder of images" in proc.stderr


@pytest.mark.slow
def test_ray_run_equals_the_in_process_run(images, tiny_dir, explainer, tmp_path):
    """Ray's rows equal the in-process rows bit for bit when both run torch on one thread (Ray's
    workers do: a sum over more threads may round its last bit differently). The Ray run resumes a
    folder the process half filled, so both engines share one output and one resume rule."""
    ray = pytest.importorskip("ray")
    items = read_inputs(images, PROMPTS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_in_process(items, settings(tiny_dir), tmp_path / "here", progress=False, explainer=explainer)
        run_in_process(items[:3], settings(tiny_dir), tmp_path / "ray", progress=False, explainer=explainer)
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert run_ray(items, settings(tiny_dir), tmp_path / "ray", workers=2, batch_size=1, progress=False) == 3
    finally:
        ray.shutdown()
    here, there = sorted_rows(tmp_path / "here"), sorted_rows(tmp_path / "ray")
    assert len(here) == 12 and here == there
