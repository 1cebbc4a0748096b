"""The explainer: a model's scores and one heatmap per prompt, from one forward pass.

For prompt k the explained quantity is the model's logit for (image, prompt k) (as in the
reference notebook), or its log-softmax or contrast over the prompts (``target``). The method is
any record of the registry (clipcam.methods): the Grad-CAM family on a sublayer's output,
Score-CAM's masked forwards, or an attention method from a start layer to the last.

Everything model-specific comes from the model's adapter (clipcam.models.base.ModelAdapter): the
input, the layers and sublayers, the token layout, q/k/v, the readout and the score. The image
goes through the vision tower once; the hooked activations are replaced by detached leaves that
require grad, so the backward stops there and never fills a parameter's ``.grad``; the K
gradients come from one batched ``torch.autograd.grad`` call. Text embeddings are computed once
per prompt list and cached. Hooks are registered per call, inside a ``with`` block, act only in
the thread that registered them, and are removed even when the call fails.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from .blockwise import hidden_of, nbytes, record_calls, rerun, saved_bytes
from .constants import DEFAULT_TARGET, MAX_PROMPT_CHARS, MAX_PROMPTS, TARGETS, check_choice
from .geometry import CropGeometry
from .images import load_image
from .memory import release_memory
from .methods import DEFAULT_METHOD, METHODS, Method, get_method, methods_reading, supported_methods, unsupported_reason
from .methods.attention import AttentionLayer, LayerFold
from .methods.gradeclip_authors import single_head
from .models import load_model
from .models.base import ModelAdapter
from .results import Explanation

if TYPE_CHECKING:
    from .words import WordRelevance

#: Methods that read attention, not a sublayer: the layer is where they start.
ATTENTION_METHODS: tuple[str, ...] = methods_reading("attention")
#: Methods that run one forward pass per channel of the sublayer instead of one backward.
MASKING_METHODS: tuple[str, ...] = methods_reading("masking")

#: progress(done, total): called as a slow method's forward passes complete (Score-CAM), or as a
#: block-by-block pass goes back through the layers (clipcam.blockwise); the app checks its time
#: limit and whether the person is still there at each call.
Progress = Callable[[int, int], None]

__all__ = ["ATTENTION_METHODS", "DEFAULT_METHOD", "Explainer", "Explanation", "MASKING_METHODS", "METHODS",
           "load_explainer"]


@contextmanager
def capture_outputs(
    modules: Sequence[torch.nn.Module], values: Sequence[torch.nn.Module] = ()
) -> Iterator[list[torch.Tensor | None]]:
    """Within the block, each module's output (in this thread only) is collected in the yielded
    list, in the order of ``modules``, as a tensor that requires grad; the outputs of ``values``
    follow, recorded as they are (detached), for methods that only read them.

    The earliest hooked output becomes a detached leaf, so the backward stops there; later ones
    already depend on it and are kept in the graph as they are (detaching them too would cut the
    paths through them from the gradients of earlier layers). Values are unchanged, so the
    forward computes exactly what it would without hooks. Hooks are removed on
    exit, also on an exception; forwards in other threads pass through untouched.
    """
    captured: list[torch.Tensor | None] = [None] * (len(modules) + len(values))
    owner = threading.get_ident()

    def make_hook(index: int):
        def hook(module, args, output):
            if threading.get_ident() != owner:
                return None
            tensor = output[0] if isinstance(output, tuple) else output
            if index >= len(modules):  # read-only
                captured[index] = tensor.detach()
                return None
            if tensor.requires_grad:  # downstream of an earlier hooked activation: keep the graph whole
                captured[index] = tensor
                return None
            leaf = tensor.detach().requires_grad_(True)
            captured[index] = leaf
            return (leaf, *output[1:]) if isinstance(output, tuple) else leaf

        return hook

    handles = []
    try:
        for index, module in enumerate([*modules, *values]):
            handles.append(module.register_forward_hook(make_hook(index)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def clean_prompts(prompts: Sequence[str] | str) -> tuple[str, ...]:
    """Strip prompts and drop blank ones; raise ValueError when none is left, too many are given or
    one is longer than MAX_PROMPT_CHARS (checked before stripping, so a huge text costs nothing)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    for i, p in enumerate(prompts):
        if isinstance(p, str) and len(p) > MAX_PROMPT_CHARS:
            raise ValueError(f"Prompt {i + 1} is {len(p)} characters long; clipcam accepts at most {MAX_PROMPT_CHARS} "
                             "per prompt (CLIP reads only 77 tokens). Shorten it.")
    cleaned = tuple(p.strip() for p in prompts if isinstance(p, str) and p.strip())
    if not cleaned:
        raise ValueError("No prompts given: type at least one text prompt, such as 'a photo of a cat.'.")
    if len(cleaned) > MAX_PROMPTS:
        raise ValueError(f"{len(cleaned)} prompts given; clipcam explains at most {MAX_PROMPTS} at once.")
    return cleaned


