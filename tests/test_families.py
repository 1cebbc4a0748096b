"""Every model family through its adapter: tiny seeded models saved in each family's own format
(transformers' SiglipModel, open_clip's local-dir ViT and ModifiedResNet), loaded through the
same path hub models take, checked against the family's own forward and pytorch-grad-cam."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_grad_cam as pgc
import torch
from conftest import PROMPTS, noise_image

from clipcam import load_explainer
from clipcam.methods.cam import normalize_maps
from clipcam.testing import tiny_model
from clipcam.testing.reference import own_model


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    return load_explainer(tiny_model("siglip", tmp_path_factory.mktemp("siglip"), seed=0), device="cpu")


@pytest.fixture(scope="module")
def oc_vit(tmp_path_factory):
    return load_explainer(tiny_model("openclip-vit", tmp_path_factory.mktemp("ocvit"), seed=4), device="cpu")


@pytest.fixture(scope="module")
def oc_resnet(tmp_path_factory):
    return load_explainer(tiny_model("openclip-rn", tmp_path_factory.mktemp("ocrn"), seed=2), device="cpu")


@pytest.fixture(scope="module")
def oc_timm_vit(tmp_path_factory):
    return load_explainer(tiny_model("openclip-timm-vit", tmp_path_factory.mktemp("octimm"), seed=6), device="cpu")


@pytest.fixture(scope="module")
def oc_convnext(tmp_path_factory):
    return load_explainer(tiny_model("openclip-convnext", tmp_path_factory.mktemp("occnx"), seed=7), device="cpu")


FAMILIES = ["siglip", "oc_vit", "oc_resnet", "oc_timm_vit", "oc_convnext"]


def own_logits(ex, image, prompts):
    """The family's own forward, on the model its own library loads from the saved files."""
    own = own_model(ex.adapter.source)
    with torch.no_grad():
        return Wrapper(ex, prompts)(own.preprocess(image))[0].numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_equal_the_family_forward(family, request):
    ex = request.getfixturevalue(family)
    image = noise_image(70, 50)
    res = ex.explain(image, PROMPTS)
    np.testing.assert_allclose(res.logits, own_logits(ex, image, PROMPTS), rtol=1e-5, atol=1e-5)
    if family == "siglip":  # one sigmoid per prompt, not a softmax
        assert res.prob_kind == "sigmoid"
        np.testing.assert_allclose(res.probs, 1 / (1 + np.exp(-res.logits.astype(np.float64))), rtol=1e-6)
    else:
        assert res.prob_kind == "softmax" and abs(res.probs.sum() - 1) < 1e-6


class Wrapper(torch.nn.Module):
    """The family's model as image → logits (1, K) for pytorch-grad-cam, with its own text side."""

    def __init__(self, ex, prompts):
        super().__init__()
        own = own_model(ex.adapter.source)  # loaded by the family's own library, not clipcam's loader
        self.ex, self.model = ex, own.model
        if ex.family == "siglip":
            self.tokens = own.tokenizer(list(prompts), padding="max_length", max_length=16,
                                        return_tensors="pt")["input_ids"]
        else:
            self.tokens = own.tokenizer(list(prompts))

    def forward(self, pixels):
        if self.ex.family == "siglip":
            return self.model(pixel_values=pixels, input_ids=self.tokens).logits_per_image
        image_f, text_f, scale = self.model(pixels, self.tokens)
        return scale * image_f @ text_f.T


