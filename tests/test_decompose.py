"""The decomposition (clipcam.decompose): complete on every family it splits, equal to a port of the
authors' code (clip_text_span's forward_per_head and PRS logger; compute_siglip.py for SigLIP),
per-token terms that add up to each head, totals equal to explain()'s logits, and the command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from clipcam.decompose import decompose_parts, decompose_reason, residual_terms
from clipcam.explainer import load_explainer
from clipcam.testing import tiny_model
from clipcam.testing.reference import own_model
from tests.clihelpers import run_cli

FAMILIES = ("clip", "openclip-vit", "siglip", "siglip2", "openclip-rn")
PROMPTS = ["a photo of a cat.", "a red circle", "a blue square on the left"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("decompose")
    return {family: tiny_model(family, root / family, seed=7) for family in FAMILIES}


@pytest.fixture(scope="module")
def explainers(folders) -> dict:
    return {family: load_explainer(source, device="cpu") for family, source in folders.items()}


def _image() -> Image.Image:
    return Image.fromarray(np.random.RandomState(3).randint(0, 255, (60, 84, 3)).astype("uint8"))


def _close(a, b, rtol: float = 1e-4) -> None:
    """Equal to a relative error of rtol, measured against the larger values' scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-6), np.abs(a - b).max()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_split_is_complete_and_totals_are_the_logits(family: str, explainers) -> None:
    explainer = explainers[family]
    result = explainer.decompose(_image(), PROMPTS)
    k = len(PROMPTS)
    assert result.heads.shape[0] == k and result.head_maps.shape[:3] == result.heads.shape
    _close(result.embed + result.heads.sum((1, 2)) + result.mlps.sum(1), result.total)
    _close(result.head_maps.sum((-2, -1)) + result.head_cls, result.heads)
    _close(result.total, explainer.explain(_image(), PROMPTS).logits)
    assert result.image_map_of(1, 1).shape == (k, 60, 84)
    if family == "siglip":
        assert not result.head_cls.any()  # no class token
    if family == "openclip-rn":
        assert not result.mlps.any()  # the attention pool has no MLP
        assert decompose_parts(explainer.adapter).endswith("no MLP")


@pytest.mark.parametrize("family", FAMILIES)
def test_per_token_terms_add_up_to_each_head_and_the_embedding(family: str, explainers) -> None:
    adapter = explainers[family].adapter
    pixels = adapter.preprocess(_image())
    with torch.no_grad():
        features = adapter.image_features(pixels)
    split = residual_terms(adapter, pixels)
    tokens = residual_terms(adapter, pixels, per_token=True)
    _close(tokens.heads.sum(3), split.heads)
    _close(split.embed + split.heads.sum((1, 2)) + split.mlps.sum(1), features)
    assert not split.rest.any()
    last = residual_terms(adapter, pixels, layers=[split.heads.shape[1]])
    _close(last.embed + last.heads.sum((1, 2)) + last.mlps.sum(1) + last.rest, features)


# ---------------------------------------------------------------- the authors' code, ported
def _per_head(x, wq, bq, wk, bk, wv, bv, wo, heads):
    """clip_text_span utils/transformer.py forward_per_head: per head and source token (b, n, m, h, d)."""
    d = x.shape[-1]
    dh = d // heads
    split = lambda w: w.reshape(heads, dh, d)  # noqa: E731
    q = torch.einsum("bnc,hdc->bhnd", x, split(wq)) + bq.reshape(heads, 1, dh)
    k = torch.einsum("bnc,hdc->bhnd", x, split(wk)) + bk.reshape(heads, 1, dh)
    v = torch.einsum("bnc,hdc->bhnd", x, split(wv)) + bv.reshape(heads, 1, dh)
    attn = (q / dh ** 0.5 @ k.transpose(-2, -1)).softmax(dim=-1)
    ext = torch.einsum("bhnm,bhmc->bnmhc", attn, v)
    return torch.einsum("bnmhc,dhc->bnmhd", ext, wo.reshape(d, heads, dh))


def _authors_prs(family: str, model, pixels):
    """The PRS logger (prs_hook.py) on a hand-run forward: attentions (b, l, n, h, e) and mlps
    (b, l + 1, e), normalised by the final LN's frozen mean and std, projected, divided by |f|."""
    attentions, mlps = [], []
    if family == "clip":
        vision = model.vision_model
        x = vision.pre_layrnorm(vision.embeddings(pixels))
        blocks = [(b.layer_norm1, b.self_attn, b.layer_norm2, b.mlp) for b in vision.encoder.layers]
        ln_post, proj, heads = vision.post_layernorm, model.visual_projection.weight.T, model.config.vision_config.num_attention_heads
    else:
        visual = model.visual
        x = visual._embeds(pixels)  # conv, class and position embeddings, ln_pre
        blocks = [(b.ln_1, b.attn, b.ln_2, b.mlp) for b in visual.transformer.resblocks]
        ln_post, proj, heads = visual.ln_post, visual.proj, visual.transformer.resblocks[0].attn.num_heads
    mlps.append(x[:, 0])  # the "visual.ln_pre_post" hook
    for ln_1, attn, ln_2, mlp in blocks:
        if family == "clip":
            weights = (attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias,
                       attn.v_proj.weight, attn.v_proj.bias)
        else:
            w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
            weights = (w[0], b[0], w[1], b[1], w[2], b[2])
        out = _per_head(ln_1(x), *weights, attn.out_proj.weight, heads)  # (b, n, m, h, d)
        ret = out[:, 0]
        attentions.append(ret + attn.out_proj.bias[None, None, None] / (ret.shape[1] * ret.shape[2]))
        x = x + out.sum((2, 3)) + attn.out_proj.bias
        m = mlp(ln_2(x))
        mlps.append(m[:, 0])
        x = x + m
    pooled = x[:, 0]
    mean = pooled.mean(-1, keepdim=True)
    std = (pooled.var(-1, unbiased=False, keepdim=True) + ln_post.eps).sqrt()
    attentions, mlps = torch.stack(attentions, 1), torch.stack(mlps, 1)
    n_int = attentions.shape[1] + mlps.shape[1]
    norm_term = attentions.shape[2] * attentions.shape[3]
    centred = attentions - mean[:, :, None, None, None] / (n_int * norm_term)
    post = ln_post.weight * centred / std[:, :, None, None, None] + ln_post.bias / (n_int * norm_term)
    centred_m = mlps - mean[:, :, None] / n_int
    post_m = ln_post.weight * centred_m / std[:, :, None] + ln_post.bias / n_int
    representation = ln_post(pooled) @ proj
    norm = representation.norm(dim=-1)
    return (post @ proj) / norm[:, None, None, None, None], (post_m @ proj) / norm[:, None, None]


