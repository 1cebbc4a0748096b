"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021).

For each layer l from a start layer to the last, Ā_l = mean over heads of ReLU(∂S/∂A_h ⊙ A_h),
where A_h is head h's attention probabilities and S the explained score; the relevance starts as
the identity and grows as R ← R + Ā_l·R. The CLS row of R over the patch tokens is the map.

The attention probabilities and their gradient are rebuilt from q, k, v and the gradient at the
output projection (clipcam.methods.attention), so the model keeps its fast attention.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Method
from .attention import AttentionLayer, attention_grads, attention_probs


def weighted_attention(probs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Ā = mean over heads of ReLU(∂S/∂A ⊙ A): probs (H, T, T), grads (K, H, T, T) → (K, T, T)."""
    return torch.relu(grads * probs[None]).mean(dim=1)


def relevance_from(abars: list[torch.Tensor], grid: tuple[int, int]) -> list[np.ndarray]:
    """Maps for every start layer at once: abars[i] is Ā of the i-th layer (K, T, T), in forward order.

    Returns, for each start i, the (K, rows, cols) map of R = (I + Ā_last)···(I + Ā_i), CLS row,
    patch columns. Starting later keeps only the last layers' attention.
    """
    k, t, _ = abars[0].shape
    eye = torch.eye(t, dtype=abars[0].dtype, device=abars[0].device).expand(k, t, t)
    product = eye
    maps: list[np.ndarray] = [None] * len(abars)  # type: ignore[list-item]
    for i in range(len(abars) - 1, -1, -1):
        product = product @ (eye + abars[i])  # (K, T, T)
        maps[i] = product[:, 0, 1:].reshape(k, *grid).detach().float().cpu().numpy()
    return maps


def chefer_maps(layers: list[AttentionLayer], grid: tuple[int, int], prefix: int = 1) -> list[np.ndarray]:
    """Chefer relevance for every start layer: the (K, rows, cols) map from each layer to the last."""
    return relevance_from([weighted_attention(attention_probs(a.q, a.k, a.heads),
                                              attention_grads(a.grad_out, a.out_weight, a.v, a.heads))
                           for a in layers], grid)


METHOD = Method(
    name="chefer",
    label="Chefer relevance (attention)",
    paper="Chefer, Gur & Wolf, ICCV 2021",
    about="gradient-weighted attention, multiplied through the layers; the class token's row is the map",
    reads="attention",
    compute=chefer_maps,
    needs=frozenset({"attention", "class_token"}),
)
