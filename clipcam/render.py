"""Drawing heatmaps: colour maps, overlays on the user's image, and a captioned grid of prompts.

Overlays blend a colour-mapped heatmap onto the image like pytorch-grad-cam's
``show_cam_on_image``; pixels the model never saw (NaN in the map) are shown dimmed and grey,
not coloured, so a heatmap is never stretched over parts of the photo outside CLIP's crop.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .constants import check_choice

#: Colour maps offered to people: a perceptual default, and JET as the reference notebook uses.
COLORMAPS: dict[str, int] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "jet": cv2.COLORMAP_JET,
}
DEFAULT_COLORMAP = "inferno"
DEFAULT_ALPHA = 0.5
#: How much of the original brightness is kept where the model saw nothing.
UNSEEN_DIM = 0.35
#: Where the model saw nothing, every HATCH_PERIOD-th diagonal band of HATCH_WIDTH pixels is drawn
#: in HATCH_GREY, so the unseen part reads as "not measured" on every colour map (a plain dark
#: grey looks like a low value on inferno).
HATCH_PERIOD, HATCH_WIDTH, HATCH_GREY = 12, 3, 150


def _lookup_table(code: int) -> np.ndarray:
    """(256, 1, 3) uint8 RGB colours of an OpenCV colour map, one per level."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)
    table = np.ascontiguousarray(bgr[:, :, ::-1])
    table.setflags(write=False)
    return table


#: Each colour map as an RGB lookup table, built once: colouring a map is then one table look-up.
LUTS: dict[str, np.ndarray] = {name: _lookup_table(code) for name, code in COLORMAPS.items()}


def levels(heatmap: np.ndarray) -> np.ndarray:
    """(..., H, W) map in [0, 1] (NaN allowed) → uint8 levels round(255 · value), clipped; NaN becomes 0."""
    values = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0)  # a copy
    np.maximum(values, 0.0, out=values)
    shape = values.shape
    return cv2.convertScaleAbs(values.reshape(-1, shape[-1]), alpha=255.0).reshape(shape)  # rounds, saturates


def colorize(heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) map in [0, 1] (NaN allowed) → (H, W, 3) uint8 RGB; NaN becomes black."""
    check_choice(colormap, COLORMAPS, "colour map")
    return cv2.applyColorMap(levels(heatmap), LUTS[colormap])  # a user colour map keeps the table's RGB order


def hatch(height: int, width: int) -> np.ndarray:
    """(H, W) bool: the diagonal bands drawn over the parts of an image the model never saw."""
    y, x = np.arange(height, dtype=np.int32)[:, None], np.arange(width, dtype=np.int32)[None, :]
    return (x + y) % HATCH_PERIOD < HATCH_WIDTH


def dimmed(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → how it looks where the model saw nothing: grey, darkened towards 40, with
    light diagonal hatching (see HATCH_PERIOD). The grey is one affine transform of the channels
    (their mean × UNSEEN_DIM + (1 − UNSEEN_DIM) × 40, rounded and saturated by OpenCV), about ten
    times faster than the same sum in NumPy at display size."""
    grey = cv2.transform(np.ascontiguousarray(rgb), _DIM_TRANSFORM)  # (H, W) uint8
    grey[hatch(*rgb.shape[:2])] = HATCH_GREY
    return cv2.merge([grey, grey, grey])


#: dimmed's grey as one row of an affine transform: mean of the channels, dimmed towards 40.
_DIM_TRANSFORM = np.array([[UNSEEN_DIM / 3] * 3 + [(1 - UNSEEN_DIM) * 40.0]])


