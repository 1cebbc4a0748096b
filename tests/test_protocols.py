"""The segmentation protocols of clipcam.eval.protocols on small hand-made maps and masks with known
answers, each checked against a computation written here (not clipcam's helpers); ROAD against
pytorch-grad-cam's own metric called here; and one in-process run of ``clipcam eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from clipcam.eval import protocols as pr
from tests.clihelpers import run_cli


def average_precision(truth: list[int], scores: list[float]) -> float:
    """AP as the step sum Σ (R_n − R_{n−1}) P_n over the distinct thresholds, highest first."""
    truth, scores = np.asarray(truth), np.asarray(scores, dtype=np.float64)
    positives, ap, last_recall = truth.sum(), 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        recall = truth[chosen].sum() / positives
        ap += (recall - last_recall) * truth[chosen].sum() / chosen.sum()
        last_recall = recall
    return ap


# ----------------------------------------------------------------- binary protocol
HEAT = np.array([[-1.0, 0.2, 0.6], [1.0, 0.0, 0.4]])  # clipped at 0: already in [0, 1]; mean 2.2 / 6
MASK = np.array([[False, False, True], [True, False, False]])


def test_binary_counts_clip_minmax_and_the_mean_threshold() -> None:
    counts, ap = pr.binary_counts(HEAT, MASK)
    # foreground = above 0.3667: (0, 2), (1, 0), (1, 2); background = the other three
    assert counts.tolist() == [3, 4, 2, 3, 5, 6]
    scaled = [0.0, 0.2, 0.6, 1.0, 0.0, 0.4]
    truth = [1, 1, 0, 0, 1, 1] + [0, 0, 1, 1, 0, 0]  # background channel, then foreground channel
    assert ap == pytest.approx(average_precision(truth, [1 - v for v in scaled] + scaled), abs=1e-12)


def test_binary_counts_unseen_pixels_are_background_with_zero_scores() -> None:
    heat = np.array([[np.nan, 2.0], [0.0, 1.0]])
    mask = np.array([[True, True], [False, False]])
    counts, ap = pr.binary_counts(heat, mask)
    # seen scaled: [1, 0, 0.5]; mean 0.5 → only (0, 1) is foreground; the unseen (0, 0) is background
    assert counts.tolist() == [2, 3, 1, 2, 3, 4]
    truth = [0, 0, 1, 1] + [1, 1, 0, 0]
    assert ap == pytest.approx(average_precision(truth, [0.0, 0.0, 1.0, 0.5] + [0.0, 1.0, 0.0, 0.5]), abs=1e-12)


def test_binary_counts_of_a_flat_map_call_everything_background() -> None:
    counts, _ = pr.binary_counts(np.full((2, 2), 3.0), np.eye(2, dtype=bool))
    assert counts.tolist() == [2, 4, 0, 2, 2, 4]


def test_binary_summary_sums_over_the_set_and_averages_the_aps() -> None:
    a, _ = pr.binary_counts(HEAT, MASK)
    b = np.array([1, 2, 1, 2, 2, 3])
    got = pr.binary_summary(a + b, [0.5, 0.75])
    assert got["pixel_acc"] == pytest.approx(7 / 9)
    assert got["binary_miou"] == pytest.approx((4 / 6 + 3 / 5) / 2)
    assert got["map_ap"] == pytest.approx(0.625)


# ----------------------------------------------------------------- p-mIoU
def test_point_counts_binarise_the_minmax_map_at_one_half() -> None:
    heat = np.array([[0.0, 2.0, 3.0, 5.0]])  # scaled: 0, 0.4, 0.6, 1 → positive at 2 and 3
    assert pr.point_counts(heat, np.array([2, 0]), np.array([3, 1])).tolist() == [1, 1, 1]
    assert pr.iou_of(np.array([1, 1, 1])) == pytest.approx(1 / 3)
    assert np.isnan(pr.iou_of(np.zeros(3)))


def test_points_fall_inside_and_outside_their_masks() -> None:
    masks = np.zeros((2, 6, 6), bool)
    masks[0, :2, :2] = True  # 4 pixels: fewer than asked, so all of them
    masks[1, 3:, 3:] = True
    points = pr.sample_points(masks, np.random.default_rng(0), n=5)
    assert sorted(points[0][0].tolist()) == [0, 1, 6, 7]
    assert len(points[0][1]) == len(points[1][0]) == len(points[1][1]) == 5
    assert masks[1].ravel()[points[1][0]].all() and not masks[1].ravel()[points[1][1]].any()
    assert len(set(points[1][1].tolist())) == 5  # without replacement


def test_p_miou_per_image_and_over_the_set() -> None:
    heat = np.array([[0.0, 2.0, 3.0, 5.0]])
    masks = np.array([[[False, False, True, True]], [[True, False, False, False]]])
    points = [(np.array([2, 0]), np.array([3, 1])), (np.array([0]), np.array([3]))]
    tally = pr.Protocols()
    tally.add(np.stack([heat, heat]), masks, ("red", "blue"), points, None)
    tally.add(np.stack([heat]), masks[:1], ("red",), [(np.array([3]), np.array([1]))], None)
    got = tally.summary()
    # image 1: red (1, 1, 1) → 1/3, blue (0, 1, 1) → 0; image 2: red (1, 0, 0) → 1
    assert got["p_miou_image"] == pytest.approx(((1 / 3 + 0) / 2 + 1) / 2)
    assert got["p_miou"] == pytest.approx((2 / 4 + 0) / 2)  # red summed (2, 1, 1), blue (0, 1, 1)
    assert np.isnan(got["mc_miou"])


# ----------------------------------------------------------------- multi-class mIoU
def test_multi_class_miou_of_a_label_map() -> None:
    masks = np.zeros((2, 2, 3), bool)
    masks[0, 0, :2] = True  # red: (0, 0), (0, 1)
    masks[1, 1, 2] = True  # blue: (1, 2)
    labels = np.array([[0, 1, -1], [-2, 1, 1]])  # -1 none and -2 unseen both count as background
    # truth: red at (0, 0), (0, 1); blue at (1, 2); background (0, 2), (1, 0), (1, 1)
    per = pr.class_counts(labels, pr.truth_labels(masks), ("red", "blue"))
    assert {k: v.tolist() for k, v in per.items()} == {"red": [1, 2], "blue": [1, 3], "background": [2, 3]}
    assert pr.mean_iou(per) == pytest.approx((1 / 2 + 1 / 3 + 2 / 3) / 3)
    per["green"] = np.array([0, 0])  # a class that never occurs is left out
    assert pr.mean_iou(per) == pytest.approx((1 / 2 + 1 / 3 + 2 / 3) / 3)


# ----------------------------------------------------------------- ROAD, through pytorch-grad-cam
def test_road_is_pytorch_grad_cams_metric_on_the_models_logits(tmp_path) -> None:
    from clipcam.eval.road import road_scores
    from clipcam.explainer import load_explainer
    from clipcam.testing import tiny_model

    explainer = load_explainer(str(tiny_model("clip", tmp_path / "clip", seed=0)), device="cpu")
    image = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    prompts = ("a photo of a cat.", "a dog.")
    rows, cols = explainer.grid
    grid_maps = np.random.default_rng(1).random((2, rows, cols)).astype(np.float32)
    got = road_scores(explainer, image, prompts, grid_maps, seed=3, percentiles=(20, 60))

    pixels = explainer.adapter.preprocess(Image.fromarray(image))  # (1, 3, S, S)
    text, _ = explainer.text_embeddings(prompts)
    size = pixels.shape[-1]
    scaled = (grid_maps - grid_maps.min(axis=(1, 2), keepdims=True)) / np.ptp(grid_maps, axis=(1, 2), keepdims=True)
    cams = torch.nn.functional.interpolate(torch.from_numpy(scaled)[:, None], size=(size, size), mode="bilinear",
                                           align_corners=False)[:, 0].numpy()

    class Logits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = explainer.adapter.image_features(x)
            return explainer.adapter.logits(features, text)

    torch.manual_seed(3)
    morf = ROADMostRelevantFirstAverage([20, 60])(pixels.repeat(2, 1, 1, 1), cams,
                                                  [ClassifierOutputTarget(0), ClassifierOutputTarget(1)], Logits())
    assert np.asarray(got["road_morf"]) == pytest.approx(np.asarray(morf).ravel(), abs=1e-3)
    assert got["road_combined"] == pytest.approx([(lo - mo) / 2 for lo, mo in zip(got["road_lerf"], got["road_morf"])])


# ----------------------------------------------------------------- the command
def test_eval_reports_the_new_protocols_on_shapes_scenes(tmp_path) -> None:
    proc = run_cli("eval", "--shapes", "hard", "--samples", "2", "--model", "shapes", "--methods", "gradcam,legrad",
                   "--sublayers", "mlp.fc1", "--layers", "4", "--curves", "0", "--road", "1", "--no-baselines",
                   "--no-progress", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["road_samples"] == 1 and result["points"] == pr.POINTS
    for row in result["rows"]:
        for key in ("pixel_acc", "binary_miou", "map_ap", "p_miou", "p_miou_image", "mc_miou"):
            assert 0.0 <= row[key] <= 1.0, (row["method"], key)
        assert row["binary_miou"] == pytest.approx(row["miou"], abs=1e-6)  # non-negative maps: the same protocol
        assert row["road_combined"] == row["road_combined"]  # measured, not NaN
    assert "p-mIoU" in (tmp_path / "eval.md").read_text()
