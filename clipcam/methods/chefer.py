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
from .kinds import ATTENTION
from .attention import AttentionLayer, LayerFold, attention_grads, attention_probs


def weighted_attention(probs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Ā = mean over heads of ReLU(∂S/∂A ⊙ A): probs (H, T, T), grads (K, H, T, T) → (K, T, T)."""
    return torch.relu(grads * probs[None]).mean(dim=1)


def layer_term(a: AttentionLayer, prefix: int = 1) -> torch.Tensor:
    """One layer's Ā (K, T, T), from its q, k, v and the gradient at its output projection."""
    return weighted_attention(attention_probs(a.q, a.k, a.heads), attention_grads(a.grad_out, a.out_weight, a.v, a.heads))


def multiply(product: torch.Tensor | None, abar: torch.Tensor) -> torch.Tensor:
    """R of the layers after this one (None: none yet, the identity) times (I + Ā) of this one:
    going back from the last layer, R = (I + Ā_last)···(I + Ā_start)."""
    k, t, _ = abar.shape
    eye = torch.eye(t, dtype=abar.dtype, device=abar.device).expand(k, t, t)
    return (eye if product is None else product) @ (eye + abar)


def class_row(product: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> np.ndarray:
    """The map: R's class-token row over the patch tokens, (K, rows, cols), copied out (a view
    would keep the whole (K, T, T) product alive with every map)."""
    return product[:, 0, prefix:].reshape(product.shape[0], *grid).detach().float().cpu().numpy().copy()


#: Chefer relevance for every start layer: the (K, rows, cols) map from each layer to the last.
chefer_maps = LayerFold(term=layer_term, accumulate=multiply, finish=class_row)


METHOD = Method(
    name="chefer",
    label="Chefer relevance (attention)",
    paper="Chefer, Gur & Wolf, ICCV 2021",
    about="gradient-weighted attention, multiplied through the layers; the class token's row is the map",
    pass_kind=ATTENTION,
    compute=chefer_maps,
    needs=frozenset({"attention", "class_token"}),
)
