"""Attention entropy per block: how spread out each block's attention is, to explain why a dense
method that swaps the last blocks' attention (q–q, k–k, the Gaussian neighbourhood) does or does
not localise on a given model.

For each block with attention, every query row's entropy −Σ p log p is divided by log T (T tokens),
so 0 is attention on one token and 1 is uniform attention; the value is the mean over heads and
rows (``all``), and over heads for the class token's row (``cls``; SigLIP has none: NaN).
"""

from __future__ import annotations

import numpy as np
import torch

from ..hooks import on_grid
from ..methods.attention import attention_probs
from ..methods.rollout import read_qk


def attention_entropy(explainer, image: object) -> list[dict]:
    """One {"layer", "all", "cls"} per block with attention (1-based layers), for one image."""
    adapter = explainer.adapter
    if "attention" not in adapter.capabilities:
        raise ValueError(f"{adapter.family_label} models have no attention blocks to measure.")
    _, pixels, geometry, _ = explainer.prepare_image(image)
    grid, prefix = geometry.grid, adapter.prefix
    with torch.no_grad(), read_qk(adapter, 1, grid) as (sites, values):
        adapter.image_features(pixels)
    rows, at = [], 0
    for layer, site in enumerate(sites, start=1):
        q, k, _ = (on_grid(t.float(), grid, prefix) for t in site.split(values[at:at + len(site.reads)]))  # (T, D)
        at += len(site.reads)
        p = attention_probs(q, k, site.heads).double()  # (H, T, T)
        ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1) / np.log(p.shape[-1])  # (H, T)
        cls = float(ent[:, 0].mean()) if "class_token" in adapter.capabilities else float("nan")
        rows.append({"layer": layer, "all": float(ent.mean()), "cls": cls})
    return rows
