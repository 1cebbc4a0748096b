"""Drawing a label map: every pixel tinted with the colour of the prompt that wins it, "none" left
as the photo, and the parts the model never saw dimmed and hatched as on every other map
(clipcam.render.dimmed); with a legend of the prompts' colours, as HTML for the page and as a strip
under the picture for the PNG download."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .render import _font, dimmed, shorten

#: The prompts' colours (matplotlib's tab10, RGB), repeated past ten prompts.
PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)], np.uint8)
#: Weight of a prompt's colour over the photo.
LABEL_ALPHA = 0.55
NONE_TEXT = "none"


def colour_of(k: int) -> tuple[int, int, int]:
    """Prompt k's colour (RGB)."""
    return tuple(int(v) for v in PALETTE[k % len(PALETTE)])  # type: ignore[return-value]


def label_picture(image: Image.Image, labels: np.ndarray, alpha: float = LABEL_ALPHA) -> Image.Image:
    """``labels`` (H, W) int (prompt index, -1 none, -2 unseen) drawn on ``image`` of the same size."""
    rgb = np.asarray(image.convert("RGB"))
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"Label map {labels.shape} and image {rgb.shape[:2]} differ in size.")
    out = rgb.astype(np.float32)  # (H, W, 3)
    won = labels >= 0
    colours = PALETTE[np.where(won, labels, 0) % len(PALETTE)].astype(np.float32)  # (H, W, 3)
    out[won] = (1 - alpha) * out[won] + alpha * colours[won]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    unseen = labels < -1
    if unseen.any():
        np.copyto(out, dimmed(rgb), where=unseen[..., None])
    return Image.fromarray(out)


def legend_items(prompts: Sequence[str], shares: dict[str, float] | None = None) -> list[tuple[str, tuple[int, int, int] | None]]:
    """(text, colour) per prompt, then "none" (no colour: the photo shows through)."""
    def text(name: str) -> str:
        return name if shares is None else f"{name} ({100 * shares.get(name, 0.0):.0f} %)"
    return [(text(p), colour_of(k)) for k, p in enumerate(prompts)] + [(text(NONE_TEXT), None)]


def label_legend_html(prompts: Sequence[str], shares: dict[str, float] | None = None, rule: str = "") -> str:
    """The legend as HTML: a swatch per prompt (its share of the seen pixels), "none", and the rule."""
    parts = []
    for name, colour in legend_items(prompts, shares):
        fill = f"rgb{colour}" if colour else "transparent"
        parts.append(f'<span style="display:inline-block;margin-right:12px"><span style="display:inline-block;'
                     f'width:12px;height:12px;border:1px solid #888;background:{fill};vertical-align:middle">'
                     f'</span> {html.escape(shorten(name))}</span>')
    rule_line = f'<div style="font-size:smaller">{html.escape(rule)}</div>' if rule else ""
    return f'<div class="clipcam-label-legend">{"".join(parts)}{rule_line}</div>'


def with_label_legend(picture: Image.Image, prompts: Sequence[str], shares: dict[str, float] | None = None,
                      rule: str = "") -> Image.Image:
    """The picture with a legend strip under it (one line per prompt, "none", the rule), for the PNG."""
    items = legend_items(prompts, shares)
    font = _font(13)
    line = 18
    height = line * (len(items) + (1 if rule else 0)) + 8
    sheet = Image.new("RGB", (max(picture.width, 440), picture.height + height), "white")
    sheet.paste(picture, (0, 0))
    draw = ImageDraw.Draw(sheet)
    y = picture.height + 4
    for name, colour in items:
        draw.rectangle([6, y + 2, 18, y + 14], fill=colour or (255, 255, 255), outline=(136, 136, 136))
        draw.text((24, y), shorten(name), fill="black", font=font)
        y += line
    if rule:
        draw.text((6, y), shorten(rule, 90), fill=(80, 80, 80), font=font)
    return sheet
