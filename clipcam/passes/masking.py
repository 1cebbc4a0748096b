"""The masking pass (Score-CAM): one forward to read the chosen sublayer's activations, then the
method's masked forwards, no gradient. The adapter multiplies its input by the masks
(``mask_inputs``); one masked image's forward scores every prompt at once."""

from __future__ import annotations

import torch

from ..hooks import capture_outputs, on_grid
from ..targets import target_scores
from .common import PassInput, PassOutput, batch_logits, logits_of


def masking_pass(inp: PassInput) -> PassOutput:
    """Logits (K,) and the method's map (K, rows, cols) for every chosen layer; progress(done,
    total) counts the masked forwards of all layers together."""
    adapter, layers, grids, progress = inp.adapter, inp.layers, inp.grids, inp.progress
    modules = [adapter.module(layer, inp.sublayer) for layer in layers]
    with capture_outputs([], values=modules) as acts, torch.no_grad():
        logits = logits_of(inp)
    tokens = [on_grid(adapter.tokens(a)[0], grids[layer], adapter.prefix) for layer, a in zip(layers, acts)]
    total = sum(t.shape[-1] for t in tokens)
    size = adapter.input_size(inp.pixels)

    def scores_of(masks: torch.Tensor) -> torch.Tensor:  # masks (B, 1, H, W) → target scores (B, K)
        logits = batch_logits(adapter, adapter.mask_inputs(inp.pixels, masks), inp.text, inp.precision)  # (B, K)
        return target_scores(logits, inp.target)

    maps, done = [], 0
    for layer, act in zip(layers, tokens):
        report = None if progress is None else (lambda n, _, base=done: progress(base + n, total))
        maps.append(inp.method.compute(size, act, grids[layer], scores_of, report, prefix=adapter.prefix))
        done += act.shape[-1]
    return logits.float().cpu().numpy(), maps


#: What this module registers in clipcam.passes.PASSES: its kind's name and its pass.
PASS = ("masking", masking_pass)
