"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

A class-agnostic saliency map: average each layer's attention over heads, add the identity for
the residual connection, renormalise the rows, and multiply the layers together; the CLS row
over the patch tokens says how much each patch flows into the image embedding. It does not
depend on the prompt, which is why it is the yardstick for "generic saliency" in the shapes
benchmark: a prompt-specific method must beat it at pointing to the object a prompt names.
"""

from __future__ import annotations

import numpy as np
import torch


def attention_rollout(attentions: tuple[torch.Tensor, ...], grid: tuple[int, int]) -> np.ndarray:
    """attentions: per layer (1, heads, 1+N, 1+N) probabilities → (rows, cols) float32 rollout, ≥ 0."""
    tokens = attentions[0].shape[-1]
    rollout = torch.eye(tokens, dtype=torch.float64)
    for layer_attn in attentions:
        a = layer_attn[0].mean(dim=0).double()  # (1+N, 1+N), heads averaged
        a = 0.5 * a + 0.5 * torch.eye(tokens, dtype=torch.float64)  # residual connection
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout[0, 1:].reshape(grid).float().numpy()


def rollout_map(eager_model, pixel_values: torch.Tensor) -> np.ndarray:
    """Rollout for one image with a CLIPModel loaded with attn_implementation='eager'."""
    cfg = eager_model.config.vision_config
    side = cfg.image_size // cfg.patch_size
    with torch.no_grad():
        out = eager_model.vision_model(pixel_values=pixel_values, output_attentions=True)
    return attention_rollout(out.attentions, (side, side))
