"""The explainer against pytorch-grad-cam's GradCAM (the reference pipeline) and CLIP's own forward."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import PROMPTS, noise_image

import clipcam.passes.common as passes_common
from clipcam.methods.cam import CAM_TABLE, eigen_projection, normalize_maps
from clipcam.constants import SUBLAYERS
from clipcam.testing.reference import REFERENCE_CAMS, reference_grad_cam
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection


def as_reference(grid_maps: np.ndarray, side: int) -> np.ndarray:
    """The reference's normalisation of raw maps: scale, resize to the input, scale again."""
    return np.stack([scale_cam_image(scale_cam_image(m[None], (side, side)))[0] for m in grid_maps])


CASES = [(1, "mlp.fc1"), (1, "self_attn.out_proj"), (1, "layer_norm1"), (1, "block"),
         (2, "self_attn.q_proj"), (2, "self_attn.k_proj"), (2, "self_attn.v_proj"), (2, "layer_norm2"),
         (2, "mlp.fc2"), (3, "self_attn.v_proj")]


@pytest.mark.parametrize("layer,sublayer", CASES)
@pytest.mark.parametrize("which", ["explainer5", "explainer7"])
def test_matches_reference_pipeline(request, which, layer, sublayer, wide_image):
    ex = request.getfixturevalue(which)
    res = ex.explain(wide_image, PROMPTS, layer=layer, sublayer=sublayer)
    side = ex.model.config.vision_config.image_size
    ref = reference_grad_cam(ex.model, ex.adapter.tokenizer, ex.adapter.image_processor, wide_image,
                             PROMPTS, layer, sublayer)
    assert res.grid_maps.shape == (3, *ex.grid)
    assert res.grid_maps.max() > 0, "a live sublayer must give a non-empty map on this model"
    np.testing.assert_allclose(as_reference(res.grid_maps, side), ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("target", ["log_softmax", "contrast"])
@pytest.mark.parametrize("layer,sublayer", [(1, "mlp.fc1"), (2, "self_attn.v_proj")])
def test_targets_match_reference_pipeline(explainer5, wide_image, target, layer, sublayer):
    res = explainer5.explain(wide_image, PROMPTS, layer=layer, sublayer=sublayer, target=target)
    ref = reference_grad_cam(explainer5.model, explainer5.adapter.tokenizer, explainer5.adapter.image_processor,
                             wide_image, PROMPTS, layer, sublayer, target=target)
    assert res.target == target
    np.testing.assert_allclose(as_reference(res.grid_maps, 40), ref, atol=1e-4, rtol=0)
    logit = explainer5.explain(wide_image, PROMPTS, layer=layer, sublayer=sublayer)
    assert not np.allclose(res.grid_maps, logit.grid_maps)


@pytest.mark.parametrize("method", [row[0] for row in CAM_TABLE])
def test_cam_family_matches_pytorch_grad_cam(explainer5, wide_image, method):
    """Each row of the CAM table, from clipcam's one forward + batched gradients, equals the package's
    own pipeline with the class the reference names itself (a row without one fails here)."""
    assert method in REFERENCE_CAMS, f"add {method}'s pytorch-grad-cam class to REFERENCE_CAMS"
    for layer, sublayer in [(1, "mlp.fc1"), (2, "self_attn.v_proj")]:
        res = explainer5.explain(wide_image, PROMPTS, layer=layer, sublayer=sublayer, method=method)
        ref = reference_grad_cam(explainer5.model, explainer5.adapter.tokenizer, explainer5.adapter.image_processor,
                                 wide_image, PROMPTS, layer, sublayer, method=method)
        assert res.method == method and (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all()
        np.testing.assert_allclose(as_reference(res.grid_maps, 40), ref, atol=1e-4, rtol=0)
    if method != "eigencam":  # EigenCAM ignores the gradient, so it cannot depend on the prompt
        assert not np.allclose(res.grid_maps[0], res.grid_maps[1])
    else:
        assert any("EigenCAM does not use the prompts" in n for n in res.notes)


@pytest.mark.parametrize("shape", [(3, 32, 5, 5), (2, 768, 7, 7), (2, 16, 8, 8), (1, 1024, 16, 16)])
def test_reduced_svd_projection_equals_the_packages(shape):
    """clipcam's reduced SVD gives pytorch-grad-cam's projection, sign included."""
    maps = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(eigen_projection(maps), get_2d_projection(maps), rtol=1e-3, atol=1e-3)


def test_unknown_method(explainer):
    with pytest.raises(ValueError, match="^Unknown method 'saliency': choose one of gradcam, hirescam, gradcam"):
        explainer.explain(noise_image(20, 20), PROMPTS, method="saliency")


def test_unknown_target(explainer):
    with pytest.raises(ValueError, match="^Unknown target 'softmax': choose one of logit, log_softmax, contrast.$"):
        explainer.explain(noise_image(20, 20), PROMPTS, target="softmax")


def test_logits_and_probs_match_clip_forward(explainer5, tall_image):
    res = explainer5.explain(tall_image, PROMPTS, layer=1)
    inputs = explainer5.adapter.image_processor(images=tall_image, return_tensors="pt")
    tokens = explainer5.adapter.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = explainer5.model(pixel_values=inputs["pixel_values"], **tokens)
    np.testing.assert_allclose(res.logits, out.logits_per_image[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(res.probs, out.logits_per_image.softmax(-1)[0].numpy(), atol=1e-6)
    assert res.probs.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(explainer5.scores(tall_image, PROMPTS)[1], res.probs, atol=1e-6)


def test_weights_stay_frozen_and_hooks_are_removed(explainer):
    explainer.explain(noise_image(40, 30), PROMPTS, layer=1)
    explainer.sweep(noise_image(40, 30), PROMPTS)
    assert all(p.grad is None and not p.requires_grad for p in explainer.model.parameters())
    assert not any(m._forward_hooks for m in explainer.model.modules())


def test_hooks_removed_when_the_call_fails(explainer, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("failed mid-way")

    monkeypatch.setattr(explainer.model.visual_projection, "forward", boom)
    with pytest.raises(RuntimeError, match="failed mid-way"):
        explainer.explain(noise_image(40, 30), PROMPTS, layer=1)
    monkeypatch.undo()
    assert not any(m._forward_hooks for m in explainer.model.modules())


def test_sweep_equals_per_layer_explain(explainer5, wide_image):
    sweep = explainer5.sweep(wide_image, PROMPTS, sublayer="mlp.fc1")
    assert sweep.layers == (1, 2, 3)
    assert sweep.layer_maps.shape == (3, 3, 5, 5)
    for i, layer in enumerate(sweep.layers):
        single = explainer5.explain(wide_image, PROMPTS, layer=layer, sublayer="mlp.fc1")
        np.testing.assert_allclose(sweep.layer_maps[i], single.grid_maps, atol=1e-6)
        np.testing.assert_allclose(sweep.logits, single.logits, atol=1e-6)
    assert sweep.dead_reasons[:2] == (None, None) and "last layer" in sweep.dead_reasons[2]
    assert sweep.layer_image_maps.shape == (3, 3, wide_image.height, wide_image.width)


def test_one_result_type_with_a_layer_axis(explainer5, wide_image):
    """explain and sweep return one type: a one-layer result is a sweep's layer, picked with at()."""
    sweep = explainer5.sweep(wide_image, PROMPTS, sublayer="mlp.fc1")
    single = explainer5.explain(wide_image, PROMPTS, layer=2, sublayer="mlp.fc1")
    assert type(single) is type(sweep) and single.layers == (2,) and single.layer_maps.shape == (1, 3, 5, 5)
    picked = sweep.at(2)
    assert picked.layer == 2 and picked.dead_reason is None and picked.grid_maps.shape == (3, 5, 5)
    np.testing.assert_allclose(picked.grid_maps, single.grid_maps, atol=1e-6)
    np.testing.assert_allclose(picked.image_maps, single.image_maps, atol=1e-5)
    np.testing.assert_array_equal(sweep.layer_image_maps[1], picked.image_maps)
    assert sweep.at(3).dead and "last layer" in sweep.at(3).dead_reason
    with pytest.raises(ValueError) as err:
        _ = sweep.grid_maps
    assert str(err.value) == ("This explanation holds 3 layers (1 to 3); pick one with .at(layer), "
                              "or read layer_maps.")
    with pytest.raises(ValueError) as err:
        sweep.at(7)
    assert str(err.value) == "Layer 7 is not in this explanation; it holds layers [1, 2, 3]."


@pytest.mark.parametrize("sublayer", SUBLAYERS)
def test_dead_sublayers_are_flagged(explainer5, wide_image, sublayer):
    res = explainer5.explain(wide_image, PROMPTS, layer=3, sublayer=sublayer)
    expect_dead = sublayer not in ("layer_norm1", "self_attn.k_proj", "self_attn.v_proj")
    assert res.dead == expect_dead
    if expect_dead:
        assert not res.grid_maps.any(), "a dead sublayer's gradient is exactly zero"
        assert "never reach the CLS token" in res.dead_reason
    else:
        assert res.grid_maps.any()


def test_maps_depend_on_the_prompt(explainer7, wide_image):
    res = explainer7.explain(wide_image, PROMPTS, layer=2)
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1])
    assert (res.grid_maps >= 0).all()
    img = res.image_maps
    assert np.nanmin(img) >= 0 and np.nanmax(img) <= 1


def test_text_embeddings_are_cached(explainer):
    first, _ = explainer.text_embeddings(tuple(PROMPTS))
    again, _ = explainer.text_embeddings(tuple(PROMPTS))
    assert first is again


@pytest.mark.parametrize("kwargs,message", [
    (dict(layer=0), "Layer 0 is out of range: this model's vision encoder has layers 1 to 2."),
    (dict(layer=3), "Layer 3 is out of range: this model's vision encoder has layers 1 to 2."),
    (dict(layer=1.5), "Layer must be a whole number from 1 to 2; got 1.5."),
    (dict(sublayer="mlp.fc3"), "Unknown sublayer 'mlp.fc3': choose one of layer_norm1, self_attn.q_proj"),
])
def test_bad_settings_are_rejected(explainer, kwargs, message):
    with pytest.raises(ValueError) as err:
        explainer.explain(noise_image(20, 20), PROMPTS, **kwargs)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("prompts", [[], ["", "   "], "  "])
def test_no_prompts_is_rejected(explainer, prompts):
    with pytest.raises(ValueError, match=r"^No prompts given: type at least one text prompt"):
        explainer.explain(noise_image(20, 20), prompts)


def test_long_prompt_is_truncated_with_a_note(explainer):
    res = explainer.explain(noise_image(20, 20), ["a " * 40 + "cat", "a dog"], layer=1)
    assert any("Prompt 1 is" in n and "only its start was used" in n for n in res.notes)


def test_default_layer_is_second_to_last(explainer5):
    assert explainer5.explain(noise_image(30, 30), PROMPTS).layer == 2


def test_normalize_maps_matches_reference():
    maps = np.random.RandomState(0).rand(3, 5, 5).astype(np.float32)
    np.testing.assert_allclose(normalize_maps(maps), scale_cam_image(maps), atol=1e-7)
    assert not normalize_maps(np.zeros((1, 4, 4))).any()


def test_upsampled_reference_normalisation_is_what_we_compare(explainer5, wide_image):
    res = explainer5.explain(wide_image, PROMPTS, layer=1)
    ours = as_reference(res.grid_maps, 40)
    plain = np.stack([cv2.resize(m, (40, 40)) for m in normalize_maps(res.grid_maps)])
    assert ours.max() == pytest.approx(1.0, abs=1e-6) and plain.max() < 1.0


@pytest.mark.parametrize("method", ["gradcam", "chefer", "legrad", "gradeclip"])
def test_prompts_differentiated_in_groups_give_the_same_maps(explainer, monkeypatch, method):
    """A sweep whose gradients exceed the budget differentiates the prompts in groups (here one
    prompt per backward) and gives the same raw maps as one batched backward."""
    image, prompts = noise_image(40, 30, seed=4), PROMPTS + ["a red circle", "a photo of a spoon"]
    assert len(passes_common.prompt_chunks(torch.eye(5), 10, budget=25)) == 3  # groups of 2, 2 and 1
    whole = explainer.sweep(image, prompts, method=method, sublayer="mlp.fc1", target="log_softmax")
    monkeypatch.setattr(passes_common, "GRADIENT_BYTES", 1)
    grouped = explainer.sweep(image, prompts, method=method, sublayer="mlp.fc1", target="log_softmax")
    np.testing.assert_allclose(grouped.layer_maps, whole.layer_maps, rtol=1e-5, atol=1e-6)  # summation order only
    np.testing.assert_array_equal(grouped.logits, whole.logits)
    assert np.abs(whole.layer_maps).max() > 0


def test_every_method_has_a_pass_and_the_registry_lists_every_record():
    """The dispatch table covers every kind of pass; the registry is the CAM table's rows, in its
    order, then the other methods; the derived properties follow the pass kind."""
    from clipcam.methods import METHODS, REGISTRY
    from clipcam.methods.cam import CAM_TABLE
    from clipcam.methods import kinds
    from clipcam.passes import PASSES

    declared = {k.name for k in vars(kinds).values() if isinstance(k, kinds.PassKind)}
    assert set(PASSES) == declared == {"sublayer", "masking", "attention", "single_head", "forward"}
    assert all(m.pass_kind.name in PASSES for m in REGISTRY.values())
    assert METHODS[:len(CAM_TABLE)] == tuple(row[0] for row in CAM_TABLE)
    assert METHODS[len(CAM_TABLE):] == ("scorecam", "chefer", "gradeclip", "gradeclip-authors", "legrad", "rollout",
                                         "maskclip", "sclip", "clearclip", "naclip", "gem", "clipsurgery")
    assert [(m.sublayer_applies, m.layer_role, m.cost) for m in map(REGISTRY.get, ("gradcam", "scorecam", "legrad",
                                                                              "gradeclip-authors", "rollout"))] == [
        (True, "reads", "one pass"), (True, "reads", "per channel"), (False, "starts", "one pass"),
        (False, "starts", "one pass"), (False, "starts", "one pass")]
