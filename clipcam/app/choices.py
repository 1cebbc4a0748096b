"""What the app offers: the models, the methods each model's family runs, and where each starts.

A short-named model's measured starting settings are data beside its entry in the family registry
(clipcam.models.registry.start_settings, each citing its BENCHMARKS.md section); every other
model starts on its family's defaults and the app's method where the family runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from ..constants import DEFAULT_TARGET, check_choice
from ..methods import DEFAULT_METHOD, METHODS, REGISTRY, get_method, supported_methods
from ..models import MODEL_INFO, families, load_model, start_settings, sublayer_names, unavailable_reason, wide_sublayers
from ..models.base import CAPABILITIES, ModelAdapter
from ..words import WORD_REGISTRY

#: The method the app starts with where a model has no measured settings and its family runs it:
#: the best measured on the shapes-world CLIP (BENCHMARKS.md, "Quality per model family: shapes
#: world"). The hub models' real weights cannot be measured here; they start from the
#: second-to-last layer, where LeGrad's authors start on CLIP.
APP_METHOD = "chefer"


def model_defaults(name: str, n_layers: int) -> tuple[int, str, str, str]:
    """(layer, sublayer, target, method) a model starts with in the app: its family's default
    sublayer, and the app's method where the family supports it (SigLIP has no class token, so it
    starts on LeGrad, which its authors define for SigLIP; CNNs start on Grad-CAM at the last stage)."""
    start = start_settings(name)
    if start is not None:
        return max(1, n_layers - start.from_end), start.sublayer, start.target, start.method
    adapter = family_class(name)
    supported = supported_methods(adapter.capabilities)
    method = next(m for m in (APP_METHOD, "legrad", DEFAULT_METHOD) if m in supported)
    from_end = 0 if adapter.layer_noun == "stage" else 1
    return max(1, n_layers - from_end), adapter.default_sublayer, DEFAULT_TARGET, method


def method_layer(name: str, method: str, n_layers: int) -> int:
    """The layer a method starts on for a model when a person switches to it: the methods that
    start at a layer from the model's starting layer (model_defaults), the methods that read a
    layer where they measured best (the registry's ``cam_layer``; elsewhere the model's default)."""
    start, record = start_settings(name), get_method(method)
    if record.layer_role == "reads" and start is not None and start.cam_layer is not None:
        return min(start.cam_layer, n_layers)
    if record.default_layer is not None:  # the authors' own start (GEM, CLIP Surgery: the last 6 blocks)
        return record.default_layer(n_layers, family_class(name).capabilities)
    return model_defaults(name, n_layers)[0]


# ----------------------------------------------------------------- models
def allowed_models(env: str | None = None) -> list[str]:
    """The models the web UI offers: CLIPCAM_MODELS (comma-separated names, ids or paths), else the aliases."""
    raw = os.environ.get("CLIPCAM_MODELS", "") if env is None else env
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return names or list(MODEL_INFO)


def model_label(name: str) -> str:
    """What the model dropdown shows for a model name."""
    if name in MODEL_INFO:
        info = MODEL_INFO[name]
        return f"{name} — {info.description}"
    return f"{Path(name).name or name}"


def model_layers(name: str) -> int:
    """Number of layers of a model: known for the short names, else read from the loaded model."""
    if name in MODEL_INFO:
        return MODEL_INFO[name].layers
    return load_model(name).num_layers


def family_class(name: str) -> type[ModelAdapter]:
    """The adapter class of a model's family: known for the short names, else from the loaded model
    (Hugging Face CLIP when it cannot be loaded now, so that the page still works)."""
    if name in MODEL_INFO:
        return families()[MODEL_INFO[name].family]
    try:
        return type(load_model(name))
    except Exception:  # noqa: BLE001 - unreachable now: the page falls back to CLIP's settings
        return families()["hf-clip"]


def family_sublayers() -> list[str]:
    """Every family's sublayer names, in a stable order (what the app's server accepts)."""
    return sublayer_names()


def startup_model(models: Sequence[str], reason_for: Callable[[str], str | None] | None = None) -> tuple[str, str]:
    """(model to show first, notice): the first allowed model, or the offline shapes model with a
    sentence saying why when the first one cannot be loaded now (no network, not cached)."""
    first = models[0]
    if first == "shapes" or "shapes" not in models:
        return first, ""
    reason = (reason_for or unavailable_reason)(first)
    if reason is None:
        return first, ""
    return "shapes", (f"ℹ️ Showing the offline **shapes** model because {reason} "
                      f"Pick {first} again once the hub can be reached.")


#: Compare's right-hand model for a left-hand one, where one is measured to make a telling pair: the
#: shapes world's CLIP against its SigLIP (both offline, so Compare runs on both sides without the hub).
COMPARE_PARTNERS: dict[str, str] = {"shapes": "shapes-siglip"}


def compare_partner(left: str, models: Sequence[str]) -> str:
    """Compare's right-hand model when the page opens on ``left``: its partner (COMPARE_PARTNERS) when
    offered, else the last offered model that is not ``left`` (``left`` when it is the only one)."""
    partner = COMPARE_PARTNERS.get(left)
    if partner in models:
        return partner
    return next((m for m in reversed(models) if m != left), left)


def model_problem(name: str, reason_for: Callable[[str], str | None] | None = None) -> str:
    """A sentence for the page when a model cannot be loaded now ("" when it can)."""
    reason = (reason_for or unavailable_reason)(name)
    if reason is None:
        return ""
    alternative = " Pick **shapes**, which works offline." if name != "shapes" else ""
    return f"⚠️ **{name}** cannot be loaded now: {reason}{alternative}"


# ----------------------------------------------------------------- methods
#: What the method dropdown shows, from the method registry.
METHOD_LABELS: dict[str, str] = {name: m.label for name, m in REGISTRY.items()}

#: The word-relevance control: off, or a method that shades each prompt's words (clipcam.words).
WORD_CHOICES: list[tuple[str, str]] = [("Off", "off")] + [(m.label, m.name) for m in WORD_REGISTRY.values()]
#: Integrated gradients: signed (a wrong word shows as the most negative) and the library method that
#: finds a wrong word most often and orders words for deletion best on the shapes CLIP (BENCHMARKS.md,
#: "Which words matter"); a text pass of 16 path points, run after the heatmaps are on the page.
DEFAULT_WORDS = "intgrad"


def word_method(words: str) -> str | None:
    """The word method a request asks for, None for off (the HTTP API bypasses the dropdown)."""
    check_choice(words, [name for _, name in WORD_CHOICES], "word method")
    return None if words == "off" else words


def short_name(method: str) -> str:
    """A method's name for people, without the dropdown's remark: "Score-CAM", "LeGrad"."""
    return get_method(method).short


def method_note(method: str, forwards: int = 0) -> str:
    """One sentence about a method for the app: what it reads, its paper, and how slow it is."""
    record = get_method(method)
    about = f"{record.short} ({record.paper}): {record.about}"
    if record.layer_role == "starts":
        return f"{about}. It reads attention, not a sublayer: the layer is where it starts."
    if record.cost == "per channel":
        count = f"{forwards} forward passes for this model and sublayer" if forwards else "one forward pass per channel"
        return (f"⏳ {about}: {count}, so it is slow (on 2 CPU cores about 0.08 s per masked image for base, 1.2 s for large); "
                "a bar shows its progress.")
    return f"{about}, on the sublayer's output; one forward and one batched backward for all prompts."


def method_note_for(name: str, method: str, sublayer: str) -> str:
    """method_note with Score-CAM's forward count for a model; never raises for a known method,
    since the page shows it while a model may be unreachable."""
    check_choice(method, METHODS, "method")
    info = MODEL_INFO.get(name)
    try:
        if get_method(method).cost != "per channel":
            forwards = 0
        elif info is not None and info.width:  # the short names' widths are known without the hub
            forwards = info.mlp_width if sublayer in wide_sublayers(name) else info.width
        else:
            forwards = load_model(name).channels(sublayer)
    except Exception:  # noqa: BLE001 - not loadable now (offline, not cached): say it without the count
        forwards = 0
    return method_note(method, forwards)


def controls(method: str) -> dict[str, bool]:
    """Which settings apply to a method: attention methods have no sublayer; EigenCAM ignores the
    prompts, so it has no target either."""
    record = get_method(method)
    return {"sublayer": record.sublayer_applies, "target": record.uses_prompts, "layer": record.uses_layer}


def layer_label(method: str, noun: str = "layer") -> str:
    """The layer slider's label: where a method starts, or the layer it reads."""
    return ("Start layer (from here to the last)" if get_method(method).layer_role == "starts"
            else f"{noun.capitalize()} (1 = closest to the pixels)")


def method_choices(name: str) -> tuple[list[tuple[str, str]], str]:
    """The method dropdown's choices for a model (only the methods its family supports), and one
    sentence naming the ones it cannot run and why ("" when it runs every method)."""
    adapter = family_class(name)
    supported = supported_methods(adapter.capabilities)
    missing = [m for m in METHODS if m not in supported]
    reason = ""
    if missing:
        lacking = sorted({c for m in missing for c in REGISTRY[m].needs - adapter.capabilities})
        names = [short_name(m) for m in missing]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        reason = (f"{listed} need{'s' if len(names) == 1 else ''} {' and '.join(CAPABILITIES[c] for c in lacking)}, "
                  f"which {adapter.family_label} models do not have.")
    return [(METHOD_LABELS[m], m) for m in supported], reason


def score_label(prob_kind: str) -> str:
    """What the score bars are: a softmax that shares 100 % among the prompts, or SigLIP's
    independent sigmoid per prompt."""
    if prob_kind == "sigmoid":
        return "SigLIP's sigmoid per prompt (each on its own: they need not add up to 100 %)"
    return "CLIP's softmax over the prompts"
