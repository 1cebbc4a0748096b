"""The decomposition of one image's scores for K prompts: what Explainer.decompose returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..geometry import CropGeometry
from ..models.base import ModelAdapter
from .capture import CLASS_TOKEN_FAMILIES
from .terms import split_scores


@dataclass(frozen=True)
class Decomposition:
    """Each prompt's logit as an exact sum: ``embed + heads.sum((1, 2)) + mlps.sum(1) == total``.

    heads (K, L, H): head h of layer l's direct contribution to prompt k's logit (for SigLIP and
    ResNets L = 1, the attention-pooling head); head_maps (K, L, H, rows, cols): the same split over
    the patch tokens on the grid, and head_cls (K, L, H) the class token's own share (a ResNet pool's
    mean token; zero for SigLIP, which has none), so ``head_maps.sum((-2, -1)) + head_cls == heads``;
    mlps (K, L); embed (K,) (SigLIP's logit bias included); total (K,): the model's own logits.
    layer_names: what each of the L layers is, for people. All float32.
    """

    prompts: tuple[str, ...]
    heads: np.ndarray
    head_maps: np.ndarray
    head_cls: np.ndarray
    mlps: np.ndarray
    embed: np.ndarray
    total: np.ndarray
    layer_names: tuple[str, ...]
    geometry: CropGeometry
    image: Image.Image
    model: str
    family: str

    def image_map_of(self, layer: int, head: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Head ``head`` of layer ``layer`` (both 1-based)'s per-patch contributions mapped onto the
        person's image: (K, H_img, W_img) float32 in logit units per patch, NaN outside the crop;
        ``size`` (W, H): a smaller canvas over the same image."""
        layers, heads = self.heads.shape[1:]
        if not (1 <= layer <= layers and 1 <= head <= heads):
            raise ValueError(f"Pick a layer from 1 to {layers} and a head from 1 to {heads}.")
        return self.geometry.grid_to_image(self.head_maps[:, layer - 1, head - 1], size)


def decomposition(adapter: ModelAdapter, pixels: Any, text: torch.Tensor, prompts: tuple[str, ...],
                  rgb: Image.Image, geometry: CropGeometry) -> Decomposition:
    """The Decomposition of one image (``pixels``, batch 1) for unit-norm text embeddings (K, E)."""
    scores = split_scores(adapter, pixels, text)
    tokens = scores.tokens[0]  # (K, L, H, T)
    prefix = scores.pieces.prefix
    rows, cols = geometry.grid
    valid = scores.pieces.valid
    grid = tokens[..., prefix:] if valid is None else tokens[..., valid[0]]  # (K, L, H, rows·cols)
    head_maps = grid.reshape(*grid.shape[:-1], rows, cols)
    head_cls = tokens[..., :prefix].sum(-1)  # (K, L, H): zero when there is no prefix token
    count = tokens.shape[1]
    names = tuple(str(i) for i in range(1, count + 1)) if adapter.family in CLASS_TOKEN_FAMILIES else ("pool",)
    numpy = lambda x: x.detach().float().cpu().numpy().astype(np.float32)  # noqa: E731
    return Decomposition(
        prompts=prompts, heads=numpy(tokens.sum(-1)), head_maps=numpy(head_maps), head_cls=numpy(head_cls),
        mlps=numpy(scores.mlps[0]), embed=numpy(scores.embed[0]), total=numpy(scores.total[0]), layer_names=names,
        geometry=geometry, image=rgb, model=adapter.name, family=adapter.family,
    )