# (family, layer, the module addressed directly in the model, reshape transform, clipcam's sublayer)
def cases(ex):
    model = own_model(ex.adapter.source).model
    if ex.family == "siglip":
        blocks = model.vision_model.encoder.layers
        side = model.config.vision_config.image_size // model.config.vision_config.patch_size
        no_prefix = lambda x: x.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)
        return [(1, blocks[0].mlp.fc1, no_prefix, "mlp.fc1"), (2, blocks[1].self_attn.v_proj, no_prefix, "self_attn.v_proj"),
                (2, blocks[1], lambda x: no_prefix(x[0] if isinstance(x, tuple) else x), "block")]
    if ex.family == "open_clip-vit":
        blocks = model.visual.transformer.resblocks
        side = model.visual.grid_size[0]
        drop_cls = lambda x: x[:, 1:].reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)
        return [(1, blocks[0].mlp.c_fc, drop_cls, "mlp.c_fc"), (2, blocks[1].ln_2, drop_cls, "ln_2"),
                (3, blocks[2].ln_1, drop_cls, "ln_1")]
    visual = model.visual
    if ex.family == "open_clip-timm-vit":
        blocks, prefix = visual.trunk.blocks, visual.trunk.num_prefix_tokens
        side = visual.trunk.patch_embed.grid_size[0]
        drop = lambda x: x[:, prefix:].reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2)
        return [(12, blocks[11].mlp.fc1, drop, "mlp.fc1"), (6, blocks[5].norm1, drop, "norm1")]
    if ex.family == "open_clip-convnext":
        return [(4, visual.trunk.stages[3], None, "output"), (2, visual.trunk.stages[1], None, "output")]
    return [(4, visual.layer4, None, "output"), (3, visual.layer3, None, "output"), (1, visual.layer1, None, "output")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", ["logit", "log_softmax"])
def test_grad_cam_equals_pytorch_grad_cam_raw(family, target, request):
    """pytorch-grad-cam's full pipeline (its hooks, reshape transform and per-prompt backward),
    compared on the raw, unnormalised maps: a per-prompt scale error would fail here."""
    ex = request.getfixturevalue(family)
    image = noise_image(64, 48, seed=2)
    wrapper = Wrapper(ex, PROMPTS)
    pixels = own_model(ex.adapter.source).preprocess(image)
    for layer, module, reshape, sublayer in cases(ex):
        res = ex.explain(image, PROMPTS, layer=layer, sublayer=sublayer, target=target)
        ref = []
        with pgc.GradCAM(model=wrapper, target_layers=[module], reshape_transform=reshape) as cam:
            for k in range(len(PROMPTS)):
                def score(out, k=k):
                    out = torch.log_softmax(out, dim=-1) if target == "log_softmax" else out
                    return out[k]
                cam(input_tensor=pixels.clone().requires_grad_(True), targets=[score])
                acts = cam.activations_and_grads.activations[0].numpy()
                grads = cam.activations_and_grads.gradients[0].numpy()
                raw = cam.get_cam_image(pixels, None, None, acts, grads, eigen_smooth=False)
                ref.append(np.maximum(raw, 0)[0])
        np.testing.assert_allclose(res.grid_maps, np.stack(ref), rtol=1e-4, atol=1e-6 * max(1.0, np.abs(ref).max()))
        assert np.abs(res.grid_maps).max() > 0


@pytest.mark.parametrize("family", ["siglip", "oc_vit", "oc_timm_vit"])
def test_dead_sublayers_are_exactly_the_zero_gradient_ones(family, request):
    """dead_reason must say "dead" exactly where the gradient is exactly zero (SigLIP's pooling
    head reads every token, so nothing is dead there)."""
    ex = request.getfixturevalue(family)
    image = noise_image(40, 40, seed=4)
    last = ex.num_layers
    pixels, (text, _) = ex.adapter.preprocess(image), ex.adapter.text_embeddings(PROMPTS)
    for sublayer in ex.sublayers:
        module = ex.adapter.module(last, sublayer)
        acts: list[torch.Tensor] = []

        def replace(m, a, out, acts=acts):
            leaf = (out[0] if isinstance(out, tuple) else out).detach().requires_grad_(True)
            acts.append(leaf)
            return (leaf, *out[1:]) if isinstance(out, tuple) else leaf

        hook = module.register_forward_hook(replace)
        try:
            with torch.enable_grad():
                logits = ex.adapter.logits(ex.adapter.image_features(pixels), text)[0]
                (grad,) = torch.autograd.grad(logits.sum(), acts[0], allow_unused=True)
        finally:
            hook.remove()
        grid_grad = 0.0 if grad is None else float(grad[0, ex.adapter.prefix:].abs().max())
        dead = ex.adapter.dead_reason(last, sublayer) is not None
        assert (grid_grad == 0.0) == dead, (sublayer, grid_grad, dead)
    if family == "siglip":
        assert not any(ex.adapter.dead_reason(last, s) for s in ex.sublayers)


@pytest.mark.parametrize("family,method", [("siglip", "chefer"), ("siglip", "gradeclip"), ("oc_resnet", "chefer"),
                                           ("oc_resnet", "legrad")])
def test_methods_a_family_cannot_run_are_refused_with_a_sentence(family, method, request):
    ex = request.getfixturevalue(family)
    with pytest.raises(ValueError) as err:
        ex.explain(noise_image(20, 20), PROMPTS, method=method)
    assert str(err.value).endswith("pick Grad-CAM or another method that this model supports.")
    assert "models do not have" in str(err.value) and method not in ex.methods


def test_siglip_maps_cover_the_whole_image(siglip):
    """SigLIP's processor squashes without cropping: no pixel is unseen, so no NaN."""
    res = siglip.explain(noise_image(90, 30), PROMPTS, method="legrad")
    assert not np.isnan(res.image_maps).any() and res.image_maps.shape == (3, 30, 90)


def test_open_clip_crop_geometry_matches_its_transform(oc_vit):
    """open_clip's torchvision centre crop, read back through clipcam's geometry: a marker column
    at the crop's left edge must be the first column the model sees."""
    width, height = 97, 40
    geo = oc_vit.adapter.geometry((width, height))
    left, top, right, bottom = geo.crop_box()
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    x0 = int(np.ceil(left))
    arr[:, x0:x0 + 3] = 255
    from PIL import Image

    pixels = oc_vit.adapter.preprocess(Image.fromarray(arr))[0, 0]  # (S, S)
    col = pixels.mean(dim=0)
    assert int(col.argmax()) <= 1 and col[-1] < col.max()
    assert geo.crop[0] == oc_vit.adapter.image_size[1]


def test_resnet_defaults_and_stage_grids(oc_resnet):
    ex = oc_resnet
    assert ex.default_layer == 4 and ex.sublayers == ("output",) and ex.adapter.layer_noun == "stage"
    assert [ex.adapter.grid_at(s) for s in (1, 2, 3, 4)] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    sweep = ex.sweep(noise_image(64, 64), PROMPTS)
    assert sweep.layer_maps.shape == (4, 3, 16, 16) and not np.isnan(sweep.layer_image_maps).any()
    with pytest.raises(ValueError, match=r"^Stage 5 is out of range: this model has stages 1 to 4\.$"):
        ex.explain(noise_image(20, 20), PROMPTS, layer=5)


def test_non_safetensors_shard_in_an_index_is_refused(tiny_dir, tmp_path):
    import json
    import shutil

    target = tmp_path / "sharded"
    shutil.copytree(tiny_dir, target)
    (target / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "pytorch_model.bin"}}))
    from clipcam.models import load_model

    with pytest.raises(ValueError, match=r"names weights that are not safetensors \(pytorch_model.bin\); clipcam "
                                         r"loads safetensors weights only"):
        load_model(str(target), device="cpu")


