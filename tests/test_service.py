"""The app's logic without the web: prompts, settings, downloads, start-up model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPTS, noise_image

from clipcam.explainer import METHODS
from clipcam.app.choices import (
    METHOD_LABELS, allowed_models, controls, family_sublayers, method_choices, method_note, method_note_for,
    model_defaults, score_label, startup_model,
)
from clipcam.app.inputs import check_forwards, check_view, relative_layer
from clipcam.app.kept import DISPLAY_SIDE, keep
from clipcam.app.pictures import concentration, gallery_items, write_downloads
from clipcam.prompts import parse_prompts
from clipcam.render import explanation_images, format_score


def test_parse_prompts():
    assert parse_prompts("a cat\n\n  a dog  \n") == (["a cat", "a dog"], [])
    assert parse_prompts("a cat\na cat\na dog\na dog") == (["a cat", "a dog"], ["2 duplicate prompts were dropped."])
    with pytest.raises(ValueError, match="^No prompts given"):
        parse_prompts(" \n \n")
    with pytest.raises(ValueError, match=r"^Too many prompts: 17 given, at most 16 at once\. Remove some lines\.$"):
        parse_prompts("\n".join(str(i) for i in range(17)))


def test_check_view():
    assert check_view("jet", "0.25") == ("jet", 0.25)
    with pytest.raises(ValueError, match=r"^Overlay opacity must be between 0 and 1; got -1.0.$"):
        check_view("jet", -1)


def test_concentration():
    one_spot = np.zeros((1, 10, 10))
    one_spot[0, 3, 3] = 5
    flat = np.ones((1, 10, 10))
    assert concentration(one_spot)[0] == 1.0
    assert concentration(flat)[0] == pytest.approx(0.1)
    assert np.isnan(concentration(np.zeros((1, 4, 4)))[0])


def test_relative_layer_and_defaults():
    assert relative_layer(0.9, 12) == 11 and relative_layer(0.9, 24) == 22 and relative_layer(0.01, 12) == 1
    assert model_defaults("base", 12) == (11, "mlp.fc1", "logit", "chefer")
    assert model_defaults("shapes", 4) == (1, "self_attn.v_proj", "logit", "chefer")


def test_allowed_models():
    assert allowed_models("") == ["base", "large", "shapes", "siglip", "shapes-siglip", "shapes-rn", "rn50", "laion-b32"]
    assert allowed_models(" shapes , /models/mine ") == ["shapes", "/models/mine"]


def test_startup_model_falls_back_to_shapes_with_a_reason():
    offline = lambda name: f"{name} is not in the local cache and HF_HUB_OFFLINE is set, so it cannot be downloaded."  # noqa: E731
    name, notice = startup_model(["base", "large", "shapes"], offline)
    assert name == "shapes" and "HF_HUB_OFFLINE is set" in notice and "offline **shapes** model" in notice
    assert startup_model(["base", "shapes"], lambda name: None) == ("base", "")
    assert startup_model(["base", "large"], offline) == ("base", "")


def test_startup_model_offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name, notice = startup_model(["someone/never-cached-clip", "shapes"])
    assert name == "shapes" and "HF_HUB_OFFLINE is set" in notice


def test_downloads(explainer, tmp_path):
    res = explainer.explain(noise_image(120, 80), PROMPTS, layer=1)
    grid_png, scores_json, npz = write_downloads(keep(res, {"model": "tiny", "layer": 1}, ["a note"]), "inferno", 0.5,
                                                 False, tmp_path)
    saved = json.loads(Path(scores_json).read_text())
    assert saved["prompts"] == PROMPTS and saved["image_maps_size"] == [120, 80] and saved["notes"] == ["a note"]
    arrays = np.load(npz)
    assert arrays["grid_maps"].shape == (3, 4, 4) and arrays["image_maps"].shape == (3, 80, 120)
    np.testing.assert_array_equal(arrays["grid_maps"], res.grid_maps)
    np.testing.assert_allclose(arrays["image_maps"], res.image_maps, atol=1e-3)  # float16 of the same maps


@pytest.mark.parametrize("shared", [False, True])
def test_kept_result_draws_what_the_full_result_draws(explainer, shared):
    """The gallery drawn from the kept display image and grid maps equals the overlays drawn from
    the full result at display size (the path before results were kept), up to the display's
    fixed-point interpolation (test_display_levels_equal_the_geometry_s_maps bounds it by 8 levels)."""
    from PIL import Image

    res = explainer.explain(noise_image(1500, 900), PROMPTS, layer=1)
    items = gallery_items(keep(res, {}, []), "turbo", 0.6, shared)
    tiles, _ = explanation_images(res, "turbo", 0.6, max_side=DISPLAY_SIDE, shared=shared)
    assert [text for _, text in items] == [f"{i + 1} · {format_score(q)} · {p}" for i, (p, q) in
                                           enumerate(zip(res.prompts, res.probs))]
    for (tile, _), want in zip(items, tiles):
        assert tile.size == want.size == (DISPLAY_SIDE, 614)
        diff = np.abs(np.asarray(tile, dtype=int) - np.asarray(want, dtype=int))
        assert np.percentile(diff, 99) <= 8 and diff.mean() < 1 and isinstance(tile, Image.Image)


def test_method_notes_say_what_each_method_reads_and_costs():
    assert method_note_for("base", "scorecam", "mlp.fc1").startswith("⏳ Score-CAM (Wang et al., CVPR Workshops 2020): uses no gradient")
    assert "3072 forward passes for this model and sublayer" in method_note_for("base", "scorecam", "mlp.fc1")
    assert "1024 forward passes" in method_note_for("large", "scorecam", "block")
    assert "128 forward passes" in method_note_for("shapes", "scorecam", "self_attn.v_proj")  # read from its config
    assert "one forward pass per channel" in method_note_for("/nowhere/model", "scorecam", "block")
    assert method_note("legrad").endswith("It reads attention, not a sublayer: the layer is where it starts.")
    assert method_note("hirescam") == ("HiResCAM (Draelos & Carin, arXiv:2011.08891, 2020): gradient × activation, "
                                       "summed over channels, per token, on the sublayer's output; one forward and "
                                       "one batched backward for all prompts.")
    with pytest.raises(ValueError, match="^Unknown method 'occlusion': choose one of gradcam"):
        method_note_for("base", "occlusion", "block")


def test_families_set_up_the_app_without_loading():
    """SigLIP starts on LeGrad (no class token for Chefer), the ResNet on Grad-CAM at its last
    stage; the method list says in one sentence what cannot run and why."""
    assert model_defaults("siglip", 12) == (11, "mlp.fc1", "logit", "legrad")
    assert model_defaults("rn50", 4) == (4, "output", "logit", "gradcam")
    assert model_defaults("laion-b32", 12) == (11, "mlp.c_fc", "logit", "chefer")
    choices, why = method_choices("siglip")
    assert [m for _, m in choices] == [m for m in METHODS if m not in ("chefer", "gradeclip", "gradeclip-authors", "gem",
                                                                       "clipsurgery")]
    assert why == ("Chefer relevance, Grad-ECLIP, Grad-ECLIP, authors' single head, GEM and CLIP Surgery need a class token that "
                   "the image embedding is read from and patch tokens that read out as embeddings and the v–v paths that "
                   "CLIP Surgery's authors define for CLIP ViTs and ResNets, which SigLIP (Hugging Face) models do not have.")
    assert method_choices("base") == ([(METHOD_LABELS[m], m) for m in METHODS], "")
    assert score_label("sigmoid").startswith("SigLIP's sigmoid per prompt")
    assert {"ln_1", "output", "mlp.fc1", "norm1"} <= set(family_sublayers())


def test_check_forwards():
    check_forwards(5000, 5000, 1, "mlp.fc1")
    with pytest.raises(ValueError) as err:
        check_forwards(36864, 5000, 12, "mlp.fc1")
    assert str(err.value) == (
        "Score-CAM would run 36864 forward passes here (12 layers × 3072 channels of mlp.fc1), above this server's "
        "limit of 5000 (CLIPCAM_MAX_FORWARDS). Pick a narrower sublayer (mlp.fc1 is 4× wider), one layer instead "
        "of a sweep, or a gradient method.")


def test_controls_that_do_not_apply_are_named():
    assert controls("gradcam") == {"sublayer": True, "target": True, "layer": True}
    assert controls("scorecam") == {"sublayer": True, "target": True, "layer": True}
    assert controls("legrad") == {"sublayer": False, "target": True, "layer": True}
    assert controls("eigencam") == {"sublayer": True, "target": False, "layer": True}
    assert controls("gradeclip-authors") == {"sublayer": False, "target": True, "layer": False}


@pytest.mark.parametrize("shared", [False, True])
def test_display_levels_equal_the_geometry_s_maps(explainer, shared):
    """The screen's uint8 levels equal levels(geometry.grid_to_image(...)) inside the crop up to
    OpenCV's fixed-point interpolation weights (1/32: 8 of 255 levels where neighbouring cells
    differ most), and the crop rows and columns are exactly the non-NaN ones."""
    from clipcam.render import levels

    for result in (explainer.explain(noise_image(333, 120), PROMPTS, layer=1),
                   explainer.sweep(noise_image(90, 200), PROMPTS)):
        kept = keep(result, {}, [])
        for size in [(333, 120), (90, 200), (50, 31), (31, 50)]:
            fast, (rows, cols) = kept.display_levels(size, shared)
            slow = kept.maps_at(size, shared)
            assert fast.shape == slow.shape
            seen = np.zeros(slow.shape[-2:], bool)
            seen[rows, cols] = True
            np.testing.assert_array_equal(~np.isnan(slow[(0,) * (slow.ndim - 2)]), seen)
            diff = np.abs(fast[..., rows, cols].astype(int) - levels(slow)[..., rows, cols].astype(int))
            assert diff.max() <= 8 and diff.mean() < 1


# ----------------------------------------------------------------- issue 12: what a person reads
def test_scores_html_lists_every_prompt_in_the_tiles_order_with_its_number():
    from clipcam.app.page import scores_html

    text = scores_html(["a <b>cat</b>", "a dog", "a car"], [0.004, 0.0, 0.996], "softmax")
    rows = re.findall(r"data-index='(\d)'><span class='score-index'>\d</span><span class='score-prompt'>(.*?)</span>"
                      r"<span class='score-value'>(.*?)</span>", text)
    assert rows == [("1", "a &lt;b&gt;cat&lt;/b&gt;", "0.40 %"), ("2", "a dog", "0 %"), ("3", "a car", "99.6 %")]
    assert text.count("class='tile-extra'") == 3  # a block per tile for later per-prompt rows
    assert "Scored near zero" in text  # per-prompt scale stretches a 0 % map: say so
    assert "Scored near zero" not in scores_html(["a cat", "a dog"], [0.004, 0.996], "softmax", shared=True)
    sigmoid = scores_html(["a cat", "a dog"], [0.9, 0.8], "sigmoid")
    assert "sigmoid per prompt" in sigmoid and "need not add up to 100 %" in sigmoid


def test_legend_html_follows_the_colour_map_and_the_scale():
    from clipcam.app.page import legend_html
    from clipcam.render import LUTS

    inferno, jet = legend_html("inferno"), legend_html("jet", shared=True)
    r, g, b = LUTS["jet"][255, 0]
    assert f"rgb({r},{g},{b}) 100%" in jet and f"rgb({r},{g},{b}) 100%" not in inferno
    assert "Per-prompt scale" in inferno and "Shared scale (raw values)" in jet
    assert "low" in inferno and "high" in inferno and "never seen" in inferno
    with pytest.raises(ValueError, match="Unknown colour map"):
        legend_html("rainbow")


def test_result_notes_one_prompt_and_the_crop(explainer):
    from clipcam.notes import result_notes

    one = explainer.explain(noise_image(200, 100), ["a cat"], layer=1)
    notes = result_notes(one, None)
    assert any("With one prompt the score is 100 % by definition" in n for n in notes)
    assert any("saw only the centre" in n and "200×100" in n for n in notes)
    square = explainer.explain(noise_image(64, 64), PROMPTS, layer=1, sublayer="self_attn.v_proj")
    assert square.grid_maps.any() and result_notes(square, None) == []


def test_unknown_words_are_found_through_the_shapes_tokenizer():
    """The shapes model's word tokenizer spells words outside its vocabulary letter by letter."""
    from transformers import AutoTokenizer

    from clipcam.notes import unknown_words_note
    from clipcam.constants import SHAPES_MODEL_DIR

    tokenizer = AutoTokenizer.from_pretrained(str(SHAPES_MODEL_DIR))
    note = unknown_words_note(["a photo of an astronaut.", "a photo of a green triangle.", "a spoon."], tokenizer)
    assert note.startswith("This model's vocabulary does not know 'astronaut' (prompt 1), 'spoon' (prompt 3):")
    assert unknown_words_note(["a photo of a red circle.", "a photo of a green triangle."], tokenizer) is None


