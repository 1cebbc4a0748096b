"""What the web app does, without the web: parse its inputs, run the explainer, build its outputs.

Everything here is plain Python (no gradio), so it is tested directly; ``clipcam.app.ui`` only wires
these functions to widgets and turns ValueError into ``gr.Error``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..constants import DEFAULT_TARGET, MODEL_INFO, check_choice
from ..explainer import MASKING_METHODS, METHODS, Explanation, Sweep
from ..methods import DEFAULT_METHOD, REGISTRY, get_method, supported_methods
from ..render import COLORMAPS, caption, captions, display_size, explanation_images, sweep_grid

#: The most prompts the app accepts at once (the library allows more).
MAX_APP_PROMPTS = 16
#: Longest side of images shown in the browser; the downloads keep the raw grid maps.
DISPLAY_SIDE = 1024
#: Up to this many pixels, the downloaded image_maps are at the photo's full resolution.
FULL_RES_PIXELS = 4_000_000


#: The most masked forward passes one app request may run (Score-CAM: one per channel and layer);
#: app.py reads CLIPCAM_MAX_FORWARDS. 5000 covers one layer of any sublayer of base and large
#: (ViT-L's mlp.fc1 has 4096 channels) and a sweep of the shapes model.
MAX_FORWARDS = 5000

#: What the method dropdown shows, from the method registry.
METHOD_LABELS: dict[str, str] = {name: m.label for name, m in REGISTRY.items()}


def short_name(method: str) -> str:
    """A method's name for people, without the dropdown's remark: "Score-CAM", "LeGrad"."""
    return get_method(method).short


def method_note(method: str, forwards: int = 0) -> str:
    """One sentence about a method for the app: what it reads, its paper, and how slow it is."""
    record = get_method(method)
    about = f"{record.short} ({record.paper}): {record.about}"
    if record.reads == "attention":
        return f"{about}. It reads attention, not a sublayer: the layer is where it starts."
    if record.reads == "masking":
        count = f"{forwards} forward passes for this model and sublayer" if forwards else "one forward pass per channel"
        return (f"⏳ {about}: {count}, so it is slow (on 2 CPU cores about 0.08 s per masked image for base, 1.2 s for large); "
                "a bar shows its progress.")
    return f"{about}, on the sublayer's output; one forward and one batched backward for all prompts."


def controls(method: str) -> dict[str, bool]:
    """Which settings apply to a method: attention methods have no sublayer; EigenCAM ignores the
    prompts, so it has no target either."""
    record = get_method(method)
    return {"sublayer": record.reads != "attention", "target": record.uses_prompts, "layer": record.uses_layer}


def check_forwards(forwards: int, limit: int, layers: int, sublayer: str) -> None:
    """Refuse a request whose masked forward passes exceed the server's limit, saying what to change."""
    if forwards > limit:
        where = f"{layers} layers × {forwards // layers}" if layers > 1 else f"{forwards}"
        raise ValueError(
            f"Score-CAM would run {forwards} forward passes here ({where} channels of {sublayer}), above this "
            f"server's limit of {limit} (CLIPCAM_MAX_FORWARDS). Pick a narrower sublayer (mlp.fc1 is 4× wider), "
            "one layer instead of a sweep, or a gradient method.")


def parse_prompts(text: str | None, limit: int = MAX_APP_PROMPTS) -> tuple[list[str], list[str]]:
    """One prompt per line: blank lines ignored, duplicates dropped (with a notice). Returns (prompts, notices)."""
    lines = [line.strip() for line in (text or "").splitlines()]
    prompts = list(dict.fromkeys(line for line in lines if line))
    notices = []
    if not prompts:
        raise ValueError("No prompts given: type at least one prompt, one per line, such as 'a photo of a cat.'.")
    dropped = sum(1 for line in lines if line) - len(prompts)
    if dropped:
        notices.append(f"{dropped} duplicate prompt{'s were' if dropped > 1 else ' was'} dropped.")
    if len(prompts) > limit:
        raise ValueError(f"Too many prompts: {len(prompts)} given, at most {limit} at once. Remove some lines.")
    return prompts, notices


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


#: Sublayers as wide as the MLP's hidden layer, in every family's names.
WIDE_SUBLAYERS = ("mlp.fc1", "mlp.c_fc", "mlp.gelu", "mlp.act")


def model_layers(name: str) -> int:
    """Number of layers of a model: known for the short names, else read from the loaded model."""
    if name in MODEL_INFO:
        return MODEL_INFO[name].layers
    from ..models import load_model

    return load_model(name).num_layers


