"""The attention methods (Chefer et al.'s relevance, Grad-ECLIP, LeGrad) against the slow, obvious
computations: a fresh eager-attention copy of the model, one full backward per prompt, the
attention weights or the attention output read directly, loops over layers, heads and tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PROMPTS, noise_image
from slowref import EagerCLIP, apply_target


def slow_chefer(model_dir, explainer, image, prompts, start: int, target: str) -> np.ndarray:
    """One full backward per prompt through a copy with eager attention, reading the attention
    probabilities and their .grad, then looping over layers and heads as the paper writes it."""
    clip = EagerCLIP(model_dir, explainer, prompts)
    maps = []
    for k in range(len(prompts)):
        out = clip.model(pixel_values=clip.pixels(image), **clip.tokens, output_attentions=True)
        attns = out.vision_model_output.attentions  # per layer (1, H, T, T)
        for a in attns:
            a.retain_grad()
        apply_target(out.logits_per_image[0], target)[k].backward()
        t = attns[0].shape[-1]
        relevance = torch.eye(t)
        for layer in range(start - 1, len(attns)):
            a, g = attns[layer][0].detach(), attns[layer].grad[0]
            per_head = [torch.clamp(g[h] * a[h], min=0) for h in range(a.shape[0])]
            abar = sum(per_head) / len(per_head)
            relevance = relevance + abar @ relevance
        maps.append(relevance[0, 1:].reshape(clip.side, clip.side).numpy())
    return np.stack(maps)


def slow_grad_eclip(model_dir, explainer, image, prompts, start: int, target: str) -> np.ndarray:
    clip = EagerCLIP(model_dir, explainer, prompts)
    maps = []
    for k in range(len(prompts)):
        seen = {}
        hooks = []
        for i, block in enumerate(clip.layers):
            attn = block.self_attn
            hooks.append(attn.out_proj.register_forward_pre_hook(
                lambda m, args, i=i, seen=seen: seen.__setitem__(("o", i), args[0]) or args[0].retain_grad()))
            for name in ("q_proj", "k_proj", "v_proj"):
                hooks.append(getattr(attn, name).register_forward_hook(
                    lambda m, a, out, i=i, name=name, seen=seen: seen.__setitem__((name, i), out.detach())))
        out = clip.model(pixel_values=clip.pixels(image), **clip.tokens)
        for h in hooks:
            h.remove()
        apply_target(out.logits_per_image[0], target)[k].backward()
        total = [0.0] * (clip.side * clip.side)
        for layer in range(start - 1, len(clip.layers)):
            grad = seen[("o", layer)].grad[0, 0]  # ∂S/∂o at the class token, heads concatenated
            q, key, v = (seen[(n, layer)][0] for n in ("q_proj", "k_proj", "v_proj"))
            cos = [float(q[0] @ key[i] / (q[0].norm() * key[i].norm())) for i in range(1, key.shape[0])]
            lo, hi = min(cos), max(cos)
            for i in range(1, v.shape[0]):
                lam = (cos[i - 1] - lo) / (hi - lo)
                total[i - 1] += lam * sum(float(grad[c] * v[i, c]) for c in range(v.shape[1]))
        maps.append(np.maximum(np.array(total), 0).reshape(clip.side, clip.side))
    return np.stack(maps)


def slow_legrad(model_dir, explainer, image, prompts, start: int, target: str) -> np.ndarray:
    clip = EagerCLIP(model_dir, explainer, prompts)
    vision = clip.model.vision_model
    maps = []
    for k in range(len(prompts)):
        outputs = {}
        hooks = [block.register_forward_hook(lambda m, a, out, i=i, outputs=outputs: outputs.__setitem__(i, out))
                 for i, block in enumerate(clip.layers)]
        out = clip.model(pixel_values=clip.pixels(image), **clip.tokens, output_attentions=True)
        for h in hooks:
            h.remove()
        attentions = out.vision_model_output.attentions  # per layer (1, H, T, T)
        text = clip.text()
        total = torch.zeros(clip.side * clip.side)
        for layer in range(start - 1, len(clip.layers)):
            hidden = outputs[layer][0] if isinstance(outputs[layer], tuple) else outputs[layer]  # (1, T, D)
            emb = clip.model.visual_projection(vision.post_layernorm(hidden.mean(dim=1)))[0]
            logits = clip.model.logit_scale.exp() * (text @ (emb / emb.norm()))
            score = apply_target(logits, target)[k]
            (grad,) = torch.autograd.grad(score, attentions[layer], retain_graph=True)
            per_head = [grad[0, h].clamp(min=0).mean(dim=0)[1:] for h in range(clip.heads)]  # rows averaged
            total += sum(per_head) / clip.heads
        maps.append(total.reshape(clip.side, clip.side).numpy())
    return np.stack(maps)


SLOW = {"chefer": slow_chefer, "gradeclip": slow_grad_eclip, "legrad": slow_legrad}


@pytest.mark.parametrize("method", list(SLOW))
@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "log_softmax"), (3, "contrast")])
def test_matches_the_slow_computation(tiny5_dir, explainer5, wide_image, method, start, target):
    res = explainer5.explain(wide_image, PROMPTS, layer=start, method=method, target=target)
    want = SLOW[method](tiny5_dir, explainer5, wide_image, PROMPTS, start, target)
    assert res.method == method and res.sublayer == "self_attn" and not res.dead
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-7)
    assert (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all() and res.grid_maps.any()
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1]), "it depends on the prompt"


@pytest.mark.parametrize("method", ["gradeclip", "legrad"])
def test_zero_where_the_score_cannot_move(explainer5, wide_image, method):
    """One prompt under log-softmax: the score is constant, so there is no gradient and no map."""
    res = explainer5.explain(wide_image, PROMPTS[:1], layer=1, method=method, target="log_softmax")
    assert not res.grid_maps.any()


@pytest.mark.parametrize("method,target", [("chefer", "logit"), ("gradeclip", "contrast"), ("legrad", "log_softmax")])
def test_sweep_gives_every_start_layer_from_one_pass(explainer7, method, target):
    image = noise_image(70, 50, seed=3)
    sweep = explainer7.sweep(image, PROMPTS, method=method, target=target)
    for i, layer in enumerate(sweep.layers):
        single = explainer7.explain(image, PROMPTS, layer=layer, method=method, target=target)
        np.testing.assert_allclose(sweep.layer_maps[i], single.grid_maps, rtol=1e-5, atol=1e-8)
    assert sweep.dead_reasons == (None, None, None)
    assert not any(m._forward_hooks for m in explainer7.model.modules())
    assert torch.is_grad_enabled()


def slow_rollout(model_dir, explainer, image, start: int) -> np.ndarray:
    """Abnar & Zuidema's rollout as clipcam's eval computed it before rollout was a method: the
    attention probabilities of a fresh eager copy, head mean, 0.5·A + 0.5·I, rows renormalised, the
    layers multiplied from the start layer up, the class token's row over the patches."""
    clip = EagerCLIP(model_dir, explainer, PROMPTS)
    with torch.no_grad():
        attentions = clip.model.vision_model(pixel_values=clip.pixels(image).detach(), output_attentions=True).attentions
    tokens = attentions[0].shape[-1]
    rollout = torch.eye(tokens, dtype=torch.float64)
    for layer_attn in attentions[start - 1:]:
        a = layer_attn[0].mean(dim=0).double()  # (T, T), heads averaged
        a = 0.5 * a + 0.5 * torch.eye(tokens, dtype=torch.float64)  # residual connection
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout[0, 1:].reshape(clip.side, clip.side).float().numpy()


@pytest.mark.parametrize("start", [1, 2, 3])
def test_rollout_matches_the_eager_attention(tiny5_dir, explainer5, wide_image, start):
    """Attention rollout is a registered method from the start layer to the last, read from q and k
    of the model's own fast attention: the same map for every prompt, equal to the eager copy's."""
    res = explainer5.explain(wide_image, PROMPTS, layer=start, method="rollout", target="log_softmax")
    want = slow_rollout(tiny5_dir, explainer5, wide_image, start)
    assert res.method == "rollout" and res.sublayer == "self_attn" and not res.dead
    for k in range(len(PROMPTS)):
        np.testing.assert_allclose(res.grid_maps[k], want, rtol=1e-5, atol=1e-7)
    assert any("Attention rollout does not use the prompts" in n for n in res.notes)
    sweep = explainer5.sweep(wide_image, PROMPTS, method="rollout")
    np.testing.assert_allclose(sweep.layer_maps[start - 1], res.grid_maps, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(sweep.logits, res.logits)
    assert not any(m._forward_hooks for m in explainer5.model.modules())