def test_unknown_words_rule_on_a_tokenizer_with_long_pieces():
    from clipcam.notes import unknown_words

    table = {"xylophone": ["xylo", "phone</w>"], "zqx": ["z", "q", "x</w>"], "cat": ["cat</w>"]}
    pieces = lambda word: table.get(word, [word])  # noqa: E731
    assert unknown_words("a xylophone, a zqx and a cat", pieces) == ["zqx"]
    assert unknown_words("a zqx", pieces, known={"zqx"}) == []


def test_examples_switch_to_a_model_that_fits_or_say_why_not():
    from clipcam.app.examples import example_model, example_order, get_example

    photo, scene = get_example("cat"), get_example("shapes-1")
    assert photo.path.exists() and scene.path.exists()
    online = lambda name: None  # noqa: E731
    offline = lambda name: f"{name} is not cached."  # noqa: E731
    assert example_model(photo, "shapes", ["shapes", "base"], online)[0] == "base"
    name, notice = example_model(photo, "shapes", ["shapes", "base"], offline)
    assert name == "shapes" and "none can be loaded now (base is not cached.)" in notice
    assert example_model(scene, "base", ["base", "shapes"], online) == (
        "shapes", "Switched to the **shapes** model: this scene comes from its shapes world.")
    assert example_model(photo, "base", ["base", "shapes"], online) == ("base", "")
    assert example_order("shapes") == ["shapes", "photo"] and example_order("base") == ["photo", "shapes"]
    with pytest.raises(ValueError, match="Unknown example"):
        get_example("nope")


