"""GEM and CLIP Surgery against ports of their authors' code, applied to each family's own model
(loaded by its own library, clipcam.testing.reference.own_model) and not sharing clipcam's helpers:
WalBouss/GEM ``gem_utils.SelfSelfAttention`` / ``GEMResidualBlock`` / ``GEMWrapper.forward``, and
xmed-lab/CLIP_Surgery ``clip_surgery_model.Attention`` / ``ResidualAttentionBlock`` /
``AttentionPool2d``, ``clip.clip_feature_surgery`` and ``encode_text_with_prompt_ensemble``; plus
the invariants: the unchanged path is the model's own embedding, the scores are the model's own
logits, and the surgery's single-prompt and several-prompt rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PROMPTS, noise_image

from clipcam import load_explainer
from clipcam.methods import get_method
from clipcam.testing import tiny_model
from clipcam.testing.reference import own_model

#: The authors' encode_text_with_prompt_ensemble default templates (CLIP_Surgery clip/clip.py), copied.
AUTHORS_TEMPLATES = [
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.', 'a bad photo of the {}.',
    'a cropped photo of the {}.', 'a tattoo of a {}.', 'the embroidered {}.', 'a photo of a hard to see {}.',
    'a bright photo of a {}.', 'a photo of a clean {}.', 'a photo of a dirty {}.', 'a dark photo of the {}.',
    'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.', 'a painting of the {}.',
    'a painting of a {}.', 'a pixelated photo of the {}.', 'a sculpture of the {}.', 'a bright photo of the {}.',
    'a cropped photo of a {}.', 'a plastic {}.', 'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.', 'a photo of the {}.', 'a good photo of the {}.', 'a rendering of the {}.',
    'a {} in a video game.', 'a photo of one {}.', 'a doodle of a {}.', 'a close-up photo of the {}.',
    'a photo of a {}.', 'the origami {}.', 'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.',
    'a origami {}.', 'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.',
    'a photo of the clean {}.', 'a photo of a large {}.', 'a rendition of a {}.', 'a photo of a nice {}.',
    'a photo of a weird {}.', 'a blurry photo of a {}.', 'a cartoon {}.', 'art of a {}.', 'a sketch of the {}.',
    'a embroidered {}.', 'a pixelated photo of a {}.', 'itap of the {}.', 'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.', 'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.',
    'a photo of the large {}.', 'a black and white photo of a {}.', 'the plushie {}.', 'a dark photo of a {}.',
    'itap of a {}.', 'graffiti of the {}.', 'a toy {}.', 'itap of my {}.', 'a photo of a cool {}.',
    'a photo of a small {}.', 'a tattoo of the {}.', 'there is a {} in the scene.', 'there is the {} in the scene.',
    'this is a {} in the scene.', 'this is the {} in the scene.', 'this is one {} in the scene.',
]
VIT_FAMILIES = ("clip", "openclip-vit")


@pytest.fixture(scope="module")
def explainers(tmp_path_factory):
    """One tiny seeded model per family, loaded through clipcam."""
    return {f: load_explainer(tiny_model(f, tmp_path_factory.mktemp(f), seed=21 + i), device="cpu")
            for i, f in enumerate(("clip", "openclip-vit", "openclip-rn"))}


# ---------------------------------------------------------------- the family's own modules, read directly
class Own:
    """A family's own model, addressed directly: blocks, text and the final readout."""

    def __init__(self, ex):
        self.own = own_model(ex.adapter.source)
        self.model = self.own.model
        self.hf = not ex.adapter.source.startswith("local-dir:")

    def blocks(self):
        return list(self.model.vision_model.encoder.layers) if self.hf else list(self.model.visual.transformer.resblocks)

    def block(self, b):
        """(ln_1, qkv weight, qkv bias, out proj, ln_2, mlp, ls_1, ls_2, heads) of one block."""
        if self.hf:
            a = b.self_attn
            w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            bias = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
            ident = lambda x: x  # noqa: E731
            return b.layer_norm1, w, bias, a.out_proj, b.layer_norm2, b.mlp, ident, ident, a.num_heads
        a = b.attn
        return b.ln_1, a.in_proj_weight, a.in_proj_bias, a.out_proj, b.ln_2, b.mlp, b.ls_1, b.ls_2, a.num_heads

    def readout(self, x):
        """ln_post and proj on every token (modified_vit_forward; CLIP Surgery's VisionTransformer.forward)."""
        if self.hf:
            return self.model.visual_projection(self.model.vision_model.post_layernorm(x))
        return self.model.visual.ln_post(x) @ self.model.visual.proj

    def text(self, prompts):
        """Unit text embeddings (K, P) from the model's own text tower."""
        if self.hf:
            tokens = self.own.tokenizer(list(prompts), padding=True, return_tensors="pt")
            emb = self.model.get_text_features(**tokens).pooler_output
        else:
            emb = self.model.encode_text(self.own.tokenizer(list(prompts)))
        return emb / emb.norm(dim=-1, keepdim=True)

    def image_features(self, pixels):
        if self.hf:
            return self.model.get_image_features(pixel_values=pixels).pooler_output
        return self.model.encode_image(pixels)

    def input_of(self, module, pixels):
        """What ``module`` receives during the model's own image forward (its first argument)."""
        seen = []
        handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        try:
            self.image_features(pixels)
        finally:
            handle.remove()
        return seen[0]


