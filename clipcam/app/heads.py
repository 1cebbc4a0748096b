"""The Heads tab's work, in plain Python: each prompt's score split exactly over the model's layers
and heads (clipcam.decompose), a chosen head's map on the image, and the top heads with their
TextSpan labels where the model's folder holds a heads file (``python -m clipcam heads``).

Like the other tabs (clipcam.app.service): every input is checked where it enters, a request
stops at the server's time limit or when its page goes away, what a session keeps is small (the
decomposition's tables and the image at display size), and expected errors are one sentence.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

import numpy as np
from PIL import Image

from ..decompose import Decomposition
from ..decompose.textspan import HEADS_FILE, read_heads
from ..images import check_file_size
from ..models import resolve_source
from ..prompts import parse_prompts
from ..render import display_size, overlay, to_size
from .inputs import check_view
from .kept import DISPLAY_SIDE
from .server import Deadline, gpu_seconds
from .service import Service, releases_memory

#: The heads listed under the grid, by the size of their contribution to the chosen prompt.
TOP_HEADS = 5
#: What the session store keeps the tab's result under.
TAB = "heads"
#: The tab's own settings in a share link's query.
QUERY_KEYS = ("tab", "prompt", "cell")


@dataclass(frozen=True)
class HeadsShown:
    """The tab for one prompt: the prompts to pick from and the chosen one (1-based); the grid as a
    table (``header``: layer, head 1…H, MLP; one row per layer, values in logit units) with each
    cell's background colour; the other terms and the total (Markdown); the top heads with their
    labels (Markdown); the chosen cell's (layer, head) and its map on the image (None when no cell
    is chosen); and the notice."""

    prompts: list[str]
    prompt: int
    header: list[str]
    rows: list[list]
    colours: list[list[str]]
    terms: str
    top: str
    cell: tuple[int, int] | None
    picture: Image.Image | None
    notice: str


def heads_labels(model: str) -> dict[tuple[int, int], str]:
    """(layer, head) → TextSpan label from the heads file in the model's folder ({} where none)."""
    try:
        folder = Path(resolve_source(model).removeprefix("local-dir:"))
    except ValueError:
        return {}
    report = read_heads(folder / HEADS_FILE) if folder.is_dir() else None
    return {} if report is None else {(r.layer, r.head): "; ".join(r.texts[:2]) for r in report.rows}


def check_cell(cell: object, layers: int, heads: int) -> tuple[int, int] | None:
    """A chosen cell as (layer, head), 1-based; None for no choice. Accepts (layer, head) or 'L.H'."""
    if cell in (None, "", ()):
        return None
    try:
        layer, head = (int(v) for v in (str(cell).split(".") if isinstance(cell, str) else cell))
    except (TypeError, ValueError):
        raise ValueError(f"A head is named by its layer and head number, such as 3.1; got {str(cell)[:40]!r}.") from None
    if not (1 <= layer <= layers and 1 <= head <= heads):
        raise ValueError(f"Pick a layer from 1 to {layers} and a head from 1 to {heads}.")
    return layer, head


def check_prompt(prompt: object, count: int) -> int:
    """The chosen prompt, 1-based; the first when none is given."""
    if prompt in (None, ""):
        return 1
    try:
        value = int(prompt)
    except (TypeError, ValueError):
        raise ValueError(f"Pick a prompt by its number, 1 to {count}; got {str(prompt)[:40]!r}.") from None
    if not 1 <= value <= count:
        raise ValueError(f"Pick a prompt by its number, 1 to {count}; got {value}.")
    return value


def cell_colour(value: float, limit: float) -> str:
    """A cell's CSS background: red raises the prompt's score, blue lowers it, paler nearer zero."""
    strength = 0.0 if limit <= 0 else min(abs(value) / limit, 1.0)
    rgb = "214, 39, 40" if value >= 0 else "31, 119, 180"
    return f"background-color: rgba({rgb}, {0.85 * strength:.2f})"


def head_picture(d: Decomposition, prompt: int, cell: tuple[int, int], colormap: str, alpha: float) -> Image.Image:
    """The head's per-patch contributions to the prompt on the image: brightest where it raises the
    score most; patches that lower it are dark, like those that add nothing."""
    shown = to_size(d.image, display_size(d.image.size, DISPLAY_SIDE)) if max(d.image.size) > DISPLAY_SIDE else d.image
    values = d.image_map_of(*cell, size=shown.size)[prompt - 1]  # (H, W) logit units, NaN outside the crop
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    level = np.clip(values, 0.0, None) / top if top > 0 else np.where(np.isnan(values), np.nan, 0.0)
    return overlay(shown, level.astype(np.float32), colormap, alpha)