def method_note_for(name: str, method: str, sublayer: str) -> str:
    """method_note with Score-CAM's forward count for a model; never raises for a known method,
    since the page shows it while a model may be unreachable."""
    check_choice(method, METHODS, "method")
    info = MODEL_INFO.get(name)
    try:
        if method not in MASKING_METHODS:
            forwards = 0
        elif info is not None and info.width:  # the short names' widths are known without the hub
            forwards = info.mlp_width if sublayer in WIDE_SUBLAYERS else info.width
        else:
            from ..models import load_model

            forwards = load_model(name).channels(sublayer)
    except Exception:  # noqa: BLE001 - not loadable now (offline, not cached): say it without the count
        forwards = 0
    return method_note(method, forwards)


#: The method the app starts with: the best measured. benchmarks/quality.py --methods all (300
#: shapes-world scenes, every method × target × layer): Chefer et al.'s relevance from the
#: second-to-last layer points at the named object 0.997 of the time, never at another object,
#: with the most energy inside it (0.686); Grad-ECLIP 0.982 (best deletion/insertion), LeGrad
#: 0.981, HiResCAM 0.920, Grad-CAM 0.851, the notebook's mlp.fc1 Grad-CAM 0.309. The hub models'
#: real weights cannot be measured here; the start layer (second-to-last: the last two layers)
#: is also where LeGrad's authors start on CLIP.
APP_METHOD = "chefer"

#: Per-model starting settings (layers counted from the end, sublayer, target, method). The
#: sublayer is what a CAM method starts on when a person switches to one: the notebook's mlp.fc1,
#: or where Grad-CAM measured best (shapes: the last layer's self_attn.v_proj).
MODEL_DEFAULTS: dict[str, tuple[int, str, str, str]] = {"shapes": (1, "self_attn.v_proj", "logit", APP_METHOD)}


def model_defaults(name: str, n_layers: int) -> tuple[int, str, str, str]:
    """(layer, sublayer, target, method) a model starts with in the app: its family's default
    sublayer, and the app's method where the family supports it (SigLIP has no class token, so it
    starts on LeGrad, which its authors define for SigLIP; CNNs start on Grad-CAM at the last stage)."""
    if name in MODEL_DEFAULTS:
        from_end, sublayer, target, method = MODEL_DEFAULTS[name]
        return max(1, n_layers - from_end), sublayer, target, method
    adapter = family_class(name)
    supported = supported_methods(adapter.capabilities)
    method = next(m for m in (APP_METHOD, "legrad", DEFAULT_METHOD) if m in supported)
    from_end = 0 if adapter.layer_noun == "stage" else 1
    return max(1, n_layers - from_end), adapter.default_sublayer, DEFAULT_TARGET, method


def family_class(name: str):
    """The adapter class of a model's family: known for the short names, else from the loaded model
    (Hugging Face CLIP when it cannot be loaded now, so that the page still works)."""
    from ..models import families

    if name in MODEL_INFO:
        return families()[MODEL_INFO[name].family]
    try:
        from ..models import load_model

        return type(load_model(name))
    except Exception:  # noqa: BLE001 - unreachable now: the page falls back to CLIP's settings
        return families()["hf-clip"]


def family_sublayers() -> list[str]:
    """Every family's sublayer names, in a stable order (what the app's server accepts)."""
    from ..models import families

    return list(dict.fromkeys(s for cls in families().values() for s in cls.sublayers))


def method_choices(name: str) -> tuple[list[tuple[str, str]], str]:
    """The method dropdown's choices for a model (only the methods its family supports), and one
    sentence naming the ones it cannot run and why ("" when it runs every method)."""
    adapter = family_class(name)
    supported = supported_methods(adapter.capabilities)
    missing = [m for m in METHODS if m not in supported]
    reason = ""
    if missing:
        from ..models.base import CAPABILITIES

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


def model_label(name: str) -> str:
    """What the model dropdown shows for a model name."""
    if name in MODEL_INFO:
        info = MODEL_INFO[name]
        return f"{name} — {info.description}"
    return f"{Path(name).name or name}"


def scores_dict(result: Explanation | Sweep) -> dict[str, float]:
    """Prompt → probability (softmax, or SigLIP's sigmoid), in the prompts' order (gr.Label's bars)."""
    return {p: float(q) for p, q in zip(result.prompts, result.probs)}