def check_target(target: str) -> str:
    """Return ``target`` if it is one of TARGETS, else raise ValueError listing them."""
    return check_choice(target, TARGETS, "target")


def target_scores(logits: torch.Tensor, target: str) -> torch.Tensor:
    """The K quantities that are explained, from the K logits (..., K) (the last axis: prompts)."""
    if target == "log_softmax":
        return torch.log_softmax(logits, dim=-1)
    if target == "contrast":
        return logits - logits.mean(dim=-1, keepdim=True)
    return logits


#: The most bytes of gradients one batched backward may hold: the prompts are differentiated in
#: groups whose gradients at the hooked activations fit in it (all at once for one layer of base or
#: large; a sweep of large's mlp.fc1, 101 MB per prompt, one prompt at a time).
GRADIENT_BYTES = 64 * 2**20


#: A gradient pass that spans more blocks than this backpropagates one block at a time, where the
#: family allows it (clipcam.blockwise): it holds one block's graph instead of all of them, for one
#: more forward through those blocks. A one-layer explain near the end (the default) stays direct.
DIRECT_BLOCKS = 4
#: Block by block, the prompts go back through a block in groups whose gradients there (about the
#: block's saved activations per prompt, counted as it runs again) fit in this many bytes.
BLOCK_GRADIENT_BYTES = 32 * 2**20


