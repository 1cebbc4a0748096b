"""The attention fold (Chefer, Grad-ECLIP, LeGrad): q, k, v and the gradient at the attention
output of every layer from the start layer to the last, folded by the method's LayerFold
(clipcam.methods.attention) into the map of every start layer.

One forward and batched gradients; over many layers it goes one block at a time
(clipcam.passes.blockwise): going back from the last block, each block runs again from its
recorded input, its q, k, v are read and its gradients taken for all prompts, and the fold takes
the layer in, so no layer's gradients are kept. A fold with a ``layer_score`` scores each layer on
its own and differentiates that score at the layer only (LeGrad). Padding tokens (NaFlex) are
dropped everywhere, also before a layer is read out, which is the model's own masking.
"""

from __future__ import annotations

import numpy as np
import torch

from ..hooks import capture_outputs, on_grid
from ..memory import release_memory
from ..methods.attention import AttentionLayer, LayerFold
from ..models.base import AttentionSite
from ..targets import target_scores
from .blockwise import hidden_of, nbytes, rerun, saved_bytes, tail_pass
from .common import (PassInput, PassOutput, block_chunks, goes_blockwise, logits_of, numpy_logits, per_layer,
                     prompt_chunks, prompt_eye)


def attention_pass(inp: PassInput) -> PassOutput:
    """Logits (K,) and the method's map (K, rows, cols) for every chosen (start) layer."""
    logits, maps = (blockwise_pass if goes_blockwise(inp.adapter, inp.first) else direct_pass)(inp)
    return logits, per_layer(maps, inp.first, inp.layers)


def read_layer(inp: PassInput, site: AttentionSite, grad: torch.Tensor, qkv: tuple[torch.Tensor, ...],
               at_head: bool) -> AttentionLayer:
    """One layer for the fold, from its q, k, v (T, D) and the batched gradient (k, 1, ...) taken at
    its attention output (at_head False) or at the tensor its layer score named (at_head True)."""
    grad = grad[:, 0].float()
    grid, prefix = inp.grids[inp.first], inp.adapter.prefix
    q, k, v = qkv
    return AttentionLayer(grad_out=None if at_head else on_grid(grad, grid, prefix), out_weight=site.out_weight.float(),
                          q=q, k=k, v=v, heads=site.heads, head_grad=grad if at_head else None)


def direct_pass(inp: PassInput) -> tuple[np.ndarray, list[np.ndarray]]:
    """One forward and batched gradients, the whole graph kept: maps for every start layer."""
    adapter, start, grid, fold = inp.adapter, inp.first, inp.grids[inp.first], inp.method.compute
    assert isinstance(fold, LayerFold)
    sites = adapter.attention_sites(start)
    n = len(sites)
    reads = [m for site in sites for m in site.reads]
    states = ([adapter.module(layer, "block") for layer in range(start, adapter.num_layers + 1)]
              if fold.layer_score is not None else [])
    with capture_outputs([*(s.out for s in sites), *states], values=reads) as caught, torch.enable_grad():
        logits = logits_of(inp)  # (K,)
        scores = target_scores(logits, inp.target)
        scored = [fold.layer_score(adapter, on_grid(h, grid, adapter.prefix), inp.text, inp.target)  # (score, at)
                  for h in caught[n:n + len(states)]] if fold.layer_score is not None else []
    out_acts, values = caught[:n], caught[n + len(states):]
    pieces, at = [], 0
    for site in sites:
        pieces.append(tuple(on_grid(t.float(), grid, adapter.prefix)
                            for t in site.split(values[at:at + len(site.reads)])))  # q, k, v (T, D)
        at += len(site.reads)
    wrts = [there if there is not None else out for out, (_, there) in zip(out_acts, scored)] if scored else out_acts
    parts: list[list[np.ndarray]] = []
    chunks = prompt_chunks(prompt_eye(logits), nbytes(wrts))
    for c, rows in enumerate(chunks):
        if scored:  # each layer's own score, differentiated at its own attention only
            layers = []
            for site, wrt, (score, there), qkv in zip(sites, wrts, scored, pieces):
                (grad,) = torch.autograd.grad(score, wrt, grad_outputs=rows, is_grads_batched=True, retain_graph=True)
                layers.append(read_layer(inp, site, grad, qkv, there is not None))
        else:
            grads = torch.autograd.grad(scores, out_acts, grad_outputs=rows, is_grads_batched=True,
                                        retain_graph=c < len(chunks) - 1)
            layers = [read_layer(inp, site, g, qkv, False) for site, g, qkv in zip(sites, grads, pieces)]
            del grads
        parts.append(fold(layers, grid, adapter.prefix))  # one (k, rows, cols) map per start layer
        del layers
    maps = [np.concatenate([chunk[i] for chunk in parts]) for i in range(len(parts[0]))]
    return numpy_logits(logits), maps


