"""Results: scores and one raw map per prompt (and per layer for a sweep), with the geometry that
places the maps on the user's own pixels.

``grid_maps`` are the method's raw values on the token grid (≥ 0, not normalised, comparable
across prompts); ``image_maps`` are each scaled to [0, 1] on the original image, NaN where the
model saw nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .constants import DEFAULT_TARGET
from .geometry import CropGeometry
from .methods import DEFAULT_METHOD
from .methods.cam import normalize_maps, normalize_shared

if TYPE_CHECKING:
    from .words import WordRelevance


@dataclass(frozen=True)
class Explanation:
    """Scores and one map per prompt for K prompts at one layer and sublayer (or start layer).

    ``grid_maps`` (K, rows, cols) are the method's raw values on the token grid (≥ 0, not normalised,
    comparable across prompts). ``image_maps`` (K, H, W) are the same maps each min-max scaled to
    [0, 1] and placed on the original image's pixel grid, NaN where the model saw nothing.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,) CLIP logits
    probs: np.ndarray  # (K,) softmax over the prompts, or one sigmoid per prompt (prob_kind)
    grid_maps: np.ndarray  # (K, rows, cols) float32
    geometry: CropGeometry
    image: Image.Image  # the RGB image that was explained (upright, as the user sees it)
    model: str
    layer: int
    sublayer: str
    target: str = DEFAULT_TARGET
    method: str = DEFAULT_METHOD
    dead_reason: str | None = None  # why this sublayer cannot affect the score, if it cannot
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    prob_kind: str = "softmax"  # "softmax": prompts compete (CLIP); "sigmoid": each on its own (SigLIP)
    family: str = "hf-clip"
    word_relevance: WordRelevance | None = None  # per prompt, per token and per word (explain(words=...))

    @property
    def tokens(self) -> tuple[tuple[str, ...], ...] | None:
        """Each prompt's tokens as text, when word relevance was asked for."""
        return None if self.word_relevance is None else self.word_relevance.tokens

    @property
    def dead(self) -> bool:
        """True when the chosen (layer, sublayer) cannot influence the image embedding."""
        return self.dead_reason is not None

    @cached_property
    def image_maps(self) -> np.ndarray:
        """(K, H, W) float32 in [0, 1] on the original image, NaN outside the model's crop."""
        return self.geometry.grid_to_image(normalize_maps(self.grid_maps))

    def image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """Like ``image_maps`` on a (W, H) canvas covering the whole image (for display of large photos).

        shared=True scales all prompts by one common maximum instead of each on its own, so that a
        weak prompt's map looks weak.
        """
        scaled = normalize_shared(self.grid_maps) if shared else normalize_maps(self.grid_maps)
        return self.geometry.grid_to_image(scaled, size)


@dataclass(frozen=True)
class Sweep:
    """Scores and maps for K prompts at every chosen layer, from one forward pass.

    ``grid_maps`` is (L, K, rows, cols) raw maps; ``layers`` holds the 1-based layer numbers.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,)
    probs: np.ndarray  # (K,)
    layers: tuple[int, ...]
    grid_maps: np.ndarray  # (L, K, rows, cols) float32
    geometry: CropGeometry
    image: Image.Image
    model: str
    sublayer: str
    target: str = DEFAULT_TARGET
    method: str = DEFAULT_METHOD
    dead_reasons: tuple[str | None, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    prob_kind: str = "softmax"
    family: str = "hf-clip"
    word_relevance: WordRelevance | None = None  # the same for every layer: the text side has its own layers

    @property
    def tokens(self) -> tuple[tuple[str, ...], ...] | None:
        return None if self.word_relevance is None else self.word_relevance.tokens

    @cached_property
    def image_maps(self) -> np.ndarray:
        """(L, K, H, W) float32 in [0, 1] on the original image, NaN outside the crop."""
        return self.image_maps_at(self.geometry.image_size)

    def image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """(L, K, H, W) on a (W, H) canvas covering the whole image; shared=True scales the prompts
        of each layer by one common maximum."""
        scaled = np.stack([normalize_shared(m) for m in self.grid_maps]) if shared else normalize_maps(self.grid_maps)
        flat = scaled.reshape(-1, *scaled.shape[2:])
        out = self.geometry.grid_to_image(flat, size)
        return out.reshape(*scaled.shape[:2], *out.shape[1:])

    def at(self, layer: int) -> Explanation:
        """The sweep's result for one layer, as an Explanation."""
        i = self.layers.index(layer)
        return Explanation(
            prompts=self.prompts, logits=self.logits, probs=self.probs, grid_maps=self.grid_maps[i],
            geometry=self.geometry, image=self.image, model=self.model, layer=layer,
            sublayer=self.sublayer, target=self.target, method=self.method, dead_reason=self.dead_reasons[i], notes=self.notes, seconds=self.seconds,
            prob_kind=self.prob_kind, family=self.family, word_relevance=self.word_relevance,
        )
