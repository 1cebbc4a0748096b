"""Gradient × input on the token embeddings, the plain baseline (Shrikumar et al., "Not Just a
Black Box", 2016; Simonyan et al., 2014 for the gradient).

Token j's relevance is Σ_d e_jd · ∂S/∂e_jd, with e_j its token embedding (before the position
embedding is added) and S prompt k's score: the first-order change of the score if the token's
embedding were scaled to zero. Signed: a negative value means the word lowers the score.
"""

from __future__ import annotations

import torch

from . import WordMethod


def gradinput_tokens(embedding: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """embedding and grad (K, T, D) → (K, T) Σ over channels of their product."""
    return (embedding.float() * grad.float()).sum(dim=-1)


METHOD = WordMethod(
    name="gradinput",
    label="Gradient × input (token embeddings)",
    paper="Shrikumar et al., 2016",
    about="each token embedding times the score's gradient there, summed over channels; signed",
    reads="embedding",
    compute=gradinput_tokens,
    signed=True,
    default_layer=lambda layers: None,
)
