"""Grad-ECLIP's text explanation (Zhao et al., "Gradient-based Visual Explanation for
Transformer-based CLIP", ICML 2024), as the authors' grad_eclip_text notebook computes it.

In each text-encoder layer from the start layer to the last, with p the position the text
embedding is read from (the end-of-text token for CLIP): w = ∂S/∂o_p, the gradient at p's
attention output (heads concatenated, before the output projection); token j's term is
(v_j · w) · λ_j, where λ_j is the cosine between p's query and j's key, min-max scaled. The terms
are summed over the layers and a ReLU keeps the positive part (non-negative, unsigned). The
notebook explains the last 8 of the 12 layers; clipcam's default start is the last 8 of any depth.

Two differences from the authors' code, both to explain the model as it runs: the notebook
recomputes each explained layer as a single head (which changes the model's output), clipcam
reads its own multi-head attention; and the notebook min-max scales λ over all 77 positions,
including padding that the end-of-text token cannot attend to, clipcam over the keys p attends to.
"""

from __future__ import annotations

import torch

from ..constants import NORM_EPS
from . import TextLayer, WordMethod


def gradeclip_tokens(layers: list[TextLayer], mask: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """Grad-ECLIP's token relevance for K prompts → (K, T), zero at keys the pooled token cannot see."""
    rows = []
    for k in range(mask.shape[0]):
        p = int(pooled[k])
        seen = mask[k, p]  # (T,) keys the pooled token attends to
        total = torch.zeros(mask.shape[-1], dtype=torch.float32, device=mask.device)
        for a in layers:
            w = a.grad_out[k, p] @ a.out_weight  # (D,): gradient at p's concatenated head outputs
            query = a.q[k, p] / a.q[k, p].norm().clamp_min(NORM_EPS)
            keys = a.k[k] / a.k[k].norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)  # (T, D)
            cos = keys @ query  # (T,)
            low, high = cos[seen].min(), cos[seen].max()
            loosened = torch.where(seen, (cos - low) / (high - low).clamp_min(NORM_EPS), torch.zeros_like(cos))
            total = total + (a.v[k] @ w) * loosened
        rows.append(torch.relu(total))
    return torch.stack(rows)  # (K, T)


METHOD = WordMethod(
    name="gradeclip",
    label="Grad-ECLIP (text)",
    paper="Zhao et al., ICML 2024",
    about="the end token's attention-output gradient times each token's values, weighted by query–key "
          "similarity, summed over the last layers",
    reads="attention",
    compute=gradeclip_tokens,
    signed=False,
    default_layer=lambda layers: max(1, layers - 7),  # the notebook's n=8 last layers
)