# ---------------------------------------------------------------- ports of the authors' code
def gem_self_self_attention(x, qkv_w, qkv_b, proj, num_heads, ss_attn_iter=1, ss_attn_temp=None):
    """SelfSelfAttention.forward (gem/gem_utils.py), batch first: returns [x_gem, x_ori]."""
    B, N, C = x.shape
    scale = (C // num_heads) ** -0.5
    qkv = F.linear(x, qkv_w, qkv_b).reshape(B, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn_ori = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    x_ori = proj((attn_ori @ v).transpose(1, 2).reshape(B, N, C))
    xs1, xs2, xs3 = v, k, q
    if ss_attn_temp is None:
        pre_norm = torch.norm(x, dim=-1).mean(dim=-1, keepdim=True).unsqueeze(1).unsqueeze(-1)
        inv_temp = pre_norm * scale
    else:
        inv_temp = ss_attn_temp
    for _ in range(ss_attn_iter):
        xs1, xs2, xs3 = F.normalize(xs1, dim=-1), F.normalize(xs2, dim=-1), F.normalize(xs3, dim=-1)
        attn1 = ((xs1 @ xs1.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
        attn2 = ((xs2 @ xs2.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
        attn3 = ((xs3 @ xs3.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
        xs1, xs2, xs3 = attn1 @ xs1, attn2 @ xs2, attn3 @ xs3
    xs1, xs2, xs3 = F.normalize(xs1, dim=-1), F.normalize(xs2, dim=-1), F.normalize(xs3, dim=-1)
    attn1 = ((xs1 @ xs1.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
    attn2 = ((xs2 @ xs2.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
    attn3 = ((xs3 @ xs3.transpose(-2, -1)) * inv_temp).softmax(dim=-1)
    xs = (attn1 @ v + attn2 @ v + attn3 @ v) / 3
    return [proj(xs.transpose(1, 2).reshape(B, N, C)), x_ori]


def surgery_attention(x, qkv_w, qkv_b, proj, num_heads, settings=""):
    """Attention.forward (clip/clip_surgery_model.py), batch first: returns [x, x_ori]."""
    B, N, C = x.shape
    scale = (C // num_heads) ** -0.5
    qkv = F.linear(x, qkv_w, qkv_b).reshape(B, N, 3, num_heads, C // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn_ori = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    k = v
    q = k
    if settings == "resnet":
        k = k / (k.norm(p=2, dim=-1, keepdim=True) + 1e-6)
        q = k
        scale = scale * 8
    attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    x_ori = (attn_ori @ v).transpose(1, 2).reshape(B, N, C)
    x = (attn @ v).transpose(1, 2).reshape(B, N, C)
    return [proj(x), proj(x_ori)]


def dual_path(own, x, depth, attention, ls_on_new):
    """GEMResidualBlock / ResidualAttentionBlock over the last ``depth`` blocks from their input x:
    the new path skips the FFN; both read attention from ln_1 of the original path."""
    x_new, x_ori = x, x
    for b in own.blocks()[-depth:]:
        ln_1, w, bias, proj, ln_2, mlp, ls_1, ls_2, heads = own.block(b)
        new_res, ori_res = attention(ln_1(x_ori), w, bias, proj, heads)
        if ls_on_new:  # GEM applies ls_1 to both outputs
            new_res, ori_res = ls_1(new_res), ls_1(ori_res)
        x_ori = x_ori + ori_res
        x_ori = x_ori + ls_2(mlp(ln_2(x_ori)))
        x_new = x_new + new_res
    return x_new, x_ori


def authors_feature_surgery(image_features, text_features, redundant_feats=None):
    """clip_feature_surgery (clip/clip.py), verbatim."""
    if redundant_feats is not None:
        return image_features @ (text_features - redundant_feats).t()
    prob = image_features[:, :1, :] @ text_features.t()
    prob = (prob * 2).softmax(-1)
    w = prob / prob.mean(-1, keepdim=True)
    b, n_t, n_i, c = image_features.shape[0], text_features.shape[0], image_features.shape[1], image_features.shape[2]
    feats = image_features.reshape(b, n_i, 1, c) * text_features.reshape(1, 1, n_t, c)
    feats *= w.reshape(1, 1, n_t, 1)
    redundant_feats = feats.mean(2, keepdim=True)
    return (feats - redundant_feats).sum(-1)


def empty_string_features(own):
    """encode_text_with_prompt_ensemble(model, [""]) (clip/clip.py): (1, P)."""
    emb = own.text([t.format("") for t in AUTHORS_TEMPLATES])
    mean = emb.mean(dim=0)
    return (mean / mean.norm())[None]


def authors_gem(ex, image, prompts, depth):
    own = Own(ex)
    with torch.no_grad():
        pixels = own.own.preprocess(image)
        x = own.input_of(own.blocks()[-depth], pixels)
        x_gem, _ = dual_path(own, x, depth, gem_self_self_attention, ls_on_new=True)
        feats = F.normalize(own.readout(x_gem), dim=-1)
        sim = feats[:, 1:] @ own.text(prompts).T  # (1, N, K)
    side = int(round(sim.shape[1] ** 0.5))
    return sim[0].T.reshape(-1, side, side).numpy()


def authors_surgery_vit(ex, image, prompts, depth):
    own = Own(ex)
    with torch.no_grad():
        pixels = own.own.preprocess(image)
        x = own.input_of(own.blocks()[-depth], pixels)
        x_new, x_ori = dual_path(own, x, depth, surgery_attention, ls_on_new=False)
        x_new[:, 0, :] = x_ori[:, 0, :]
        feats = F.normalize(own.readout(x_new), dim=-1)
        text = own.text(prompts)
        redundant = empty_string_features(own) if len(prompts) == 1 else None
        sim = authors_feature_surgery(feats, text, redundant)
    side = int(round((sim.shape[1] - 1) ** 0.5))
    return sim[0, 1:].T.reshape(-1, side, side).numpy()


def authors_surgery_resnet(ex, image, prompts):
    own = Own(ex)
    pool = own.model.visual.attnpool
    with torch.no_grad():
        x = own.input_of(pool, own.own.preprocess(image))  # (1, C, H, W)
        h, w = x.shape[-2:]
        # AttentionPool2d.forward: qkv ← v_proj three times, proj ← c_proj
        qkv_w = torch.cat([pool.v_proj.weight, pool.v_proj.weight, pool.v_proj.weight], 0)
        qkv_b = torch.cat([pool.v_proj.bias, pool.v_proj.bias, pool.v_proj.bias])
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + pool.positional_embedding[:, None, :].to(x.dtype)
        x, x_ori = surgery_attention(x.transpose(0, 1), qkv_w, qkv_b, pool.c_proj, pool.num_heads)
        x[:, 0, :] = x_ori[:, 0, :]
        feats = F.normalize(x, dim=-1)
        text = own.text(prompts)
        redundant = empty_string_features(own) if len(prompts) == 1 else None
        sim = authors_feature_surgery(feats, text, redundant)
    return sim[0, 1:].T.reshape(-1, h, w).numpy()


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize("family", VIT_FAMILIES)
@pytest.mark.parametrize("layer", (None, 2))
def test_gem_equals_the_authors_code(explainers, family, layer):
    ex = explainers[family]
    image = noise_image(50, 40, seed=3)
    res = ex.explain(image, PROMPTS, layer=layer, method="gem")
    depth = ex.num_layers - res.layers[0] + 1
    assert res.layers == ((1,) if layer is None else (2,))  # the authors' 6 blocks cover the tiny model's 2
    assert rel_error(res.layer_maps[0], authors_gem(ex, image, PROMPTS, depth)) < 1e-4


@pytest.mark.parametrize("family", VIT_FAMILIES)
@pytest.mark.parametrize("prompts", (PROMPTS, PROMPTS[:1]), ids=("three", "one"))
def test_clip_surgery_equals_the_authors_code(explainers, family, prompts):
    ex = explainers[family]
    image = noise_image(40, 50, seed=4)
    res = ex.sweep(image, prompts, method="clipsurgery", layers=(1, 2))
    for at, layer in enumerate(res.layers):
        want = authors_surgery_vit(ex, image, prompts, ex.num_layers - layer + 1)
        assert rel_error(res.layer_maps[at], want) < 1e-4


@pytest.mark.parametrize("prompts", (PROMPTS, PROMPTS[:1]), ids=("three", "one"))
def test_clip_surgery_on_a_resnet_equals_the_authors_pool(explainers, prompts):
    ex = explainers["openclip-rn"]
    image = noise_image(60, 50, seed=5)
    res = ex.explain(image, prompts, method="clipsurgery")
    assert res.layers == (ex.num_layers,)
    assert rel_error(res.layer_maps[0], authors_surgery_resnet(ex, image, prompts)) < 1e-4


# ---------------------------------------------------------------- invariants
@pytest.mark.parametrize("family", VIT_FAMILIES)
def test_the_unchanged_path_is_the_models_own_embedding(explainers, family):
    adapter = explainers[family].adapter
    pixels = adapter.preprocess(noise_image(48, 48, seed=6))
    with torch.no_grad():
        with get_method("gem").compute.read(adapter, 1, adapter.grid) as record:
            features = adapter.image_features(pixels)
        readout = adapter.token_readout(record.output(adapter.grid, adapter.prefix))  # (1, T, P)
    torch.testing.assert_close(readout[:, 0], features, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ("clip", "openclip-vit", "openclip-rn"))
def test_the_scores_are_the_models_own_logits(explainers, family):
    ex = explainers[family]
    image = noise_image(45, 45, seed=7)
    own = Own(ex)
    with torch.no_grad():
        image_emb = F.normalize(own.image_features(own.own.preprocess(image)), dim=-1)
        want = (image_emb @ own.text(PROMPTS).T * own.model.logit_scale.exp())[0].numpy()
    for method in ("gem", "clipsurgery") if family != "openclip-rn" else ("clipsurgery",):
        np.testing.assert_allclose(ex.explain(image, PROMPTS, method=method).logits, want, rtol=1e-4, atol=1e-5)


def test_surgery_removes_what_the_prompts_share_and_one_prompt_loses_the_empty_string(explainers):
    ex = explainers["clip"]
    image = noise_image(40, 40, seed=8)
    several = ex.explain(image, PROMPTS, method="clipsurgery").layer_maps[0]
    np.testing.assert_allclose(several.sum(axis=0), 0.0, atol=1e-6)  # minus the mean over the prompts
    one = ex.explain(image, PROMPTS[:1], method="clipsurgery").layer_maps[0]
    # the mean over one prompt is the prompt itself, so that rule would leave exactly zero: the
    # authors' single-text rule subtracts the empty string's features instead
    feats = F.normalize(torch.randn(1, 5, 16), dim=-1)
    assert not authors_feature_surgery(feats, F.normalize(torch.randn(1, 16), dim=-1)).any()
    assert np.abs(one).max() > 1e-3
    np.testing.assert_allclose(one, authors_surgery_vit(ex, image, PROMPTS[:1], ex.num_layers), rtol=1e-4, atol=1e-6)


def test_the_families_without_these_methods_refuse_in_one_sentence(explainers, tmp_path):
    rn = explainers["openclip-rn"]
    early = rn.explain(noise_image(40, 40), PROMPTS, method="clipsurgery", layer=2)  # the pool's map, on stage 2's grid
    assert early.grid_maps.shape[-2:] == rn.adapter.grid_at(2)
    sweep = rn.sweep(noise_image(40, 40), PROMPTS, method="clipsurgery")  # every stage, no refusal (eval sweeps)
    assert len(sweep.layers) == rn.num_layers and np.isfinite(sweep.layer_maps).all()
    with pytest.raises(ValueError) as err:
        rn.explain(noise_image(40, 40), PROMPTS, method="gem")
    assert str(err.value).startswith("GEM needs patch tokens that read out as embeddings, which open_clip ResNet")
    siglip = load_explainer(tiny_model("siglip", tmp_path / "siglip", seed=2), device="cpu")
    assert {"gem", "clipsurgery"}.isdisjoint(siglip.methods)
    with pytest.raises(ValueError) as err:
        siglip.explain(noise_image(40, 40), PROMPTS, method="clipsurgery")
    assert str(err.value) == ("CLIP Surgery needs the v–v paths that CLIP Surgery's authors define for CLIP ViTs and "
                              "ResNets, which SigLIP (Hugging Face) models do not have; pick Grad-CAM or another method "
                              "that this model supports.")


def test_the_authors_depth_is_the_default_start():
    tower, resnet = frozenset({"parallel_path", "surgery_path"}), frozenset({"surgery_path"})
    assert get_method("gem").default_layer(12, tower) == 7  # resblocks[-6:] of 12
    assert get_method("clipsurgery").default_layer(12, tower) == 7
    assert get_method("clipsurgery").default_layer(4, resnet) == 4
