"""The attention methods on the other families, against slow, obvious computations that do not
use clipcam's adapters: open_clip's ViT (one fused nn.MultiheadAttention per block) rewritten with
its attention spelled out, one full backward per prompt, loops over layers, heads and tokens; and
LeGrad on SigLIP through its pooling head's own attention weights (nn.MultiheadAttention with
need_weights), as the authors' compute_legrad_siglip reads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PROMPTS, noise_image
from slowref import apply_target

from clipcam import load_explainer
from clipcam.testing import tiny_model
from clipcam.testing.reference import own_model


@pytest.fixture(scope="module")
def oc_vit(tmp_path_factory):
    return load_explainer(tiny_model("openclip-vit", tmp_path_factory.mktemp("ocvit-attn"), seed=11), device="cpu")


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    return load_explainer(tiny_model("siglip", tmp_path_factory.mktemp("siglip-attn"), seed=12), device="cpu")


def eager_open_clip(visual, pixels):
    """open_clip's VisionTransformer forward with every attention written out: the pooled
    embedding, and per block its input hidden state, q/k/v, attention probabilities (grad kept),
    head outputs (grad kept) and output."""
    x = visual._embeds(pixels)  # (1, T, D): patches, class token, positions, ln_pre
    layers = []
    for block in visual.transformer.resblocks:
        attn = block.attn
        d, heads = attn.embed_dim, attn.num_heads
        q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        t = x.shape[1]
        qh, kh, vh = (z.reshape(1, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))  # (1, H, T, d)
        probs = torch.softmax(qh @ kh.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
        probs.retain_grad()
        heads_out = (probs @ vh).transpose(1, 2).reshape(1, t, d)
        heads_out.retain_grad()
        x = x + block.ls_1(attn.out_proj(heads_out))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        layers.append(dict(q=q[0].detach(), k=k[0].detach(), v=v[0].detach(), probs=probs, o=heads_out, out=x))
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj, layers


def text_of(ex, prompts):
    own = own_model(ex.adapter.source)
    with torch.no_grad():
        emb = own.model.encode_text(own.tokenizer(list(prompts)))
    return emb / emb.norm(dim=-1, keepdim=True)


def slow_open_clip(ex, image, prompts, start, target, method):
    own = own_model(ex.adapter.source)  # open_clip's own loading, from the saved folder
    visual = own.model.visual
    pixels = own.preprocess(image)
    text = text_of(ex, prompts)
    side = visual.grid_size[0]
    maps = []
    for kk in range(len(prompts)):
        with torch.enable_grad():
            pooled, layers = eager_open_clip(visual, pixels.clone().requires_grad_(True))
            np.testing.assert_allclose(pooled.detach().numpy(), visual(pixels).detach().numpy(), rtol=1e-5, atol=1e-6)
            logits = own.model.logit_scale.exp() * (text @ (pooled[0] / pooled[0].norm()))
            score = apply_target(logits, target)[kk]
            if method != "legrad":
                score.backward(retain_graph=True)
        t = layers[0]["probs"].shape[-1]
        if method == "chefer":
            relevance = torch.eye(t)
            for layer in layers[start - 1:]:
                a, g = layer["probs"][0].detach(), layer["probs"].grad[0]
                abar = sum(torch.clamp(g[h] * a[h], min=0) for h in range(a.shape[0])) / a.shape[0]
                relevance = relevance + abar @ relevance
            maps.append(relevance[0, 1:].reshape(side, side).numpy())
        elif method == "gradeclip":
            total = np.zeros(t - 1)
            for layer in layers[start - 1:]:
                grad = layer["o"].grad[0, 0]
                q, key, v = layer["q"], layer["k"], layer["v"]
                cos = [float(q[0] @ key[i] / (q[0].norm() * key[i].norm())) for i in range(1, t)]
                lo, hi = min(cos), max(cos)
                for i in range(1, t):
                    total[i - 1] += (cos[i - 1] - lo) / (hi - lo) * float(grad @ v[i])
            maps.append(np.maximum(total, 0).reshape(side, side))
        else:
            total = torch.zeros(t - 1)
            for layer in layers[start - 1:]:
                emb = visual.ln_post(layer["out"].mean(dim=1)) @ visual.proj
                s = apply_target(own.model.logit_scale.exp() * (text @ (emb[0] / emb[0].norm())), target)[kk]
                (grad,) = torch.autograd.grad(s, layer["probs"], retain_graph=True)
                heads = grad.shape[1]
                total += sum(grad[0, h].clamp(min=0).mean(dim=0)[1:] for h in range(heads)) / heads
            maps.append(total.reshape(side, side).numpy())
    return np.stack(maps)


@pytest.mark.parametrize("method", ["chefer", "gradeclip", "legrad"])
@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "log_softmax"), (3, "contrast")])
def test_open_clip_vit_matches_the_slow_computation(oc_vit, method, start, target):
    image = noise_image(60, 45, seed=5)
    res = oc_vit.explain(image, PROMPTS, layer=start, method=method, target=target)
    want = slow_open_clip(oc_vit, image, PROMPTS, start, target, method)
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-7)
    assert res.grid_maps.any() and not np.allclose(res.grid_maps[0], res.grid_maps[1])


@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "contrast")])
def test_siglip_legrad_reads_the_pooling_heads_attention(siglip, start, target):
    """The authors' LeGrad for SigLIP: each layer's tokens through the pooling head (no final layer
    norm, as their code), the gradient of the layer's score on the head's attention weights."""
    image = noise_image(50, 70, seed=6)
    res = siglip.explain(image, PROMPTS, layer=start, method="legrad", target=target)
    own = own_model(siglip.adapter.source)  # transformers' own loading, from the saved folder
    model = own.model
    tokens = own.tokenizer(list(PROMPTS), padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        text = model.get_text_features(input_ids=tokens["input_ids"]).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
    pixels = own.preprocess(image)
    head = model.vision_model.head
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    want = []
    for kk in range(len(PROMPTS)):
        with torch.enable_grad():
            out = model.vision_model(pixel_values=pixels.clone().requires_grad_(True), output_hidden_states=True)
            total = torch.zeros(side * side)
            for hidden in out.hidden_states[start:]:  # hidden_states[l] is block l's output
                attn = head.attention
                d, heads = attn.embed_dim, attn.num_heads
                wq, wk, wv = attn.in_proj_weight.split(d)
                bq, bk, bv = attn.in_proj_bias.split(d)
                q, k, v = head.probe[0, 0] @ wq.T + bq, hidden[0] @ wk.T + bk, hidden[0] @ wv.T + bv
                weights, outs = [], []
                for h in range(heads):  # one head at a time, as the authors' hooked pooler writes it out
                    sl = slice(h * d // heads, (h + 1) * d // heads)
                    w = torch.softmax(k[:, sl] @ q[sl] / (d // heads) ** 0.5, dim=0)  # (T,)
                    weights.append(w)
                    outs.append(w @ v[:, sl])
                attended = attn.out_proj(torch.cat(outs))[None, None]  # (1, 1, D)
                pooled = (attended + head.mlp(head.layernorm(attended)))[:, 0]
                np.testing.assert_allclose(pooled.detach().numpy(), head(hidden).detach().numpy(), rtol=1e-5, atol=1e-6)
                logits = model.logit_scale.exp() * (text @ (pooled[0] / pooled[0].norm())) + model.logit_bias
                s = apply_target(logits, target)[kk]
                grads = torch.autograd.grad(s, weights, retain_graph=True)
                total += sum(g.clamp(min=0) for g in grads) / heads
        want.append(total.reshape(side, side).numpy())
    np.testing.assert_allclose(res.grid_maps, np.stack(want), rtol=1e-4, atol=1e-7)
    assert res.grid_maps.any()


def authors_grad_eclip(ex, image, prompts):
    """A port of the authors' clip_encode_dense + grad_eclip (Cyang-Zhao/Grad-Eclip, generate_emap.py)
    onto open_clip's batch-first ViT: the last block recomputed with their attention_layer(q, k, v, 1)."""
    own = own_model(ex.adapter.source)  # open_clip's own loading, from the saved folder
    visual = own.model.visual
    pixels = own.preprocess(image)
    text = text_of(ex, prompts)
    side = visual.grid_size[0]
    maps = []
    for kk in range(len(prompts)):
        with torch.enable_grad():
            x = visual._embeds(pixels.clone().requires_grad_(True))
            x_in = torch.nn.Sequential(*visual.transformer.resblocks[:-1])(x)
            last = visual.transformer.resblocks[-1]
            q, k, v = F.linear(last.ln_1(x_in), last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(3, dim=-1)
            scaling = float(q.shape[-1]) ** -0.5  # their attention_layer with num_heads=1
            weights = torch.softmax(torch.bmm(q * scaling, k.transpose(1, 2)), dim=-1)
            att_output = torch.bmm(weights, v)  # (1, T, D)
            x = F.linear(att_output, last.attn.out_proj.weight, last.attn.out_proj.bias) + x_in
            x = x + last.mlp(last.ln_2(x))
            pooled = visual.ln_post(x[:, 0]) @ visual.proj
            c = (F.normalize(pooled, dim=-1) @ text.T)[0, kk]
            grad = torch.autograd.grad(c, att_output, retain_graph=True)[0].detach()
        with torch.no_grad():
            q_out = F.linear(q, last.attn.out_proj.weight, last.attn.out_proj.bias)
            k_out = F.linear(k, last.attn.out_proj.weight, last.attn.out_proj.bias)
            q_cls, k_patch = F.normalize(q_out[0, :1], dim=-1), F.normalize(k_out[0, 1:], dim=-1)
            cosine_qk = (q_cls * k_patch).sum(-1)
            cosine_qk = (cosine_qk - cosine_qk.min()) / (cosine_qk.max() - cosine_qk.min())
            emap = F.relu((grad[0, :1] * v[0, 1:] * cosine_qk[:, None]).sum(-1))
        maps.append(emap.reshape(side, side).numpy())
    return np.stack(maps)


def test_grad_eclip_authors_variant_equals_their_code(oc_vit):
    """The named variant is the authors' formulation: equal to a port of their code, raw values
    included (their score is the cosine, clipcam's the logit = logit_scale × cosine)."""
    image = noise_image(64, 40, seed=9)
    res = oc_vit.explain(image, PROMPTS, method="gradeclip-authors", layer=1)
    want = authors_grad_eclip(oc_vit, image, PROMPTS) * float(own_model(oc_vit.adapter.source).model.logit_scale.exp())
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-7)
    own = oc_vit.explain(image, PROMPTS, method="gradeclip", layer=oc_vit.num_layers)
    np.testing.assert_allclose(res.logits, own.logits, rtol=1e-6)  # the scores shown are the model's own
    assert not np.allclose(res.grid_maps, own.grid_maps)  # the model's heads give other maps