def prompt_chunks(eye: torch.Tensor, bytes_per_prompt: int, budget: int | None = None) -> list[torch.Tensor]:
    """The rows of ``eye`` (K, K) in consecutive groups whose gradients fit in ``budget`` bytes
    (default GRADIENT_BYTES), at least one prompt per group. Each prompt's map depends only on its
    own gradient, so the groups give the same maps as one batch, with the memory of one group."""
    per = max(1, (GRADIENT_BYTES if budget is None else budget) // max(1, bytes_per_prompt))
    return [eye[at:at + per] for at in range(0, eye.shape[0], per)]


def on_grid(tokens: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """tokens (..., T, D) → the prefix and grid tokens (..., prefix + rows·cols, D). What follows
    them is padding (SigLIP 2's NaFlex pads every image's patches to one count; the model masks
    it out), which no method may see; for the other families this keeps every token."""
    return tokens[..., :prefix + grid[0] * grid[1], :]


def _stack_grids(maps: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Stack per-layer maps (K, rows, cols); layers of a CNN have different grids, so each is
    resampled (bilinear, cell centres aligned) onto the finest one. Returns (L, K, rows, cols) and
    the index of the layer whose grid was kept."""
    finest = max(range(len(maps)), key=lambda i: maps[i].shape[-1] * maps[i].shape[-2])
    rows, cols = maps[finest].shape[-2:]
    out = [m if m.shape[-2:] == (rows, cols) else
           np.stack([cv2.resize(p, (cols, rows), interpolation=cv2.INTER_LINEAR) for p in m]) for m in maps]
    return np.stack(out).astype(np.float32), finest


class Explainer:
    """Explains one loaded model of any supported family. Cheap to make and safe to share between
    threads: calls keep no state on it; text embeddings go to the adapter's lock-guarded cache."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.adapter = adapter

    @property
    def model(self) -> torch.nn.Module:
        """The underlying model (frozen)."""
        return self.adapter.model

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def family(self) -> str:
        return self.adapter.family

    @property
    def num_layers(self) -> int:
        """Number of layers (blocks, or a CNN's stages), numbered 1..num_layers."""
        return self.adapter.num_layers

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the token grid (of the last stage for CNNs; of a square image for SigLIP 2
        NaFlex, whose grid follows each image: see a result's ``geometry.grid``)."""
        return self.adapter.grid

    @property
    def sublayers(self) -> tuple[str, ...]:
        return self.adapter.sublayers

    @property
    def default_sublayer(self) -> str:
        return self.adapter.default_sublayer

    @property
    def default_layer(self) -> int:
        """The second-to-last layer, where the reference notebook looks first (a CNN: its last stage)."""
        return self.adapter.default_layer

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this model's family supports."""
        return supported_methods(self.adapter.capabilities)

    def check_method(self, method: str) -> Method:
        """The record of ``method`` if this model supports it, else a ValueError saying why not."""
        record = get_method(method)
        reason = unsupported_reason(method, self.adapter.capabilities, self.adapter.family_label)
        if reason:
            raise ValueError(reason)
        return record

    def masked_forwards(self, method: str, sublayer: str, layers: int = 1) -> int:
        """How many masked forward passes a call runs: channels × layers for Score-CAM, else 0."""
        if get_method(method).reads != "masking":
            return 0
        return self.adapter.channels(sublayer) * layers

    # ----------------------------------------------------------------- inputs
    def prepare_image(self, image: object, layer: int | None = None
                      ) -> tuple[Image.Image, torch.Tensor, CropGeometry, list[str]]:
        """Read the image and run the model's preprocessing: (rgb image, the model's input (pixels
        (1, 3, S, S) for most families), geometry, notes)."""
        rgb, notes = load_image(image)
        return rgb, self.adapter.preprocess(rgb), self.adapter.geometry(rgb.size, layer), notes

    def text_embeddings(self, prompts: Sequence[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
        """Unit-norm text embeddings (K, P) for the prompts, cached per prompt list, and notes."""
        return self.adapter.text_embeddings(prompts)

    # ----------------------------------------------------------------- core passes
    def _batch_logits(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The model's logits (B, K), exactly as its own forward computes them."""
        return self.adapter.logits(self.adapter.image_features(pixels), text)

    def _logits(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The logits (K,) of one image."""
        return self._batch_logits(pixels, text)[0]

    def _sublayer_pass(self, pixels: torch.Tensor, text: torch.Tensor, layers: Sequence[int],
                       grids: dict[int, tuple[int, int]], sublayer: str, target: str, record: Method
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward, one batched gradient: logits (K,) and raw maps (K, rows, cols) per layer."""
        adapter = self.adapter
        modules = [adapter.module(layer, sublayer) for layer in layers]
        with capture_outputs(modules) as acts, torch.enable_grad():
            logits = self._logits(pixels, text)  # (K,)
            scores = target_scores(logits, target)  # (K,)
        missing = [i for i, a in enumerate(acts) if a is None]
        if missing:
            raise RuntimeError(f"Hooked modules {missing} did not run in the forward pass.")
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)  # row k selects prompt k
        tokens = [on_grid(adapter.tokens(act.detach())[0], grids[layer], adapter.prefix) for layer, act in zip(layers, acts)]
        parts: list[list[np.ndarray]] = [[] for _ in layers]
        chunks = prompt_chunks(eye, nbytes(acts))
        for n, rows in enumerate(chunks):
            grads = torch.autograd.grad(scores, acts, grad_outputs=rows, is_grads_batched=True, allow_unused=True,
                                        retain_graph=n < len(chunks) - 1)  # each (k, *activation), None: cannot reach
            for i, (layer, act, grad) in enumerate(zip(layers, acts, grads)):
                if grad is None:
                    grad = torch.zeros((len(rows), *act.shape), dtype=act.dtype, device=act.device)
                grad_tokens = on_grid(adapter.tokens(grad.flatten(0, 1)), grids[layer], adapter.prefix)  # (k, T, D)
                parts[i].append(record.compute(tokens[i], grad_tokens, grids[layer], adapter.prefix))
            del grads
        return logits.detach().float().cpu().numpy(), [np.concatenate(p) for p in parts]

    def _blockwise(self, first: int) -> bool:
        """Whether a gradient pass from layer ``first`` to the last goes one block at a time."""
        return self.adapter.blocks() is not None and self.adapter.num_layers - first + 1 > DIRECT_BLOCKS

    def _tail_pass(self, pixels: torch.Tensor, text: torch.Tensor, target: str, first: int):
        """One forward whose graph starts at the last block's output. Returns the logits (K,), the
        target scores (K,) (differentiable), that output (a leaf), and the call of every block from
        ``first`` to the last."""
        blocks = self.adapter.blocks()[first - 1:]
        with record_calls(blocks) as calls, capture_outputs([blocks[-1]]) as caught, torch.enable_grad():
            logits = self._logits(pixels, text)  # (K,)
            scores = target_scores(logits, target)
        if caught[0] is None or any(call is None for call in calls):
            raise RuntimeError("The model's blocks did not run in the forward pass.")
        return logits, scores, caught[0], calls

    def _sublayer_blockwise(self, pixels: torch.Tensor, text: torch.Tensor, layers: Sequence[int],
                            grids: dict[int, tuple[int, int]], sublayer: str, target: str, record: Method,
                            progress: Progress | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``_sublayer_pass`` one block at a time (clipcam.blockwise): from the last block back to
        the first chosen layer, each block is run again from its recorded input, the prompts'
        gradients are taken at its sublayer and at its input, and its graph is let go."""
        adapter = self.adapter
        first, blocks = min(layers), adapter.blocks()
        logits, scores, out, calls = self._tail_pass(pixels, text, target, first)
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        (grad_out,) = torch.autograd.grad(scores, out, grad_outputs=eye, is_grads_batched=True)  # (K, *out)
        del scores, out
        maps: dict[int, np.ndarray] = {}
        for layer in range(adapter.num_layers, first - 1, -1):
            call = calls[layer - first]
            hidden = hidden_of(call).detach().requires_grad_(layer > first)  # the first block's input needs no gradient
            chosen = layer in layers
            block = blocks[layer - 1]
            with capture_outputs([adapter.module(layer, sublayer)] if chosen else []) as acts, torch.enable_grad(), \
                    saved_bytes(list(block.parameters())) as graph:
                block_out = rerun(block, call, hidden)
            wrt = [*acts, *([hidden] if layer > first else [])]
            parts, below = [], []
            chunks = prompt_chunks(eye, graph[0] + nbytes(wrt), BLOCK_GRADIENT_BYTES)
            at = 0
            for n, rows in enumerate(chunks):
                grads = torch.autograd.grad(block_out, wrt, grad_outputs=grad_out[at:at + len(rows)],
                                            is_grads_batched=True, allow_unused=True,
                                            retain_graph=n < len(chunks) - 1)
                at += len(rows)
                if chosen:
                    act, grad = acts[0], grads[0]
                    if grad is None:
                        grad = torch.zeros((len(rows), *act.shape), dtype=act.dtype, device=act.device)
                    tokens = on_grid(adapter.tokens(act.detach())[0], grids[layer], adapter.prefix)
                    grad_tokens = on_grid(adapter.tokens(grad.flatten(0, 1)), grids[layer], adapter.prefix)
                    parts.append(record.compute(tokens, grad_tokens, grids[layer], adapter.prefix))
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
        return logits.detach().float().cpu().numpy(), [maps[layer] for layer in layers]

    def _masking_pass(self, pixels: torch.Tensor, text: torch.Tensor, layers: Sequence[int],
                      grids: dict[int, tuple[int, int]], sublayer: str, target: str, record: Method,
                      progress: Progress | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward to read the activations, then the masked forwards for each layer (the
        adapter multiplies its input by the masks)."""
        adapter = self.adapter
        modules = [adapter.module(layer, sublayer) for layer in layers]
        with capture_outputs([], values=modules) as acts, torch.no_grad():
            logits = self._logits(pixels, text)
        tokens = [on_grid(adapter.tokens(a)[0], grids[layer], adapter.prefix) for layer, a in zip(layers, acts)]
        total = sum(t.shape[-1] for t in tokens)
        size = adapter.input_size(pixels)

        def scores_of(masks: torch.Tensor) -> torch.Tensor:  # masks (B, 1, H, W) → target scores (B, K)
            return target_scores(self._batch_logits(adapter.mask_inputs(pixels, masks), text), target)

        maps, done = [], 0
        for layer, act in zip(layers, tokens):
            report = None if progress is None else (lambda n, _, base=done: progress(base + n, total))
            maps.append(record.compute(size, act, grids[layer], scores_of, report, prefix=adapter.prefix))
            done += act.shape[-1]
        return logits.float().cpu().numpy(), maps

    def _attention_pass(self, pixels: torch.Tensor, text: torch.Tensor, start: int, grid: tuple[int, int],
                        target: str, record: Method) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward and batched gradients: logits (K,) and the maps (K, rows, cols) of an
        attention method for every start layer from ``start`` to the last. Padding tokens (NaFlex)
        are dropped everywhere, also before a layer is read out, which is the model's own masking."""
        adapter = self.adapter
        sites = adapter.attention_sites(start)
        n = len(sites)
        reads = [m for site in sites for m in site.reads]
        states = ([adapter.module(layer, "block") for layer in range(start, adapter.num_layers + 1)]
                  if record.per_layer_score else [])
        with capture_outputs([*(s.out for s in sites), *states], values=reads) as caught, torch.enable_grad():
            logits = self._logits(pixels, text)  # (K,)
            scores = target_scores(logits, target)
            readouts = [adapter.layer_features(on_grid(h, grid, adapter.prefix))  # (features, head probs)
                        for h in caught[n:n + len(states)]]
            layer_scores = [target_scores(adapter.logits(f, text)[0], target) for f, _ in readouts]
        out_acts, values = caught[:n], caught[n + len(states):]
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        pieces, at = [], 0
        for site in sites:
            pieces.append(tuple(on_grid(t.float(), grid, adapter.prefix)
                                for t in site.split(values[at:at + len(site.reads)])))  # q, k, v (T, D)
            at += len(site.reads)
        sizes = [(probs if probs is not None else out) for out, (_, probs) in zip(out_acts, readouts)] \
            if record.per_layer_score else out_acts
        parts: list[list[np.ndarray]] = []
        chunks = prompt_chunks(eye, nbytes(sizes))
        for n, rows in enumerate(chunks):
            layers = []
            if record.per_layer_score:  # each layer's own score, differentiated at its own attention only
                for site, out, score, (_, probs), (q, key, v) in zip(sites, out_acts, layer_scores, readouts, pieces):
                    wrt = probs if probs is not None else out
                    (grad,) = torch.autograd.grad(score, wrt, grad_outputs=rows, is_grads_batched=True,
                                                  retain_graph=True)
                    grad = grad if probs is not None else on_grid(grad, grid, adapter.prefix)
                    layers.append(AttentionLayer(
                        grad_out=None if probs is not None else grad[:, 0].float(), out_weight=site.out_weight.float(),
                        q=q, k=key, v=v, heads=site.heads, head_grad=grad[:, 0].float() if probs is not None else None))
            else:
                grads = torch.autograd.grad(scores, out_acts, grad_outputs=rows, is_grads_batched=True,
                                            retain_graph=n < len(chunks) - 1)
                layers = [AttentionLayer(grad_out=on_grid(g[:, 0].float(), grid, adapter.prefix),
                                         out_weight=site.out_weight.float(), q=q, k=key, v=v, heads=site.heads)
                          for site, g, (q, key, v) in zip(sites, grads, pieces)]
                del grads
            parts.append(record.compute(layers, grid, adapter.prefix))  # one (k, rows, cols) map per start layer
            del layers
        maps = [np.concatenate([chunk[i] for chunk in parts]) for i in range(len(parts[0]))]
        return logits.detach().float().cpu().numpy(), maps

    def _attention_blockwise(self, pixels: torch.Tensor, text: torch.Tensor, start: int, grid: tuple[int, int],
                             target: str, record: Method, progress: Progress | None = None
                             ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``_attention_pass`` one block at a time (clipcam.blockwise): going back from the last
        block, each block is run again from its recorded input, its q, k, v are read and its
        gradients taken there for all prompts (in groups sized by its graph), and the method's fold
        (clipcam.methods.attention.LayerFold) takes the layer in, so no layer's gradients are kept."""
        adapter = self.adapter
        fold: LayerFold = record.compute
        sites, blocks = adapter.attention_sites(start), adapter.blocks()
        logits, scores, out, calls = self._tail_pass(pixels, text, target, start)
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        grad_out = None if record.per_layer_score else \
            torch.autograd.grad(scores, out, grad_outputs=eye, is_grads_batched=True)[0]  # (K, *out)
        del scores, out
        state, maps = None, [None] * len(sites)
        for i in range(len(sites) - 1, -1, -1):
            site, call, block = sites[i], calls[i], blocks[start + i - 1]
            chain = not record.per_layer_score and i > 0  # the gradient at this block's input feeds the one before
            hidden = hidden_of(call).detach().requires_grad_(chain)
            probs = None
            with capture_outputs([site.out], values=site.reads) as caught, torch.enable_grad(), \
                    saved_bytes(list(block.parameters())) as graph:
                block_out = rerun(block, call, hidden)
                if record.per_layer_score:  # this layer's own score, differentiated at its own attention only
                    features, probs = adapter.layer_features(on_grid(block_out, grid, adapter.prefix))
                    score = target_scores(adapter.logits(features, text)[0], target)
            q, key, v = (on_grid(t.float(), grid, adapter.prefix) for t in site.split(caught[1:]))
            source = score if record.per_layer_score else block_out
            wrt = [probs if probs is not None else caught[0], *([hidden] if chain else [])]
            terms, below, at = [], [], 0
            chunks = prompt_chunks(eye, graph[0] + nbytes(wrt), BLOCK_GRADIENT_BYTES)
            for n, rows in enumerate(chunks):
                seeds = rows if record.per_layer_score else grad_out[at:at + len(rows)]
                grads = torch.autograd.grad(source, wrt, grad_outputs=seeds, is_grads_batched=True,
                                            retain_graph=n < len(chunks) - 1)
                at += len(rows)
                grad = grads[0][:, 0].float()
                layer = AttentionLayer(grad_out=None if probs is not None else on_grid(grad, grid, adapter.prefix),
                                       out_weight=site.out_weight.float(), q=q, k=key, v=v, heads=site.heads,
                                       head_grad=grad if probs is not None else None)
                terms.append(fold.term(layer, adapter.prefix))
                if chain:
                    below.append(grads[-1])
                del grads, grad, layer
            state = fold.accumulate(state, torch.cat(terms))
            maps[i] = fold.finish(state, grid, adapter.prefix)
            grad_out = torch.cat(below) if chain else None
            del terms, below, block_out, caught, wrt, source, probs
            release_memory()
            if progress is not None:
                progress(len(sites) - i, len(sites))
        return logits.detach().float().cpu().numpy(), maps

    def _single_head_pass(self, pixels: torch.Tensor, text: torch.Tensor, grid: tuple[int, int], target: str,
                          record: Method) -> tuple[np.ndarray, np.ndarray]:
        """Grad-ECLIP as its authors compute it: the last layer's attention replaced by one head over
        the full width (changing the model from there on), the gradient taken at that head's output.
        Returns the model's own logits (K,) and the map (K, rows, cols)."""
        adapter = self.adapter
        (site,) = adapter.attention_sites(adapter.num_layers)
        read: list[torch.Tensor] = []
        leaf: list[torch.Tensor] = []
        owner = threading.get_ident()

        def record_read(module, args, output):
            if threading.get_ident() == owner:
                read.append((output[0] if isinstance(output, tuple) else output).detach())

        def replace(module, args, output):
            if threading.get_ident() != owner:
                return None
            q, k, v = (t.float() for t in site.split(read))
            heads = single_head(q, k, v)[None].to(site.out_weight.dtype).requires_grad_(True)  # (1, T, D)
            leaf.append(heads)
            out = torch.nn.functional.linear(heads, site.out_weight, site.out_bias)
            return (out, *output[1:]) if isinstance(output, tuple) else out

        handles = [m.register_forward_hook(record_read) for m in site.reads]
        handles.append(site.out.register_forward_hook(replace))
        try:
            with torch.enable_grad():
                scores = target_scores(self._logits(pixels, text), target)  # (K,) of the modified model
        finally:
            for handle in handles:
                handle.remove()
        k = scores.shape[0]
        eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
        (grad,) = torch.autograd.grad(scores, leaf[0], grad_outputs=eye, is_grads_batched=True)  # (K, 1, T, D)
        q, key, v = (t.float() for t in site.split(read))
        maps = record.compute(grad[:, 0].float(), q, key, v, site.out_weight.float(),
                              None if site.out_bias is None else site.out_bias.float(), grid)
        with torch.no_grad():
            logits = self._logits(pixels, text)  # the model's own scores, unmodified
        return logits.float().cpu().numpy(), maps

    def _run(self, pixels: torch.Tensor, text: torch.Tensor, layers: Sequence[int], grids: dict[int, tuple[int, int]],
             sublayer: str, target: str, record: Method, progress: Progress | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Dispatch on how the method reads the model: (logits (K,), one (K, rows, cols) map per layer
        on that layer's grid, ``grids``)."""
        if record.single_head:  # always the last layer: the same map whatever layer is chosen
            logits, maps = self._single_head_pass(pixels, text, grids[layers[0]], target, record)
            return logits, [maps for _ in layers]
        if record.reads == "attention":  # one pass gives the maps for every start layer (a ViT: one grid)
            if self._blockwise(min(layers)):
                logits, per_start = self._attention_blockwise(pixels, text, min(layers), grids[min(layers)], target,
                                                              record, progress)
            else:
                logits, per_start = self._attention_pass(pixels, text, min(layers), grids[min(layers)], target, record)
            return logits, [per_start[layer - min(layers)] for layer in layers]
        if record.reads == "masking":
            return self._masking_pass(pixels, text, layers, grids, sublayer, target, record, progress)
        if self._blockwise(min(layers)):
            return self._sublayer_blockwise(pixels, text, layers, grids, sublayer, target, record, progress)
        return self._sublayer_pass(pixels, text, layers, grids, sublayer, target, record)

    def _dead(self, record: Method, layer: int, sublayer: str) -> str | None:
        """Only gradient methods on a sublayer are blind to a sublayer that cannot reach the score."""
        return self.adapter.dead_reason(layer, sublayer) if record.reads == "sublayer" else None

    # ----------------------------------------------------------------- public API
    def explain(
        self,
        image: object,
        prompts: Sequence[str] | str,
        layer: int | None = None,
        sublayer: str | None = None,
        target: str = DEFAULT_TARGET,
        method: str = DEFAULT_METHOD,
        progress: Progress | None = None,
        words: str | None = None,
        words_layer: int | None = None,
    ) -> Explanation:
        """Scores and one heatmap per prompt at ``layer`` (1-based; default: second-to-last).

        method: one of METHODS (default Grad-CAM) that this model's family supports; for the
        attention methods the sublayer is ignored and the method runs from ``layer`` to the last.
        sublayer: one of this family's sublayers (default: its MLP's first projection, as the
        notebook). target: what is explained per prompt (clipcam.constants.TARGETS).
        progress(done, total) follows Score-CAM's forward passes. words: a word-relevance method
        (clipcam.words.WORD_METHODS) to also say which words of each prompt matter, from a text
        pass of its own (off by default); words_layer: its start layer in the text encoder.
        """
        layer = self.adapter.check_layer(self.default_layer if layer is None else layer)
        return self._explain(image, prompts, (layer,), sublayer, target, method, progress, words, words_layer)

    def sweep(
        self,
        image: object,
        prompts: Sequence[str] | str,
        sublayer: str | None = None,
        layers: Sequence[int] | None = None,
        target: str = DEFAULT_TARGET,
        method: str = DEFAULT_METHOD,
        progress: Progress | None = None,
        words: str | None = None,
        words_layer: int | None = None,
    ) -> Explanation:
        """Maps of every layer (or the given ones) × every prompt, from a single forward pass
        (Score-CAM adds its masked forwards per layer). A CNN's stages have different grids; their
        maps are resampled onto the finest chosen one."""
        chosen = tuple(range(1, self.num_layers + 1)) if layers is None else tuple(
            self.adapter.check_layer(layer) for layer in layers
        )
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError("Give each layer of the sweep once, and at least one layer.")
        return self._explain(image, prompts, chosen, sublayer, target, method, progress, words, words_layer)

    def _explain(self, image: object, prompts: Sequence[str] | str, chosen: tuple[int, ...], sublayer: str | None,
                 target: str, method: str, progress: Progress | None, words: str | None,
                 words_layer: int | None) -> Explanation:
        """The one path behind explain and sweep: checks, one forward and batched gradients for every
        chosen layer, and the result."""
        start = time.perf_counter()
        record = self.check_method(method)
        sublayer = self.adapter.check_sublayer(self.default_sublayer if sublayer is None else sublayer)
        target = check_target(target)
        prompts = clean_prompts(prompts)
        words_layer = self._check_words(words, words_layer)
        rgb, pixels, _, notes = self.prepare_image(image)
        text, text_notes = self.text_embeddings(prompts)
        # each layer's geometry once: a CNN's grid changes with the stage, SigLIP 2 NaFlex's with the image
        geometries = {layer: self.adapter.geometry(rgb.size, layer) for layer in chosen}
        grids = {layer: g.grid for layer, g in geometries.items()}
        logits, maps = self._run(pixels, text, chosen, grids, sublayer, target, record, progress)
        relevance = self._words(pixels, prompts, target, words, words_layer)
        stacked, kept = _stack_grids(maps)
        reasons = tuple(self._dead(record, layer, sublayer) for layer in chosen)
        notes.extend(self._notes(record, prompts, target))
        if len(chosen) == 1 and reasons[0] is None and not stacked.any():
            notes.append("The heatmaps are all zero here: no patch pushes any prompt's score up at this layer.")
        return Explanation(
            prompts=prompts, logits=logits, probs=self.adapter.probabilities(logits), layers=chosen,
            layer_maps=stacked, geometry=geometries[chosen[kept]], image=rgb, model=self.name,
            sublayer="self_attn" if record.reads == "attention" else sublayer, target=target, method=record.name,
            dead_reasons=reasons, notes=tuple(notes) + text_notes, seconds=time.perf_counter() - start,
            prob_kind=self.adapter.prob_kind, family=self.family, word_relevance=relevance,
        )

    def _check_words(self, words: str | None, words_layer: object) -> int | None:
        """The word method's text start layer (checked before any work), None when words are off."""
        if words is None:
            return None
        from .words import get_word_method
        from .words.text_pass import check_text_layer

        return check_text_layer(self.adapter, get_word_method(words), words_layer)

    def _words(self, pixels: torch.Tensor, prompts: tuple[str, ...], target: str, words: str | None,
               words_layer: int | None) -> WordRelevance | None:
        """Word relevance from the text side's own pass (clipcam.words), or None when not asked for."""
        if words is None:
            return None
        from .words.text_pass import word_relevance

        return word_relevance(self.adapter, pixels, prompts, target, words, words_layer)

    def _notes(self, record: Method, prompts: tuple[str, ...], target: str) -> list[str]:
        notes = []
        if not record.uses_prompts and len(prompts) > 1:
            notes.append(f"{record.short} does not use the prompts (it is the activations' first principal "
                         "component), so every prompt gets the same map; pick another method to compare prompts.")
        if not record.uses_layer:
            notes.append(f"{record.short} always explains the last layer, as its authors' code does, whatever "
                         "layer is chosen; the scores shown are the model's own.")
        if len(prompts) == 1 and target != "logit":
            notes.append(f"With a single prompt the {target} target is constant, so its heatmap is empty; "
                         "add prompts to compare, or use the logit target.")
        return notes

    def scores(self, image: object, prompts: Sequence[str] | str) -> tuple[np.ndarray, np.ndarray]:
        """The model's (logits, probabilities) for the prompts, without gradients."""
        prompts = clean_prompts(prompts)
        _, pixels, _, _ = self.prepare_image(image)
        text, _ = self.text_embeddings(prompts)
        with torch.no_grad():
            logits = self._logits(pixels, text).float().cpu().numpy()
        return logits, self.adapter.probabilities(logits)

    def words(self, image: object, prompts: Sequence[str] | str, method: str = "gradinput", target: str = DEFAULT_TARGET,
              layer: int | None = None) -> WordRelevance:
        """Which words of each prompt matter, without heatmaps: a clipcam.words.WordRelevance from
        the text side's own pass (``explain(..., words=method)`` gives the same with the maps)."""
        prompts = clean_prompts(prompts)
        target = check_target(target)
        layer = self._check_words(method, layer)
        _, pixels, _, _ = self.prepare_image(image)
        return self._words(pixels, prompts, target, method, layer)


def load_explainer(model: str = "base", device: str = "auto", half: bool = False) -> Explainer:
    """An Explainer for a short name ("base", "siglip", "rn50", …), a hub id, an open_clip name
    (hf-hub:org/repo, local-dir:/path) or a local directory."""
    return Explainer(load_model(model, device=device, half=half))