def test_switching_to_grad_cam_on_shapes_goes_to_its_best_layer():
    from clipcam.app.choices import method_layer

    assert method_layer("shapes", "gradcam", 4) == 2  # benchmarks/quality.py: Grad-CAM is best at layer 2 of 4
    assert method_layer("shapes", "chefer", 4) == 1
    assert method_layer("base", "gradcam", 12) == 11
    assert method_layer("base", "gem", 12) == 7 and method_layer("large", "clipsurgery", 24) == 19  # the last 6 blocks
    assert method_layer("rn50", "clipsurgery", 4) == 4  # a ResNet's attention pool, after its last stage


def test_share_links_round_trip_and_drop_bad_values():
    from urllib.parse import parse_qsl

    from clipcam.app.inputs import read_share, share_query

    settings = {"example": "shapes-2", "model": "shapes", "layer": 4, "sublayer": "self_attn.v_proj",
                "target": "logit", "method": "gradcam", "colormap": "jet", "alpha": 0.7, "shared": True}
    assert read_share(dict(parse_qsl(share_query(settings))), ["shapes", "base"]) == settings
    bad = {"example": "../etc", "model": "evil", "layer": "x", "method": "rm", "alpha": "2", "colormap": "<b>"}
    assert read_share(bad, ["shapes"]) == {}


