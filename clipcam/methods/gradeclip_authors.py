"""Grad-ECLIP as the authors' code computes it (Zhao et al., ICML 2024; Cyang-Zhao/Grad-Eclip,
``clip_encode_dense`` and ``grad_eclip``), offered beside clipcam's ``gradeclip``, which keeps the
model's own heads.

The authors recompute the last layer's attention as a single head over the full width,
A = softmax(q kᵀ / √D), which changes what the model computes from that layer on. Their map is
ReLU(Σ_c g_c v_ic λ_i): g is the gradient of the score at that single head's output for the class
token, v the values, and λ the cosine between the class token's query and each patch's key after
both went through the block's output projection (their ``q_out``, ``k_out``), min-max scaled.
Only the last layer is explained; the scores clipcam shows stay the model's own.
"""

from __future__ import annotations

import numpy as np
import torch

from . import Method
from .kinds import SINGLE_HEAD, ReplacedHead
from ..constants import NORM_EPS


def single_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(T, D) queries, keys, values → (T, D): one attention head over the full width."""
    return torch.softmax(q @ k.T * q.shape[-1] ** -0.5, dim=-1) @ v


def authors_map(grad_heads: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                out_weight: torch.Tensor, out_bias: torch.Tensor | None, grid: tuple[int, int]) -> np.ndarray:
    """grad_heads (K, T, D): ∂S/∂(the single head's output); q, k, v (T, D) → (K, rows, cols) float32."""
    q_out = torch.nn.functional.linear(q[:1], out_weight, out_bias)  # (1, D): the authors' q_out, class token
    k_out = torch.nn.functional.linear(k[1:], out_weight, out_bias)  # (N, D): their k_out, patches
    cos = (k_out / k_out.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)) @ (q_out[0] / q_out[0].norm().clamp_min(NORM_EPS))
    lam = (cos - cos.min()) / (cos.max() - cos.min()).clamp_min(NORM_EPS)  # (N,)
    terms = (grad_heads[:, 0] @ v[1:].T) * lam[None]  # (K, N)
    return torch.relu(terms).reshape(-1, *grid).detach().float().cpu().numpy()


METHOD = Method(
    name="gradeclip-authors",
    label="Grad-ECLIP, authors' single head (attention)",
    paper="Zhao et al., ICML 2024, as in the authors' code",
    about="the last layer recomputed as one attention head over the full width, as the authors' code does; the "
          "gradient at that head times the values, weighted by the out-projected query–key similarity",
    pass_kind=SINGLE_HEAD,
    compute=ReplacedHead(head=single_head, maps=authors_map),
    needs=frozenset({"attention", "class_token"}),
    uses_layer=False,
)