def _blend(rgb: np.ndarray, dim: np.ndarray, heatmap: np.ndarray, colormap: str, alpha: float) -> Image.Image:
    """One overlay from a uint8 image, its dimmed copy and a map of the same size (NaN: unseen)."""
    unseen = np.isnan(heatmap)
    if not unseen.any():
        return Image.fromarray(cv2.addWeighted(rgb, 1.0 - alpha, colorize(heatmap, colormap), alpha, 0.0))
    rows, cols = np.flatnonzero(~unseen.all(axis=1)), np.flatnonzero(~unseen.all(axis=0))
    if len(rows) and unseen.sum() == unseen.size - len(rows) * len(cols) == unseen.size - (rows[-1] - rows[0] + 1) * (
            cols[-1] - cols[0] + 1):  # the seen part is a rectangle (CLIP's crop): blend only there
        seen = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        out = dim.copy()
        out[seen] = cv2.addWeighted(rgb[seen], 1.0 - alpha, colorize(heatmap[seen], colormap), alpha, 0.0)
        return Image.fromarray(out)
    out = cv2.addWeighted(rgb, 1.0 - alpha, colorize(heatmap, colormap), alpha, 0.0)  # rounds and saturates
    np.copyto(out, dim, where=unseen[..., None])
    return Image.fromarray(out)


def tint(rgb: np.ndarray, dim: np.ndarray, level: np.ndarray, seen: tuple[slice, slice], colormap: str,
         alpha: float) -> Image.Image:
    """One overlay from uint8 parts of one size: the image (H, W, 3), its dimmed copy, the map's
    colour levels (H, W) and the (rows, columns) the model saw; outside them the dimmed image."""
    out = dim.copy()
    out[seen] = cv2.addWeighted(rgb[seen], 1.0 - alpha, cv2.applyColorMap(level[seen], LUTS[colormap]), alpha, 0.0)
    return Image.fromarray(out)


def overlay(image: Image.Image, heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP,
            alpha: float = DEFAULT_ALPHA) -> Image.Image:
    """Blend ``heatmap`` (H, W) in [0, 1], NaN where unseen, onto ``image`` of the same size.

    alpha is the heatmap's weight (0: only the photo, 1: only the heatmap). The blend runs on
    uint8 with OpenCV and a lookup table, so a 1024-pixel overlay costs a few milliseconds.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Overlay opacity must be between 0 and 1; got {alpha}.")
    rgb = np.asarray(image.convert("RGB"))
    if heatmap.shape != rgb.shape[:2]:
        raise ValueError(f"Heatmap {heatmap.shape} and image {rgb.shape[:2]} differ in size.")
    return _blend(rgb, dimmed(rgb), heatmap, colormap, alpha)


def to_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to (W, H) for display: box-reduced by a whole factor first, then bilinear."""
    return image if image.size == tuple(size) else image.resize(size, Image.BILINEAR, reducing_gap=1.0)


def display_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(W, H) scaled down so that the longer side is at most ``max_side`` (never scaled up)."""
    width, height = size
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


#: Captions show at most this many characters of a prompt.
CAPTION_CHARS = 60


def shorten(text: str, limit: int = CAPTION_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, for captions, labels and echoed values."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def format_score(prob: float) -> str:
    """A probability as a percentage precise enough to tell 0.4 % from 0 %: one decimal from 1 %,
    two below, "< 0.01 %" for what is not exactly zero below that, and never 100.0 % short of 1."""
    pct = 100.0 * float(prob)
    if pct == 0.0:
        return "0 %"
    if pct < 0.01:
        return "< 0.01 %"
    if pct < 1.0:
        return f"{pct:.2f} %"
    if pct < 100.0 and f"{pct:.1f}" == "100.0":
        return "> 99.9 %"
    return f"{pct:.1f} %"


def caption(prompt: str, prob: float) -> str:
    """The text under a heatmap: the prompt (shortened) and its score (softmax or sigmoid)."""
    return f"{shorten(prompt)} — {format_score(prob)}"


def legend_lines(shared: bool, prob_kind: str = "softmax") -> list[str]:
    """What the colours and scores of a result mean, in sentences (the page's legend and grid.png's)."""
    scale = ("Shared scale (raw values): one maximum for all prompts, so a weak prompt's map looks weak."
             if shared else
             "Per-prompt scale: each map is stretched to its own maximum, so colours do not compare across prompts.")
    scores = ("Scores: SigLIP's sigmoid per prompt, each on its own (they need not add up to 100 %)."
              if prob_kind == "sigmoid" else "Scores: CLIP's softmax over the prompts (they add up to 100 %).")
    return ["Low colour: the patch adds little or nothing to the prompt's score; high: it adds the most.",
            scale, "Hatched grey: outside the model's crop; it never saw those pixels.", scores]


def captions(result) -> list[str]:
    """One caption per prompt of an Explanation, in the prompts' order."""
    return [caption(p, float(q)) for p, q in zip(result.prompts, result.probs)]


