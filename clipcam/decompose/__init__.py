"""An exact decomposition of the image embedding, and of each prompt's score, by layer, head and
source token (Gandelsman, Efros & Steinhardt, ICLR 2024; github.com/yossigandelsman/clip_text_span).

``residual_terms(adapter, pixels)`` gives the terms in embedding space (ResidualTerms), for
TextSpan and other analyses over many images; ``decomposition(...)`` (behind
``Explainer.decompose``) gives one image's scores split per prompt (Decomposition), projecting
onto the prompts as it goes so that no per-token term is held in embedding space. One forward,
no backward. ``decompose_reason(adapter)`` says in one sentence why a model cannot be split,
``decompose_parts(adapter)`` which parts it gives.
"""

from __future__ import annotations

from .capture import PARTS, decompose_parts, decompose_reason
from .result import Decomposition, decomposition
from .terms import ResidualTerms, Scores, residual_terms, split_layers, split_scores

__all__ = ["PARTS", "Decomposition", "ResidualTerms", "Scores", "decompose_parts", "decompose_reason", "decomposition", "residual_terms",
           "split_layers", "split_scores"]
