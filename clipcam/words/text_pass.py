"""The text side's own forward and backward: word relevance for K prompts against one image.

The image embedding is computed without gradients; the prompts go through the text encoder with
hooks (clipcam.hooks.capture_outputs: the earliest hooked output becomes a detached leaf, so
no weight gets a gradient). Prompt k's relevance explains its own score S_k on its own tokens.
The text encoder runs the K prompts side by side without mixing them, so the K gradients come
from one backward: first g_k = ∂S_k/∂e_k at each prompt's text embedding e_k (a (K, K, P)
batched gradient, tiny), then ⟨g, e⟩ differentiated once through the encoder. This is exact for
every target, including the log-softmax and contrast, whose S_k depend on the other prompts too.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import torch

from ..hooks import capture_outputs
from ..models.base import ModelAdapter
from ..models.layers import check_layer
from ..targets import target_scores
from . import TextLayer, WordMethod, WordRelevance, get_word_method, prompt_words
from .intgrad import path_points


def check_text_layer(adapter: ModelAdapter, record: WordMethod, layer: object) -> int | None:
    """The word method's 1-based start layer in the text encoder (its authors' default when None),
    None for methods without one; a ValueError naming the range otherwise."""
    layers = adapter.text_num_layers
    if record.reads != "attention":
        return None
    if layer is None:
        return record.default_layer(layers)
    return check_layer(layer, layers, "text layer")


def word_relevance(adapter: ModelAdapter, pixels: torch.Tensor, prompts: Sequence[str], target: str,
                   method: str, layer: int | None = None, counterfactual: bool = False,
                   image: torch.Tensor | None = None) -> WordRelevance:
    """Word relevance of ``method`` for each prompt's score (``target``) against the image ``pixels``
    (1, 3, S, S); ``layer`` is the text encoder's start layer for the attention methods.

    counterfactual=True explains −S instead, so a non-negative method shows the words that speak
    against the prompt (Selvaraju et al.'s counterfactual explanations, ICCV 2017: the negated
    gradient); a signed method's values simply change sign. image: the image embedding (1, P) when
    the caller already has it (then ``pixels`` is not read)."""
    record = get_word_method(method)
    layer = check_text_layer(adapter, record, layer)
    prompts = tuple(prompts)
    inputs = adapter.text_inputs(prompts)
    if image is None:
        with torch.no_grad(), adapter.forward_context():
            image = adapter.image_features(pixels).float()  # (1, P)
    if record.reads == "path":
        tokens = record.compute(*path_gradients(adapter, image, prompts, target, counterfactual))
        return _relevance(record, layer, target, counterfactual, prompts, inputs, tokens)
    if record.reads == "attention":
        sites = adapter.text_sites(layer)
        modules, reads = [s.out for s in sites], [m for s in sites for m in s.reads]
    else:
        sites, modules, reads = [], [adapter.text_token_embedding()], []
    with capture_outputs(modules, values=reads) as caught, torch.enable_grad():
        with adapter.forward_context():  # the encoder in the model's precision, the scores in float32
            emb = adapter.encode_text(prompts).float()  # (K, P), in the graph from the first hooked output on
        unit = emb / emb.pow(2).sum(dim=-1, keepdim=True).sqrt()
        scores = target_scores(adapter.logits(image, unit)[0], target)  # (K,)
        if counterfactual:
            scores = -scores
    if any(c is None for c in caught):
        raise RuntimeError("A hooked text-encoder module did not run in the forward pass.")
    k = len(prompts)
    eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
    (pairs,) = torch.autograd.grad(scores, emb, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
    own = pairs.diagonal(dim1=0, dim2=1).T  # (K, P): ∂S_k/∂e_k
    grads = torch.autograd.grad(emb, caught[:len(modules)], grad_outputs=own)  # each (K, T, D)
    mask, pooled = inputs.mask.to(emb.device), inputs.pooled.to(emb.device)
    if record.reads == "attention":
        values, layers, at = caught[len(modules):], [], 0
        for site, grad in zip(sites, grads):
            q, key, v = site.split(values[at:at + len(site.reads)])  # (K, T, D) each
            at += len(site.reads)
            layers.append(TextLayer(grad_out=grad.float(), out_weight=site.out_weight.float(), q=q.float(),
                                    k=key.float(), v=v.float(), heads=site.heads))
        tokens = record.compute(layers, mask, pooled)  # (K, T)
    else:
        tokens = record.compute(caught[0], grads[0])  # (K, T)
    return _relevance(record, layer, target, counterfactual, prompts, inputs, tokens)


def _relevance(record: WordMethod, layer: int | None, target: str, counterfactual: bool, prompts: tuple[str, ...],
               inputs, tokens: torch.Tensor) -> WordRelevance:
    """The per-token values (K, T) → the WordRelevance of the prompts' own tokens."""
    tokens = tokens.detach().float().cpu().numpy()
    keep = inputs.keep.cpu().numpy()
    return WordRelevance(
        method=record.name, layer=layer, target=f"-{target}" if counterfactual else target, signed=record.signed,
        prompts=tuple(prompt_words(p, pieces, np.asarray(row[kk], dtype=np.float32))
                      for p, pieces, row, kk in zip(prompts, inputs.pieces, tokens, keep)),
    )


