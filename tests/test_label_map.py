"""Label maps (clipcam.dense), the authors' sliding window (clipcam.slide) and their drawing, against
computations written here: SCLIP's postprocess (softmax at the logit scale, threshold) and its
forward_slide (window arithmetic, bilinear upsampling of each window with torch, pad-and-add,
division by the count), ported from wangf3014/SCLIP clip_segmentor.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipcam import dense
from clipcam import slide as sl
from clipcam.eval.shapes import evaluation_set
from clipcam.explainer import load_explainer
from clipcam.methods import REGISTRY
from clipcam.methods.kinds import DenseDefaults
from clipcam.render_labels import PALETTE, label_legend_html, label_picture
from tests.clihelpers import run_cli

PROMPTS = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green triangle."]


@pytest.fixture(scope="module")
def shapes():
    return load_explainer("shapes", device="cpu")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return evaluation_set(1)[0].image  # (64, 64, 3)


@pytest.fixture
def dense_rollout(monkeypatch):
    """Rollout's record with DenseDefaults: a forward method standing in for a dense one."""
    record = dataclasses.replace(REGISTRY["rollout"], dense=DenseDefaults(logit_scale=40.0, prob_thd=0.3, crop=48,
                                                                          stride=16, short_side=80))
    monkeypatch.setitem(REGISTRY, "rollout", record)
    return record


# ----------------------------------------------------------------- the rule
def test_softmax_at_the_logit_scale_and_the_threshold_as_sclip() -> None:
    maps = np.array([[[0.20, 0.10], [np.nan, 0.30]], [[0.25, 0.10], [np.nan, 0.00]]])  # (K=2, 2, 2)
    rule = dense.LabelRule(logit_scale=50.0, prob_thd=0.6)
    got = dense.label_map_of(maps, ("a", "b"), rule)
    logits = torch.tensor(np.nan_to_num(maps[:, :, :]) * 50.0).softmax(0).numpy()  # SCLIP: (seg_logits * scale).softmax(0)
    assert np.allclose(got.scores[:, 0, :], logits[:, 0, :], atol=1e-6)
    assert np.allclose(got.scores[:, 1, 1], logits[:, 1, 1], atol=1e-6)
    # (0, 0): b wins with 0.924; (0, 1): a tie at 0.5 < 0.6 → none; (1, 0) unseen; (1, 1): a at 0.9999
    assert got.labels.tolist() == [[1, dense.NONE], [dense.UNSEEN, 0]]
    assert got.shares() == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 3), "none": pytest.approx(1 / 3)}


def test_a_gradient_method_scales_each_map_min_max_with_half_its_peak() -> None:
    rule = dense.label_rule("gradcam")
    assert (rule.logit_scale, rule.prob_thd) == (None, 0.5)
    maps = np.array([[[0.0, 2.0, 4.0]], [[1.0, 1.5, 3.0]]])  # scaled: [0, .5, 1] and [0, .25, 1]
    got = dense.label_map_of(maps, ("a", "b"), rule)
    assert np.allclose(got.scores, [[[0.0, 0.5, 1.0]], [[0.0, 0.25, 1.0]]])
    assert got.labels.tolist() == [[dense.NONE, 0, 0]]  # a tie at 1.0 goes to the first prompt, as argmax
    assert dense.label_rule("gradcam", prob_thd=0.2, logit_scale=10).logit_scale == 10.0


def test_bad_options_get_one_sentence() -> None:
    with pytest.raises(ValueError, match=r"^The background threshold \(prob_thd\) must be between 0 and 1; got 1.5.$"):
        dense.label_rule("gradcam", prob_thd=1.5)
    with pytest.raises(ValueError, match=r"^The background threshold \(prob_thd\) must be a number between 0 and 1; "
                                         r"got 'x'.$"):
        dense.label_rule("gradcam", prob_thd="x")
    with pytest.raises(ValueError, match=r"^The logit scale must be a positive number; got -1.$"):
        dense.label_rule("gradcam", logit_scale=-1)
    with pytest.raises(ValueError, match=r"^The sliding window applies only to the training-free dense methods "):
        sl.dense_defaults("gradcam")


def test_the_methods_own_defaults_come_from_its_record(dense_rollout) -> None:
    rule = dense.label_rule("rollout")
    assert (rule.logit_scale, rule.prob_thd) == (40.0, 0.3)
    assert sl.dense_methods() == ("rollout", "maskclip", "sclip", "clearclip", "naclip", "gem", "clipsurgery")


def test_label_map_argmax_agrees_with_the_image_maps(shapes, scene) -> None:
    result = shapes.explain(scene, PROMPTS, method="legrad")
    got = dense.label_map(result)
    maps = result.image_maps  # (K, H, W) min-max per prompt, NaN outside the crop
    seen = ~np.isnan(maps[0])
    assert np.array_equal(got.labels == dense.UNSEEN, ~seen)
    best = np.nanargmax(np.where(seen, maps, -1), axis=0)
    won = got.labels >= 0
    assert won.any() and np.array_equal(got.labels[won], best[won])
    assert np.allclose(np.nanmax(maps, axis=0)[seen & ~won], np.nanmax(maps, axis=0)[seen & ~won].clip(max=0.5))
    assert np.array_equal(result.grid_maps, shapes.explain(scene, PROMPTS, method="legrad").grid_maps)  # raw untouched


