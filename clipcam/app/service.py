"""What the web app does, without the web: parse its inputs, run the explainer, build its outputs.

Everything here is plain Python (no gradio), so it is tested directly; ``clipcam.app.ui`` only wires
these functions to widgets and turns ValueError into ``gr.Error``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from ..constants import DEFAULT_TARGET, MAX_PROMPT_CHARS, MODEL_INFO, TARGETS, check_choice
from ..explainer import MASKING_METHODS, METHODS, Explanation
from ..geometry import CropGeometry
from ..memory import release_memory  # noqa: F401  (the handlers call it as service.release_memory)
from ..methods import DEFAULT_METHOD, REGISTRY, get_method, supported_methods
from ..methods.cam import normalize_maps, normalize_shared
from ..render import (
    COLORMAPS, LUTS, caption, dimmed, display_size, format_score, grid_image, layer_grid, legend_lines, levels,
    settings_text, shorten, tint, to_size, with_legend,
)
from ..record import scores_record
from ..words import WordRelevance

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


def parse_prompts(text: str | None, limit: int = MAX_APP_PROMPTS) -> tuple[list[str], list[str]]:
    """One prompt per line: blank lines ignored, duplicates dropped (with a notice). Returns (prompts, notices).

    The text's length is checked first, before it is split or copied: at most ``limit`` prompts of
    MAX_PROMPT_CHARS characters (and their line breaks), each line at most MAX_PROMPT_CHARS.
    """
    text = text or ""
    if not isinstance(text, str):
        raise ValueError(f"The prompts must be text, one per line; got {type(text).__name__}.")
    most = limit * (MAX_PROMPT_CHARS + 2)  # a line break (\r\n) after each prompt
    if len(text) > most:
        raise ValueError(f"The prompts are {len(text)} characters long; the app accepts at most {most} in all "
                         f"({limit} prompts of up to {MAX_PROMPT_CHARS} characters, one per line).")
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(line for line in lines if line):
        if len(line) > MAX_PROMPT_CHARS:
            raise ValueError(f"Prompt {i + 1} is {len(line)} characters long; the app accepts at most "
                             f"{MAX_PROMPT_CHARS} per prompt (CLIP reads only 77 tokens). Shorten it.")
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


#: The method the app starts with: the best measured. On the retrained shapes-world CLIP
#: (python -m clipcam eval --shapes easy --methods all, 100 scenes, logit; BENCHMARKS.md, "Quality
#: per model family"), Chefer et al.'s relevance from layer 1 of 4 points at the named object 1.000
#: of the time, never at another object, with the most energy inside it (0.633); Grad-ECLIP 0.931,
#: LeGrad 0.903, HiResCAM 0.847, Score-CAM 0.722, Grad-CAM 0.714. The hub models' real weights
#: cannot be measured here; they start from the second-to-last layer (the last two layers), where
#: LeGrad's authors start on CLIP.
APP_METHOD = "chefer"

#: Per-model starting settings (layers counted from the end, sublayer, target, method). The
#: sublayer is what a CAM method starts on when a person switches to one: the notebook's mlp.fc1,
#: or where Grad-CAM measured best (shapes: self_attn.v_proj). The shapes model starts where Chefer
#: measured best on it: from layer 1 of 4 (pointing 1.000; from layer 2 0.980, from layer 3, the
#: second-to-last, 0.895; BENCHMARKS.md, "Quality per model family").
MODEL_DEFAULTS: dict[str, tuple[int, str, str, str]] = {"shapes": (3, "self_attn.v_proj", "logit", APP_METHOD)}


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
    from ..models import sublayer_names

    return sublayer_names()


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


def scores_dict(result: Explanation) -> dict[str, float]:
    """Prompt (shortened for the label) → probability (softmax, or SigLIP's sigmoid), in the prompts'
    order (what gr.Label shows as bars); prompts that shorten alike are told apart by their number."""
    labels = [shorten(p) for p in result.prompts]
    labels = [f"{i + 1}. {label}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]
    return {label: float(q) for label, q in zip(labels, result.probs)}


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


# ----------------------------------------------------------------- what the server keeps per session
@dataclass(frozen=True)
class Kept:
    """What the server keeps of one result, to re-draw it with other display settings and to build
    its downloads on request: scores, raw grid maps, the geometry, the image at display size and
    ``settings``, the result's record (clipcam.record.scores_record: scores and what made them).

    Never the full photo: a kept result costs about ``DISPLAY_SIDE``² × 3 bytes (3 MB) plus the
    grid maps. Like the result, it has a layer axis: one layer for the Explain and Compare tabs,
    every layer for a sweep.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,)
    probs: np.ndarray  # (K,)
    layers: tuple[int, ...]
    layer_maps: np.ndarray  # (L, K, rows, cols), raw
    geometry: CropGeometry
    display: Image.Image  # the explained image, longer side at most DISPLAY_SIDE
    settings: dict
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    prob_kind: str = "softmax"

    @property
    def sweep(self) -> bool:
        """True for a result of several layers (drawn as a layers × prompts sheet)."""
        return len(self.layers) > 1

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the image that was explained."""
        return self.geometry.image_size

    def scaled(self, shared: bool = False) -> np.ndarray:
        """The grid maps (L, K, rows, cols) scaled to [0, 1]: each on its own, or (shared) by one
        maximum per layer."""
        return np.stack([normalize_shared(m) for m in self.layer_maps]) if shared else normalize_maps(self.layer_maps)

    def display_levels(self, size: tuple[int, int], shared: bool = False) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The maps for the screen as uint8 colour levels (L, K, H, W) on a (W, H) canvas, and the
        (rows, columns) the model saw (CLIP's crop; outside it the levels mean nothing).

        The same sampling as maps_at (geometry's coordinates, bilinear between cell centres, edge
        cells held), done by OpenCV on the grid's levels with the coordinates converted once to its
        fixed-point form (weights in steps of 1/32): within 8 of 255 levels of
        ``levels(maps_at(...))`` inside the crop, and a few milliseconds per map at 1024 pixels."""
        gx, gy, inside_x, inside_y = self.geometry._sample_coords(size)
        map_x = np.broadcast_to(gx[None, :].astype(np.float32), (len(gy), len(gx)))
        map_y = np.broadcast_to(gy[:, None].astype(np.float32), (len(gy), len(gx)))
        fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        grids = levels(self.scaled(shared).reshape(-1, *self.layer_maps.shape[-2:]))  # (L × K, rows, cols) uint8
        out = np.empty((len(grids), len(gy), len(gx)), np.uint8)
        for k, grid in enumerate(grids):
            cv2.remap(grid, fixed, fraction, cv2.INTER_LINEAR, dst=out[k], borderMode=cv2.BORDER_REPLICATE)
        seen = []
        for inside in (inside_y, inside_x):  # the crop is one run of rows and one of columns
            index = np.flatnonzero(inside)
            seen.append(slice(index[0], index[-1] + 1) if len(index) else slice(0, 0))
        return out.reshape(*self.layer_maps.shape[:-2], len(gy), len(gx)), (seen[0], seen[1])

    def maps_at(self, size: tuple[int, int], shared: bool = False, dtype: type = np.float32) -> np.ndarray:
        """(L, K, H, W) in [0, 1] on a (W, H) canvas covering the whole image, NaN outside the
        model's crop; shared=True scales the prompts of each layer by one maximum. Resampled one
        layer at a time into ``dtype`` (float16 for a download: never a float32 copy of them all)."""
        scaled = self.scaled(shared)
        out = np.empty((*scaled.shape[:2], size[1], size[0]), dtype=dtype)
        for layer, maps in enumerate(scaled):
            out[layer] = self.geometry.grid_to_image(maps, size)
        return out


