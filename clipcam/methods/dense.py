"""What the training-free dense methods share (MaskCLIP, SCLIP, ClearCLIP, NACLIP): the last block
run again from its captured input with the authors' changed attention, every token read out as an
image embedding, and the cosine of each patch's unit feature with each unit text embedding.

One forward: the ``read`` context manager records the last block's input (or an attention pool's
input) during the model's own, unchanged forward, whose logits are the scores shown; ``maps`` then
runs the changed block from that input. A ``LastBlock`` says what the authors change: the attention
(``None``: the value path alone, v through the output projection), and whether the residual and
the FFN are kept. The raw map is the cosine on the patch grid, class token dropped: no logit scale,
no upsampling, no softmax, no threshold (clipcam.methods.kinds.DenseDefaults holds the authors'
post-processing for the options that apply it).

Every method changes only the last block, as its authors do, so ``layer`` does not choose anything
(the records set ``uses_layer=False``) and every chosen layer gets the same map.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from ..hooks import forward_hooks, on_grid
from ..models.base import BlockView, ModelAdapter
from .kinds import ForwardMethod

#: attention(q, k, v (B, H, T, d) each, grid, prefix) → weights (B, H, T, T) that the values are averaged with.
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int], int], torch.Tensor]

#: How the dense methods read SigLIP, which no author defines them for (clipcam's adaptation).
ON_SIGLIP = ("on SigLIP, which reads no token on its own, every patch goes through the pooling head's value path, "
             "clipcam's adaptation")
#: What every dense method's note says about the scores.
NOT_A_GRADIENT = ("these maps read the model's patch features with a changed last block: they do not explain "
                  "the score the way a gradient method does; the scores shown are the model's own")


@dataclass(frozen=True)
class LastBlock:
    """The authors' change to the last block: the attention weights (None: the value path alone,
    each token's own value), and whether the block's residual and its FFN (with its residual) stay."""

    attention: Attention | None
    residual: bool
    ffn: bool


def self_softmax(a: torch.Tensor) -> torch.Tensor:
    """softmax(a aᵀ / √d) over the last axis for a (B, H, T, d): self-self attention (q–q, k–k)."""
    return torch.softmax(a @ a.transpose(-1, -2) * a.shape[-1] ** -0.5, dim=-1)  # (B, H, T, T)


def changed_block(view: BlockView, x: torch.Tensor, change: LastBlock, grid: tuple[int, int],
                  prefix: int) -> torch.Tensor:
    """The last block on its input x (B, T, D), as the authors change it → (B, T, D)."""
    q, k, v = view.qkv(view.ln_1(x))  # (B, T, D) each
    b, t, d = v.shape
    heads = lambda z: z.reshape(b, t, view.heads, d // view.heads).transpose(1, 2)  # noqa: E731  (B, H, T, d)
    if change.attention is None:
        mixed = v  # each token's own value (MaskCLIP)
    else:
        weights = change.attention(heads(q), heads(k), heads(v), grid, prefix)  # (B, H, T, T)
        mixed = (weights @ heads(v)).transpose(1, 2).reshape(b, t, d)
    y = view.ls_1(view.out_proj(mixed))  # (B, T, D)
    if change.residual:
        y = x + y
    if change.ffn:
        y = y + view.ls_2(view.mlp(view.ln_2(y)))
    return y


def cosine_maps(features: torch.Tensor, text: torch.Tensor, grid: tuple[int, int], prefix: int) -> np.ndarray:
    """features (T, P) of every token, text (K, P) unit-norm → (K, rows, cols) float32 in [-1, 1]:
    each patch's unit feature against each prompt, class token dropped."""
    patches = features[prefix:prefix + grid[0] * grid[1]].float()  # (N, P)
    patches = patches / patches.norm(dim=-1, keepdim=True)
    return (text.float() @ patches.T).reshape(-1, *grid).cpu().numpy().astype(np.float32)


def on_start_grid(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A (K, rows, cols) map on the grid the chosen layers are shown on: a ResNet's attention pool
    reads its last stage, so for an earlier stage the map is resampled there (bilinear, cell centres
    aligned), as the explainer does for every CNN sweep; a ViT's grid is the same at every layer."""
    if maps.shape[-2:] == tuple(grid):
        return maps
    return np.stack([cv2.resize(m, (grid[1], grid[0]), interpolation=cv2.INTER_LINEAR) for m in maps])


@dataclass
class Captured:
    """What ``read`` records: the start layer and the input of the module the method reruns."""

    start: int
    module: torch.nn.Module
    input: torch.Tensor | None = None


@contextmanager
def capture_input(module: torch.nn.Module, start: int) -> Iterator[Captured]:
    """Record ``module``'s first input (detached) during the forward run inside the block."""
    state = Captured(start, module)

    def hook(mod, args, output) -> None:
        state.input = args[0].detach().float()  # float32 out of the forward, whatever its precision

    with forward_hooks([(module, hook)]):
        yield state


@contextmanager
def read_last_block(adapter: ModelAdapter, start: int, grid: tuple[int, int]) -> Iterator[Captured]:
    """The ``read`` of a ViT dense method: the last block's input, from the model's own forward."""
    with capture_input(adapter.block_views(adapter.num_layers)[0].module, start) as state:
        yield state


def each_layer(adapter: ModelAdapter, state: Captured, maps: np.ndarray, grid: tuple[int, int]) -> list[np.ndarray]:
    """The one map of the last block for every start layer from ``state.start`` to the last."""
    maps = on_start_grid(maps, grid)
    return [maps for _ in range(adapter.num_layers - state.start + 1)]


def block_maps(change: LastBlock) -> Callable[[Captured, ModelAdapter, torch.Tensor, tuple[int, int]], list[np.ndarray]]:
    """The ``maps`` of a ViT dense method: the changed last block, every token read out
    (``dense_readout``: ``token_readout``, or SigLIP's pooling head's value path), the cosine with each prompt."""

    def maps(state: Captured, adapter: ModelAdapter, text: torch.Tensor, grid: tuple[int, int]) -> list[np.ndarray]:
        view = adapter.block_views(adapter.num_layers)[0]
        x = on_grid(state.input, grid, adapter.prefix)  # (1, T, D): SigLIP 2's padding dropped, as its mask would
        out = changed_block(view, x, change, grid, adapter.prefix)  # (1, T, D)
        features = adapter.dense_readout(out)[0]  # (T, P)
        return each_layer(adapter, state, cosine_maps(features, text, grid, adapter.prefix), grid)

    return maps


def block_method(change: LastBlock) -> ForwardMethod:
    """A ViT dense method as a ``"forward"`` method: one unchanged forward, the changed block read after."""
    return ForwardMethod(read=read_last_block, maps=block_maps(change))
