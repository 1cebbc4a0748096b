"""Pictures of a decomposition: for one prompt, the L×H grid of the heads' contributions with their
values, the MLP column beside it, and the embedding term and the total in the title. Built on
matplotlib's Figure without pyplot, so pictures can be drawn in several threads at once."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .result import Decomposition

#: A signed scale: red pushes the prompt's logit up, blue pulls it down, white is zero.
CMAP = "RdBu_r"


def _cells(ax, values: np.ndarray, limit: float, xlabels, ylabels, title: str) -> None:
    """One annotated heat grid (rows, cols) on ``ax`` with a symmetric colour scale."""
    ax.imshow(values, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(values.shape[1]), xlabels, fontsize=7)
    ax.set_yticks(range(values.shape[0]), ylabels, fontsize=7)
    ax.set_title(title, fontsize=9)
    size = max(4.0, min(8.0, 90.0 / max(values.shape[1], 8)))
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=size,
                color="white" if abs(v) > 0.6 * limit else "black")


def heads_figure(result: Decomposition, prompt: int = 0) -> Figure:
    """The L×H grid of prompt ``prompt``'s head contributions (logit units) and its MLP column."""
    heads, mlps = result.heads[prompt], result.mlps[prompt]  # (L, H), (L,)
    layers, count = heads.shape
    limit = float(max(np.abs(heads).max(), np.abs(mlps).max(), 1e-6))
    width = 2.5 + 0.55 * count
    fig = Figure(figsize=(width, 1.2 + 0.32 * layers))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [count, 1.4]})
    names = result.layer_names
    _cells(left, heads, limit, [str(h) for h in range(1, count + 1)], names, "heads (layer × head)")
    _cells(right, mlps[:, None], limit, ["MLP"], names, "MLPs")
    left.set_xlabel("head", fontsize=8)
    left.set_ylabel("layer", fontsize=8)
    fig.suptitle(f"“{result.prompts[prompt]}”: logit {result.total[prompt]:.3f} = embed {result.embed[prompt]:.3f}"
                 f" + heads {heads.sum():.3f} + MLPs {mlps.sum():.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def heads_image(result: Decomposition, prompt: int = 0, dpi: int = 110) -> Image.Image:
    """``heads_figure`` as an RGB picture."""
    fig = heads_figure(result, prompt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