# ----------------------------------------------------------------- the sliding window
def sclip_windows(h_img: int, w_img: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """The loop of SCLIP's forward_slide, ported."""
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    out = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


@pytest.mark.parametrize("h, w, crop, stride", [(336, 448, 224, 112), (336, 500, 224, 112), (100, 80, 224, 112),
                                                (80, 80, 48, 16), (224, 224, 224, 112)])
def test_windows_are_sclips(h, w, crop, stride) -> None:
    assert sl.windows(h, w, crop, stride) == sclip_windows(h, w, crop, stride)


def test_slide_stitches_as_forward_slide(shapes, scene, dense_rollout) -> None:
    got, count = sl.slide_maps(shapes, scene, PROMPTS, "rollout")
    # the authors' loop: resize the short side to 80, each 48-px window upsampled bilinearly and padded in
    img = torch.from_numpy(np.array(Image.fromarray(scene).resize((80, 80), Image.BILINEAR))).permute(2, 0, 1)
    preds, counts = torch.zeros(3, 80, 80, dtype=torch.float64), torch.zeros(1, 80, 80, dtype=torch.float64)
    boxes = sclip_windows(80, 80, 48, 16)
    for y1, y2, x1, x2 in boxes:
        crop = Image.fromarray(img[:, y1:y2, x1:x2].permute(1, 2, 0).numpy())
        grid = torch.from_numpy(shapes.explain(crop, PROMPTS, method="rollout").grid_maps).double()[None]
        logit = F.interpolate(grid, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
        preds += F.pad(logit, (x1, 80 - x2, y1, 80 - y2))
        counts[:, y1:y2, x1:x2] += 1
    want = F.interpolate((preds / counts)[None], size=(64, 64), mode="bilinear", align_corners=False)[0].numpy()
    assert count == len(boxes) == 9 == sl.slide_forwards((64, 64), "rollout")
    assert np.allclose(got, want, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------- drawing and the command line
def test_label_picture_colours_winners_keeps_none_and_dims_the_unseen() -> None:
    image = Image.new("RGB", (3, 1), (100, 100, 100))
    out = np.asarray(label_picture(image, np.array([[1, -1, -2]]), alpha=0.5))
    assert out[0, 0].tolist() == [round(50 + PALETTE[1][c] / 2) for c in range(3)]
    assert out[0, 1].tolist() == [100, 100, 100]
    assert out[0, 2].tolist() != [100, 100, 100]
    html = label_legend_html(["a <cat>"], {"a <cat>": 0.25, "none": 0.75})
    assert "a &lt;cat&gt; (25 %)" in html and "none (75 %)" in html


def test_cli_label_map_writes_png_and_labels(tmp_path, scene) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(scene).save(path)
    out = tmp_path / "out"
    proc = run_cli(str(path), "-m", "shapes", "--method", "gradcam", "--prob-thd", "0.4", "-o", str(out),
                   *[a for p in PROMPTS for a in ("-p", p)])
    assert proc.returncode == 0, proc.stderr
    arrays = np.load(out / "heatmaps.npz")
    assert arrays["labels"].shape == (64, 64) and arrays["label_scores"].shape == (3, 64, 64)
    assert (out / "label-map.png").exists()
    record = json.loads((out / "scores.json").read_text())["label_map"]
    assert record["prob_thd"] == 0.4 and record["windows"] == 0
    bad = run_cli(str(path), "-m", "shapes", "-p", "a", "--slide", "-o", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("clipcam: The sliding window applies only to")


# ----------------------------------------------------------------- the app (plain Python, not served)
@pytest.fixture
def service(tmp_path):
    from clipcam.app.service import Service

    return Service(models=["shapes"], device="cpu", cache_folder=tmp_path / "gradio")


def test_app_label_map_of_the_kept_result(service, scene) -> None:
    from clipcam.app.labels import show_labels

    with pytest.raises(ValueError, match=r"^No result to draw a label map from yet: run an explanation on the "
                                         r"Explain tab first.$"):
        show_labels(service, "s", "", False)
    service.explain("s", Image.fromarray(scene), "\n".join(PROMPTS), "shapes", 3, "mlp.fc1", "logit", "gradcam",
                    "inferno", 0.5, False)
    shown = show_labels(service, "s", "0.3", False)
    kept = service.store.get("s", "explain")
    assert shown.picture.size == kept.display.size
    labels = np.load(shown.files[1])["labels"]
    want = dense.grid_label_map(kept.layer_maps[0], kept.geometry, tuple(PROMPTS), dense.LabelRule(None, 0.3),
                                kept.display.size).labels
    assert np.array_equal(labels, want) and shown.files[0].endswith("label-map.png")
    assert all(p in shown.legend for p in PROMPTS) and "none (" in shown.legend
    with pytest.raises(ValueError, match=r"^The background threshold \(prob_thd\) must be between 0 and 1; got 7.$"):
        show_labels(service, "s", "7", False)
    with pytest.raises(ValueError, match=r"^The sliding window applies only to the training-free dense methods"):
        show_labels(service, "s", "", True, Image.fromarray(scene))


def test_app_sliding_window_counts_toward_the_forward_budget(service, scene, dense_rollout) -> None:
    from clipcam.app.labels import show_labels

    service.explain("s", Image.fromarray(scene), "\n".join(PROMPTS), "shapes", 3, "mlp.fc1", "logit", "rollout",
                    "inferno", 0.5, False)
    shown = show_labels(service, "s", "", True, Image.fromarray(scene))
    assert "sliding window of 9 crops" in shown.legend
    service.max_forwards = 8
    with pytest.raises(ValueError, match=r"^The sliding window would run 9 forward passes on this image, above this "
                                         r"server's limit of 8 \(CLIPCAM_MAX_FORWARDS\); turn the sliding window off "
                                         r"or use a smaller image.$"):
        show_labels(service, "s", "", True, Image.fromarray(scene))
