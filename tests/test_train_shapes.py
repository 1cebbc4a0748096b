"""tools/train_shapes.py: the batch's positive pairs, and each family's loss against the library's own.

Training itself is not part of the tests (minutes to half an hour); what it optimises is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from clipcam.eval.shapes import COLOURS

TOOL = Path(__file__).resolve().parents[1] / "tools" / "train_shapes.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("train_shapes", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_pair_is_positive_exactly_when_the_caption_names_only_objects_in_the_image(tool):
    images, captions, true = tool.make_batch(np.random.default_rng(3), 40, 0.3)
    assert images.shape == (40, 64, 64, 3) and len(captions) == 40 and true.shape == (40, 40)
    assert true.diagonal().all()
    words = "red green blue yellow circle square triangle".split()
    for i in range(40):
        for j in range(40):
            # an independent reading of the caption: colour-shape word pairs
            toks = captions[j].replace(",", " ").replace(".", " ").split()
            named = {f"{a} {b}" for a, b in zip(toks, toks[1:]) if a in words[:4] and b in words[4:]}
            assert named, captions[j]
            # the image's objects by colour: every named object must be drawn with its colour somewhere
            assert true[i, j] == (named <= present_names(images[i]))
    assert not true.all() and true.sum() > 40  # some captions are true of other images too
    assert any(" and " in c for c in captions)  # some captions name several objects


def present_names(image: np.ndarray) -> set[str]:
    """Which 'colour shape' objects an image shows, read from its pixels (no scene record)."""
    names = set()
    for colour, rgb in COLOURS.items():
        mask = (np.abs(image.astype(int) - rgb).sum(axis=-1) == 0)
        if mask.sum() < 20:
            continue
        ys, xs = np.nonzero(mask)
        fill = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))  # share of the bounding box it fills
        shape = "square" if fill > 0.9 else "circle" if fill > 0.6 else "triangle"  # 1, ≥ 0.66, ≈ 0.5
        names.add(f"{colour} {shape}")
    return names


def test_siglip_loss_is_the_papers_sigmoid_loss(tool):
    """With positives on the diagonal only, the loss equals transformers' own SigLIP loss; with more
    positives, it equals open_clip's SigLipLoss formula with those labels; t' starts at log 10 (the
    paper's) and b at the prior log-odds of a positive pair (about 19 % of the pairs with one object
    per caption)."""
    torch.manual_seed(0)
    run = tool.SiglipRun()
    assert run.model.logit_scale.item() == pytest.approx(np.log(10))
    share = np.mean([tool.make_batch(np.random.default_rng(s), 128, 0.3, max_named=1)[2].mean() for s in (7, 8)])
    assert 0.15 < share < 0.23
    assert run.model.logit_bias.item() == pytest.approx(np.log(share / (1 - share)), abs=0.1)
    images, captions, true = tool.make_batch(np.random.default_rng(1), 6, 0.3, max_named=1)
    assert all(" and " not in c for c in captions)
    inputs = run.processor(text=captions, images=list(images), padding="max_length", return_tensors="pt")
    assert set(inputs) == {"input_ids", "pixel_values"} and inputs["input_ids"].shape[1] == tool.CONTEXT
    with torch.no_grad():
        hf = run.model(**inputs, return_loss=True)
        ours_eye = run.loss(images, captions, np.eye(6, dtype=bool))
        ours = run.loss(images, captions, true)
    torch.testing.assert_close(ours_eye, hf.loss)
    labels = torch.from_numpy(true).float() * 2 - 1
    expected = -torch.nn.functional.logsigmoid(labels * hf.logits_per_image).sum() / 6  # open_clip's _loss
    torch.testing.assert_close(ours, expected)


def test_resnet_loss_is_clips_contrastive_loss(tool):
    torch.manual_seed(0)
    run = tool.ResNetRun()
    run.model.eval()  # BatchNorm on running statistics, so both passes see the same features
    images, captions, true = tool.make_batch(np.random.default_rng(1), 6, 0.3)
    with torch.no_grad():
        ours = run.loss(images, captions, true)
        img, txt, scale = run.model(run.pixels(images), run.tokenizer(captions))
        expected = open_clip.ClipLoss()(img, txt, scale)
    torch.testing.assert_close(ours, expected)
    assert run.pixels(images[:1]).shape == (1, 3, tool.RN_IMAGE_SIZE, tool.RN_IMAGE_SIZE)


def said_in(caption: str) -> list[tuple[str | None, str | None]]:
    """An independent reading of a caption, partial names included: [(colour or None, shape or None)]."""
    colours, shapes = {"red", "green", "blue", "yellow"}, {"circle", "square", "triangle"}
    body = caption.removeprefix("a photo of ").removesuffix(".")
    items = [part.strip().removeprefix("a ") for chunk in body.split(" and ") for part in chunk.split(",")]
    out = []
    for item in items:
        words = item.split()
        colour = next((w for w in words if w in colours), None)
        shape = next((w for w in words if w in shapes), None)
        assert (colour or shape) and len(words) == (colour is not None) + (shape is not None), caption
        out.append((colour, shape))
    return out


def test_partial_captions_leave_out_a_colour_or_a_shape_and_stay_true_where_they_should(tool):
    images, captions, true = tool.make_batch(np.random.default_rng(4), 48, 0.3, partial=0.5)
    said = [said_in(c) for c in captions]
    kinds = {(c is None, s is None) for items in said for c, s in items}
    assert kinds == {(False, False), (True, False), (False, True)}  # full, shape only, colour only
    for i in range(48):
        shown = [tuple(name.split()) for name in present_names(images[i])]
        for j in range(48):
            expected = all(any(c in (None, sc) and s in (None, ss) for sc, ss in shown) for c, s in said[j])
            assert true[i, j] == expected, (captions[j], shown)
    assert true.diagonal().all()
    # without partial names the batch is the one the shipped SigLIP and ResNet were trained on
    again = tool.make_batch(np.random.default_rng(4), 48, 0.3, partial=0.0)[1]
    assert all(all(c and s for c, s in said_in(c)) for c in again)


def test_clip_loss_with_every_true_caption_a_positive(tool):
    """positives="all": soft cross-entropy both ways, the targets spread evenly over the true pairs,
    written out here one image and one caption at a time; with the diagonal only it is CLIP's own loss."""
    torch.manual_seed(0)
    run = tool.ClipRun(positives="all")
    run.model.eval()
    images, captions, true = tool.make_batch(np.random.default_rng(2), 8, 0.3, partial=0.5)
    assert true.sum() > 8  # some captions are true of several images
    with torch.no_grad():
        ours = run.loss(images, captions, true)
        ours_eye = run.loss(images, captions, np.eye(8, dtype=bool))
        pixels = run.processor(images=list(images), return_tensors="pt")["pixel_values"]
        tokens = run.tokenizer(captions, padding=True, return_tensors="pt")
        out = run.model(pixel_values=pixels, **tokens, return_loss=True)
    logits = out.logits_per_image.double()
    per_image = [-sum(np.log(torch.softmax(logits[i], 0)[j].item()) for j in range(8) if true[i, j]) / true[i].sum()
                 for i in range(8)]
    per_caption = [-sum(np.log(torch.softmax(logits[:, j], 0)[i].item()) for i in range(8) if true[i, j])
                   / true[:, j].sum() for j in range(8)]
    assert ours.item() == pytest.approx((np.mean(per_image) + np.mean(per_caption)) / 2, rel=1e-5)
    torch.testing.assert_close(ours_eye, out.loss)