def keep(result: Explanation, model: str | dict, notes: Sequence[str]) -> Kept:
    """The part of a result the server keeps (see Kept), with its record made by the one builder
    (scores_record: attention methods record no sublayer; ``model`` is the name the person picked,
    or a dict whose "model" it is and whose other keys are added); the full-size image is dropped."""
    size = display_size(result.image.size, DISPLAY_SIDE)
    display = to_size(result.image, size)
    extra = dict(model) if isinstance(model, dict) else {"model": model}
    settings = scores_record(result, extra.pop("model", None))
    settings.update(extra, notes=list(notes))
    return Kept(prompts=tuple(result.prompts), logits=np.asarray(result.logits), probs=np.asarray(result.probs),
                layers=tuple(result.layers), layer_maps=result.layer_maps, geometry=result.geometry, display=display,
                settings=settings, notes=tuple(notes), seconds=result.seconds, prob_kind=result.prob_kind)


def tile_caption(index: int, prompt: str, prob: float) -> str:
    """A tile's caption: its number, then the score (so a cut-off caption still shows it), then the prompt."""
    return f"{index + 1} · {format_score(prob)} · {shorten(prompt, 40)}"


def overlay_tiles(kept: Kept, colormap: str, alpha: float, shared: bool = False) -> list[Image.Image]:
    """One overlay per prompt (per layer and prompt, layer by layer, for a sweep) at display size,
    drawn from the kept maps: all a change of colour map, opacity or scale has to redo."""
    check_view(colormap, alpha)
    maps, seen = kept.display_levels(kept.display.size, shared)  # (L, K, H, W) uint8
    maps = maps.reshape(-1, *maps.shape[2:])
    rgb = np.asarray(kept.display)
    dim = dimmed(rgb)
    return [tint(rgb, dim, m, seen, colormap, alpha) for m in maps]


