"""Named constants shared by the whole package: sublayer names, targets, limits.

Magic numbers live here once, so that the explainer, the command line and the app agree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Iterable, TypeVar

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

#: The package data (clipcam/assets/, shipped in the wheel), read through importlib.resources so an
#: installed clipcam finds it as a git checkout does. The loaders need real folders: clipcam is installed
#: as files (never zipped), so the resource is a path on disk.
PACKAGE_ASSETS = Path(str(files("clipcam") / "assets"))
#: The project's own shapes-world models, trained by tools/train_shapes.py: a CLIP (transformers), a
#: SigLIP (transformers) and an open_clip ResNet CLIP.
SHAPES_MODEL_DIR = PACKAGE_ASSETS / "shapes-clip"
SHAPES_SIGLIP_DIR = PACKAGE_ASSETS / "shapes-siglip"
SHAPES_RN_DIR = PACKAGE_ASSETS / "shapes-rn"
#: The shapes-world example scenes (tools/make_shapes_examples.py): scene-1.png ... scene-3.png.
SHAPES_SCENES_DIR = PACKAGE_ASSETS / "shapes"


#: The sublayers of one Hugging Face CLIP or SigLIP vision-encoder block (HFClipAdapter.sublayers;
#: every family's own are on its adapter): also the evaluation's and the benchmarks' default list.
#: In forward order; "block" is the output of the whole block (the residual stream after the MLP).
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

#: HF CLIP's default sublayer (HFClipAdapter.default_sublayer; each family declares its own).
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
