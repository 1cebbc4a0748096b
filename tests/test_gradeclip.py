"""Grad-ECLIP against the slow, obvious computation: per prompt a full backward through an
eager-attention copy, the attention output's gradient read with a hook, loops over tokens and channels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import PROMPTS, noise_image
from slowref import EagerCLIP, apply_target


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


@pytest.mark.parametrize("start,target", [(3, "logit"), (2, "log_softmax"), (1, "contrast")])
def test_matches_the_slow_computation(tiny5_dir, explainer5, wide_image, start, target):
    res = explainer5.explain(wide_image, PROMPTS, layer=start, method="gradeclip", target=target)
    want = slow_grad_eclip(tiny5_dir, explainer5, wide_image, PROMPTS, start, target)
    assert res.method == "gradeclip" and res.sublayer == "self_attn" and not res.dead
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-6)
    assert (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all() and res.grid_maps.any()
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1]), "it depends on the prompt"


def test_zero_where_the_score_cannot_move(explainer5, wide_image):
    """One prompt under log-softmax: the score is constant, so there is no gradient and no map."""
    res = explainer5.explain(wide_image, PROMPTS[:1], layer=1, method="gradeclip", target="log_softmax")
    assert not res.grid_maps.any()


def test_sweep_gives_every_start_layer_from_one_pass(explainer7):
    image = noise_image(70, 50, seed=3)
    sweep = explainer7.sweep(image, PROMPTS, method="gradeclip")
    for i, layer in enumerate(sweep.layers):
        single = explainer7.explain(image, PROMPTS, layer=layer, method="gradeclip")
        np.testing.assert_allclose(sweep.grid_maps[i], single.grid_maps, rtol=1e-5, atol=1e-7)
    assert not any(m._forward_hooks for m in explainer7.model.modules())
    assert math.isclose(float(np.abs(sweep.probs.sum())), 1.0, rel_tol=1e-6)
    assert torch.is_grad_enabled()