def gallery_items(kept: Kept, colormap: str, alpha: float, shared: bool = False) -> list[tuple[Image.Image, str]]:
    """(overlay, caption) per prompt, in the prompts' order: what the Explain tab's gallery shows."""
    tiles = overlay_tiles(kept, colormap, alpha, shared)
    return [(tile, tile_caption(i, p, float(q))) for i, (tile, p, q) in enumerate(zip(tiles, kept.prompts, kept.probs))]


def sweep_picture(kept: Kept, colormap: str, alpha: float, shared: bool = False, tile_side: int = 160) -> Image.Image:
    """The sweep's layers × prompts sheet, drawn from the kept maps."""
    maps = kept.maps_at(display_size(kept.image_size, tile_side), shared)  # (L, K, h, w), small
    return layer_grid(kept.display, maps, kept.layers, kept.prompts, kept.probs, colormap, alpha, tile_side)


#: A download's image_maps hold at most this many bytes (float16); larger results are saved at
#: the largest size that fits, never above the photo's own size.
DOWNLOAD_MAP_BYTES = 40_000_000


def download_size(kept: Kept) -> tuple[int, int]:
    """(W, H) of the image_maps in a result's download: full size when they fit DOWNLOAD_MAP_BYTES
    (and the photo is at most FULL_RES_PIXELS), else scaled down to fit, aspect kept."""
    width, height = kept.image_size
    maps = int(np.prod(kept.layer_maps.shape[:-2]))  # L × K
    pixels = min(FULL_RES_PIXELS, DOWNLOAD_MAP_BYTES // (2 * maps))
    if width * height <= pixels:
        return width, height
    scale = (pixels / (width * height)) ** 0.5
    return max(1, int(width * scale)), max(1, int(height * scale))


def write_downloads(kept: Kept, colormap: str, alpha: float, shared: bool, folder: Path) -> list[str]:
    """grid.png (as shown, with the colour legend and a line recording the settings), scores.json
    (the kept record plus the display settings and sizes) and heatmaps.npz (raw grid maps,
    image_maps as float16 at download_size; a sweep's with a leading layer axis and its ``layers``)
    for a kept result, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    grid_png, scores_json, npz = folder / "grid.png", folder / "scores.json", folder / "heatmaps.npz"
    if kept.sweep:
        sheet = sweep_picture(kept, colormap, alpha, shared)
    else:
        tiles = overlay_tiles(kept, colormap, alpha, shared)
        sheet = grid_image(tiles, [f"{i + 1}. {caption(p, float(q))}" for i, (p, q) in
                                   enumerate(zip(kept.prompts, kept.probs))])
    legend = legend_lines(shared, kept.prob_kind) + [settings_text(kept.settings, colormap, alpha, shared)]
    with_legend(sheet, colormap, legend).save(grid_png)
    size = download_size(kept)
    payload = {
        **kept.settings,
        "display": {"colormap": colormap, "alpha": alpha, "shared": shared},
        "image_size": list(kept.image_size),
        "image_maps_size": list(size),
    }
    scores_json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    maps = kept.maps_at(size, dtype=np.float16)
    arrays = {"grid_maps": kept.layer_maps, "image_maps": maps, "layers": np.array(kept.layers)}
    if not kept.sweep:  # one layer: (K, ...) as the CLI writes it
        arrays.update(grid_maps=kept.layer_maps[0], image_maps=maps[0])
    np.savez_compressed(npz, **arrays)
    return [str(grid_png), str(scores_json), str(npz)]


class Sessions:
    """The results each browser session (or API client) has on screen, and its download folder.

    At most ``size`` sessions are kept, least recently used dropped first; each holds one Kept per
    tab (explain, sweep, compare-left, compare-right), so the store holds at most
    size × 4 × (3 MB + grid maps), and the word relevance of three word panels (a few kB each). A
    dropped session's folder is deleted. Every access is locked.
    """

    def __init__(self, size: int = 32, root: Path | None = None) -> None:
        if size < 1:
            raise ValueError("The session store must hold at least one session.")
        self.size = size
        self.root = Path(root or tempfile.mkdtemp(prefix="clipcam-sessions-"))
        self._items: OrderedDict[str, dict[str, Kept | WordRelevance | None]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, tab: str, kept: Kept | WordRelevance | None) -> None:
        """Keep ``kept`` as the session's result for ``tab`` (a Kept, or the word relevance shown
        there; None forgets it)."""
        with self._lock:
            self._items.setdefault(session, {})[tab] = kept
            self._items.move_to_end(session)
            dropped = []
            while len(self._items) > self.size:
                dropped.append(self._items.popitem(last=False)[0])
        for name in dropped:
            shutil.rmtree(self.folder(name), ignore_errors=True)

    def get(self, session: str, tab: str) -> Kept | WordRelevance | None:
        """The session's kept result for ``tab``, or None."""
        with self._lock:
            tabs = self._items.get(session)
            if tabs is None:
                return None
            self._items.move_to_end(session)
            return tabs.get(tab)

    def drop(self, session: str) -> None:
        """Forget a session (its page was closed) and delete its files."""
        with self._lock:
            self._items.pop(session, None)
        shutil.rmtree(self.folder(session), ignore_errors=True)

    def folder(self, session: str) -> Path:
        """The session's download folder (one per session; each new download replaces the last)."""
        return self.root / hashlib.sha256(session.encode()).hexdigest()[:16]

    def downloads(self, session: str, tab: str, colormap: str, alpha: float, shared: bool) -> list[str]:
        """Build the downloads of the session's result on ``tab``, replacing its previous files."""
        kept = self.get(session, tab)
        if kept is None:
            raise ValueError("Nothing to download yet: run an explanation first (results are kept for the "
                             f"{self.size} most recent sessions).")
        folder = self.folder(session)
        shutil.rmtree(folder, ignore_errors=True)
        return write_downloads(kept, colormap, alpha, shared, folder / tab)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        """Delete every session's files."""
        with self._lock:
            self._items.clear()
        shutil.rmtree(self.root, ignore_errors=True)


