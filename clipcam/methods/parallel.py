"""A parallel path through a ViT's last blocks, beside the model's own forward (GEM, CLIP Surgery).

GEM (WalBouss/GEM, ``gem/gem_utils.py``: ``GEMResidualBlock``) and CLIP Surgery
(xmed-lab/CLIP_Surgery, ``clip/clip_surgery_model.py``: ``ResidualAttentionBlock.forward``) run two
paths through the last blocks. The original path is the model's own and stays unchanged; at every
changed block the new path adds the output of a changed attention, computed from ``ln_1`` of the
*original* path's tokens, and skips the FFN:

    x_new ← x_new + ls_1(out_proj(changed_attention(ln_1(x_orig))))

The layer scale ``ls_1`` (open_clip's, identity elsewhere) is applied to the new path's term as
GEM's block does; CLIP Surgery's code has none (OpenAI's CLIP has no layer scale) and gets the same.
So one unchanged forward holds everything: hooks record each changed block's input (the original
path's tokens there) and the last block's output, and the new path is the first changed block's
input plus the sum of the blocks' changed attention outputs. Every start layer's path follows from
the same per-block terms by a running sum from the last block back, at the cost of one readout
per start layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..hooks import capture_outputs, on_grid, record_calls
from ..models.base import AttentionSite, BlockView, ModelAdapter

#: What a method changes in a block: the view, q, k and v (B, T, D) each as the model computed them,
#: and ln_1 of the original path's tokens (B, T, D) → the changed attention's output after out_proj
#: (B, T, D), before the layer scale.
ChangedAttention = Callable[[BlockView, tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass
class PathRecord:
    """What one unchanged forward recorded, filled in as it runs: the blocks from the start layer
    on and the input of each ((args, kwargs)); ``values``: the last block's output, then the
    outputs that each block's attention site reads q, k and v from (the model's own q, k and v, not
    computed again where the family's attention calls q/k/v modules)."""

    views: list[BlockView]
    calls: list
    values: list
    sites: list[AttentionSite]

    def inputs(self, grid: tuple[int, int], prefix: int) -> list[torch.Tensor]:
        """Each block's input, the original path's tokens there: (B, T, D) each, float32."""
        return [on_grid(call[0][0].float(), grid, prefix) for call in self.calls]

    def output(self, grid: tuple[int, int], prefix: int) -> torch.Tensor:
        """The last block's output (B, T, D), float32: the original path's final tokens."""
        return on_grid(self.values[0].float(), grid, prefix)

    def qkv(self, grid: tuple[int, int], prefix: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each block's q, k and v of the pass's one image, (1, T, D) float32 each."""
        out, at = [], 1
        for site in self.sites:
            parts = site.split(self.values[at:at + len(site.reads)])
            out.append(tuple(on_grid(t.float(), grid, prefix)[None] for t in parts))
            at += len(site.reads)
        return out


@contextmanager
def record_path(adapter: ModelAdapter, start: int, grid: tuple[int, int]) -> Iterator[PathRecord]:
    """Record, during the unchanged forward run inside, the input and q, k, v of every block from
    1-based ``start`` to the last and the last block's output (a ForwardMethod's ``read``)."""
    views, sites = adapter.block_views(start), adapter.attention_sites(start)
    reads = [m for site in sites for m in site.reads]
    with record_calls([v.module for v in views]) as calls, \
            capture_outputs([], values=[views[-1].module, *reads]) as values:
        yield PathRecord(views, calls, values, sites)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) → (B, H, T, D/H)."""
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D/H) → (B, T, D), heads concatenated."""
    b, h, t, e = x.shape
    return x.transpose(1, 2).reshape(b, t, h * e)


def parallel_paths(record: PathRecord, attention: ChangedAttention, grid: tuple[int, int],
                   prefix: int) -> list[torch.Tensor]:
    """The new path's final tokens (B, T, D) for every start layer from the recorded start to the
    last: the start block's input plus its own and every later block's changed attention term."""
    inputs = record.inputs(grid, prefix)
    terms = [view.ls_1(attention(view, qkv, view.ln_1(x.to(view.out_proj.weight.dtype))).float())
             for view, qkv, x in zip(record.views, record.qkv(grid, prefix), inputs)]  # (B, T, D) each
    paths, running = [], torch.zeros_like(inputs[0])
    for x, term in zip(reversed(inputs), reversed(terms)):  # from the last block back
        running = running + term
        paths.append(x + running)
    return paths[::-1]


def unit_readout(adapter: ModelAdapter, tokens: torch.Tensor) -> torch.Tensor:
    """Tokens (B, T, D) read out as embeddings (ln_post, proj) and L2-normalised: (B, T, P) float32."""
    out = adapter.token_readout(tokens.to(adapter.dtype)).float()
    return out / out.norm(dim=-1, keepdim=True)


def on_patches(scores: torch.Tensor, grid: tuple[int, int], prefix: int) -> np.ndarray:
    """Per-token scores (T, K) → the patches' (K, rows, cols) float32 map, prefix tokens dropped."""
    return scores[prefix:prefix + grid[0] * grid[1]].T.reshape(-1, *grid).float().cpu().numpy()
