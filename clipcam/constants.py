"""Named constants shared by the whole package: model aliases, sublayer names, limits.

Magic numbers live here once, so that the explainer, the command line and the app agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple, TypeVar

T = TypeVar("T")


def check_choice(value: T, choices: Iterable[object], what: str) -> T:
    """``value`` if it is one of ``choices``, else a ValueError naming the valid ones:
    "Unknown sublayer 'mlp.fc3': choose one of layer_norm1, ...". Shared by every named setting."""
    choices = list(choices)
    if value not in choices:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:79] + "…"  # the API can send megabytes: never echo them
        raise ValueError(f"Unknown {what} {shown}: choose one of {', '.join(map(str, choices))}.")
    return value

#: The project's own shapes-world CLIP, trained by tools/train_shapes.py and shipped in assets/.
SHAPES_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "shapes-clip"


class ModelInfo(NamedTuple):
    """What is known about a named model without loading it."""

    source: str  # Hugging Face hub id (or a path inside the project)
    layers: int  # vision-encoder layers
    description: str
    width: int = 0  # vision hidden size (0: read it from the config)
    mlp_width: int = 0  # vision MLP hidden size (mlp.fc1's output)
    family: str = "hf-clip"  # which adapter loads it (clipcam.models.families())


#: Short names a person can type. Layer counts let the UI set its slider without any download.
MODEL_INFO: dict[str, ModelInfo] = {
    "base": ModelInfo("openai/clip-vit-base-patch32", 12, "CLIP ViT-B/32, 7×7 patches", 768, 3072),
    "large": ModelInfo("openai/clip-vit-large-patch14", 24, "CLIP ViT-L/14, 16×16 patches", 1024, 4096),
    "shapes": ModelInfo(str(SHAPES_MODEL_DIR), 4, "shapes world, offline, trained by clipcam"),
    "siglip": ModelInfo("google/siglip-base-patch16-224", 12, "SigLIP B/16, 14×14 patches, sigmoid scores", 768, 3072,
                        "siglip"),
    "rn50": ModelInfo("hf-hub:timm/resnet50_clip.openai", 4, "OpenAI CLIP RN50 (open_clip), 4 stages", 2048, 2048,
                      "open_clip-resnet"),
    "laion-b32": ModelInfo("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 12, "LAION-2B ViT-B/32 (open_clip)",
                           768, 3072, "open_clip-vit"),
}

#: Short names mapped to their sources.
MODEL_ALIASES: dict[str, str] = {name: info.source for name, info in MODEL_INFO.items()}

#: The sublayers of one Hugging Face CLIP or SigLIP vision-encoder block that can be explained, in forward order.
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

#: What is explained for prompt k: CLIP's raw logit (the reference notebook's choice), the
#: log-softmax over the prompt list, or the logit minus the mean of the prompts' logits. The
#: last two make a prompt's map show what favours it *over the other prompts*.
TARGETS: tuple[str, ...] = ("logit", "log_softmax", "contrast")
DEFAULT_TARGET = "logit"

#: The most prompts one call may explain: every prompt costs one gradient per hooked layer.
MAX_PROMPTS = 64

#: The longest prompt, in characters, checked before anything tokenises it. CLIP reads at most 77
#: tokens (about 300 characters of English); a longer text only costs time and memory.
MAX_PROMPT_CHARS = 300

#: The reference pipeline's normalisation adds this to the denominator of a min-max scaling.
NORM_EPS = 1e-7
