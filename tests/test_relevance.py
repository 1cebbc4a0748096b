"""Chefer et al.'s relevance, against the slow, obvious computation on an eager-attention model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PROMPTS
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


@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "log_softmax"), (3, "contrast")])
def test_matches_the_slow_computation(tiny5_dir, explainer5, wide_image, start, target):
    res = explainer5.explain(wide_image, PROMPTS, layer=start, method="chefer", target=target)
    want = slow_chefer(tiny5_dir, explainer5, wide_image, PROMPTS, start, target)
    assert res.method == "chefer" and res.sublayer == "self_attn" and not res.dead
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-6)
    assert (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all()
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1]), "it depends on the prompt"


def test_sweep_gives_every_start_layer_from_one_pass(explainer5, wide_image):
    sweep = explainer5.sweep(wide_image, PROMPTS, method="chefer")
    for i, layer in enumerate(sweep.layers):
        single = explainer5.explain(wide_image, PROMPTS, layer=layer, method="chefer")
        np.testing.assert_allclose(sweep.grid_maps[i], single.grid_maps, rtol=1e-5, atol=1e-7)
    assert sweep.dead_reasons == (None, None, None)
    assert not any(m._forward_hooks for m in explainer5.model.modules())
