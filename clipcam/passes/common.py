"""What every pass takes and returns, and the pieces they share: the model's logits, groups of
prompts sized by their gradients' bytes, and whether a pass goes one block at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import numpy as np
import torch

from ..methods import Method
from ..models.base import ModelAdapter
from ..precision import Precision

#: progress(done, total): called as a slow method's forward passes complete (Score-CAM), or as a
#: block-by-block pass goes back through the layers (clipcam.passes.blockwise); the app checks its
#: time limit and whether the person is still there at each call.
Progress = Callable[[int, int], None]
#: What a pass returns: the model's own logits (K,) and one raw map (K, rows, cols) float32 per
#: chosen layer, in the order of ``PassInput.layers``, each on that layer's grid.
PassOutput = tuple[np.ndarray, list[np.ndarray]]

#: The most bytes of gradients one batched backward may hold: the prompts are differentiated in
#: groups whose gradients at the hooked activations fit in it (all at once for one layer of base or
#: large; a sweep of large's mlp.fc1, 101 MB per prompt, one prompt at a time).
GRADIENT_BYTES = 64 * 2**20
#: A gradient pass that spans more blocks than this backpropagates one block at a time, where the
#: family allows it (clipcam.passes.blockwise): it holds one block's graph instead of all of them,
#: for one more forward through those blocks. A one-layer explain near the end (the default) stays direct.
DIRECT_BLOCKS = 4
#: Block by block, the prompts go back through a block in groups whose gradients there (about the
#: block's saved activations per prompt, counted as it runs again) fit in this many bytes.
BLOCK_GRADIENT_BYTES = 32 * 2**20


@dataclass(frozen=True)
class PassInput:
    """Everything a pass is given, checked by the explainer.

    pixels: the model's input for one image (the adapter's ``preprocess``); text (K, P): unit-norm
    text embeddings; layers: the chosen 1-based layers, each once; grids: each chosen layer's
    (rows, cols); sublayer: the checked sublayer (read by the kinds it applies to); target: one of
    clipcam.constants.TARGETS; method: the record, whose ``compute`` has its kind's form
    (clipcam.methods.kinds); precision: what the model's forward runs in (None: the adapter's own;
    the explainer gives float32 for a method that bfloat16 would change, ``Method.float32``)."""

    adapter: ModelAdapter
    pixels: torch.Tensor
    text: torch.Tensor
    layers: tuple[int, ...]
    grids: dict[int, tuple[int, int]]
    sublayer: str
    target: str
    method: Method
    progress: Progress | None = None
    precision: Precision | None = None

    def forward_context(self) -> ContextManager:
        """The context every forward of the model in this pass runs in (clipcam.precision): enter it
        around the model's own forward only, and read float32 out of it."""
        return (self.precision or self.adapter.precision).forward(self.adapter.device)

    @property
    def first(self) -> int:
        """The earliest chosen layer: where a pass from there to the last starts."""
        return min(self.layers)


def batch_logits(adapter: ModelAdapter, pixels: torch.Tensor, text: torch.Tensor,
                 precision: Precision | None = None) -> torch.Tensor:
    """The model's logits (B, K), exactly as its own forward computes them. The image tower runs in
    ``precision`` (default the model's: autocast for bfloat16); the scores from its embedding are
    float32, so that probabilities keep their digits."""
    with (precision or adapter.precision).forward(adapter.device):
        features = adapter.image_features(pixels)  # (B, P)
    return adapter.logits(features.float(), text)


def logits_of(inp: PassInput) -> torch.Tensor:
    """The logits (K,) of the pass's one image."""
    return batch_logits(inp.adapter, inp.pixels, inp.text, inp.precision)[0]


def prompt_eye(logits: torch.Tensor) -> torch.Tensor:
    """(K, K) identity in the logits' dtype and device: row k seeds prompt k's gradient."""
    k = logits.shape[0]
    return torch.eye(k, dtype=logits.dtype, device=logits.device)


def prompt_chunks(eye: torch.Tensor, bytes_per_prompt: int, budget: int | None = None) -> list[torch.Tensor]:
    """The rows of ``eye`` (K, K) in consecutive groups whose gradients fit in ``budget`` bytes
    (default GRADIENT_BYTES), at least one prompt per group. Each prompt's map depends only on its
    own gradient, so the groups give the same maps as one batch, with the memory of one group."""
    per = max(1, (GRADIENT_BYTES if budget is None else budget) // max(1, bytes_per_prompt))
    return [eye[at:at + per] for at in range(0, eye.shape[0], per)]


def block_chunks(eye: torch.Tensor, bytes_per_prompt: int) -> list[torch.Tensor]:
    """``prompt_chunks`` for one block of a block-by-block pass (BLOCK_GRADIENT_BYTES)."""
    return prompt_chunks(eye, bytes_per_prompt, BLOCK_GRADIENT_BYTES)


def goes_blockwise(adapter: ModelAdapter, first: int) -> bool:
    """Whether a gradient pass from layer ``first`` to the last goes one block at a time."""
    return adapter.blocks() is not None and adapter.num_layers - first + 1 > DIRECT_BLOCKS


def zeros_if_none(grad: torch.Tensor | None, rows: int, like: torch.Tensor) -> torch.Tensor:
    """The gradient, or zeros (rows, *like) where the activation cannot reach the score."""
    return torch.zeros((rows, *like.shape), dtype=like.dtype, device=like.device) if grad is None else grad


def numpy_logits(logits: torch.Tensor) -> np.ndarray:
    """Logits (K,) as float32 numpy, out of any graph."""
    return logits.detach().float().cpu().numpy()


def per_layer(maps: Sequence[np.ndarray], first: int, layers: Sequence[int]) -> list[np.ndarray]:
    """Maps for every start layer from ``first`` on → the chosen layers' maps, in their order."""
    return [maps[layer - first] for layer in layers]