def test_check_request_checks_every_input_once():
    from clipcam.app.inputs import check_request

    cat = str(Path(__file__).resolve().parents[1] / "assets" / "chelsea.png")
    good = dict(image=cat, prompts_text="a cat\na dog", sublayer="mlp.fc1", target="logit", method="gradcam",
                colormap="jet", alpha="0.4", shared=1, max_pixels=10**8, decode=False)
    got = check_request(**good)
    assert (got.image, got.prompts, got.colormap, got.alpha, got.shared) == (cat, ["a cat", "a dog"], "jet", 0.4, True)
    assert check_request(**{**good, "decode": True}).image.size == (451, 300)
    for change, message in [({"image": None}, "No image"), ({"prompts_text": ""}, "No prompts given"),
                            ({"sublayer": "fc9"}, "Unknown sublayer"), ({"method": "x"}, "Unknown method"),
                            ({"alpha": 2}, "Overlay opacity must be between 0 and 1"),
                            ({"max_pixels": 1000}, "megapixels")]:
        with pytest.raises(ValueError, match=message):
            check_request(**{**good, **change})


def test_downloads_record_settings_legend_and_no_sublayer_for_attention(explainer, tmp_path):
    from PIL import Image

    res = explainer.explain(noise_image(120, 80), PROMPTS, layer=1, method="chefer")
    grid_png, scores_json, _ = write_downloads(keep(res, "tiny", []), "jet", 0.5, True, tmp_path)
    saved = json.loads(Path(scores_json).read_text())
    assert saved["sublayer"] is None and saved["method"] == "chefer" and saved["model"] == "tiny"
    assert saved["display"] == {"colormap": "jet", "alpha": 0.5, "shared": True}
    assert saved["prob_kind"] == "softmax" and saved["layer"] == 1
    sheet = Image.open(grid_png)
    tiles_only = Image.open(write_downloads(keep(res, "tiny", []), "jet", 0.5, True, tmp_path / "b")[0])
    assert sheet.size == tiles_only.size and sheet.height > 200  # legend and settings under the tiles
    gradcam = explainer.explain(noise_image(120, 80), PROMPTS, layer=1, method="gradcam", sublayer="mlp.fc1")
    assert keep(gradcam, "tiny", []).settings["sublayer"] == "mlp.fc1"


