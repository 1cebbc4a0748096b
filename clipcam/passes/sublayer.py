"""The sublayer pass (the Grad-CAM family): one forward with the chosen layers' sublayer outputs
hooked as gradient leaves, and the K prompts' gradients there from batched backwards.

The hooked activations are replaced by detached leaves that require grad (clipcam.hooks), so the
backward stops there and never fills a parameter's ``.grad``. Over many layers it goes one block
at a time (clipcam.passes.blockwise), which gives the same maps with one block's graph in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from ..hooks import capture_outputs, on_grid
from ..memory import release_memory
from ..targets import target_scores
from .blockwise import hidden_of, nbytes, rerun, saved_bytes, tail_pass
from .common import (PassInput, PassOutput, block_chunks, goes_blockwise, logits_of, numpy_logits, prompt_chunks,
                     prompt_eye, zeros_if_none)


def sublayer_pass(inp: PassInput) -> PassOutput:
    """Logits (K,) and the method's raw map (K, rows, cols) at the sublayer of every chosen layer."""
    return (blockwise_pass if goes_blockwise(inp.adapter, inp.first) else direct_pass)(inp)


def layer_maps(inp: PassInput, layer: int, act: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
    """The method's maps (k, rows, cols) from one layer's activation (1, ...) and its gradients (k, 1, ...)."""
    adapter, grid = inp.adapter, inp.grids[layer]
    tokens = on_grid(adapter.tokens(act.detach())[0], grid, adapter.prefix)  # (T, D)
    grad_tokens = on_grid(adapter.tokens(grad.flatten(0, 1)), grid, adapter.prefix)  # (k, T, D)
    return inp.method.compute(tokens, grad_tokens, grid, adapter.prefix)


def direct_pass(inp: PassInput) -> PassOutput:
    """One forward, one batched gradient per group of prompts, the whole graph kept."""
    adapter, layers = inp.adapter, inp.layers
    modules = [adapter.module(layer, inp.sublayer) for layer in layers]
    with capture_outputs(modules) as acts, torch.enable_grad():
        logits = logits_of(inp)  # (K,)
        scores = target_scores(logits, inp.target)  # (K,)
    missing = [i for i, a in enumerate(acts) if a is None]
    if missing:
        raise RuntimeError(f"Hooked modules {missing} did not run in the forward pass.")
    parts: list[list[np.ndarray]] = [[] for _ in layers]
    chunks = prompt_chunks(prompt_eye(logits), nbytes(acts))  # row k selects prompt k
    for n, rows in enumerate(chunks):
        grads = torch.autograd.grad(scores, acts, grad_outputs=rows, is_grads_batched=True, allow_unused=True,
                                    retain_graph=n < len(chunks) - 1)  # each (k, *activation), None: cannot reach
        for i, (layer, act, grad) in enumerate(zip(layers, acts, grads)):
            parts[i].append(layer_maps(inp, layer, act, zeros_if_none(grad, len(rows), act)))
        del grads
    return numpy_logits(logits), [np.concatenate(p) for p in parts]


def blockwise_pass(inp: PassInput) -> PassOutput:
    """``direct_pass`` one block at a time: from the last block back to the first chosen layer,
    each block is run again from its recorded input, the prompts' gradients are taken at its
    sublayer and at its input, and its graph is let go."""
    adapter, layers, progress = inp.adapter, inp.layers, inp.progress
    first, blocks = inp.first, adapter.blocks()
    logits, scores, out, calls = tail_pass(inp, first)
    eye = prompt_eye(logits)
    (grad_out,) = torch.autograd.grad(scores, out, grad_outputs=eye, is_grads_batched=True)  # (K, *out)
    del scores, out
    maps: dict[int, np.ndarray] = {}
    for layer in range(adapter.num_layers, first - 1, -1):
        call = calls[layer - first]
        hidden = hidden_of(call).detach().requires_grad_(layer > first)  # the first block's input needs no gradient
        chosen = layer in layers
        block = blocks[layer - 1]
        with capture_outputs([adapter.module(layer, inp.sublayer)] if chosen else []) as acts, torch.enable_grad(), \
                saved_bytes(list(block.parameters())) as graph:
            with inp.forward_context():  # the model's own forward only: what is read from it stays float32
                block_out = rerun(block, call, hidden)
        wrt = [*acts, *([hidden] if layer > first else [])]
        parts, below = [], []
        chunks = block_chunks(eye, graph[0] + nbytes(wrt))
        at = 0
        for n, rows in enumerate(chunks):
            grads = torch.autograd.grad(block_out, wrt, grad_outputs=grad_out[at:at + len(rows)],
                                        is_grads_batched=True, allow_unused=True,
                                        retain_graph=n < len(chunks) - 1)
            at += len(rows)
            if chosen:
                parts.append(layer_maps(inp, layer, acts[0], zeros_if_none(grads[0], len(rows), acts[0])))
            if layer > first:
                below.append(grads[-1])
            del grads
        if chosen:
            maps[layer] = np.concatenate(parts)
        del block_out, acts, wrt
        grad_out = torch.cat(below) if layer > first else None
        del below
        release_memory()  # the block's graph and gradients, freed: their pages go back, not to the next block's holes
        if progress is not None:
            progress(adapter.num_layers - layer + 1, adapter.num_layers - first + 1)
    return numpy_logits(logits), [maps[layer] for layer in layers]


#: What this module registers in clipcam.passes.PASSES: its kind's name and its pass.
PASS = ("sublayer", sublayer_pass)