def settings_text(record: dict, colormap: str, alpha: float, shared: bool) -> str:
    """One line recording how a picture was made: model, layer(s), sublayer, method, target and the
    display settings (a record from clipcam.record.scores_record)."""
    layers = record.get("layers")
    where = (f"layers {layers[0]}–{layers[-1]}" if layers else f"layer {record.get('layer')}")
    sublayer = record.get("sublayer") or "none (attention)"
    return (f"Model {record.get('model')} · {where} · sublayer {sublayer} · method {record.get('method')} · "
            f"target {record.get('target')} · colours {colormap}, opacity {alpha:g}, "
            f"{'shared' if shared else 'per-prompt'} scale")


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (matplotlib ships it; it has the em dash, ×, … and accents), else Pillow's default."""
    try:
        import matplotlib  # optional here: only its bundled font is wanted, and Pillow's default will do

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


def grid_image(tiles: Sequence[Image.Image], captions: Sequence[str], columns: int | None = None,
               row_labels: Sequence[str] | None = None, tile_side: int = 320,
               column_labels: Sequence[str] | None = None) -> Image.Image:
    """Lay out tiles (all one size) in a grid with a caption under each, optional row labels, and
    optional column labels above the first row (a sweep names its prompts at the top)."""
    if not tiles:
        raise ValueError("Nothing to draw: no heatmaps.")
    columns = columns or len(tiles)
    w, h = display_size(tiles[0].size, tile_side)
    font = _font(max(12, w // 22))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(probe, c, font, w - 8) for c in captions]
    line_h = int(font.size * 1.3) if hasattr(font, "size") else 14
    cap_lines = max(len(lines) for lines in wrapped)
    cap_h = line_h * cap_lines + 8 if cap_lines else 0
    head = [_wrap(probe, c, font, w - 8) for c in column_labels or ()]
    head_h = line_h * max(len(lines) for lines in head) + 8 if head else 0
    label_w = 0
    if row_labels:
        label_w = int(max(probe.textlength(label, font=font) for label in row_labels)) + 16
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (label_w + columns * (w + 8) + 8, head_h + rows * (h + cap_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for c, lines in enumerate(head):
        for j, line in enumerate(lines):
            draw.text((label_w + 8 + c * (w + 8) + 2, 6 + j * line_h), line, fill="black", font=font)
    for i, (tile, lines) in enumerate(zip(tiles, wrapped)):
        r, c = divmod(i, columns)
        x, y = label_w + 8 + c * (w + 8), head_h + 8 + r * (h + cap_h + 8)
        sheet.paste(tile.resize((w, h), Image.BILINEAR), (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 2, y + h + 4 + j * line_h), line, fill="black", font=font)
    for r, label in enumerate(row_labels or ()):
        draw.text((8, head_h + 8 + r * (h + cap_h + 8) + h // 2), label, fill="black", font=font)
    return sheet


def colour_bar(colormap: str, width: int, height: int = 14) -> Image.Image:
    """The colour map from low (left) to high (right) as a (width, height) strip."""
    check_choice(colormap, COLORMAPS, "colour map")
    row = LUTS[colormap][np.linspace(0, 255, max(2, width)).round().astype(int), 0]  # (width, 3)
    return Image.fromarray(np.repeat(row[None], height, axis=0))


def with_legend(sheet: Image.Image, colormap: str, lines: Sequence[str]) -> Image.Image:
    """``sheet`` with a legend under it: the colour bar marked low and high, then ``lines`` of text
    (what the colours mean, the scale, the settings), wrapped to the sheet's width."""
    width = max(sheet.width, 480)
    font = _font(13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = 18
    low_w, high_w = probe.textlength("low", font=font), probe.textlength("high", font=font)
    bar_w = int(min(width - 16 - low_w - high_w - 16, 360))
    wrapped = [part for text in lines for part in _wrap(probe, text, font, width - 16)]
    out = Image.new("RGB", (width, sheet.height + 30 + line_h * len(wrapped) + 10), "white")
    out.paste(sheet, (0, 0))
    draw = ImageDraw.Draw(out)
    y = sheet.height + 6
    draw.text((8, y), "low", fill="black", font=font)
    out.paste(colour_bar(colormap, bar_w, 14), (int(8 + low_w + 8), y + 2))
    draw.text((int(8 + low_w + 16 + bar_w), y), "high", fill="black", font=font)
    for j, text in enumerate(wrapped):
        draw.text((8, y + 24 + j * line_h), text, fill="black", font=font)
    return out


def overlays(image: Image.Image, maps: np.ndarray, colormap: str = DEFAULT_COLORMAP,
             alpha: float = DEFAULT_ALPHA, max_side: int | None = None) -> list[Image.Image]:
    """One overlay per map (K, H, W); the image is downscaled to ``max_side`` first when the maps are."""
    check_choice(colormap, COLORMAPS, "colour map")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Overlay opacity must be between 0 and 1; got {alpha}.")
    target = (maps.shape[2], maps.shape[1])
    base = image if image.size == target else to_size(image, target)
    rgb = np.asarray(base.convert("RGB"))
    dim = dimmed(rgb)  # once for all prompts
    return [_blend(rgb, dim, m, colormap, alpha) for m in maps]


def explanation_images(result, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA,
                       max_side: int | None = None, shared: bool = False) -> tuple[list[Image.Image], Image.Image]:
    """Overlays (one per prompt, in order) and the captioned grid for an Explanation."""
    size = display_size(result.image.size, max_side)
    maps = result.image_maps if size == result.image.size and not shared else result.image_maps_at(size, shared)
    tiles = overlays(result.image, maps, colormap, alpha)
    return tiles, grid_image(tiles, captions(result))


def sweep_grid(sweep, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA,
               tile_side: int = 160, shared: bool = False) -> Image.Image:
    """All layers × prompts of an Explanation as one image: rows are layers, columns are prompts."""
    size = display_size(sweep.image.size, tile_side)
    maps = sweep.layer_image_maps_at(size, shared)  # (L, K, h, w)
    return layer_grid(sweep.image, maps, sweep.layers, sweep.prompts, sweep.probs, colormap, alpha, tile_side)


def layer_grid(image: Image.Image, maps: np.ndarray, layers: Sequence[int], prompts: Sequence[str],
               probs: Sequence[float], colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA,
               tile_side: int = 160) -> Image.Image:
    """Maps (L, K, h, w) in [0, 1] (NaN unseen) drawn on ``image`` as one sheet: rows are layers,
    columns are prompts, named with their scores above the first row."""
    size = (maps.shape[3], maps.shape[2])
    base = to_size(image, size)
    tiles = []
    for layer_maps in maps:
        tiles += overlays(base, layer_maps, colormap, alpha)
    labels = [f"layer {layer}" for layer in layers]
    heads = [f"{i + 1}. {caption(p, float(q))}" for i, (p, q) in enumerate(zip(prompts, probs))]
    return grid_image(tiles, [""] * len(tiles), columns=len(prompts), row_labels=labels, tile_side=tile_side,
                      column_labels=heads)


# ---------------------------------------------------------------------- word relevance (issue 13)
#: Signed word relevance: blue for words that lower the score, red for words that raise it.
NEGATIVE_RGB, POSITIVE_RGB = np.array([49, 104, 230]), np.array([214, 39, 40])


def word_colors(shades: np.ndarray, signed: bool, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Word shades → (n, 3) uint8 RGB. Unsigned shades in [0, 1] take the maps' colour map, so a
    word and a heatmap region of the same colour matter alike; signed shades in [-1, 1] blend white
    towards blue (negative) or red (positive)."""
    shades = np.nan_to_num(np.asarray(shades, dtype=np.float32))
    if not signed:
        return colorize(shades[None], colormap)[0]
    t = np.clip(np.abs(shades), 0.0, 1.0)[:, None]
    ends = np.where(shades[:, None] < 0, NEGATIVE_RGB, POSITIVE_RGB)
    return np.uint8(np.round((1 - t) * 255 + t * ends))


def word_strip(words, signed: bool, colormap: str = DEFAULT_COLORMAP, label: str = "",
               font_size: int = 20) -> Image.Image:
    """One prompt's words (a clipcam.words.PromptWords) on boxes shaded by their relevance,
    scaled by the prompt's largest magnitude, with the raw value under each word and an optional
    label (the method) above."""
    font, small = _font(font_size), _font(max(10, font_size * 3 // 5))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    colors = word_colors(words.shaded(signed), signed, colormap)
    widths = [int(max(probe.textlength(w, font=font), probe.textlength(f"{v:.3g}", font=small))) + 12
              for w, v in zip(words.words, words.word_relevance)]
    top = font_size + 8 if label else 4
    box_h = font_size + 12
    width = max(sum(widths) + 4 * len(widths) + 8, int(probe.textlength(label, font=font)) + 16 if label else 0)
    sheet = Image.new("RGB", (max(width, 40), top + box_h + font_size + 8), "white")
    draw = ImageDraw.Draw(sheet)
    if label:
        draw.text((8, 4), label, fill="black", font=font)
    x = 8
    for word, value, color, w in zip(words.words, words.word_relevance, colors, widths):
        fill = tuple(int(c) for c in color)
        ink = "black" if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else "white"
        draw.rectangle((x, top, x + w, top + box_h), fill=fill, outline=(200, 200, 200))
        draw.text((x + 6, top + 5), word, fill=ink, font=font)
        draw.text((x + 6, top + box_h + 3), f"{value:.3g}", fill=(90, 90, 90), font=small)
        x += w + 4
    return sheet


def words_html(relevance, colormap: str = DEFAULT_COLORMAP, captions: Sequence[str] | None = None) -> str:
    """Every prompt's words (a clipcam.words.WordRelevance) as HTML: one line per prompt, each word
    on a background shaded like ``word_strip`` (the maps' colour map, or blue-white-red when signed),
    its raw value in the tooltip, and a legend saying what the colours mean."""
    lines = []
    for k, prompt in enumerate(relevance.prompts):
        colors = word_colors(prompt.shaded(relevance.signed), relevance.signed, colormap)
        spans = []
        for word, value, color in zip(prompt.words, prompt.word_relevance, colors):
            r, g, b = (int(c) for c in color)
            ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
            spans.append(f'<span class="clipcam-word" title="{value:.4g}" style="background:rgb({r},{g},{b});'
                         f'color:{ink};padding:2px 6px;margin:1px;border-radius:4px;display:inline-block;font-size:1.1em">'
                         f"{escape(word)}</span>")
        head = escape(captions[k]) if captions else f"{k + 1}."
        lines.append(f'<div class="clipcam-words-row"><small>{head}</small><br>{"".join(spans)}</div>')
    if relevance.signed:
        legend = "blue: lowers the score · white: no effect · red: raises it (each prompt scaled by its largest value)"
    else:
        legend = (f"{colormap}: dark = little, bright = most relevant word of the prompt, as in the heatmaps "
                  "(each prompt scaled by its largest value)")
    return (f'<div class="clipcam-words">{"".join(lines)}<small class="clipcam-words-legend">{escape(legend)}'
            "</small></div>")
