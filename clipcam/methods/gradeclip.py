"""Grad-ECLIP (Zhao, Wang, Zeng, Zhao & Chan, "Gradient-based Visual Explanation for
Transformer-based CLIP", ICML 2024).

In an attention layer the class token's output is o = Σ_i A_i v_i (per head, heads concatenated).
Grad-ECLIP weights each value channel c by the gradient of the explained score at the class
token's attention output, w_c = ∂S/∂o_c, and each token i by a "loosened" attention λ_i: the
cosine between the class token's query and token i's key, min-max scaled over the patch tokens
(softmax attention is too peaked to cover whole objects). Patch i's map is Σ_c w_c v_ic λ_i; the
terms of the chosen layers are summed and a ReLU keeps the positive part. The paper explains the
last layer; clipcam's start layer sums from it to the last, as the authors' code does for the
last layers of the text encoder, so "start at the last layer" is the paper's setting.

One difference from the authors' code: it recomputes the explained layer's attention as a single
head, which changes the model's output; clipcam reads the model's own multi-head attention
(q, k, v and the gradient at the output projection, as in clipcam.methods.attention), unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Method
from .kinds import ATTENTION
from .attention import LayerFold, add
from ..constants import NORM_EPS


def loosened_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """λ: cosine between the class token's query and each patch token's key, min-max scaled → (N,)."""
    q_cls = q[0] / q[0].norm().clamp_min(NORM_EPS)
    keys = k[1:] / k[1:].norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    cos = keys @ q_cls  # (N,)
    return (cos - cos.min()) / (cos.max() - cos.min()).clamp_min(NORM_EPS)


def layer_terms(grad_out: torch.Tensor, out_weight: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor) -> torch.Tensor:
    """One layer's Σ_c w_c·v_ic·λ_i for K prompts over the patch tokens → (K, N), before the ReLU.

    grad_out (K, T, D): ∂S/∂(the attention block's output); out_weight (D, D): its output
    projection; q, k, v (T, D): the projections' outputs, class token first.
    """
    w = grad_out[:, 0] @ out_weight  # (K, D): gradient at the class token's concatenated head outputs
    return (w @ v[1:].T) * loosened_attention(q, k)[None]  # (K, N)


def relu_map(total: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> np.ndarray:
    """ReLU of the summed terms as (K, rows, cols) float32."""
    return torch.relu(total).reshape(-1, *grid).detach().float().cpu().numpy()


#: Grad-ECLIP for every start layer: ReLU of the summed terms from each layer to the last.
gradeclip_maps = LayerFold(term=lambda a, prefix=1: layer_terms(a.grad_out, a.out_weight, a.q, a.k, a.v),
                           accumulate=add, finish=relu_map)


METHOD = Method(
    name="gradeclip",
    label="Grad-ECLIP (attention)",
    paper="Zhao et al., ICML 2024",
    about="the class token's attention-output gradient times the values, weighted by query–key similarity; "
          "start at the last layer for the paper's setting",
    pass_kind=ATTENTION,
    compute=gradeclip_maps,
    needs=frozenset({"attention", "class_token"}),
)