def concentration(grid_maps: np.ndarray, top: float = 0.1) -> np.ndarray:
    """Share of each map's mass in its top ``top`` fraction of cells: 1 = one spot, ≈ top = spread evenly.

    grid_maps: (..., rows, cols) raw maps → (...) in [0, 1]; an all-zero map gives NaN.
    """
    flat = grid_maps.reshape(*grid_maps.shape[:-2], -1).astype(np.float64)
    n_top = max(1, int(round(top * flat.shape[-1])))
    total = flat.sum(axis=-1)
    top_mass = np.sort(flat, axis=-1)[..., -n_top:].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, top_mass / total, np.nan)


@dataclass
class Downloads:
    """Files for one result, in a fresh temporary directory."""

    grid_png: Path
    scores_json: Path
    heatmaps_npz: Path
    paths: list[str] = field(default_factory=list)


def write_downloads(result: Explanation | Sweep, grid: Image.Image, settings: dict, notes: Sequence[str]) -> Downloads:
    """grid.png, scores.json (scores and settings) and heatmaps.npz for a result."""
    folder = Path(tempfile.mkdtemp(prefix="clipcam-"))
    grid_png, scores_json, npz = folder / "grid.png", folder / "scores.json", folder / "heatmaps.npz"
    grid.save(grid_png)
    width, height = result.image.size
    size = (width, height) if width * height <= FULL_RES_PIXELS else display_size((width, height), DISPLAY_SIDE)
    payload = {
        "prompts": list(result.prompts),
        "logits": [float(x) for x in result.logits],
        "probs": [float(x) for x in result.probs],
        **settings,
        "image_size": [width, height],
        "image_maps_size": list(size),
        "notes": list(notes),
        "seconds": round(result.seconds, 3),
    }
    scores_json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    # full size: reuse the maps the overlays already computed (image_maps is cached on the result)
    image_maps = result.image_maps if size == (width, height) else result.image_maps_at(size)
    arrays = {"grid_maps": result.grid_maps, "image_maps": image_maps}
    if isinstance(result, Sweep):
        arrays["layers"] = np.array(result.layers)
    np.savez_compressed(npz, **arrays)
    return Downloads(grid_png, scores_json, npz, [str(grid_png), str(scores_json), str(npz)])


def explanation_outputs(result: Explanation, colormap: str, alpha: float, shared: bool = False):
    """(gallery items, grid image) for an Explanation, sized for the browser."""
    tiles, grid = explanation_images(result, colormap, alpha, max_side=DISPLAY_SIDE, shared=shared)
    return list(zip(tiles, captions(result))), grid


def sweep_outputs(result: Sweep, colormap: str, alpha: float, shared: bool = False):
    """(grid image of layers × prompts, concentration per layer and prompt (L, K))."""
    return sweep_grid(result, colormap, alpha, shared=shared), concentration(result.grid_maps)


def concentration_figure(layers: Sequence[int], prompts: Sequence[str], values: np.ndarray, probs: Sequence[float]):
    """A small line plot: for each prompt, how concentrated its heatmap is at each layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    for k, prompt in enumerate(prompts):
        ax.plot(layers, values[:, k], marker="o", label=caption(prompt, float(probs[k])))
    ax.set_xlabel("layer")
    ax.set_ylabel("mass in top 10 % of patches")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(list(layers))
    ax.set_title("How concentrated each prompt's heatmap is (1 = one spot)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    plt.close(fig)
    return fig


def relative_layer(depth: float, n_layers: int) -> int:
    """The layer at relative depth ``depth`` in (0, 1] of an n-layer encoder (1-based, at least 1)."""
    return min(n_layers, max(1, int(round(depth * n_layers))))


def allowed_models(env: str | None = None) -> list[str]:
    """The models the web UI offers: CLIPCAM_MODELS (comma-separated names, ids or paths), else the aliases."""
    raw = os.environ.get("CLIPCAM_MODELS", "") if env is None else env
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return names or list(MODEL_INFO)


def startup_model(models: Sequence[str], reason_for=None) -> tuple[str, str]:
    """(model to show first, notice): the first allowed model, or the offline shapes model with a
    sentence saying why when the first one cannot be loaded now (no network, not cached)."""
    from ..models import unavailable_reason

    first = models[0]
    if first == "shapes" or "shapes" not in models:
        return first, ""
    reason = (reason_for or unavailable_reason)(first)
    if reason is None:
        return first, ""
    return "shapes", (f"ℹ️ Showing the offline **shapes** model because {reason} "
                      f"Pick {first} again once the hub can be reached.")