def blockwise_pass(inp: PassInput) -> tuple[np.ndarray, list[np.ndarray]]:
    """``direct_pass`` one block at a time, the fold's three steps taken as each layer's gradient
    arrives: maps for every start layer."""
    adapter, start, grid, fold, progress = inp.adapter, inp.first, inp.grids[inp.first], inp.method.compute, inp.progress
    assert isinstance(fold, LayerFold)
    own_scores = fold.layer_score is not None
    sites, blocks = adapter.attention_sites(start), adapter.blocks()
    logits, scores, out, calls = tail_pass(inp, start)
    eye = prompt_eye(logits)
    grad_out = None if own_scores else \
        torch.autograd.grad(scores, out, grad_outputs=eye, is_grads_batched=True)[0]  # (K, *out)
    del scores, out
    state, maps = None, [None] * len(sites)
    for i in range(len(sites) - 1, -1, -1):
        site, call, block = sites[i], calls[i], blocks[start + i - 1]
        chain = not own_scores and i > 0  # the gradient at this block's input feeds the one before
        hidden = hidden_of(call).detach().requires_grad_(chain)
        there = None
        with capture_outputs([site.out], values=site.reads) as caught, torch.enable_grad(), \
                saved_bytes(list(block.parameters())) as graph:
            with inp.forward_context():  # the model's own forward only: what is read from it stays float32
                block_out = rerun(block, call, hidden)
            if own_scores:  # this layer's own score, differentiated at its own attention only
                score, there = fold.layer_score(adapter, on_grid(block_out, grid, adapter.prefix), inp.text, inp.target)
        qkv = tuple(on_grid(t.float(), grid, adapter.prefix) for t in site.split(caught[1:]))
        source = score if own_scores else block_out
        wrt = [there if there is not None else caught[0], *([hidden] if chain else [])]
        terms, below, at = [], [], 0
        chunks = block_chunks(eye, graph[0] + nbytes(wrt))
        for n, rows in enumerate(chunks):
            seeds = rows if own_scores else grad_out[at:at + len(rows)]
            grads = torch.autograd.grad(source, wrt, grad_outputs=seeds, is_grads_batched=True,
                                        retain_graph=n < len(chunks) - 1)
            at += len(rows)
            layer = read_layer(inp, site, grads[0], qkv, there is not None)
            terms.append(fold.term(layer, adapter.prefix))
            if chain:
                below.append(grads[-1])
            del grads, layer
        state = fold.accumulate(state, torch.cat(terms))
        maps[i] = fold.finish(state, grid, adapter.prefix)
        grad_out = torch.cat(below) if chain else None
        del terms, below, block_out, caught, wrt, source, there
        release_memory()
        if progress is not None:
            progress(len(sites) - i, len(sites))
    return numpy_logits(logits), maps  # type: ignore[return-value]


#: What this module registers in clipcam.passes.PASSES: its kind's name and its pass.
PASS = ("attention", attention_pass)
