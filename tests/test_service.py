"""The app's logic without the web: prompts, settings, downloads, start-up model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPTS, noise_image

from clipcam.explainer import METHODS
from clipcam.app.service import (
    DISPLAY_SIDE, METHOD_LABELS, allowed_models, check_forwards, check_view, concentration, controls,
    family_sublayers, gallery_items, keep, method_choices, method_note, method_note_for, model_defaults,
    parse_prompts, relative_layer, score_label, startup_model, write_downloads,
)
from clipcam.render import caption, explanation_images


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
    assert model_defaults("shapes", 4) == (3, "self_attn.v_proj", "logit", "chefer")


def test_allowed_models():
    assert allowed_models("") == ["base", "large", "shapes", "siglip", "rn50", "laion-b32"]
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
    assert [text for _, text in items] == [caption(p, q) for p, q in zip(res.prompts, res.probs)]
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
    assert [m for _, m in choices] == [m for m in METHODS if m not in ("chefer", "gradeclip", "gradeclip-authors")]
    assert why == ("Chefer relevance, Grad-ECLIP and Grad-ECLIP, authors' single head need a class token that the image embedding is read from, "
                   "which SigLIP (Hugging Face) models do not have.")
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
