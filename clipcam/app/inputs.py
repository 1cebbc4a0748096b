"""The app's boundary: every input of a request checked once, where it enters.

The HTTP API bypasses the widgets, so nothing here trusts them: the prompts (bounded before they
are split), the image (its size read from its header before it is decoded), the choices, the
display settings, Compare's depth, Score-CAM's forward passes, and a share link's query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlencode

from ..constants import TARGETS, check_choice
from ..images import check_file_size, load_image
from ..methods import METHODS
from ..prompts import parse_prompts
from ..render import COLORMAPS
from .choices import family_sublayers
from .examples import EXAMPLES

#: The most masked forward passes one app request may run (Score-CAM: one per channel and layer);
#: app.py reads CLIPCAM_MAX_FORWARDS. 5000 covers one layer of any sublayer of base and large
#: (ViT-L's mlp.fc1 has 4096 channels) and a sweep of the shapes model.
MAX_FORWARDS = 5000


def check_forwards(forwards: int, limit: int, layers: int, sublayer: str, models: int = 1) -> None:
    """Refuse a request whose masked forward passes exceed the server's limit, saying what to change.
    ``forwards`` counts every model of the request (Compare runs two)."""
    if forwards > limit:
        if models > 1:
            where = f"{models} models together"
        else:
            where = f"{layers} layers × {forwards // layers}" if layers > 1 else f"{forwards}"
            where += f" channels of {sublayer}"
        raise ValueError(
            f"Score-CAM would run {forwards} forward passes here ({where}), above this "
            f"server's limit of {limit} (CLIPCAM_MAX_FORWARDS). Pick a narrower sublayer (mlp.fc1 is 4× wider), "
            "one layer instead of a sweep, or a gradient method.")


def check_view(colormap: str, alpha: float) -> tuple[str, float]:
    """Validate the display settings (the HTTP API bypasses the widgets)."""
    check_choice(colormap, list(COLORMAPS), "colour map")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"Overlay opacity must be a number between 0 and 1; got {alpha!r}.") from None
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Overlay opacity must be between 0 and 1; got {alpha}.")
    return colormap, alpha


@dataclass(frozen=True)
class Inputs:
    """A request's inputs after check_request: the image (a path when not decoded yet), the prompts,
    notices about them, and the display settings."""

    image: object
    prompts: list[str]
    notes: list[str]
    colormap: str
    alpha: float
    shared: bool


def check_request(image: object, prompts_text: object, sublayer: str, target: str, method: str, colormap: str,
                  alpha: object, shared: object, max_pixels: int, decode: bool = True) -> Inputs:
    """Check what every event shares, once, where it enters (the HTTP API bypasses the widgets).

    The prompts first (their length is bounded before anything else reads them), then the image, the
    sublayer (any family's name: the explainer checks it against the model), target, method and
    display settings. decode=False checks the image file's size from its header only and hands the
    path on, so that the explainer decodes it once; raises ValueError with one sentence.
    """
    prompts, notes = parse_prompts(prompts_text)
    if image is None:
        raise ValueError("No image: upload an image, paste one, or click an example.")
    check_choice(sublayer, family_sublayers(), "sublayer")
    check_choice(target, TARGETS, "target")
    check_choice(method, METHODS, "method")
    colormap, alpha = check_view(colormap, alpha)
    if decode:
        image, image_notes = load_image(image, max_pixels=max_pixels)
        notes = image_notes + notes
    else:
        check_file_size(image, max_pixels)
    return Inputs(image, prompts, notes, colormap, alpha, bool(shared))


def check_depth(depth: object) -> float:
    """Compare's relative depth, in (0, 1]."""
    try:
        value = float(depth)
    except (TypeError, ValueError):
        raise ValueError(f"Relative depth must be a number above 0 and at most 1; got {depth!r}.") from None
    if not 0.0 < value <= 1.0:
        raise ValueError(f"Relative depth must be above 0 and at most 1; got {value}.")
    return value


def relative_layer(depth: float, n_layers: int) -> int:
    """The layer at relative depth ``depth`` in (0, 1] of an n-layer encoder (1-based, at least 1)."""
    return min(n_layers, max(1, int(round(depth * n_layers))))


# ----------------------------------------------------------------- share links
#: The settings a share link carries, in its query string (the image only as an example's key:
#: an upload stays on this server).
SHARE_KEYS = ("example", "model", "layer", "sublayer", "target", "method", "colormap", "alpha", "shared")


def share_query(settings: dict) -> str:
    """The query string of a link that restores ``settings`` (keys of SHARE_KEYS; others ignored)."""
    return urlencode({k: settings[k] for k in SHARE_KEYS if settings.get(k) not in (None, "")})


def read_share(query: dict, models: Sequence[str]) -> dict:
    """The settings of a share link's query, checked: unknown keys and bad values are dropped, never
    raised (a link is not the person's own input). Returns only the keys that were valid."""
    out: dict = {}
    example = query.get("example")
    if example in {e.key for e in EXAMPLES}:
        out["example"] = example
    if query.get("model") in models:
        out["model"] = query["model"]
    try:
        layer = int(query.get("layer", ""))
        if 1 <= layer <= 1000:
            out["layer"] = layer
    except ValueError:
        pass
    if query.get("sublayer") in family_sublayers():
        out["sublayer"] = query["sublayer"]
    if query.get("target") in TARGETS:
        out["target"] = query["target"]
    if query.get("method") in METHODS:
        out["method"] = query["method"]
    if query.get("colormap") in COLORMAPS:
        out["colormap"] = query["colormap"]
    try:
        alpha = float(query.get("alpha", ""))
        if 0.0 <= alpha <= 1.0:
            out["alpha"] = alpha
    except ValueError:
        pass
    if query.get("shared") in ("True", "False", "true", "false", "1", "0"):
        out["shared"] = query["shared"] in ("True", "true", "1")
    return out
