"""The forward pass: one forward without any gradient, which the method reads or changes through
its own hooks (clipcam.methods.kinds.ForwardMethod): attention rollout reads q and k; dense maps
from a changed forward (MaskCLIP, SCLIP) would change the last layers' attention and read the
patch tokens. Maps come for every start layer from the earliest chosen one; where the method's
hooks change the model, the scores returned come from a second, unchanged forward."""

from __future__ import annotations

import torch

from ..methods.kinds import ForwardMethod
from .common import PassInput, PassOutput, logits_of, per_layer


def forward_pass(inp: PassInput) -> PassOutput:
    """Logits (K,) of the unchanged model and the method's map (K, rows, cols) for each chosen layer."""
    method, start = inp.method.compute, inp.first
    assert isinstance(method, ForwardMethod)
    grid = inp.grids[start]  # the layers that have attention share one grid
    with torch.no_grad():
        with method.read(inp.adapter, start, grid) as state:
            logits = logits_of(inp)  # (K,)
        maps = method.maps(state, inp.adapter, inp.text, grid)
        if method.changes_forward:
            logits = logits_of(inp)
    return logits.float().cpu().numpy(), per_layer(maps, start, inp.layers)


#: What this module registers in clipcam.passes.PASSES: its kind's name and its pass.
PASS = ("forward", forward_pass)
