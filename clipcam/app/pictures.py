"""What a kept result looks like: the gallery's tiles, the sweep's sheet, the concentration plot,
and the downloads (grid.png, scores.json, heatmaps.npz)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..render import (
    caption, dimmed, display_size, format_score, grid_image, layer_grid, legend_lines, settings_text, shorten, tint,
    with_legend,
)
from .inputs import check_view
from .kept import Kept

#: Up to this many pixels, the downloaded image_maps are at the photo's full resolution.
FULL_RES_PIXELS = 4_000_000


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


def concentration_plot(layers: Sequence[int], prompts: Sequence[str], values: np.ndarray, probs: Sequence[float]):
    """A small line plot: for each prompt, how concentrated its heatmap is at each layer (the
    handlers render it for gr.Plot)."""
    import matplotlib  # only a sweep draws a plot: the rest of the app never pays for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend

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