@pytest.mark.parametrize("family,layer", [("oc_resnet", 3), ("oc_vit", 2)])
def test_score_cam_equals_pytorch_grad_cam(family, layer, request):
    """Score-CAM on a ResNet stage and an open_clip ViT sublayer against the package's ScoreCAM
    (its masks, its batches, its softmax), normalised as the package returns it."""
    ex = request.getfixturevalue(family)
    image = noise_image(64, 64, seed=8)
    wrapper = Wrapper(ex, PROMPTS)
    pixels = own_model(ex.adapter.source).preprocess(image)
    sublayer = "output" if family == "oc_resnet" else "ln_2"
    visual = wrapper.model.visual
    module = visual.layer3 if family == "oc_resnet" else visual.transformer.resblocks[layer - 1].ln_2
    side = visual.grid_size[0] if family == "oc_vit" else None
    reshape = None if family == "oc_resnet" else (
        lambda x: x[:, 1:].reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2))
    res = ex.explain(image, PROMPTS, layer=layer, sublayer=sublayer, method="scorecam")
    with pgc.ScoreCAM(model=wrapper, target_layers=[module], reshape_transform=reshape) as cam:
        cam.batch_size = 32
        for k in range(len(PROMPTS)):
            ref = cam(input_tensor=pixels.clone(), targets=[lambda out, k=k: out[k]])[0]  # (S, S), min-max scaled
            ours = cv2.resize(normalize_maps(res.grid_maps[k][None])[0], ref.shape[::-1], interpolation=cv2.INTER_LINEAR)
            ours = normalize_maps(ours[None])[0]
            np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_command_line_on_siglip_says_its_scores_are_sigmoids(siglip, tmp_path, capsys):
    import json

    from clipcam.__main__ import main

    image = tmp_path / "noise.png"
    noise_image(48, 32, seed=9).save(image)
    code = main([str(image), "--model", siglip.adapter.source, "--prompt", "a red circle.", "--prompt", "a cat",
                 "--method", "legrad", "--out", str(tmp_path / "out"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "SigLIP scores each prompt on its own (a sigmoid per prompt), so they need not add up to 100 %." in out
    saved = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert saved["prob_kind"] == "sigmoid" and saved["family"] == "siglip" and saved["method"] == "legrad"
    np.testing.assert_allclose(saved["probs"], 1 / (1 + np.exp(-np.array(saved["logits"]))), rtol=1e-6)


def test_command_line_refuses_a_method_the_family_cannot_run(oc_resnet, tmp_path, capsys):
    from clipcam.__main__ import main

    image = tmp_path / "noise.png"
    noise_image(48, 32, seed=9).save(image)
    code = main([str(image), "--model", oc_resnet.adapter.source, "--prompt", "a cat", "--method", "chefer",
                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("clipcam: Chefer relevance needs self-attention layers whose queries, keys and values "
                           "clipcam can read and a class token that the image embedding is read from, which open_clip "
                           "ResNet models do not have; pick Grad-CAM or another method that this model supports.")


@pytest.mark.parametrize("package", ["sentencepiece", "protobuf"])
def test_a_missing_tokenizer_package_is_named_with_how_to_install_it(package, tmp_path, monkeypatch):
    """SigLIP's SiglipTokenizer needs sentencepiece and protobuf: without one, the load error names the
    package and how to install it, and sends the person nowhere else (issue 26)."""
    from transformers.utils import import_utils

    from clipcam.models import load_model

    source = tiny_model("siglip", tmp_path / "siglip", seed=3)
    _, message = import_utils.BACKENDS_MAPPING[package]
    monkeypatch.setitem(import_utils.BACKENDS_MAPPING, package, (lambda: False, message))  # as if not installed
    with pytest.raises(ValueError) as err:
        load_model(source, device="cpu")
    assert str(err.value) == (f"Loading {str(Path(source).resolve())!r} needs the Python package {package}, which is "
                              f"not installed: install it with pip install {package}.")