def heads_view(d: Decomposition, labels: dict[tuple[int, int], str], prompt: int, cell: tuple[int, int] | None,
               colormap: str, alpha: float, notice: str = "") -> HeadsShown:
    """The tab's content for one prompt and cell of a kept decomposition (no model needed)."""
    k = prompt - 1
    heads, mlps = d.heads[k], d.mlps[k]  # (L, H), (L,)
    layers, count = heads.shape
    limit = float(max(np.abs(heads).max(), np.abs(mlps).max(), 1e-12))
    header = ["layer", *[f"head {h}" for h in range(1, count + 1)], "MLP"]
    rows = [[d.layer_names[i], *[round(float(v), 4) for v in heads[i]], round(float(mlps[i]), 4)]
            for i in range(layers)]
    colours = [["", *[cell_colour(float(v), limit) for v in heads[i]], cell_colour(float(mlps[i]), limit)]
               for i in range(layers)]
    terms = (f"**{html.escape(d.prompts[k])}** — logit {d.total[k]:.3f} = embedding {d.embed[k]:+.3f} "
             f"+ heads {heads.sum():+.3f} + MLPs {mlps.sum():+.3f}. Click a head to see where on the image it "
             "adds to the score.")
    order = np.argsort(-np.abs(heads), axis=None)[:TOP_HEADS]
    lines = []
    for flat in order:
        layer, head = (int(i) + 1 for i in np.unravel_index(flat, heads.shape))
        label = labels.get((layer, head))
        said = f" — TextSpan: {html.escape(label)}" if label else ""
        lines.append(f"- layer {d.layer_names[layer - 1]}, head {head}: {heads[layer - 1, head - 1]:+.3f}{said}")
    if not labels:
        lines.append("\nNo TextSpan labels for this model: `python -m clipcam heads` writes them (heads.json in the "
                     "model's folder).")
    picture = None if cell is None else head_picture(d, prompt, cell, colormap, alpha)
    return HeadsShown(list(d.prompts), prompt, header, rows, colours, terms, "\n".join(lines), cell, picture, notice)


@dataclass(frozen=True)
class HeadsKept:
    """What a session keeps: the decomposition (its image at display size) and the model's labels."""

    decomposition: Decomposition
    labels: dict


class HeadsTab:
    """The Heads tab over the app's Service (its models, loader, limits and session store)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @releases_memory
    def decompose(self, session: str, image: object, prompts_text: object, model: str, prompt: object = None,
                  cell: object = None, colormap: str = "inferno", alpha: object = 0.5,
                  alive: Callable[[], bool] | None = None) -> HeadsShown:
        """Split each prompt's score over the model's layers and heads (one forward), keep it for
        the session, and show the chosen prompt (and cell)."""
        service = self.service
        deadline = Deadline(service.time_limit, alive)
        prompts, notes = parse_prompts(prompts_text)
        if image is None:
            raise ValueError("No image: upload an image, paste one, or click an example.")
        colormap, alpha = check_view(colormap, alpha)
        check_file_size(image, service.max_pixels)
        ex = service.explainer_for(model)
        deadline.check()
        if service.gpu is not None:  # Hugging Face ZeroGPU: the forward runs in its worker
            d = service.gpu(gpu_seconds(0), model, service.device, service.half, "decompose", image, prompts, {})
        else:
            d = ex.decompose(image, prompts)
        deadline.check()
        if max(d.image.size) > DISPLAY_SIDE:  # keep the image at display size, never the full photo
            d = replace(d, image=to_size(d.image, display_size(d.image.size, DISPLAY_SIDE)))
        kept = HeadsKept(d, heads_labels(model))
        service.store.put(session, TAB, kept)
        chosen = check_prompt(prompt, len(d.prompts)) if str(prompt or "").isdigit() else 1
        try:
            cell = check_cell(cell, *d.heads.shape[1:])
        except ValueError:
            cell = None  # a cell from another model's grid (a link, a model change): none chosen
        return heads_view(d, kept.labels, chosen, cell, colormap, alpha, "\n\n".join(f"ℹ️ {n}" for n in notes))

    def show(self, session: str, prompt: object, cell: object, colormap: str, alpha: object) -> HeadsShown:
        """The kept decomposition for another prompt or cell, or other display settings (no model)."""
        kept = self.service.store.get(session, TAB)
        if not isinstance(kept, HeadsKept):
            raise ValueError("Nothing to show yet: press Decompose first.")
        colormap, alpha = check_view(colormap, alpha)
        d = kept.decomposition
        return heads_view(d, kept.labels, check_prompt(prompt, len(d.prompts)), check_cell(cell, *d.heads.shape[1:]),
                          colormap, alpha)


def share_heads(base_query: str, prompt: object, cell: tuple[int, int] | str | None) -> str:
    """The query of a link to the Heads tab: the page's settings plus the prompt and the cell."""
    own = {"tab": "heads", "prompt": prompt or 1}
    if cell:
        own["cell"] = cell if isinstance(cell, str) else f"{cell[0]}.{cell[1]}"
    return "&".join(q for q in (base_query, urlencode(own)) if q)


def read_heads_query(query: dict) -> dict:
    """The Heads tab's settings in a link's query (bad values dropped, never raised): prompt, cell."""
    if query.get("tab") != "heads":
        return {}
    out: dict = {"tab": "heads"}
    if str(query.get("prompt", "")).isdigit() and 1 <= int(query["prompt"]) <= 64:
        out["prompt"] = int(query["prompt"])
    try:
        if query.get("cell"):
            out["cell"] = "%d.%d" % check_cell(query["cell"], 1000, 1000)
    except (ValueError, TypeError):
        pass
    return out