def test_one_record_builder_for_cli_and_app(explainer):
    from clipcam.record import scores_record

    sweep = explainer.sweep(noise_image(64, 64), PROMPTS)
    record = scores_record(sweep, "tiny")
    assert record["layers"] == list(sweep.layers) and "layer" not in record
    assert keep(sweep, "tiny", ["n"]).settings == {**record, "notes": ["n"]}


def test_the_sweep_plot_is_rendered_and_its_figure_taken_apart():
    """gr.Plot gets the picture, not the figure, and the figure is taken apart: no axes, no Agg
    pixel buffer, not registered with pyplot."""
    import base64
    import io

    import matplotlib.pyplot as plt
    from gradio.components.plot import PlotData
    from PIL import Image

    from clipcam.app.handlers import rendered_plot
    from clipcam.app.pictures import concentration_plot

    data = rendered_plot(concentration_plot([1, 2, 3], ["a cat", "a dog"], np.array([[0.2, 0.9], [0.5, 0.4], [0.7, 0.1]]),
                                            [0.3, 0.7]))
    assert isinstance(data, PlotData) and data.type == "matplotlib"
    head, payload = data.plot.split(",", 1)
    assert head == "data:image/webp;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (640, 320)  # 6.4 × 3.2 in at 100 dpi

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rendered_plot(fig, "png")
    assert fig.axes == [] and "renderer" not in fig.canvas.__dict__ and not plt.get_fignums()


@pytest.mark.slow  # a fresh interpreter (about 6 s)
def test_the_service_imports_no_gradio():
    """The service and every module it stands on are plain Python: only layout, handlers and
    components import gradio."""
    import subprocess
    import sys

    code = ("import sys, clipcam.app.service, clipcam.app.settings, clipcam.notes, clipcam.prompts; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_prints_the_crop_and_unknown_word_notes(tmp_path, capsys):
    """The command line shows what the app shows about a result: the part of the image the crop
    cut off and the prompt words the model does not know (one notes builder, clipcam.notes)."""
    from clipcam.__main__ import main

    wide = tmp_path / "wide.png"
    noise_image(120, 60, seed=1).save(wide)
    assert main([str(wide), "-p", "a photo of a red circle.", "-p", "a photo of an astronaut.", "-m", "shapes",
                 "--method", "gradcam", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "note: The model saw only the centre 60×60 pixels of this 120×60 image" in err
    assert "note: This model's vocabulary does not know 'astronaut' (prompt 2)" in err
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert not any("saw only the centre" in n for n in saved["notes"])  # scores.json is as before
