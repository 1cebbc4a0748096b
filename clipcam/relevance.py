"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021).

For each layer l from a start layer to the last, Ā_l = mean over heads of ReLU(∂S/∂A_h ⊙ A_h),
where A_h is head h's attention probabilities and S the explained score; the relevance starts as
the identity and grows as R ← R + Ā_l·R. The CLS row of R over the patch tokens is the map.

clipcam does not need the attention probabilities from the model (which would force the slow
"eager" attention): it records q, k and v (the projections' outputs) and the gradient at the
attention block's output projection, and rebuilds both exactly — A_h = softmax(q_h k_hᵀ · d^-½),
and, since the block computes O_h = A_h v_h and out = O W_oᵀ + b, ∂S/∂A_h = (∂S/∂out · W_o)_h v_hᵀ.
"""

from __future__ import annotations

import numpy as np
import torch


def attention_probs(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, D) queries and keys → (H, T, T) softmax attention, as CLIP's vision attention computes it."""
    t, d = q.shape
    qh = q.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    kh = k.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    return torch.softmax(qh @ kh.transpose(1, 2) * (d // heads) ** -0.5, dim=-1)  # (H, T, T)


def attention_grads(grad_out: torch.Tensor, out_weight: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """∂S/∂A for K prompts: grad_out (K, T, D) at out_proj's output, out_weight (D, D), v (T, D) → (K, H, T, T)."""
    kk, t, d = grad_out.shape
    grad_o = grad_out @ out_weight  # (K, T, D): gradient at the heads' concatenated output
    grad_oh = grad_o.reshape(kk, t, heads, d // heads).transpose(1, 2)  # (K, H, T, d)
    vh = v.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    return grad_oh @ vh.transpose(1, 2)  # (K, H, T, T)


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
