"""transformers' ``Siglip2Model``, SigLIP 2's variable-resolution (NaFlex) variant, as a model adapter.

The vision tower is SigLIP's (the same blocks, no class token, an attention-pooling head, scores
``logit_scale`` × cosine + ``logit_bias``, one sigmoid per prompt), so the adapter is SigLIP's
except for the input. NaFlex's processor (``Siglip2ImageProcessor``) keeps the image's aspect
ratio: it squashes the whole image, never cropping, to the largest size whose sides are multiples
of the patch size p and whose patches fit ``max_num_patches`` (clipcam.geometry.naflex_size),
cuts it into patches row by row, (N, 3·p·p), and pads them to ``max_num_patches`` with a
``pixel_attention_mask``; the position embeddings are resized to that image's own grid
(``spatial_shapes``). So the maps cover the whole image on a non-square grid that changes with
every image, and every captured sequence has padding after its rows·cols real tokens (the
explainer drops it; the model masks it out of the encoder's attention and the pooling head).

Score-CAM masks the squashed image before patching; since patching only moves pixels, that is
the patches multiplied by the patched masks, which is how ``mask_inputs`` does it.

Text: SigLIP 2's Gemma tokenizer, padded to 64 tokens; the last token is pooled, as SigLIP's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image

from ..geometry import CropGeometry
from .hf_clip import SiglipAdapter


@dataclass(frozen=True, eq=False)
class NaFlexInput:
    """One image (or a batch of B masked copies of it) as Siglip2Model's vision tower takes it.

    pixel_values (B, N, 3·p·p): the patches row by row, then zeros up to N = max_num_patches;
    pixel_attention_mask (B, N): 1 for the rows·cols real patches, 0 for the padding;
    spatial_shapes (B, 2): (rows, cols) of the image's patch grid.
    """

    pixel_values: torch.Tensor
    pixel_attention_mask: torch.Tensor
    spatial_shapes: torch.Tensor

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the first image's grid."""
        rows, cols = self.spatial_shapes[0].tolist()
        return int(rows), int(cols)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """images (B, C, H, W) → patches (B, (H/p)·(W/p), p·p·C), row by row, each patch's pixels in
    (y, x, channel) order: the layout of transformers' convert_image_to_patches."""
    b, c, h, w = images.shape
    p = patch_size
    patches = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, p, p, C)
    return patches.reshape(b, (h // p) * (w // p), p * p * c)


class Siglip2NaFlexAdapter(SiglipAdapter):
    """transformers' Siglip2Model: SigLIP with aspect-preserving inputs and a grid per image."""

    family = "siglip2-naflex"
    family_label = "SigLIP 2 NaFlex (Hugging Face)"
    model_type = "siglip2"  # the NaFlex variant: SigLIP 2's fixed-resolution checkpoints are "siglip"
    model_class = "Siglip2Model"
    short_names = ()

    def __init__(self, name, source, model, device, dtype, tokenizer, image_processor) -> None:
        super().__init__(name, source, model, device, dtype, tokenizer, image_processor)
        self.patch_size = int(image_processor.patch_size)
        self.max_num_patches = int(image_processor.max_num_patches)
        model_patch = model.config.vision_config.patch_size
        if self.patch_size != model_patch:
            raise ValueError(f"The image processor cuts {self.patch_size}-pixel patches but the vision model "
                             f"expects {model_patch}-pixel patches.")
        if not getattr(image_processor, "do_resize", True):
            raise ValueError("The image processor does not resize images (do_resize is off), so an image's "
                             "patches need not fit its max_num_patches; clipcam explains NaFlex models that resize.")

    # ------------------------------------------------------------------ layers
    @property
    def grid(self) -> tuple[int, int]:
        """The grid of a square image (the most n × n patches within max_num_patches); every image
        gets its own (see ``geometry``)."""
        side = math.isqrt(self.max_num_patches)
        return side, side

    # ------------------------------------------------------------------ inputs
    def preprocess(self, rgb: Image.Image) -> NaFlexInput:
        """The processor's patches, padding mask and grid; the grid must be the one ``geometry``
        computes, since the maps are laid out and placed by it."""
        out = self.image_processor(images=rgb, return_tensors="pt")
        inputs = NaFlexInput(
            pixel_values=out["pixel_values"].to(self.device, self.dtype),  # (1, N, 3·p·p)
            pixel_attention_mask=out["pixel_attention_mask"].to(self.device),  # (1, N)
            spatial_shapes=out["spatial_shapes"].to(self.device),  # (1, 2)
        )
        expected = self.geometry(rgb.size).grid
        if inputs.grid != expected:  # a processor whose resize clipcam does not reproduce
            raise RuntimeError(f"The image processor made a {inputs.grid[0]}×{inputs.grid[1]} patch grid for a "
                               f"{rgb.size[0]}×{rgb.size[1]} image, where clipcam's geometry expects "
                               f"{expected[0]}×{expected[1]}.")
        return inputs

    def geometry(self, image_size: tuple[int, int], layer: int | None = None) -> CropGeometry:
        """A squash of the whole image to naflex_size(image_size), seen as its own (H'/p, W'/p) grid."""
        return CropGeometry.naflex(image_size, self.patch_size, self.max_num_patches)

    def input_size(self, inputs: NaFlexInput) -> tuple[int, int]:
        """(H', W') of the squashed image that the patches were cut from."""
        rows, cols = inputs.grid
        return rows * self.patch_size, cols * self.patch_size

    def mask_inputs(self, inputs: NaFlexInput, masks: torch.Tensor) -> NaFlexInput:
        """The squashed image multiplied by each mask (B, 1, H', W'), then cut into patches: the real
        patches times the patched masks; the padding stays zero and masked."""
        rows, cols = inputs.grid
        b, real = masks.shape[0], rows * cols
        channels = inputs.pixel_values.shape[-1] // self.patch_size ** 2
        patched = patchify(masks.float().expand(b, channels, -1, -1), self.patch_size)  # (B, rows·cols, 3·p·p)
        pixels = inputs.pixel_values.float().repeat(b, 1, 1)  # (B, N, 3·p·p)
        pixels[:, :real] *= patched
        return NaFlexInput(pixels.to(inputs.pixel_values.dtype), inputs.pixel_attention_mask.expand(b, -1),
                           inputs.spatial_shapes.expand(b, -1))

    # ------------------------------------------------------------------ scores
    def image_features(self, inputs: NaFlexInput) -> torch.Tensor:
        """The pooling head's output (B, P), the padding masked out of the encoder and the head."""
        return self.model.vision_model(pixel_values=inputs.pixel_values, pixel_attention_mask=inputs.pixel_attention_mask,
                                       spatial_shapes=inputs.spatial_shapes).pooler_output