def test_rollout_on_open_clip_and_siglip(oc_vit, siglip):
    """Rollout on the other families with attention: open_clip's ViT reads its class token's row;
    SigLIP, read out by a pooling head and not a class token, the mean of the rollout's rows."""
    image = noise_image(60, 45, seed=9)
    _, layers = eager_open_clip(oc_vit.model.visual, oc_vit.adapter.transform(image)[None].requires_grad_(True))
    res = oc_vit.explain(image, PROMPTS, layer=2, method="rollout")
    side = oc_vit.model.visual.grid_size[0]
    np.testing.assert_allclose(res.grid_maps[1], rollout_of([layer["probs"] for layer in layers[1:]], 0, side),
                               rtol=1e-5, atol=1e-7)
    res = siglip.explain(image, PROMPTS, layer=1, method="rollout")
    side = siglip.model.config.vision_config.image_size // siglip.model.config.vision_config.patch_size
    pixels = siglip.adapter.image_processor(images=image, return_tensors="pt")["pixel_values"]
    eager = type(siglip.model).from_pretrained(siglip.adapter.source, attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = eager.vision_model(pixel_values=pixels, output_attentions=True).attentions
    np.testing.assert_allclose(res.grid_maps[0], rollout_of(attentions, None, side), rtol=1e-5, atol=1e-7)
    assert res.grid_maps.any() and np.allclose(res.grid_maps[0], res.grid_maps[1])


def rollout_of(attentions, row, side):
    """The rollout of per-layer (1, H, T, T) probabilities, written out: ``row`` of the product over
    its patch columns, or the mean of its rows (None, no class token: every column is a patch)."""
    t = attentions[0].shape[-1]
    product = torch.eye(t, dtype=torch.float64)
    for probs in attentions:
        a = 0.5 * probs[0].detach().mean(dim=0).double() + 0.5 * torch.eye(t, dtype=torch.float64)
        product = (a / a.sum(dim=-1, keepdim=True)) @ product
    picked = product[row, 1:] if row is not None else product.mean(dim=0)
    return picked.reshape(side, side).float().numpy()
