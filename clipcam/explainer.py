"""The explainer: a model's scores and one heatmap per prompt.

For prompt k the explained quantity is the model's logit for (image, prompt k) (as in the
reference notebook), or its log-softmax or contrast over the prompts (``target``,
clipcam.targets). The method is any record of the registry (clipcam.methods); how it reads the
model is its pass (clipcam.passes), chosen by the record's ``pass_kind``: the explainer checks the
inputs, runs that one pass and assembles the Explanation, and knows no method by name.

Everything model-specific comes from the model's adapter (clipcam.models.base.ModelAdapter).
Text embeddings are computed once per prompt list and cached. Hooks (clipcam.hooks) are
registered per call, inside a ``with`` block, act only in the thread that registered them, and are
removed even when the call fails.
"""

from __future__ import annotations

import time
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from .constants import DEFAULT_TARGET
from .decompose import Decomposition, decompose_reason, decomposition
from .geometry import CropGeometry
from .hooks import capture_outputs, on_grid
from .images import load_image
from .methods import DEFAULT_METHOD, METHODS, REGISTRY, Method, get_method, supported_methods, unsupported_reason
from .models import load_model
from .models.base import ModelAdapter
from .notes import method_notes
from .passes import PASSES, PassInput, Progress
from .passes.common import batch_logits, prompt_chunks
from .precision import FP32, Precision
from .prompts import clean_prompts
from .results import Explanation
from .targets import check_target, target_scores
from .words import WordRelevance, get_word_method
from .words.text_pass import check_text_layer, word_relevance

#: Methods whose layer is where they start, not where they read (the attention methods, rollout).
ATTENTION_METHODS: tuple[str, ...] = tuple(name for name, m in REGISTRY.items() if m.layer_role == "starts")
#: Methods that run one forward pass per channel of the sublayer instead of one backward.
MASKING_METHODS: tuple[str, ...] = tuple(name for name, m in REGISTRY.items() if m.cost == "per channel")

__all__ = ["ATTENTION_METHODS", "DEFAULT_METHOD", "Explainer", "Explanation", "MASKING_METHODS", "METHODS",
           "Progress", "capture_outputs", "check_target", "clean_prompts", "load_explainer", "on_grid",
           "prompt_chunks", "target_scores"]


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
        if get_method(method).cost != "per channel":
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

    # ----------------------------------------------------------------- the pass
    def _logits(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The logits (K,) of one image, exactly as the model's own forward computes them."""
        return batch_logits(self.adapter, pixels, text)[0]

    def _dead(self, record: Method, layer: int, sublayer: str) -> str | None:
        """Only gradient methods on a sublayer are blind to a sublayer that cannot reach the score."""
        return self.adapter.dead_reason(layer, sublayer) if record.sublayer_applies and record.takes_gradient else None

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
        """Scores and one heatmap per prompt at ``layer`` (1-based; default: second-to-last, or the
        method's own start where its authors fix one, as GEM's and CLIP Surgery's last 6 blocks).

        method: one of METHODS (default Grad-CAM) that this model's family supports; for a method
        whose layer is where it starts (``layer_role == "starts"``: the attention methods, rollout)
        the sublayer is ignored and the method runs from ``layer`` to the last. sublayer: one of
        this family's sublayers (default: its MLP's first projection, as the notebook). target: what
        is explained per prompt (clipcam.constants.TARGETS). progress(done, total) is called as
        Score-CAM's masked forwards complete, and as a gradient pass that spans more than
        clipcam.passes.common.DIRECT_BLOCKS layers goes back one block at a time; the app checks its
        time limit there (a one-layer explain near the end calls it never). words: a word-relevance
        method (clipcam.words.WORD_METHODS) to also say which words of each prompt matter, from a
        text pass of its own (off by default); words_layer: its start layer in the text encoder.
        """
        if layer is None:  # the method's own start where its authors fix one (GEM, CLIP Surgery), else the model's
            own = get_method(method).default_layer
            layer = own(self.adapter.num_layers, self.adapter.capabilities) if own is not None else self.default_layer
        layer = self.adapter.check_layer(layer)
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
        """The one path behind explain and sweep: the checks, the method's pass (clipcam.passes) for
        every chosen layer, and the result."""
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
        precision, precision_note = self._precision_for(record)
        logits, maps = PASSES[record.pass_kind.name](PassInput(self.adapter, pixels, text, chosen, grids, sublayer, target,
                                                          record, progress, precision))
        relevance = self._words(pixels, prompts, target, words, words_layer)
        stacked, kept = _stack_grids(maps)
        reasons = tuple(self._dead(record, layer, sublayer) for layer in chosen)
        notes.extend(method_notes(record, prompts, target))
        notes.extend(precision_note)
        if len(chosen) == 1 and reasons[0] is None and not stacked.any():
            notes.append("The heatmaps are all zero here: no patch pushes any prompt's score up at this layer.")
        return Explanation(
            prompts=prompts, logits=logits, probs=self.adapter.probabilities(logits), layers=chosen,
            layer_maps=stacked, geometry=geometries[chosen[kept]], image=rgb, model=self.name,
            sublayer=sublayer if record.sublayer_applies else "self_attn", target=target, method=record.name,
            dead_reasons=reasons, notes=tuple(notes) + text_notes, seconds=time.perf_counter() - start,
            prob_kind=self.adapter.prob_kind, family=self.family, word_relevance=relevance,
        )

    def _precision_for(self, record: Method) -> tuple[Precision | None, list[str]]:
        """float32 for a method that bfloat16 would change (``Method.float32``) on a model whose weights are
        float32, with the note saying so; otherwise the model's own precision (None) and no note."""
        own = self.adapter.precision
        if not record.float32 or own.compute == torch.float32 or own.weights != torch.float32:
            return None, []
        return FP32, [f"{record.label} ran in float32, not {own.label}: {record.float32}."]

    def _check_words(self, words: str | None, words_layer: object) -> int | None:
        """The word method's text start layer (checked before any work), None when words are off."""
        if words is None:
            return None
        return check_text_layer(self.adapter, get_word_method(words), words_layer)

    def _words(self, pixels: torch.Tensor, prompts: tuple[str, ...], target: str, words: str | None,
               words_layer: int | None) -> WordRelevance | None:
        """Word relevance from the text side's own pass (clipcam.words), or None when not asked for."""
        if words is None:
            return None
        return word_relevance(self.adapter, pixels, prompts, target, words, words_layer)

    def decompose(self, image: object, prompts: Sequence[str] | str) -> Decomposition:
        """Each prompt's logit split exactly into the embedding, every layer's heads (per patch too)
        and MLPs, from one forward without gradients (clipcam.decompose)."""
        reason = decompose_reason(self.adapter)
        if reason:
            raise ValueError(reason)
        prompts = clean_prompts(prompts)
        rgb, pixels, geometry, _ = self.prepare_image(image)
        text, _ = self.text_embeddings(prompts)
        return decomposition(self.adapter, pixels, text, prompts, rgb, geometry)

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


def load_explainer(model: str = "base", device: str = "auto", half: bool = False,
                   precision: str | None = None) -> Explainer:
    """An Explainer for a short name ("base", "siglip", "rn50", …), a hub id, an open_clip name
    (hf-hub:org/repo, local-dir:/path) or a local directory. ``precision``: "fp32" (the default),
    "bf16", "fp16" or "auto" (clipcam.precision); ``half=True`` is an alias of "fp16"."""
    return Explainer(load_model(model, device=device, half=half, precision=precision))
