"""A ResNet CLIP's attention pool as the pieces a method needs to run it again in its own way
(CLIP Surgery's v–v path through the pool, xmed-lab/CLIP_Surgery ``clip/clip_surgery_model.py``,
``AttentionPool2d``).

open_clip's ``AttentionPool2d`` (``modified_resnet.py``) reads the last stage (B, C, H, W) as
H·W tokens, prepends their mean, adds ``positional_embedding`` ((H·W + 1, C)) and lets the mean
token attend over all of them with ``q_proj``, ``k_proj``, ``v_proj`` and ``num_heads`` heads;
``c_proj`` projects the result to the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PoolView:
    """One attention pool: the module (a hook on it sees the last stage's output), its positional
    embedding (H·W + 1, C), its value and output projections, and its head count."""

    module: torch.nn.Module
    positional_embedding: torch.Tensor
    v_proj: torch.nn.Linear
    c_proj: torch.nn.Linear
    heads: int


def attention_pool_view(pool: torch.nn.Module) -> PoolView:
    """open_clip's (and OpenAI CLIP's) ``AttentionPool2d`` as a PoolView."""
    return PoolView(module=pool, positional_embedding=pool.positional_embedding, v_proj=pool.v_proj,
                    c_proj=pool.c_proj, heads=pool.num_heads)
