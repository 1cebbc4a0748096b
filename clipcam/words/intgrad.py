"""Integrated gradients on the token embeddings (Sundararajan, Taly & Yan, "Axiomatic Attribution
for Deep Networks", ICML 2017).

Token j's relevance is (e_j − b_j) · ∫₀¹ ∂S/∂e_j (b + α(e − b)) dα, summed over channels, with e
the prompt's token embeddings (before the position embedding is added), b the baseline (zero: no
token content, the positions kept) and S prompt k's score, as a function of prompt k's own tokens
(the other prompts stay as they are). The integral is the midpoint rule over ``STEPS`` points of the
straight path, all prompts and steps in one batched forward and backward (in chunks). Unlike
gradient × input, which is this with the gradient at e alone, the relevances add up to the score's
change along the path (completeness): Σ_j R_j ≈ S(e) − S(b). Signed: a negative value means the
word lowers the score.
"""

from __future__ import annotations

import torch

from . import WordMethod
from .gradinput import gradinput_tokens

#: Points on the path from the baseline to the input (the midpoint rule).
STEPS = 16


def path_points(steps: int = STEPS) -> torch.Tensor:
    """The midpoints α_n = (n + ½) / steps, n = 0 .. steps − 1."""
    return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps


METHOD = WordMethod(
    name="intgrad",
    label="Integrated gradients (token embeddings)",
    paper="Sundararajan, Taly & Yan, ICML 2017",
    about=f"each token embedding times the score's gradient averaged over {STEPS} points on the path from a "
          "zero embedding, summed over channels; signed, and the words add up to the score's change",
    reads="path",
    compute=gradinput_tokens,  # Σ over channels of (e − b) times the path's mean gradient
    signed=True,
    default_layer=lambda layers: None,
)
