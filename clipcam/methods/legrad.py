"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An Explainability Method
for Vision Transformers via Feature Formation Sensitivity", arXiv:2404.03214, 2024).

Every layer's tokens are read as if the model ended there: their mean (class token included) goes
through CLIP's final layer norm and projection and is scored against the prompt, s_l. The map of
layer l is the gradient of s_l with respect to that layer's own attention probabilities, ReLU-ed,
averaged over heads and over query tokens, at the patch-token columns; the maps of the chosen
layers (from the start layer to the last) are summed.

The gradient only has to cross layer l's attention → MLP tail, so clipcam takes it at the
attention block's output and maps it onto the attention probabilities exactly (clipcam.methods.attention),
one batched gradient per layer for all prompts, with the model's fast attention left on. The
per-layer score is the chosen target applied to logit_scale·cos(text, layer embedding); for the
raw logit this is the paper's cosine times a constant, which the display's scaling removes.

Models read out by an attention-pooling head (SigLIP) have no class token; there the authors
pass each layer's tokens through the pooling head and differentiate the head's own attention
probabilities instead (``pooling_head_map``): the probe's attention row over every token.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.base import ModelAdapter
from ..targets import target_scores
from . import Method
from .kinds import ATTENTION
from .attention import AttentionLayer, LayerFold, add, attention_grads


def layer_map(grad_out: torch.Tensor, out_weight: torch.Tensor, v: torch.Tensor, heads: int, prefix: int = 1) -> torch.Tensor:
    """One layer's map for K prompts → (K, N): ReLU(∂s_l/∂A_l) averaged over heads and query rows,
    patch columns. grad_out (K, T, D) is ∂s_l/∂(attention block output); v (T, D) the values."""
    d_probs = attention_grads(grad_out, out_weight, v, heads)  # (K, H, T, T)
    return torch.relu(d_probs).mean(dim=(1, 2))[:, prefix:]  # (K, N)


def as_map(total: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> np.ndarray:
    """The summed layer maps (K, N) as (K, rows, cols) float32."""
    return total.reshape(-1, *grid).detach().float().cpu().numpy()


def pooling_head_map(grad_probs: torch.Tensor) -> torch.Tensor:
    """One layer's map for a model read out by an attention-pooling head (SigLIP), as the authors'
    compute_legrad_siglip: ∂s_l/∂(the head's attention) (K, H, 1, T), ReLU-ed, averaged over heads,
    the probe's row → (K, T). Every token is a grid token (no class token)."""
    return torch.relu(grad_probs).mean(dim=1)[:, 0]  # (K, T)


def layer_term(a: AttentionLayer, prefix: int = 1) -> torch.Tensor:
    """One layer's map (K, N) from its own score's gradient: at the attention-pooling head's
    attention where the model is read out by one, else at the layer's own attention."""
    return (pooling_head_map(a.head_grad) if a.head_grad is not None
            else layer_map(a.grad_out, a.out_weight, a.v, a.heads, prefix))


def layer_score(adapter: ModelAdapter, tokens: torch.Tensor, text: torch.Tensor, target: str
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """s_l for K prompts (K,): the layer's tokens (1, T, D) read as the image embedding and scored
    against the prompts; and where it is differentiated: the pooling head's attention probabilities
    where the model is read out by one (SigLIP), else None (at the layer's attention output)."""
    features, probs = adapter.layer_features(tokens)
    return target_scores(adapter.logits(features, text)[0], target), probs


#: LeGrad for every start layer: the layer maps summed from each layer to the last, each layer scored on its own.
legrad_from = LayerFold(term=layer_term, accumulate=add, finish=as_map, layer_score=layer_score)


METHOD = Method(
    name="legrad",
    label="LeGrad (attention)",
    paper="Bousselham et al., 2024",
    about="each layer read as if it were the last, its score's gradient on the attention, summed over the layers",
    pass_kind=ATTENTION,
    compute=legrad_from,
    needs=frozenset({"attention", "layer_readout"}),
)
