"""What the page shows as text: its intro, styles and script, the scores and the colour legend as
HTML, and the notice under a tab's button as Markdown."""

from __future__ import annotations

import html
from typing import Sequence

from ..render import LUTS, format_score, legend_lines
from .choices import score_label
from .inputs import check_view

INTRO = """# clipcam — where does a CLIP model look?
Pick an example (or upload an image and type a few prompts, one per line) and press **Run**
(Ctrl/⌘+Enter): one heatmap per prompt, with the model's score for each."""

#: The page's own styles: tiles' scores, the legend, and a layout that fits a phone.
CSS = """
#scores .scores-title, #left-scores .scores-title, #right-scores .scores-title { font-weight: 600; margin: 4px 0; }
.score-row { display: grid; grid-template-columns: 2em 1fr auto; gap: 2px 8px; align-items: baseline;
  padding: 4px 0; border-bottom: 1px solid var(--border-color-primary); }
.score-index { font-weight: 700; }
.score-prompt { overflow-wrap: anywhere; font-size: 0.95em; }
.score-value { font-variant-numeric: tabular-nums; font-weight: 700; white-space: nowrap; }
.score-bar { grid-column: 2 / 4; height: 6px; background: var(--background-fill-secondary); border-radius: 3px; }
.score-bar > span { display: block; height: 100%; background: var(--color-accent); border-radius: 3px; }
.score-hint { grid-column: 2 / 4; font-size: 0.85em; opacity: 0.8; }
.tile-extra:empty { display: none; }
.legend { font-size: 0.9em; }
.legend ul { margin: 4px 0 0 1.1em; padding: 0; }
.legend-bar { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.legend-ramp { display: inline-block; width: 180px; max-width: 40vw; height: 12px; border-radius: 2px; }
.legend-hatch { display: inline-block; width: 24px; height: 12px; margin-left: 12px;
  background: repeating-linear-gradient(45deg, #969696 0 3px, #262626 3px 12px); }
.example-group button { justify-content: flex-start; }
#model input, #left-model input, #right-model input { text-overflow: ellipsis; padding-right: 2.2em; }
#gallery .grid-wrap, #left-gallery .grid-wrap, #right-gallery .grid-wrap {
  min-height: 0 !important; height: auto !important; max-height: none !important; }
#gallery .grid-container { grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)) !important; }
#left-gallery .grid-container, #right-gallery .grid-container {
  grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)) !important; }
.downloads .empty { min-height: 48px !important; height: 48px !important; }
@media (max-width: 640px) {
  .legend-ramp { width: 120px; }
  #gallery .grid-container { grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)) !important; }
}
"""

#: Ctrl/⌘+Enter runs the visible tab's main button; the page's styles are added here too (gradio
#: 6 takes css and js only at launch, and tests launch the demo themselves).
ON_LOAD_JS = """
() => {
  if (!document.getElementById('clipcam-style')) {
    const style = document.createElement('style');
    style.id = 'clipcam-style';
    style.textContent = %s;
    document.head.appendChild(style);
  }
  if (!window.__clipcamKeys) {
    window.__clipcamKeys = true;
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        const button = ['#run', '#sweep', '#compare'].map((id) => document.querySelector(id))
          .find((b) => b && b.offsetParent !== null);
        if (button) { e.preventDefault(); button.click(); }
      }
    });
  }
}
"""


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


def notice_text(notes: Sequence[str], dead: str | None = None) -> str:
    """The notice under the Run button: a dead sublayer first, then one line per note."""
    lines = ([f"⚠️ **Dead sublayer.** {dead}"] if dead else []) + [f"ℹ️ {n}" for n in notes]
    return "\n\n".join(dict.fromkeys(lines))
