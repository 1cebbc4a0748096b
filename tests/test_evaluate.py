"""``clipcam eval``: masks from COCO annotations, the segmentation metric, the harder shapes scenes,
the batched probabilities of the curves, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clihelpers import run_cli, run_cli_subprocess
from PIL import Image

from clipcam.constants import SHAPES_MODEL_DIR
from clipcam.eval import evaluate as ev
from clipcam.eval.shapes import COLOURS, HARD_RADII, hard_evaluation_set, visible_masks

ROOT = Path(__file__).resolve().parents[1]
needs_shapes = pytest.mark.skipif(not (SHAPES_MODEL_DIR / "model.safetensors").exists(),
                                  reason="the shapes model is not shipped in this checkout")


def test_segmentation_counts_threshold_at_the_scaled_maps_mean():
    heat = np.array([[0.0, 1.0, 4.0], [np.nan, 2.0, 3.0]])  # scaled: 0, .25, 1, -, .5, .75; mean .5
    mask = np.array([[False, False, True], [False, True, True]])
    predicted = np.array([[False, False, True], [False, False, True]])  # above .5; NaN is background
    expected = [(~predicted & ~mask).sum(), (~predicted | ~mask).sum(), (predicted & mask).sum(), (predicted | mask).sum()]
    assert ev.segmentation_counts(heat, mask).tolist() == expected == [3, 4, 2, 3]
    tally = ev.Tally()
    tally.seg += ev.segmentation_counts(heat, mask)
    assert tally.summary()["miou"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert ev.segmentation_counts(np.zeros((2, 2)), np.eye(2, dtype=bool)).tolist() == [2, 4, 0, 2]  # flat: no fg


def test_polygons_and_rle_decode_like_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    polys = [[10.5, 5.0, 40.0, 8.0, 30.0, 35.5, 8.0, 25.0], [45.0, 40.0, 58.0, 40.0, 58.0, 55.0]]
    ours = ev.polygon_mask(polys, 60, 64)
    theirs = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 60, 64))).astype(bool)
    assert (ours & theirs).sum() / (ours | theirs).sum() > 0.99  # rasterisers differ on a few edge pixels only
    assert abs(int(ours.sum()) - int(theirs.sum())) <= 4
    truth = np.zeros((60, 64), bool)
    truth[12:30, 20:50] = True
    truth[40:44, 3:9] = True
    compressed = mask_utils.encode(np.asfortranarray(truth.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()  # as it is stored in JSON
    assert (ev.annotation_mask({"segmentation": compressed}, 60, 64) == truth).all()
    flat = truth.T.ravel()  # uncompressed RLE: run lengths in column-major order, starting with zeros
    runs, value, count = [], False, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    assert (ev.annotation_mask({"segmentation": {"size": [60, 64], "counts": runs}}, 60, 64) == truth).all()
    box = ev.annotation_mask({"bbox": [2.0, 3.0, 4.0, 2.0], "segmentation": []}, 10, 10)
    assert box.sum() == 8 and box[3:5, 2:6].all()


def test_hard_scenes_have_distractors_small_objects_and_occlusion():
    scenes = hard_evaluation_set(40)
    assert all(4 <= len(s.objects) <= 6 for s in scenes)
    occluded = 0
    for s in scenes:
        names = [o.name for o in s.objects]
        assert len(set(names)) == len(names), "every object has its own name, so every prompt has one answer"
        colours, shapes = [o.colour for o in s.objects], [o.shape for o in s.objects]
        assert len(set(colours)) < len(colours) and len(set(shapes)) < len(shapes)
        assert not (s.masks.sum(axis=0) > 1).any()
        for obj, mask in zip(s.objects, s.masks):
            alone = visible_masks((obj,))[0]
            assert mask.sum() >= 0.5 * alone.sum()
            occluded += mask.sum() < alone.sum()
            assert (np.abs(s.image[mask].astype(int) - np.array(COLOURS[obj.colour])).sum(axis=1) == 0).mean() > 0.95
    assert occluded >= 10
    assert min(o.radius for s in scenes for o in s.objects) == HARD_RADII[0]
    again = hard_evaluation_set(3)
    assert all((a.image == b.image).all() for a, b in zip(again, scenes))


@needs_shapes
def test_batched_probabilities_equal_the_explainers_scores():
    from clipcam import load_explainer

    ex = load_explainer("shapes", device="cpu")
    sample = ev.shapes_samples(2)[1]
    images = [sample.image, np.zeros_like(sample.image), np.full_like(sample.image, 200)]
    expected = np.stack([ex.scores(im, list(sample.prompts))[1] for im in images])
    np.testing.assert_allclose(ev.batch_probs(ex, images, sample.prompts), expected, atol=1e-5)


def coco_file(tmp_path: Path, n: int) -> Path:
    """The first n easy scenes as PNGs with a COCO file: polygons for the first object of each scene,
    RLE for the others (so both decoders run), categories named like the shapes' prompts."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    import cv2

    samples = ev.shapes_samples(n)
    names = sorted({p[len("a photo of a "):-1] for s in samples for p in s.prompts})
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(names)]
    images, anns = [], []
    for i, s in enumerate(samples):
        Image.fromarray(s.image).save(tmp_path / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 64, "width": 64})
        for k, (prompt, mask) in enumerate(zip(s.prompts, s.masks)):
            if k == 0:
                # the outline at twice the resolution runs a quarter pixel inside the object's edge,
                # so exactly the object's pixel centres lie inside it
                twice = np.kron(mask, np.ones((2, 2))).astype(np.uint8)
                contours, _ = cv2.findContours(twice, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                seg = [((c.reshape(-1, 2) + 0.5) / 2).ravel().tolist() for c in contours]
            else:
                seg = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                seg["counts"] = seg["counts"].decode()
            anns.append({"id": len(anns), "image_id": i, "category_id": names.index(prompt[13:-1]) + 1,
                         "segmentation": seg, "bbox": [0, 0, 1, 1], "iscrowd": 0})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


@needs_shapes
def test_coco_annotations_give_the_shapes_worlds_own_scores(tmp_path):
    """The same scenes read back from a COCO file (polygons and RLE) give the same masks and the same
    scores as the built-in ones (up to the prompts' order: COCO lists categories by id)."""
    from clipcam import load_explainer

    path = coco_file(tmp_path, 4)
    samples = ev.coco_samples(path, tmp_path)
    assert [s.id for s in samples] == ["0.png", "1.png", "2.png", "3.png"]
    built_in = ev.shapes_samples(4)
    for ours, theirs in zip(samples, built_in):
        assert set(ours.prompts) == set(theirs.prompts)
        for p, m in zip(ours.prompts, ours.masks):
            own = theirs.masks[theirs.prompts.index(p)]
            assert (m == own).all()
    ex = load_explainer("shapes", device="cpu")
    kw = dict(methods=("chefer",), targets=("logit",), n_curves=0, baselines=False)
    rows = ev.evaluate(ex, samples, **kw)["rows"]
    reference = ev.evaluate(ex, built_in, **kw)["rows"]
    for a, b in zip(rows, reference):
        assert (a["method"], a["layer"], a["n"]) == (b["method"], b["layer"], b["n"])
        assert a["pointing"] == pytest.approx(b["pointing"])
    assert ev.best(rows, "chefer")["pointing"] >= 0.7


@pytest.mark.slow
@needs_shapes
def test_command_line_writes_tables_and_a_figure(tmp_path):
    """The eval subcommand's subprocess smoke test."""
    out = tmp_path / "eval"
    proc = run_cli_subprocess("eval", "--shapes", "hard", "--samples", "6", "--curves", "2", "--steps", "4", "--methods",
                   "gradcam,chefer", "--sublayers", "self_attn.v_proj", "--device", "cpu", "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "eval.json").read_text())
    assert result["samples"] == 6 and (out / "eval.md").exists() and (out / "eval.png").stat().st_size > 10_000
    by_method = {(r["method"], r["layer"]) for r in result["rows"]}
    assert {("chefer", 1), ("gradcam", 3), ("random_pixel", "-"), ("rollout", "-")} <= by_method
    chefer = ev.best(result["rows"], "chefer")
    assert 0 <= chefer["miou"] <= 1 and chefer["deletion_auc"] == chefer["deletion_auc"]  # measured, not NaN
    assert "| chefer | logit |" in (out / "eval.md").read_text()


def test_command_line_argument_errors_are_one_sentence(tmp_path):
    proc = run_cli("eval", "--coco", tmp_path / "x.json", "--out", tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "python -m clipcam eval: --coco needs --images, the folder of its "
                                                 "images. See python -m clipcam eval --help.\n")
    proc = run_cli("eval", "--shapes", "easy", "--methods", "gradcam,nope", "--out", tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("python -m clipcam eval: Unknown methods nope; choose from")
    (tmp_path / "bad.json").write_text("{}")
    proc = run_cli("eval", "--coco", tmp_path / "bad.json", "--images", tmp_path, "--out", tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("clipcam eval: '") and "is not a COCO annotation file" in proc.stderr