@pytest.mark.parametrize("family", ("clip", "openclip-vit"))
def test_vit_terms_equal_the_authors_prs_logger(family: str, folders, explainers) -> None:
    own = own_model(folders[family])
    pixels = own.preprocess(_image())
    with torch.no_grad():
        attentions, mlps = _authors_prs(family, own.model, pixels)
        terms = residual_terms(explainers[family].adapter, pixels, per_token=True)
    norm = terms.features.norm(dim=-1)[:, None]
    _close(terms.heads.permute(0, 1, 3, 2, 4) / norm[:, None, None, None], attentions)  # (b, l, n, h, e)
    _close(terms.heads.sum(3) / norm[:, None, None], attentions.sum(2))
    _close(terms.mlps / norm[:, None], mlps[:, 1:])
    _close(terms.embed / norm, mlps[:, 0])


def test_siglip_terms_equal_compute_siglip(folders, explainers) -> None:
    """compute_siglip.py: the pooling head's out.post per head and token, its mlp_output, and the
    output projection's bias as a constant term."""
    own = own_model(folders["siglip"])
    pixels = own.preprocess(_image())
    vision = own.model.vision_model
    with torch.no_grad():
        hidden = vision(pixel_values=pixels).last_hidden_state  # post_layernorm'd tokens, the head's input
        head = vision.head
        attn = head.attention
        w, b = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
        d = hidden.shape[-1]
        dh = d // attn.num_heads
        q = (head.probe @ w[0].T + b[0]).reshape(1, attn.num_heads, 1, dh).expand(len(hidden), -1, -1, -1)
        k = (hidden @ w[1].T + b[1]).reshape(len(hidden), -1, attn.num_heads, dh).transpose(1, 2)
        v = (hidden @ w[2].T + b[2]).reshape(len(hidden), -1, attn.num_heads, dh).transpose(1, 2)
        probs = (q @ k.transpose(-2, -1) / dh ** 0.5).softmax(-1)  # (b, h, 1, m)
        out_post = torch.einsum("bhnm,bhmd,ehd->bnmhe", probs, v, attn.out_proj.weight.reshape(d, attn.num_heads, dh))
        pooled = out_post.sum((2, 3)) + attn.out_proj.bias
        mlp_output = head.mlp(head.layernorm(pooled))
        terms = residual_terms(explainers["siglip"].adapter, pixels, per_token=True)
    _close(terms.heads[:, 0].permute(0, 2, 1, 3), out_post[:, 0])  # (b, m, h, e)
    _close(terms.mlps[:, 0], mlp_output[:, 0])
    _close(terms.embed, attn.out_proj.bias[None].expand(len(hidden), -1))


# ---------------------------------------------------------------- refusals and the command
def test_a_family_it_cannot_split_is_refused_in_one_sentence(tmp_path) -> None:
    adapter = load_explainer(tiny_model("openclip-timm-vit", tmp_path / "t", seed=1), device="cpu").adapter
    assert decompose_reason(adapter) == (
        "open_clip timm ViT models cannot be decomposed by layer and head: clipcam splits CLIP and open_clip ViTs, "
        "SigLIP, SigLIP 2 and open_clip ResNets.")
    assert decompose_parts(adapter) is None


def test_the_command_writes_the_tables_and_the_grid(folders, tmp_path) -> None:
    image = tmp_path / "in.png"
    _image().save(image)
    out = tmp_path / "out"
    done = run_cli("decompose", image, "--prompt", "a cat", "--prompt", "a red circle", "--model", folders["clip"],
                   "--device", "cpu", "--out", out)
    assert done.returncode == 0, done.stderr
    with open(out / "terms.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["prompt"] for r in rows] == ["a cat", "a red circle"]
    for r in rows:
        parts = float(r["embed"]) + float(r["heads"]) + float(r["mlps"])
        assert abs(parts - float(r["total"])) <= 1e-4 * max(1.0, abs(float(r["total"])))
    with open(out / "heads.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * 2 * 4  # prompts × layers × heads of the tiny CLIP
    assert (out / "01-a-cat-heads.png").stat().st_size > 0
    missing = run_cli("decompose", tmp_path / "none.png", "--prompt", "x", "--model", folders["clip"], "--out", out)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"clipcam: Image file '{tmp_path / 'none.png'}' does not exist."
