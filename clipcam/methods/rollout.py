"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

A prompt-independent saliency map: each layer's attention is averaged over heads, the identity is
added for the residual connection (0.5·A + 0.5·I), the rows are renormalised, and the layers from
the start layer to the last are multiplied together, R = Â_last···Â_start. The class token's row
of R over the patch tokens says how much each patch flows into the image embedding; a model read
out without a class token (SigLIP's pooling head, average pooling) gets the mean of R's rows. It
is the shapes benchmark's yardstick for "generic saliency": a prompt-specific method must beat it
at pointing to the object a prompt names.

It takes no gradient: the pass runs one forward (clipcam.passes.forward) while hooks record q and
k; the attention probabilities are rebuilt from them (clipcam.methods.attention), so the model
keeps its fast attention and no second, eager copy is loaded.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from ..hooks import capture_outputs, on_grid
from ..models.base import ModelAdapter
from . import Method
from .attention import attention_probs
from .kinds import FORWARD, ForwardMethod


def residual_attention(probs: torch.Tensor) -> torch.Tensor:
    """(H, T, T) attention → (T, T) float64: the head mean, with the residual's identity, row-normalised."""
    a = probs.mean(dim=0).double()  # (T, T), heads averaged
    a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=torch.float64, device=a.device)  # residual connection
    return a / a.sum(dim=-1, keepdim=True)


@contextmanager
def read_qk(adapter: ModelAdapter, start: int, grid: tuple[int, int]) -> Iterator[tuple[list, list]]:
    """Record what makes q, k and v of every layer from ``start`` during the forward run inside:
    yields (the attention sites, the recorded outputs, filled as the forward runs)."""
    sites = adapter.attention_sites(start)
    with capture_outputs([], values=[m for site in sites for m in site.reads]) as values:
        yield sites, values


def rollout_maps(state: tuple[list, list], adapter: ModelAdapter, text: torch.Tensor,
                 grid: tuple[int, int]) -> list[np.ndarray]:
    """The rollout from every start layer to the last: one (K, rows, cols) float32 map each, ≥ 0,
    the same for all K prompts."""
    sites, values = state
    prefix, k = adapter.prefix, text.shape[0]
    product, maps, at = None, [], len(values)
    for site in reversed(sites):  # from the last layer back: R ← R·Â_l
        at -= len(site.reads)
        q, key, _ = (on_grid(t.float(), grid, prefix) for t in site.split(values[at:at + len(site.reads)]))  # (T, D)
        a = residual_attention(attention_probs(q, key, site.heads))  # (T, T)
        product = a if product is None else product @ a
        row = product[0] if "class_token" in adapter.capabilities else product.mean(dim=0)  # (T,)
        maps.append(np.repeat(row[prefix:].reshape(1, *grid).float().cpu().numpy(), k, axis=0))
    return maps[::-1]


METHOD = Method(
    name="rollout",
    label="Attention rollout (prompt-independent)",
    paper="Abnar & Zuidema, ACL 2020",
    about="the head-averaged attention with the residual added, multiplied through the layers; the same for every "
          "prompt",
    pass_kind=FORWARD,
    compute=ForwardMethod(read=read_qk, maps=rollout_maps),
    needs=frozenset({"attention"}),
    uses_prompts=False,
    same_map_because="it follows the attention alone",
)
