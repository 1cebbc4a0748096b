"""Named constants shared by the whole package: model aliases, sublayer names, limits.

Magic numbers live here once, so that the explainer, the command line and the app agree.
"""

from __future__ import annotations

#: Short names a person can type, mapped to Hugging Face hub ids.
MODEL_ALIASES: dict[str, str] = {
    "base": "openai/clip-vit-base-patch32",
    "large": "openai/clip-vit-large-patch14",
}

#: The sublayers of one CLIP vision-encoder block that can be explained, in forward order.
#: "block" is the output of the whole block (the residual stream after the MLP).
SUBLAYERS: tuple[str, ...] = (
    "layer_norm1",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "layer_norm2",
    "mlp.fc1",
    "mlp.fc2",
    "block",
)

DEFAULT_SUBLAYER = "mlp.fc1"

#: The most prompts one call may explain: every prompt costs one gradient per hooked layer.
MAX_PROMPTS = 64

#: The reference pipeline's normalisation adds this to the denominator of a min-max scaling.
NORM_EPS = 1e-7
