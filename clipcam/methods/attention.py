"""Attention maths shared by the attention-based methods (clipcam.methods.chefer, .gradeclip, .legrad).

None of them needs the attention probabilities from the model, which would force transformers'
slow "eager" attention: clipcam records q, k and v (the projections' outputs) and the gradient at
the attention block's output projection, and rebuilds both exactly. CLIP's vision attention is
A_h = softmax(q_h k_hᵀ · d^-½); the block computes O_h = A_h v_h and out = O W_oᵀ + b, so
∂S/∂A_h = (∂S/∂out · W_o)_h v_hᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionLayer:
    """What an attention method reads from one layer, for K prompts.

    grad_out (K, T, D): the gradient of the explained score at the attention block's output (for
    LeGrad: of that layer's own score); out_weight (D, D): the block's output projection; q, k, v
    (T, D): queries, keys and values, heads concatenated; head_grad (K, H, 1, T): for models read
    out by an attention-pooling head, the gradient at the head's attention (LeGrad on SigLIP).
    """

    grad_out: torch.Tensor | None
    out_weight: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    heads: int
    head_grad: torch.Tensor | None = None


def attention_probs(q: torch.Tensor, k: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(T, D) queries and keys → (H, T, T) softmax attention, as CLIP's vision attention computes it.

    mask (T, T) bool, True where query i may attend to key j: the text encoders' causal and
    padding masks (an additive -inf before the softmax, as the models apply them)."""
    t, d = q.shape
    qh = q.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    kh = k.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    scores = qh @ kh.transpose(1, 2) * (d // heads) ** -0.5  # (H, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def attention_grads(grad_out: torch.Tensor, out_weight: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """∂S/∂A for K prompts: grad_out (K, T, D) at out_proj's output, out_weight (D, D), v (T, D) → (K, H, T, T)."""
    kk, t, d = grad_out.shape
    grad_o = grad_out @ out_weight  # (K, T, D): gradient at the heads' concatenated output
    grad_oh = grad_o.reshape(kk, t, heads, d // heads).transpose(1, 2)  # (K, H, T, d)
    vh = v.reshape(t, heads, d // heads).transpose(0, 1)  # (H, T, d)
    return grad_oh @ vh.transpose(1, 2)  # (K, H, T, T)


def suffix_sums(terms: list[torch.Tensor]) -> list[torch.Tensor]:
    """[Σ_{l ≥ i} terms[l] for every i]: one sum per start layer, all from one pass over the layers."""
    sums: list[torch.Tensor] = [None] * len(terms)  # type: ignore[list-item]
    total = torch.zeros_like(terms[-1])
    for i in range(len(terms) - 1, -1, -1):
        total = total + terms[i]
        sums[i] = total
    return sums
