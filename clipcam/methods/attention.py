"""Attention maths shared by the attention-based methods (clipcam.methods.chefer, .gradeclip, .legrad).

None of them needs the attention probabilities from the model, which would force transformers'
slow "eager" attention: clipcam records q, k and v (the projections' outputs) and the gradient at
the attention block's output projection, and rebuilds both exactly. CLIP's vision attention is
A_h = softmax(q_h k_hᵀ · d^-½); the block computes O_h = A_h v_h and out = O W_oᵀ + b, so
∂S/∂A_h = (∂S/∂out · W_o)_h v_hᵀ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
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


def add(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    """A running sum over layers (LeGrad, Grad-ECLIP)."""
    return term if total is None else total + term


@dataclass(frozen=True)
class LayerFold:
    """An attention method as a fold over its layers, from the last back to the start layer.

    ``term(layer, prefix)`` reduces one layer's AttentionLayer to what the method keeps of it for
    K prompts (each prompt's row depends on that prompt only); ``accumulate(state, term)`` folds it
    into the state of the layers after it (None before the last layer); ``finish(state, grid,
    prefix)`` turns a state into the (K, rows, cols) map of a method started at that layer. Called
    with every layer at once it gives the maps for every start layer; the explainer's block-wise
    pass (clipcam.passes.attention) calls the three steps itself as each layer's gradient arrives, so no
    layer's gradients are kept.
    """

    term: Callable[[AttentionLayer, int], torch.Tensor]
    accumulate: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]
    finish: Callable[[torch.Tensor, tuple[int, int], int], np.ndarray]
    #: None: every layer's gradient is that of the explained score. Else each layer is scored on its
    #: own (LeGrad): layer_score(adapter, tokens (1, T, D) after the layer, text (K, P), target) →
    #: (the K scores (K,), the tensor to differentiate them at, or None for the layer's attention
    #: output); a gradient taken at such a tensor reaches the term as ``AttentionLayer.head_grad``.
    layer_score: Callable[[Any, torch.Tensor, torch.Tensor, str], tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def __call__(self, layers: list[AttentionLayer], grid: tuple[int, int], prefix: int = 1) -> list[np.ndarray]:
        state, maps = None, [None] * len(layers)
        for i in range(len(layers) - 1, -1, -1):
            state = self.accumulate(state, self.term(layers[i], prefix))
            maps[i] = self.finish(state, grid, prefix)
        return maps  # type: ignore[return-value]
