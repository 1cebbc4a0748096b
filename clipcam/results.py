"""Results: scores and raw maps per layer and prompt, with the geometry that places the maps on the
user's own pixels.

One type, ``Explanation``, holds any number of layers: ``Explainer.explain`` gives one layer,
``Explainer.sweep`` every chosen layer from the same forward pass. ``layer_maps`` (L, K, rows, cols)
are the method's raw values on the token grid (≥ 0, not normalised, comparable across prompts and
layers); the one-layer views (``layer``, ``grid_maps``, ``image_maps``, ``dead_reason``) read the only
layer, and ``at(layer)`` picks one layer out of several.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    """Scores and one map per layer and prompt for K prompts at L layers of one sublayer.

    ``layer_maps`` (L, K, rows, cols) are the method's raw values on the token grid, in the order of
    ``layers`` (1-based). ``image_maps`` / ``layer_image_maps`` are the same maps each min-max scaled
    to [0, 1] and placed on the original image's pixel grid, NaN where the model saw nothing. For the
    attention methods a layer is the start layer, and the sublayer is ``"self_attn"``.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,) the model's logits
    probs: np.ndarray  # (K,) softmax over the prompts, or one sigmoid per prompt (prob_kind)
    layers: tuple[int, ...]
    layer_maps: np.ndarray  # (L, K, rows, cols) float32
    geometry: CropGeometry
    image: Image.Image  # the RGB image that was explained (upright, as the user sees it)
    model: str
    sublayer: str
    target: str = DEFAULT_TARGET
    method: str = DEFAULT_METHOD
    dead_reasons: tuple[str | None, ...] = ()  # per layer: why it cannot affect the score, if it cannot
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    prob_kind: str = "softmax"  # "softmax": prompts compete (CLIP); "sigmoid": each on its own (SigLIP)
    family: str = "hf-clip"
    word_relevance: WordRelevance | None = None  # per prompt, token and word; the text side has its own layers

    def __post_init__(self) -> None:
        if not self.dead_reasons:
            object.__setattr__(self, "dead_reasons", (None,) * len(self.layers))
        shape = self.layer_maps.shape
        if (len(shape) != 4 or shape[0] != len(self.layers) or shape[1] != len(self.prompts)
                or len(self.dead_reasons) != len(self.layers)):
            raise ValueError(f"layer_maps of shape {shape} do not match {len(self.layers)} layer(s) × "
                             f"{len(self.prompts)} prompt(s), with one dead reason per layer.")

    # ----------------------------------------------------------------- one layer
    def _only(self) -> int:
        if len(self.layers) != 1:
            raise ValueError(f"This explanation holds {len(self.layers)} layers ({self.layers[0]} to "
                             f"{self.layers[-1]}); pick one with .at(layer), or read layer_maps.")
        return 0

    @property
    def layer(self) -> int:
        """The layer (1-based) of a one-layer explanation."""
        return self.layers[self._only()]

    @property
    def grid_maps(self) -> np.ndarray:
        """(K, rows, cols) raw maps of a one-layer explanation."""
        return self.layer_maps[self._only()]

    @property
    def dead_reason(self) -> str | None:
        """Why the one layer's sublayer cannot influence the image embedding, or None."""
        return self.dead_reasons[self._only()]

    @property
    def dead(self) -> bool:
        """True when the chosen (layer, sublayer) cannot influence the image embedding."""
        return self.dead_reason is not None

    @property
    def tokens(self) -> tuple[tuple[str, ...], ...] | None:
        """Each prompt's tokens as text, when word relevance was asked for."""
        return None if self.word_relevance is None else self.word_relevance.tokens

    @cached_property
    def image_maps(self) -> np.ndarray:
        """(K, H, W) float32 in [0, 1] on the original image, NaN outside the model's crop (one layer)."""
        return self.image_maps_at()

    def image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """Like ``image_maps`` on a (W, H) canvas covering the whole image (for display of large photos).

        shared=True scales all prompts by one common maximum instead of each on its own, so that a
        weak prompt's map looks weak.
        """
        return self.layer_image_maps_at(size, shared)[self._only()]

    def at(self, layer: int) -> Explanation:
        """This explanation's result for one of its layers."""
        if layer not in self.layers:
            raise ValueError(f"Layer {layer} is not in this explanation; it holds layers {list(self.layers)}.")
        i = self.layers.index(layer)
        return replace(self, layers=(layer,), layer_maps=self.layer_maps[i:i + 1], dead_reasons=(self.dead_reasons[i],))

    # ----------------------------------------------------------------- every layer
    @cached_property
    def layer_image_maps(self) -> np.ndarray:
        """(L, K, H, W) float32 in [0, 1] on the original image, NaN outside the crop."""
        return self.layer_image_maps_at(self.geometry.image_size)

    def layer_image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """(L, K, H, W) on a (W, H) canvas covering the whole image; shared=True scales the prompts
        of each layer by one common maximum."""
        maps = self.layer_maps
        scaled = np.stack([normalize_shared(m) for m in maps]) if shared else normalize_maps(maps)
        out = self.geometry.grid_to_image(scaled.reshape(-1, *scaled.shape[2:]), size)
        return out.reshape(*scaled.shape[:2], *out.shape[1:])