#: Prompt-steps per chunk of the integrated-gradients path (K prompts × steps sequences at most this many).
PATH_CHUNK = 64


def path_gradients(adapter: ModelAdapter, image: torch.Tensor, prompts: tuple[str, ...], target: str,
                   counterfactual: bool = False, alphas: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(e − b, the mean gradient along the path) (K, T, D) each, for integrated gradients.

    e: the prompts' token embeddings, b = 0. At each α of ``alphas`` (default: intgrad.path_points())
    the token embedding module's output is replaced by α·e, as a leaf; prompt k's score S_k is then
    computed with prompt k's own logit from the scaled text and the other prompts' logits from the
    unscaled ones (so S_k is a function of prompt k's tokens alone, also for the log-softmax and
    the contrast, which read every prompt). The K × len(alphas) scaled prompts run in chunks of at
    most PATH_CHUNK sequences; one backward per chunk."""
    alphas = path_points() if alphas is None else alphas
    module = adapter.text_token_embedding()
    k = len(prompts)
    with torch.no_grad():  # the unscaled prompts' logits, from the adapter's cached text embeddings
        full = adapter.logits(image, adapter.text_embeddings(prompts)[0])[0].float()  # (K,)
    per_chunk = max(1, PATH_CHUNK // k)
    total, delta = None, None
    owner = threading.get_ident()
    for at in range(0, len(alphas), per_chunk):
        chunk = alphas[at:at + per_chunk]
        n = len(chunk)
        scale = chunk.repeat_interleave(k)  # step-major: row n·K + k is prompt k at α_n
        leaves: list[torch.Tensor] = []

        def hook(mod, args, output, scale=scale, leaves=leaves):
            if threading.get_ident() != owner:
                return None
            leaf = (output.detach() * scale.to(output.dtype).to(output.device)[:, None, None]).requires_grad_(True)
            leaves.append((output.detach(), leaf))
            return leaf

        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                with adapter.forward_context():  # the encoder in the model's precision; the path and its sum in float32
                    out = adapter.encode_text(list(prompts) * n).float()  # (n·K, P)
                own = adapter.logits(image, out / out.pow(2).sum(dim=-1, keepdim=True).sqrt())[0].float().view(n, k)
                eye = torch.eye(k, dtype=own.dtype, device=own.device)
                logits = full.to(own.device) * (1 - eye) + own[:, :, None] * eye  # (n, K, K): row k uses own[n, k]
                scores = target_scores(logits, target).diagonal(dim1=1, dim2=2)  # (n, K)
                if counterfactual:
                    scores = -scores
        finally:
            handle.remove()
        if len(leaves) != 1:
            raise RuntimeError("The token embedding module did not run exactly once in the forward pass.")
        plain, leaf = leaves[0]
        (grad,) = torch.autograd.grad(scores.sum(), leaf)
        grad = grad.float().view(n, k, *grad.shape[1:]).sum(dim=0)
        if total is None:
            total, delta = grad, plain[:k].float()  # e: the unscaled output, the same in every chunk
        else:
            total = total + grad
    return delta, total / len(alphas)