class Janitor:
    """Deletes gradio's cached files (uploads, shown images, downloads) older than ``age`` seconds and
    the folders they leave empty, at most once every ``every`` seconds.

    gradio's own schedule (``Blocks(delete_cache=...)``) cannot be relied on: its background task
    walks the live sets of cached paths while request threads add to them, and the first "Set
    changed size during iteration" ends the task for good, so under concurrent requests the cache
    only grows. The janitor walks the folder instead, keeps what gradio must keep (``keep()``: the
    components' default values and examples) and drops the deleted paths from gradio's sets
    (``tracked()``), so they do not grow either. Age is the file's modification time, which gradio
    refreshes when it hands out a cached copy again."""

    def __init__(self, root: Path | str, age: float, every: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root, self.age, self.every, self.clock = Path(root), age, every or age / 2, clock
        self.keep: Callable[[], set[str]] = set
        self.tracked: Callable[[], list[set[str]]] = list
        self._last = clock()
        self._lock = threading.Lock()

    def watch(self, demo: object) -> None:
        """Keep what ``demo`` (a gradio Blocks) keeps, and forget deleted files in its sets."""
        self.keep = lambda: set().union(*(getattr(b, "keep_in_cache", ()) for b in list(demo.blocks.values())))
        self.tracked = lambda: list(demo.temp_file_sets)

    def tidy(self) -> int:
        """Delete old files and empty folders under the root (if it is time); return how many."""
        with self._lock:
            now = self.clock()
            if now - self._last < self.every:
                return 0
            self._last = now
        keep, gone, emptied = self.keep(), set(), set()
        for path in self.root.rglob("*"):
            try:
                if not path.is_dir() and str(path) not in keep and now - path.lstat().st_mtime > self.age:
                    path.unlink()
                    gone.add(str(path))
                    emptied.add(path.parent)
            except OSError:  # gone already
                continue
        for paths in self.tracked():
            paths.difference_update(gone)
        removed = len(gone)
        for folder in sorted((p for p in self.root.glob("**/") if p != self.root), key=lambda p: -len(p.parts)):
            try:
                old = folder in emptied or now - folder.stat().st_mtime > self.age
                if old and not any(folder.iterdir()):
                    folder.rmdir()
                    removed += 1
            except OSError:  # gone already, or filled meanwhile
                continue
        return removed


# ----------------------------------------------------------------- time limit and cancellation
class Stopped(Exception):
    """Raised from the explainer's progress callback (or between steps) to stop a request early;
    its message is the sentence for the person."""


#: The longest one request may run, in seconds; app.py reads CLIPCAM_TIME_LIMIT.
TIME_LIMIT = 600.0
#: Gradio's cached files (uploads, shown images, downloads) are deleted this many seconds after
#: they were made, checked every half of it; app.py reads CLIPCAM_CACHE_SECONDS.
CACHE_SECONDS = 1800


class Deadline:
    """A request's time limit and a way to learn that its client has gone. ``check()`` raises
    Stopped once either happens; ``progress()`` wraps a progress callback so that Score-CAM and
    sweeps check at every batch of masked forwards."""

    def __init__(self, seconds: float = TIME_LIMIT, alive: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.alive, self.clock = seconds, alive, clock
        self.start = clock()

    def check(self) -> None:
        if self.alive is not None and not self.alive():
            raise Stopped("The page that asked for this result was closed, so the work was stopped.")
        if self.clock() - self.start > self.seconds:
            raise Stopped(f"This request ran past the server's time limit of {self.seconds:g} s (CLIPCAM_TIME_LIMIT), "
                          "so it was stopped. Pick a narrower sublayer, fewer layers or a gradient method.")

    def progress(self, inner: Callable[[int, int], None] | None = None) -> Callable[[int, int], None]:
        """A progress(done, total) callback that checks the deadline, then calls ``inner``."""
        def report(done: int, total: int) -> None:
            self.check()
            if inner is not None:
                inner(done, total)
        return report


# ----------------------------------------------------------------- GPU on Hugging Face Spaces
def gpu_task(seconds: float, name: str, device: str, half: bool, kind: str, image: Image.Image,
             prompts: Sequence[str], options: dict) -> Explanation:
    """The GPU work of one request, as a module-level function of picklable arguments: ZeroGPU runs
    it in a forked worker, which finds the model in the library's cache. ``seconds`` is only read
    by ZeroGPU's scheduler (see gpu_duration)."""
    from ..explainer import load_explainer

    explainer = load_explainer(name, device=device, half=half)
    return getattr(explainer, kind)(image, list(prompts), **options)


def gpu_duration(seconds: float, *args, **kwargs) -> float:
    """ZeroGPU's duration for a gpu_task call: its first argument."""
    return seconds


def gpu_seconds(forwards: int) -> int:
    """How long to reserve a ZeroGPU for a request: 30 s for a gradient method (one forward and
    one backward, a sweep being one pass), plus 0.02 s per masked forward pass (Score-CAM)."""
    return int(30 + 0.02 * forwards)


def spaces_gpu() -> Callable | None:
    """gpu_task wrapped in ``spaces.GPU`` on Hugging Face's ZeroGPU hardware; None elsewhere: when the
    ``spaces`` package cannot be imported, or when it hands the function back unchanged (it does
    off ZeroGPU), so that the app then runs as it always does, with its progress bar and deadline."""
    try:
        import spaces
    except ImportError:
        return None
    wrapped = spaces.GPU(duration=gpu_duration)(gpu_task)
    return None if wrapped is gpu_task else wrapped


def concentration_figure(layers: Sequence[int], prompts: Sequence[str], values: np.ndarray, probs: Sequence[float]):
    """A small line plot, rendered for gr.Plot (see rendered_plot): for each prompt, how concentrated
    its heatmap is at each layer."""
    return rendered_plot(concentration_plot(layers, prompts, values, probs))


def concentration_plot(layers: Sequence[int], prompts: Sequence[str], values: np.ndarray, probs: Sequence[float]):
    """The matplotlib figure of concentration_figure."""
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
    return fig


def rendered_plot(fig, image_format: str = "webp"):
    """gr.Plot's data for a matplotlib figure, rendered here (as gr.Plot would, in its default
    format), and the figure then taken apart, so that gradio never holds a figure and the Agg
    canvas's pixel buffer is freed at once. The rest of a figure is a web of reference cycles that
    only a full garbage collection frees (benchmarks/plot_memory.py measures what stays resident)."""
    import matplotlib.pyplot as plt
    from gradio.components.plot import PlotData
    from gradio.processing_utils import encode_plot_to_base64

    try:
        return PlotData(type="matplotlib", plot=encode_plot_to_base64(fig, image_format))
    finally:
        plt.close(fig)
        fig.canvas.__dict__.pop("renderer", None)  # the Agg pixel buffer, held by the canvas alone
        fig.clear()


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


# ----------------------------------------------------------------- what a person reads next to the maps
def scores_html(prompts: Sequence[str], probs: Sequence[float], prob_kind: str = "softmax",
                shared: bool = False) -> str:
    """The scores in the tiles' order, one block per prompt: its number (as on its tile), the whole
    prompt, the score as a number precise enough to tell 0.4 % from 0 % (format_score) and a bar.
    Each block ends in an empty ``div.tile-extra`` where later per-prompt rows go."""
    rows = []
    for i, (prompt, prob) in enumerate(zip(prompts, probs)):
        prob = float(prob)
        hint = ""
        if not shared and len(prompts) > 1 and prob < 0.01:
            hint = ("<div class='score-hint'>Scored near zero: its map is still stretched to the full colour range "
                    "(tick the shared scale to compare strengths).</div>")
        rows.append(
            f"<div class='score-row' data-index='{i + 1}'><span class='score-index'>{i + 1}</span>"
            f"<span class='score-prompt'>{html.escape(prompt, quote=False)}</span>"
            f"<span class='score-value'>{format_score(prob)}</span>"
            f"<span class='score-bar'><span style='width:{100 * min(max(prob, 0.0), 1.0):.1f}%'></span></span>"
            f"{hint}<div class='tile-extra' data-index='{i + 1}'></div></div>")
    return (f"<div class='scores' data-kind='{prob_kind}'><div class='scores-title'>"
            f"{html.escape(score_label(prob_kind), quote=False)}</div>{''.join(rows)}</div>")


def legend_html(colormap: str, shared: bool = False, prob_kind: str = "softmax") -> str:
    """The colour legend on the page: the colour map's bar from low to high and what it means
    (legend_lines, the same sentences grid.png carries)."""
    check_view(colormap, 0.0)
    table = LUTS[colormap][:, 0]  # (256, 3) RGB
    stops = ", ".join(f"rgb({r},{g},{b}) {100 * i / 255:.0f}%" for i, (r, g, b) in
                      ((i, table[i]) for i in range(0, 256, 32)))
    stops += f", rgb({table[255][0]},{table[255][1]},{table[255][2]}) 100%"
    lines = "".join(f"<li>{html.escape(line, quote=False)}</li>" for line in legend_lines(shared, prob_kind))
    scale = "shared" if shared else "per-prompt"
    return (f"<div class='legend legend-{colormap} scale-{scale}' data-colormap='{colormap}' data-scale='{scale}'>"
            f"<div class='legend-bar'><span>low</span><span class='legend-ramp' "
            f"style='background: linear-gradient(to right, {stops})'></span><span>high</span>"
            f"<span class='legend-hatch' title='outside the model's crop'></span><span>never seen</span></div>"
            f"<ul>{lines}</ul></div>")


#: How to read the maps, one click away on the page.
HOW_TO_READ = (
    "Each map shows, for one prompt, which parts of the image raise the model's score for that prompt: the "
    "brighter the colour, the more that patch adds (hatched parts lie outside the square the model saw). "
    "A map says where the model looks for the prompt, not that the object is there: read it together with the "
    "score, and tick the shared scale to see which prompt's evidence is strongest.")


def single_prompt_note(prompts: Sequence[str], prob_kind: str) -> str | None:
    """Why one prompt scores 100 %: CLIP's softmax shares 100 % among the prompts, so one gets it all."""
    if len(prompts) == 1 and prob_kind == "softmax":
        return ("With one prompt the score is 100 % by definition (CLIP's softmax shares 100 % among the prompts); "
                "add a second prompt to compare against.")
    return None


def crop_note(geometry: CropGeometry) -> str | None:
    """A sentence when the model's centre crop cut part of the image off (it never saw that part)."""
    width, height = geometry.image_size
    left, top, right, bottom = geometry.crop_box()
    seen_w, seen_h = min(right, width) - max(left, 0), min(bottom, height) - max(top, 0)
    if seen_w >= width - 1 and seen_h >= height - 1:
        return None
    return (f"The model saw only the centre {seen_w:.0f}×{seen_h:.0f} pixels of this {width}×{height} image; "
            "the hatched parts were cut off, so it cannot find anything there, whatever its score.")


def word_pieces(tokenizer: object) -> Callable[[str], list] | None:
    """A function word → its tokens for a model's tokenizer (Hugging Face ``tokenize``, open_clip's
    ``encode``), or None when the tokenizer offers neither."""
    for name in ("tokenize", "encode"):
        fn = getattr(tokenizer, name, None)
        if callable(fn):
            return lambda word, fn=fn: list(fn(word))
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a Hugging Face one
    return word_pieces(inner) if inner is not None and inner is not tokenizer else None


def vocabulary(tokenizer: object) -> set[str]:
    """The tokenizer's whole-word tokens with their markers stripped ("green</w>", "▁green" →
    "green"); empty when it does not list them."""
    vocab = None
    for source in (tokenizer, getattr(tokenizer, "tokenizer", None)):
        get = getattr(source, "get_vocab", None)
        vocab = get() if callable(get) else getattr(source, "encoder", None)  # open_clip's SimpleTokenizer
        if isinstance(vocab, dict):
            break
    if not isinstance(vocab, dict):
        return set()
    return {t.replace("</w>", "").lstrip("▁Ġ").lower() for t in vocab if isinstance(t, str)}


def unknown_words(prompt: str, pieces: Callable[[str], list], known: set[str] = frozenset()) -> list[str]:
    """The words of ``prompt`` (three letters or more) that the tokenizer spells (nearly) letter by
    letter, fewer than LETTERS_PER_PIECE letters per token: the model's vocabulary has no piece for
    them, so their meaning is lost. A BPE vocabulary trained on real text splits a rare word into a
    few long pieces ("xylo", "phone"); a word it never saw falls apart into letters. Words that
    are whole tokens of the vocabulary (``known``, see vocabulary) are known however they split."""
    out = []
    for word in dict.fromkeys(w.lower() for w in re.findall(r"[^\W\d_]{3,}", prompt)):
        tokens = [t for t in pieces(word) if not isinstance(t, str) or t.replace("</w>", "").strip("▁Ġ ")]
        if word not in known and tokens and len(word) / len(tokens) < LETTERS_PER_PIECE:
            out.append(word)
    return out


#: Fewer letters per token than this means a word was spelled out, not read (see unknown_words).
LETTERS_PER_PIECE = 1.5


def unknown_words_note(prompts: Sequence[str], tokenizer: object) -> str | None:
    """One sentence naming the words the model's vocabulary lacks (see unknown_words), or None."""
    pieces = word_pieces(tokenizer) if tokenizer is not None else None
    if pieces is None:
        return None
    known = vocabulary(tokenizer)
    found = []
    for i, prompt in enumerate(prompts):
        found += [f"'{w}' (prompt {i + 1})" for w in unknown_words(prompt, pieces, known)]
    if not found:
        return None
    listed = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    return (f"This model's vocabulary does not know {listed}: its tokenizer spells such words letter by letter, so "
            "their meaning is lost and the scores and maps for them mean little. Use words the model was trained on.")


# ----------------------------------------------------------------- examples, grouped by the model they suit
ASSETS = Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class Example:
    """An example on the page: an image in assets/, prompts that fit it, and the kind of model it
    suits ("photo": a CLIP-family model trained on photos; "shapes": the offline shapes model)."""

    key: str
    image: str
    prompts: str
    label: str
    kind: str

    @property
    def path(self) -> Path:
        return ASSETS / self.image


EXAMPLES: tuple[Example, ...] = (
    Example("shapes-1", "shapes/scene-1.png", "a photo of a red circle.\na photo of a blue square.\n"
            "a photo of a green triangle.", "Red circle, blue square, green triangle", "shapes"),
    Example("shapes-2", "shapes/scene-2.png", "a photo of a yellow square.\na photo of a red triangle.\n"
            "a photo of a blue circle.", "Yellow square, red triangle, blue circle", "shapes"),
    Example("shapes-3", "shapes/scene-3.png", "a photo of a green circle.\na photo of a yellow triangle.",
            "Green circle, yellow triangle", "shapes"),
    Example("cat", "chelsea.png", "a photo of a cat.\na photo of a dog.\na photo of a dog and a cat.",
            "Cat (cat, dog, both)", "photo"),
    Example("astronaut", "astronaut.png", "a photo of an astronaut.\na photo of a flag.\n"
            "a photo of a space shuttle.\na photo of a helmet.", "Astronaut, flag, shuttle, helmet", "photo"),
    Example("coffee", "coffee.png", "a cup of coffee.\na spoon.\na wooden table.", "Coffee, spoon, table", "photo"),
    Example("rocket", "rocket.jpg", "a photo of a rocket.\na photo of a cloud.\na photo of a tree.",
            "Rocket, cloud, tree", "photo"),
)
EXAMPLE_KINDS: dict[str, str] = {"shapes": "Shapes-world scenes (for the offline shapes model)",
                                 "photo": "Photos (for CLIP models trained on photos)"}


def get_example(key: str) -> Example:
    """The example called ``key``; ValueError naming the known ones otherwise."""
    for example in EXAMPLES:
        if example.key == key:
            return example
    check_choice(key, [e.key for e in EXAMPLES], "example")
    raise AssertionError  # check_choice raised


def model_kind(name: str) -> str:
    """Which examples a model suits: "shapes" for the shapes model, "photo" for every other."""
    return "shapes" if name == "shapes" else "photo"


def example_order(current: str) -> list[str]:
    """The example kinds in the order the page shows them: the current model's kind first."""
    first = model_kind(current)
    return [first] + [k for k in EXAMPLE_KINDS if k != first]


def example_model(example: Example, current: str, models: Sequence[str],
                  reason_for: Callable[[str], str | None] | None = None) -> tuple[str, str]:
    """(model to use, notice) when a person picks ``example`` while on ``current``: the current
    model when it suits the example, else the first offered model that suits it and can be loaded
    now, else the current one with a sentence saying why none fits."""
    if model_kind(current) == example.kind:
        return current, ""
    if example.kind == "shapes":
        if "shapes" in models:
            return "shapes", "Switched to the **shapes** model: this scene comes from its shapes world."
        return current, (f"This scene is made for the shapes model, which this server does not offer; {current} "
                         "will run on it, but it was not trained on such scenes.")
    from ..models import unavailable_reason

    reason_for = reason_for or unavailable_reason
    reasons = []
    for name in models:
        if model_kind(name) != "photo":
            continue
        reason = reason_for(name)
        if reason is None:
            return name, (f"Switched to **{name}**: the shapes model knows only coloured shapes and a few words, so "
                          "its scores on a photo would mean nothing.")
        reasons.append(reason)
    why = f"none can be loaded now ({reasons[0]})" if reasons else "this server offers none"
    return current, (f"⚠️ This photo needs a model trained on photos, and {why}. The shapes model knows only coloured "
                     "shapes and a few words, so its scores on this photo mean nothing.")


def method_layer(name: str, method: str, n_layers: int) -> int:
    """The layer a method starts on for a model when a person switches to it: the attention methods
    from the model's starting layer (model_defaults), the sublayer methods where they measured best
    (CAM_LAYERS; elsewhere the model's default)."""
    if get_method(method).reads != "attention" and name in CAM_LAYERS:
        return min(CAM_LAYERS[name], n_layers)
    return model_defaults(name, n_layers)[0]


#: Where the sublayer methods start on a model, where Grad-CAM measured best: on shapes layer 2 of 4
#: (`self_attn.v_proj`, logit target: pointing 0.726, against 0.611 on the last layer and 0.517 on
#: the second-to-last; benchmarks/quality.py, BENCHMARKS.md "Heatmap quality with ground truth").
CAM_LAYERS: dict[str, int] = {"shapes": 2}


def model_problem(name: str, reason_for: Callable[[str], str | None] | None = None) -> str:
    """A sentence for the page when a model cannot be loaded now ("" when it can)."""
    from ..models import unavailable_reason

    reason = (reason_for or unavailable_reason)(name)
    if reason is None:
        return ""
    alternative = " Pick **shapes**, which works offline." if name != "shapes" else ""
    return f"⚠️ **{name}** cannot be loaded now: {reason}{alternative}"


# ----------------------------------------------------------------- share links
#: The settings a share link carries, in its query string (the image only as an example's key:
#: an upload stays on this server).
SHARE_KEYS = ("example", "model", "layer", "sublayer", "target", "method", "colormap", "alpha", "shared")


def share_query(settings: dict) -> str:
    """The query string of a link that restores ``settings`` (keys of SHARE_KEYS; others ignored)."""
    from urllib.parse import urlencode

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


# ----------------------------------------------------------------- the boundary: every input checked once
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
    from ..images import check_file_size, load_image

    prompts, notes = parse_prompts(prompts_text)
    if image is None:
        raise ValueError("No image: upload an image, paste one, or click an example.")
    check_choice(sublayer, family_sublayers(), "sublayer")
    check_choice(target, TARGETS, "target")
    check_choice(method, list(METHODS), "method")
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


def notice_text(notes: Sequence[str], dead: str | None = None) -> str:
    """The notice under the Run button: a dead sublayer first, then one line per note."""
    lines = ([f"⚠️ **Dead sublayer.** {dead}"] if dead else []) + [f"ℹ️ {n}" for n in notes]
    return "\n\n".join(dict.fromkeys(lines))


def result_notes(result: Explanation, tokenizer: object) -> list[str]:
    """What a person should know about a result beyond the library's notes: one prompt's trivial
    100 %, the parts of the image the model never saw, and prompt words the model does not know."""
    notes = [single_prompt_note(result.prompts, result.prob_kind), crop_note(result.geometry),
             unknown_words_note(result.prompts, tokenizer)]
    return [n for n in notes if n]
