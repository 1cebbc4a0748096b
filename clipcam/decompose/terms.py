"""The image embedding as an exact sum of terms, and each prompt's score split the same way.

Gandelsman, Efros & Steinhardt, "Interpreting CLIP's Image Representation via Text-Based
Decomposition" (ICLR 2024; code: github.com/yossigandelsman/clip_text_span, prs_hook.py). With the
final LayerNorm's mean and standard deviation frozen at the real pooled token's, the read-out is
affine, so the embedding is the sum of its images of the residual stream's terms. Where the
biases go (so that the sum is exact), as the authors' PRS logger puts them:

- the final LayerNorm's bias and its mean's share are split evenly over the 2L + 1 intermediates
  (the embedding, each MLP, each attention layer), an attention layer's share again evenly over
  its H heads × T source tokens;
- a ViT block's attention output-projection bias is split evenly over its H × T head-token terms;
  the MLP's biases stay in its term;
- SigLIP's pooling head and a ResNet's attention pool: the output-projection bias is the
  ``embed`` term (compute_siglip.py's ``constant_bias``); SigLIP's logit bias is added to the
  ``embed`` score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..models.base import ModelAdapter
from .capture import CLASS_TOKEN_FAMILIES, Layer, Pieces, capture


@dataclass(frozen=True)
class ResidualTerms:
    """An image embedding split into terms, each in the image-embedding space (E), not normalised.

    ``embed`` (B, E): the embedding's term (CLIP: the class and position embeddings after ln_pre;
    SigLIP, ResNets: the pool's output-projection bias); ``heads`` (B, L', H, E), or
    (B, L', H, T, E) per source token in the model's own token order (class token first for CLIP;
    SigLIP 2's padding tokens have exactly zero terms), for the split layers ``layers`` (1-based; all
    by default); ``mlps`` (B, L, E) for every layer (a ResNet's pool has no MLP: zeros); ``rest``
    (B, E): the heads of the layers not in ``layers`` (zero when all are). Then
    ``embed + heads.sum(over L', H[, T]) + mlps.sum(1) + rest == features``, the model's embedding.
    For SigLIP and ResNets the only split layer is the pooling head (L = 1)."""

    embed: torch.Tensor
    heads: torch.Tensor
    mlps: torch.Tensor
    rest: torch.Tensor
    layers: tuple[int, ...]
    features: torch.Tensor


def split_layers(adapter: ModelAdapter) -> int:
    """How many layers the decomposition splits: the blocks of a class-token ViT, else 1 (the pool)."""
    return adapter.num_layers if adapter.family in CLASS_TOKEN_FAMILIES else 1


def _check_layers(layers: Sequence[int] | None, count: int) -> tuple[int, ...]:
    """The chosen 1-based layers, each once, sorted; all by default."""
    if layers is None:
        return tuple(range(1, count + 1))
    chosen = tuple(sorted(set(int(layer) for layer in layers)))
    if not chosen or chosen[0] < 1 or chosen[-1] > count:
        raise ValueError(f"Give the layers to split as numbers from 1 to {count}.")
    return chosen


def head_terms(layer: Layer, pieces: Pieces, per_token: bool) -> torch.Tensor:
    """One layer's head terms in embedding space: (B, H, E), or (B, H, T, E) per source token."""
    readout = pieces.readout
    b, t, d = layer.values.shape
    heads = layer.heads
    constant = readout.constant * readout.share  # (B, E): the layer's share of the constant
    if layer.bias is not None:
        constant = constant + readout.apply(layer.scale(layer.bias)[None].expand(b, -1))
    if not per_token:
        return readout.apply(layer.head_outputs()) + (constant / heads)[:, None]
    split = layer.values.reshape(b, t, heads, d // heads)  # (B, T, H, dh)
    weight = layer.out_weight.reshape(-1, heads, d // heads)  # (D', H, dh)
    tokens = torch.einsum("bthd,ehd->bhte", split, weight) * layer.probs[..., None]  # (B, H, T, D')
    return readout.apply(layer.scale(tokens)) + (constant / (heads * t))[:, None, None]


def residual_terms(adapter: ModelAdapter, pixels: Any, layers: Sequence[int] | None = None,
                   per_token: bool = False) -> ResidualTerms:
    """The image embeddings of ``pixels`` (the adapter's input, batch B) split into terms, from one
    forward without gradients (see ResidualTerms). ``layers``: the 1-based layers whose heads are
    split (default: all); ``per_token``: split each head's term over its source tokens too."""
    pieces = capture(adapter, pixels)
    chosen = _check_layers(layers, len(pieces.layers))
    readout = pieces.readout
    shared = readout.constant * readout.share  # (B, E)
    embed = readout.apply(pieces.embed) + shared
    mlps = readout.apply(pieces.mlps) + shared[:, None]  # (B, L, E)
    heads, rest = [], torch.zeros_like(embed)
    for index, layer in enumerate(pieces.layers, start=1):
        if index in chosen:
            heads.append(head_terms(layer, pieces, per_token))
        else:
            rest = rest + head_terms(layer, pieces, False).sum(1)
    return ResidualTerms(embed, torch.stack(heads, 1), mlps, rest, chosen, pieces.features)


@dataclass(frozen=True)
class Scores:
    """Each prompt's logit split like the embedding, for B images and K prompts (float32 tensors):
    ``embed`` (B, K) (SigLIP's logit bias included), ``tokens`` (B, K, L, H, T) each head's share per
    source token, ``mlps`` (B, K, L), ``total`` (B, K) the model's own logits."""

    embed: torch.Tensor
    tokens: torch.Tensor
    mlps: torch.Tensor
    total: torch.Tensor
    pieces: Pieces


def split_scores(adapter: ModelAdapter, pixels: Any, text: torch.Tensor) -> Scores:
    """The logits of ``pixels`` for unit-norm text embeddings (K, E), split into terms without ever
    holding a per-token term in embedding space: the prompts' directions are pulled back through
    the frozen read-out and each layer's output projection, then met with the values (K·T·D per
    layer). logit_k = scale · <f / |f|, t_k> (+ bias): each term's dot product is divided by |f|."""
    pieces = capture(adapter, pixels)
    readout, text = pieces.readout, text.float()
    coef = adapter.logit_scale.float() / pieces.features.norm(dim=-1)  # (B,)
    pulled = readout.pull(text)  # (B, K, D)
    shared = readout.share * (readout.constant @ text.T)  # (B, K)
    embed = coef[:, None] * (torch.einsum("bkd,bd->bk", pulled, pieces.embed) + shared)
    bias = adapter.logit_bias
    embed = embed if bias is None else embed + bias.float()
    mlps = coef[:, None, None] * (torch.einsum("bkd,bld->bkl", pulled, pieces.mlps) + shared[..., None])
    per_layer = []
    for layer in pieces.layers:
        b, t, d = layer.values.shape
        heads = layer.heads
        back = layer.scale(pulled) @ layer.out_weight  # (B, K, D): through the layer scale and out_proj
        meet = torch.einsum("bkhd,bthd->bkht", back.reshape(b, -1, heads, d // heads),
                            layer.values.reshape(b, t, heads, d // heads))  # (B, K, H, T)
        constant = shared if layer.bias is None else shared + layer.scale(pulled) @ layer.bias  # (B, K)
        per_layer.append(meet * layer.probs[:, None] + (constant / (heads * t))[:, :, None, None])
    tokens = coef[:, None, None, None, None] * torch.stack(per_layer, 2)  # (B, K, L, H, T)
    total = adapter.logits(pieces.features, text).float()  # (B, K)
    return Scores(embed, tokens, mlps, total, pieces)
