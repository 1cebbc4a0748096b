"""The training-free dense methods (MaskCLIP, SCLIP, ClearCLIP, NACLIP) against ports of their
authors' code, on tiny seeded models of every family they support.

Each port below follows the authors' function line by line (their (L, N, D) layout, their
``custom_attn``, NACLIP's ``gaussian_window`` and ``get_attention_addition``, MaskCLIP's
``TransformerEncoderLayer.forward`` and ``MaskClipHead``), applied to the model as its own library
loads it (clipcam.testing.reference.own_model), with the last block's input taken by a hook of the
test's own; none of clipcam's helpers is used on that side.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipcam.explainer import load_explainer
from clipcam.methods import dense, naclip, sclip
from clipcam.methods.dense import LastBlock
from clipcam.testing import tiny_model
from clipcam.testing.reference import own_model

PROMPTS = ["a red square", "a blue circle", "a green triangle"]
VIT_METHODS = ("maskclip", "sclip", "clearclip", "naclip")


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (72, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=("clip", "openclip-vit", "openclip-rn", "siglip"))
def family(request, tmp_path_factory):
    source = tiny_model(request.param, tmp_path_factory.mktemp(request.param), seed=7)
    return request.param, source, load_explainer(source, device="cpu"), own_model(source)


# ----------------------------------------------------------------------------- the authors' code, ported
def gaussian_window(dim1, dim2, std=1.):  # NACLIP, clip/model.py
    constant = 1 / (std * math.sqrt(2))
    ks = list()
    for dim in [dim1, dim2]:
        start = -(dim - 1) / 2.0
        k = torch.linspace(start=start * constant, end=(start + (dim - 1)) * constant, steps=dim, dtype=torch.float)
        ks.append(k)
    dist_square_to_mu = (torch.stack(torch.meshgrid(*ks, indexing='ij')) ** 2).sum(0)
    return torch.exp(-dist_square_to_mu)


def get_attention_addition(dim1, dim2, window, adjust_for_cls=True):  # NACLIP, clip/model.py
    m = torch.einsum('ij,kl->ijkl', torch.eye(dim1), torch.eye(dim2))
    m = m.permute((0, 3, 1, 2)).contiguous()
    out = F.conv2d(m.view(-1, dim1, dim2).unsqueeze(1), window.unsqueeze(0).unsqueeze(1), padding='same').squeeze(1)
    out = out.view(dim1 * dim2, dim1 * dim2)
    if adjust_for_cls:
        v_adjusted = torch.vstack([torch.zeros((1, dim1 * dim2)), out])
        out = torch.hstack([torch.zeros((dim1 * dim2 + 1, 1)), v_adjusted])
    return out


def custom_attn(in_w, in_b, out_proj, num_heads, x, mode, n_patches=None, cls=True):
    """SCLIP's (csa), ClearCLIP's (ClearCLIP) and NACLIP's (naclip) custom_attn; x (L, N, D)."""
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim ** -0.5
    q, k, v = F.linear(x, in_w, in_b).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    if mode == "sclip":
        attn_weights = F.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, dim=-1) + \
            F.softmax(torch.bmm(k, k.transpose(1, 2)) * scale, dim=-1)
    elif mode == "clearclip":
        attn_weights = F.softmax(torch.bmm(q, q.transpose(1, 2)) * scale, dim=-1)
    else:  # naclip
        window = gaussian_window(*[side * 2 - 1 for side in n_patches], std=5.)
        addition = get_attention_addition(*n_patches, window, adjust_for_cls=cls).unsqueeze(0).to(x.dtype)
        attn_weights = torch.bmm(k, k.transpose(1, 2)) * scale + addition
        attn_weights = F.softmax(attn_weights, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return out_proj(attn_output)


def maskclip_layer(in_w, in_b, out_proj, norm1, norm2, mlp, x):
    """MaskCLIP's TransformerEncoderLayer.forward(return_qkv=True), its v; x (N, L, C)."""
    y = norm1(x)
    y = F.linear(y, in_w, in_b)
    N, L, C = y.shape
    y = y.view(N, L, 3, C // 3).permute(2, 0, 1, 3).reshape(3 * N, L, C // 3)
    y = F.linear(y, out_proj.weight, out_proj.bias)
    q, k, v = y.tensor_split(3, dim=0)
    v = v + x
    return v + mlp(norm2(v))


class Parts:
    """The last block and the readout of a ViT, from the model as its library loads it."""

    def __init__(self, name: str, model) -> None:
        if name in ("clip", "siglip"):
            vm = model.vision_model
            blk = vm.encoder.layers[-1]
            a = blk.self_attn
            self.block, self.heads, self.out_proj = blk, a.num_heads, a.out_proj
            self.in_w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
            self.in_b = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
            self.ln_1, self.ln_2, self.mlp = blk.layer_norm1, blk.layer_norm2, blk.mlp
            self.readout = lambda x: model.visual_projection(vm.post_layernorm(x)) if name == "clip" else \
                siglip_values(model, vm.post_layernorm(x))
            side = model.config.vision_config.image_size // model.config.vision_config.patch_size
            self.grid = (side, side)
        else:
            visual = model.visual
            blk = visual.transformer.resblocks[-1]
            self.block, self.heads, self.out_proj = blk, blk.attn.num_heads, blk.attn.out_proj
            self.in_w, self.in_b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
            self.ln_1, self.ln_2, self.mlp = blk.ln_1, blk.ln_2, blk.mlp
            self.readout = lambda x: visual.ln_post(x) @ visual.proj
            self.grid = tuple(visual.grid_size)


def siglip_values(model, hidden: torch.Tensor) -> torch.Tensor:
    """clipcam's SigLIP adaptation spelled out: every token through the pooling head's value path,
    out_proj(W_v x + b_v), then the head's MLP residual; (B, T, D) → (B, T, P)."""
    head = model.vision_model.head
    d = head.attention.embed_dim
    y = F.linear(hidden, head.attention.in_proj_weight[2 * d:], head.attention.in_proj_bias[2 * d:])
    y = F.linear(y, head.attention.out_proj.weight, head.attention.out_proj.bias)
    return y + head.mlp(head.layernorm(y))


def last_input(module, run) -> torch.Tensor:
    """The first input of ``module`` during ``run()``, by a hook of the test's own."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return seen[0]


def own_text(name: str, own) -> torch.Tensor:
    with torch.no_grad():
        if name in ("clip", "siglip"):
            tokens = own.tokenizer(PROMPTS, padding=True if name == "clip" else "max_length", return_tensors="pt",
                                   **({} if name == "clip" else {"max_length": min(64, own.model.config.text_config.max_position_embeddings),
                                                                 "truncation": True}))
            if name == "siglip":
                tokens.pop("attention_mask", None)  # SigLIP reads every padded position, as it was trained
            out = own.model.get_text_features(**tokens)
            text = out if isinstance(out, torch.Tensor) else out.pooler_output
        else:
            text = own.model.encode_text(own.tokenizer(PROMPTS))
    return text / text.norm(dim=-1, keepdim=True)  # (K, P)


def image_features(name: str, own, pixels: torch.Tensor) -> torch.Tensor:
    if name in ("clip", "siglip"):
        out = own.model.get_image_features(pixel_values=pixels)
        return out if isinstance(out, torch.Tensor) else out.pooler_output
    return own.model.encode_image(pixels)


def authors_maps(name: str, own, method: str) -> np.ndarray:
    """(K, rows, cols): the authors' map of ``method`` on the own model."""
    pixels = own.preprocess(_image())
    text = own_text(name, own)
    if name == "openclip-rn":  # MaskClipHead.forward, attn_pooling=False, then cls_seg
        pool = own.model.visual.attnpool
        x = last_input(pool, lambda: own.model.encode_image(pixels))  # (N, C, H, W)
        v = F.conv2d(x, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
        feat = F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
        feat = feat / feat.norm(dim=1, keepdim=True)
        return F.conv2d(feat, text[:, :, None, None])[0].numpy()
    if name == "siglip" and method == "maskclip":  # the pooling head's input through its value path
        head = own.model.vision_model.head
        x = last_input(head, lambda: image_features(name, own, pixels))  # (1, N, D)
        with torch.no_grad():
            features = siglip_values(own.model, x)[0]
        features = features / features.norm(dim=-1, keepdim=True)
        side = own.model.config.vision_config.image_size // own.model.config.vision_config.patch_size
        return (text @ features.T).reshape(-1, side, side).numpy()
    parts = Parts(name, own.model)
    x = last_input(parts.block, lambda: image_features(name, own, pixels))  # (N, L, D)
    with torch.no_grad():
        if method == "maskclip":
            out = maskclip_layer(parts.in_w, parts.in_b, parts.out_proj, parts.ln_1, parts.ln_2, parts.mlp, x)
        else:
            xl = x.permute(1, 0, 2)  # NLD -> LND, as the authors run it
            out = custom_attn(parts.in_w, parts.in_b, parts.out_proj, parts.heads, parts.ln_1(xl), method, parts.grid,
                              cls=name != "siglip")
            if method == "sclip":
                out = xl + out
                out = out + parts.mlp(parts.ln_2(out))
            out = out.permute(1, 0, 2)
        features = parts.readout(out)[:, 0 if name == "siglip" else 1:]  # SigLIP has no class token
        features = features / features.norm(dim=-1, keepdim=True)
        logits = features @ text.T  # (1, N, K)
    return logits[0].T.reshape(-1, *parts.grid).numpy()


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("method", VIT_METHODS)
def test_maps_equal_the_authors_code(family, method: str) -> None:
    name, _, explainer, own = family
    if method not in explainer.methods:
        assert name == "openclip-rn"  # a ResNet has MaskCLIP only
        with pytest.raises(ValueError, match="needs a last transformer block"):
            explainer.explain(_image(), PROMPTS, method=method)
        return
    result = explainer.explain(_image(), PROMPTS, method=method, layer=explainer.num_layers)
    np.testing.assert_allclose(result.grid_maps, authors_maps(name, own, method), rtol=1e-4, atol=1e-6)


def test_scores_are_the_models_own_and_every_layer_gets_the_last_blocks_map(family) -> None:
    name, _, explainer, own = family
    pixels = own.preprocess(_image())
    with torch.no_grad():
        image = image_features(name, own, pixels)
    image = image / image.norm(dim=-1, keepdim=True)
    logits = (own.model.logit_scale.exp() * image @ own_text(name, own).T)[0]
    logits = (logits + own.model.logit_bias if name == "siglip" else logits).numpy()  # SigLIP's learned offset
    sweep = explainer.sweep(_image(), PROMPTS, method="maskclip", layers=[1, explainer.num_layers])
    np.testing.assert_allclose(sweep.logits, logits, rtol=1e-4)
    last = explainer.explain(_image(), PROMPTS, method="maskclip", layer=explainer.num_layers)
    if name == "openclip-rn":  # the pool reads the last stage; an earlier stage's grid gets it resampled
        assert sweep.layer_maps.shape[-2:] == explainer.adapter.grid_at(1) != last.grid_maps.shape[-2:]
    else:
        np.testing.assert_allclose(sweep.at(explainer.num_layers).grid_maps, last.grid_maps, rtol=1e-5)
    assert any("always explains the last layer" in note for note in sweep.notes)


# ----------------------------------------------------------------------------- invariants
def test_sclip_attention_rows_sum_to_two() -> None:
    q, k, v = torch.randn(3, 1, 2, 10, 4, generator=torch.Generator().manual_seed(0))
    rows = sclip.correlative(q, k, v, (3, 3), 1).sum(dim=-1)
    torch.testing.assert_close(rows, torch.full_like(rows, 2.0))


def test_naclip_with_a_vanishing_window_is_kk_attention_plus_a_constant_on_the_diagonal() -> None:
    q, k, v = torch.randn(3, 1, 2, 10, 4, generator=torch.Generator().manual_seed(1))
    got = naclip.neighbour_attention(1e-3)(q, k, v, (3, 3), 1)
    diagonal = torch.diag(torch.tensor([0.0] + [1.0] * 9))  # the class token gets nothing
    want = torch.softmax(k @ k.transpose(-1, -2) / 2.0 + diagonal, dim=-1)
    torch.testing.assert_close(got, want)


def test_the_unchanged_last_block_reads_the_class_token_out_as_the_image_embedding(family) -> None:
    name, _, explainer, own = family
    if name in ("openclip-rn", "siglip"):
        pytest.skip("only a family that reads its embedding from a token reads it out of the unchanged block")
    adapter = explainer.adapter
    vanilla = LastBlock(attention=lambda q, k, v, g, p: torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5,
                                                                        dim=-1), residual=True, ffn=True)
    pixels = adapter.preprocess(_image())
    with dense.read_last_block(adapter, adapter.num_layers, adapter.grid) as state, torch.no_grad():
        features = adapter.image_features(pixels)
    with torch.no_grad():
        out = dense.changed_block(adapter.block_views(adapter.num_layers)[0], state.input, vanilla, adapter.grid,
                                  adapter.prefix)
        torch.testing.assert_close(adapter.dense_readout(out)[:, 0], features, rtol=1e-4, atol=1e-5)
