"""Addressing inside CLIP's vision encoder: layers numbered for people, sublayers by name, the token grid.

Layers are numbered 1..N as people count them: layer 11 of ViT-B/32 is
``vision_model.encoder.layers[10]``. The token grid is read from the model's config
(``image_size // patch_size``: 7×7 for B/32, 16×16 for L/14, 24×24 for L/14-336), never assumed.
"""

from __future__ import annotations

import numbers

import torch
from transformers import CLIPModel

from ..constants import SUBLAYERS, check_choice


def num_layers(model: CLIPModel) -> int:
    """How many blocks the vision encoder has (12 for B/32, 24 for L/14)."""
    return len(model.vision_model.encoder.layers)


def token_grid(model: CLIPModel) -> tuple[int, int]:
    """(rows, cols) of patch tokens, from the vision config."""
    cfg = model.config.vision_config
    side = cfg.image_size // cfg.patch_size
    return side, side


def check_layer(layer: int, n_layers: int) -> int:
    """Return ``layer`` if it is a valid 1-based layer number, else raise ValueError listing the range."""
    if isinstance(layer, float) and layer.is_integer():
        layer = int(layer)  # sliders and JSON send whole numbers as floats
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise ValueError(f"Layer must be a whole number from 1 to {n_layers}; got {layer!r}.")
    layer = int(layer)
    if not 1 <= layer <= n_layers:
        raise ValueError(
            f"Layer {layer} is out of range: this model's vision encoder has layers 1 to {n_layers}."
        )
    return layer


def check_sublayer(sublayer: str) -> str:
    """Return ``sublayer`` if it is one of SUBLAYERS, else raise ValueError listing them."""
    return check_choice(sublayer, SUBLAYERS, "sublayer")


def target_module(model: CLIPModel, layer: int, sublayer: str) -> torch.nn.Module:
    """The module whose output is explained for a 1-based ``layer`` and a ``sublayer`` name."""
    block = model.vision_model.encoder.layers[check_layer(layer, num_layers(model)) - 1]
    if check_sublayer(sublayer) == "block":
        return block
    return block.get_submodule(sublayer)


def channels(vision_config, sublayer: str) -> int:
    """Width of a sublayer's output: the MLP's hidden size for mlp.fc1, the model width otherwise."""
    return vision_config.intermediate_size if check_sublayer(sublayer) == "mlp.fc1" else vision_config.hidden_size


def dead_reason(layer: int, n_layers: int, sublayer: str) -> str | None:
    """Why a (layer, sublayer) cannot influence the image embedding, or None when it can.

    The image embedding is read from the CLS token after the last block. In the last block,
    patch tokens reach the CLS token only through the keys and values of its attention; after
    the attention every token is processed on its own, so the patch tokens of q_proj, out_proj,
    layer_norm2, fc1, fc2 and the block output never reach the CLS token: their gradient is zero.
    """
    if layer != n_layers or sublayer in ("layer_norm1", "self_attn.k_proj", "self_attn.v_proj"):
        return None
    return (
        f"In the last layer ({layer}) the patch tokens of {sublayer} never reach the CLS token that "
        "CLIP reads the image embedding from, so their gradient is exactly zero and Grad-CAM has "
        "nothing to show. Pick an earlier layer, or layer_norm1, self_attn.k_proj or self_attn.v_proj."
    )
