"""LeGrad against the slow, obvious computation: per prompt and layer, the layer's own score
differentiated with respect to its attention probabilities (eager attention), heads looped over."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PROMPTS, noise_image
from slowref import EagerCLIP, apply_target


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


@pytest.mark.parametrize("start,target", [(1, "logit"), (2, "log_softmax"), (3, "contrast")])
def test_matches_the_slow_computation(tiny5_dir, explainer5, wide_image, start, target):
    res = explainer5.explain(wide_image, PROMPTS, layer=start, method="legrad", target=target)
    want = slow_legrad(tiny5_dir, explainer5, wide_image, PROMPTS, start, target)
    assert res.method == "legrad" and res.sublayer == "self_attn" and not res.dead
    np.testing.assert_allclose(res.grid_maps, want, rtol=1e-4, atol=1e-7)
    assert (res.grid_maps >= 0).all() and np.isfinite(res.grid_maps).all() and res.grid_maps.any()
    assert not np.allclose(res.grid_maps[0], res.grid_maps[1]), "it depends on the prompt"


def test_zero_where_the_score_cannot_move(explainer5, wide_image):
    res = explainer5.explain(wide_image, PROMPTS[:1], layer=1, method="legrad", target="contrast")
    assert not res.grid_maps.any()


def test_sweep_gives_every_start_layer_from_one_pass(explainer7):
    image = noise_image(50, 70, seed=4)
    sweep = explainer7.sweep(image, PROMPTS, method="legrad", target="log_softmax")
    for i, layer in enumerate(sweep.layers):
        single = explainer7.explain(image, PROMPTS, layer=layer, method="legrad", target="log_softmax")
        np.testing.assert_allclose(sweep.grid_maps[i], single.grid_maps, rtol=1e-5, atol=1e-8)
    assert not any(m._forward_hooks for m in explainer7.model.modules())
