"""The evaluation's report: the best setting per method, the markdown tables and the figures,
from the rows clipcam.eval.evaluate measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..constants import SUBLAYERS, TARGETS

#: Baselines that set the floor every method must clear: two that use no model, and attention
#: rollout, which does not use the prompt.
BASELINES = ("random_pixel", "random_object", "rollout")


def best(rows: list[dict], method: str = "gradcam", target: str | None = None) -> dict:
    """The row with the highest pointing game (ties: energy) among a method's settings."""
    pool = [r for r in rows if r["method"] == method and (target is None or r["target"] == target)]
    if not pool:
        raise ValueError(f"No results for method {method!r}" + (f" and target {target!r}." if target else "."))
    return max(pool, key=lambda r: (round(r["pointing"], 6), r["energy"]))


HEADER = ("pointing ↑ | peak on other object ↓ | energy PG ↑ | deletion AUC ↓ | insertion AUC ↑ | mIoU ↑ |",
          "---|---|---|---|---|---|")


def _metrics(r: dict) -> str:
    return (f"{r['pointing']:.3f} | {r['other_object']:.3f} | {r['energy']:.3f} | {r['deletion_auc']:.3f} | "
            f"{r['insertion_auc']:.3f} | {r.get('miou', float('nan')):.3f} |")


def method_target_table(rows: list[dict]) -> str:
    """Markdown: for each method × target, its best layer (and sublayer) by pointing game."""
    lines = ["| method | target | best layer, sublayer | " + HEADER[0], "|---|---|---|" + HEADER[1]]
    names = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in BASELINES))
    for name in sorted(names, key=lambda m: -best(rows, m)["pointing"]):
        for target in TARGETS:
            if any(r["method"] == name and r["target"] == target for r in rows):
                r = best(rows, name, target)
                where = f"{r['layer']}" + ("" if r["sublayer"] == "self_attn" else f", {r['sublayer']}")
                lines.append(f"| {name} | {target} | {where} | " + _metrics(r))
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The whole table: baselines first, then every setting by pointing game."""
    rows = result["rows"]
    lines = [f"Samples: {result['samples']} (deletion/insertion on the first {result['curve_samples']}, "
             f"{result['steps']} steps); masks dilated by {result['dilate']} px for pointing; mIoU thresholds "
             "each min-max scaled map at its mean.", "",
             "| method | target | layer | sublayer | " + HEADER[0], "|---|---|---|---|" + HEADER[1]]
    fmt = lambda r: f"| {r['method']} | {r['target']} | {r['layer']} | {r['sublayer']} | " + _metrics(r)  # noqa: E731
    ranked = sorted((r for r in rows if r["method"] not in BASELINES), key=lambda r: -r["pointing"])
    lines += [fmt(r) for r in rows if r["method"] in BASELINES] + [fmt(r) for r in ranked]
    if len({r["method"] for r in ranked}) > 1:
        lines = ["Each method × target at its best setting:", "", method_target_table(rows), "", "Every setting:", ""] + lines
    if any("p_miou" in r for r in ranked):
        lines += ["", protocols_table(result)]
    return "\n".join(lines)


#: The protocols' columns (clipcam.eval.protocols and clipcam.eval.road): key, heading.
PROTOCOL_COLUMNS = (("pixel_acc", "pixel acc ↑"), ("binary_miou", "binary mIoU ↑"), ("map_ap", "mAP ↑"),
                    ("p_miou", "p-mIoU (set) ↑"), ("p_miou_image", "p-mIoU (image) ↑"), ("mc_miou", "multi-class mIoU ↑"),
                    ("road_morf", "ROAD MoRF ↓"), ("road_lerf", "ROAD LeRF ↑"), ("road_combined", "ROAD combined ↑"))


def protocols_table(result: dict) -> str:
    """Markdown: every setting's segmentation protocols (binary, p-mIoU, multi-class) and ROAD."""
    rows = [r for r in result["rows"] if r["method"] not in BASELINES]
    nan = float("nan")
    lines = [f"Segmentation protocols (raw maps; {result.get('points', '?')} points inside and outside each mask for "
             f"p-mIoU; ROAD on the first {result.get('road_samples', 0)} samples):", "",
             "| method | target | layer | sublayer | " + " | ".join(h for _, h in PROTOCOL_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(PROTOCOL_COLUMNS)]
    for r in sorted(rows, key=lambda r: -r.get("p_miou", nan) if r.get("p_miou") == r.get("p_miou") else 1):
        values = " | ".join(f"{r.get(k, nan):.3f}" for k, _ in PROTOCOL_COLUMNS)
        lines.append(f"| {r['method']} | {r['target']} | {r['layer']} | {r['sublayer']} | {values} |")
    return "\n".join(lines)


def layer_figure(result: dict, path: Path) -> None:
    """Grad-CAM's layer × sublayer grid of the pointing game, one panel per target."""
    import matplotlib  # only for figures: matplotlib is slow to import and the pipeline needs none

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["method"] == "gradcam"]
    targets = sorted({r["target"] for r in rows}, key=TARGETS.index)
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        grid = np.full((len(layers), len(SUBLAYERS)), np.nan)
        for r in rows:
            if r["target"] == target:
                grid[layers.index(r["layer"]), SUBLAYERS.index(r["sublayer"])] = r["pointing"]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "dead" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="grey" if np.isnan(v) else ("white" if v < 0.6 else "black"))
        ax.set_xticks(range(len(SUBLAYERS)), [s.split(".")[-1] for s in SUBLAYERS], rotation=60, fontsize=7)
        ax.set_yticks(range(len(layers)), [f"layer {layer}" for layer in layers], fontsize=7)
        ax.set_title(f"pointing game, target = {target}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def methods_figure(result: dict, path: Path) -> None:
    """Each method's best setting per target: pointing game, deletion / insertion AUC and mIoU."""
    import matplotlib  # only for figures: matplotlib is slow to import and the pipeline needs none

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = list(dict.fromkeys(r["method"] for r in rows if r["method"] not in BASELINES))
    targets = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    metrics = [("pointing", "pointing game ↑"), ("deletion_auc", "deletion AUC ↓"),
               ("insertion_auc", "insertion AUC ↑"), ("miou", "mIoU ↑")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2))
    width = 0.8 / max(1, len(targets))
    for ax, (metric, title) in zip(axes, metrics):
        for t, target in enumerate(targets):
            values = [best(rows, m, target).get(metric, np.nan)
                      if any(r["method"] == m and r["target"] == target for r in rows) else np.nan for m in names]
            ax.bar(np.arange(len(names)) + (t - (len(targets) - 1) / 2) * width, values, width, label=target)
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=8)
        ax.set_title(f"{title} (best setting by pointing game)", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(title="target", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def write_report(result: dict, out: Path, figure: Path | None = None) -> str:
    """Write ``out`` (.json), its .md table and a figure (``figure``, or ``out`` with .png); return the markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    out.with_suffix(".md").write_text(text + "\n")
    methods = {r["method"] for r in result["rows"] if r["method"] not in BASELINES}
    picture = figure or out.with_suffix(".png")
    if methods == {"gradcam"} and len({r["sublayer"] for r in result["rows"] if r["method"] == "gradcam"}) > 1:
        layer_figure(result, picture)
    else:
        methods_figure(result, picture)
    return text
