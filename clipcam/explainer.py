"""The explainer: CLIP's scores and one heatmap per prompt, from one vision forward.

For prompt k the explained quantity is CLIP's ``logits_per_image[0, k]`` (as in the reference
notebook), or its log-softmax or contrast over the prompts (``target``). The method is Grad-CAM or
one of its family (clipcam.methods.cam), Score-CAM (clipcam.methods.scorecam, one masked forward per channel), or
an attention method: Chefer et al.'s relevance, Grad-ECLIP or LeGrad (clipcam.methods.chefer,
.gradeclip, .legrad), whose layer is where they start.

The image goes through the vision encoder once; the hooked activations are replaced by detached
leaves that require grad, so the backward stops there and never fills a parameter's
``.grad``; the K gradients come from one batched ``torch.autograd.grad`` call. Text embeddings
are computed once per prompt list and cached. Hooks are registered per call, inside a ``with``
block, act only in the thread that registered them, and are removed even when the call fails.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .methods.cam import CAM_METHODS, DEFAULT_METHOD, cam_maps, normalize_maps, normalize_shared
from .constants import DEFAULT_SUBLAYER, DEFAULT_TARGET, MAX_PROMPT_CHARS, MAX_PROMPTS, TARGETS, check_choice
from .geometry import CropGeometry, size_setting
from .images import load_image
from .models.hf_clip import channels, check_layer, check_sublayer, dead_reason, num_layers, target_module, token_grid
from .models import LoadedModel, load_model
from .methods.attention import attention_grads, attention_probs
from .methods.gradeclip import grad_eclip_maps, layer_terms
from .methods.legrad import layer_map, legrad_maps
from .methods.chefer import relevance_from, weighted_attention
from .methods.scorecam import score_cam_maps

#: Methods that read attention, not a sublayer: the layer is where they start (they run from it to
#: the last layer). chefer: gradient-weighted attention relevance (Chefer et al., ICCV 2021);
#: gradeclip: Grad-ECLIP (Zhao et al., ICML 2024); legrad: LeGrad (Bousselham et al., 2024).
ATTENTION_METHODS: tuple[str, ...] = ("chefer", "gradeclip", "legrad")
#: Methods that run one forward pass per channel of the sublayer instead of one backward.
MASKING_METHODS: tuple[str, ...] = ("scorecam",)
#: Every explanation method: the Grad-CAM family and Score-CAM (on a sublayer's output), then the
#: attention methods.
METHODS: tuple[str, ...] = (*CAM_METHODS, *MASKING_METHODS, *ATTENTION_METHODS)

#: progress(done, total): called as a slow method's forward passes complete.
Progress = Callable[[int, int], None]

@dataclass(frozen=True)
class Explanation:
    """Scores and one map per prompt for K prompts at one layer and sublayer (or start layer).

    ``grid_maps`` (K, rows, cols) are the method's raw values on the token grid (≥ 0, not normalised,
    comparable across prompts). ``image_maps`` (K, H, W) are the same maps each min-max scaled to
    [0, 1] and placed on the original image's pixel grid, NaN where the model saw nothing.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,) CLIP logits
    probs: np.ndarray  # (K,) softmax over the prompts
    grid_maps: np.ndarray  # (K, rows, cols) float32
    geometry: CropGeometry
    image: Image.Image  # the RGB image that was explained (upright, as the user sees it)
    model: str
    layer: int
    sublayer: str
    target: str = DEFAULT_TARGET
    method: str = DEFAULT_METHOD
    dead_reason: str | None = None  # why this sublayer cannot affect the score, if it cannot
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def dead(self) -> bool:
        """True when the chosen (layer, sublayer) cannot influence the image embedding."""
        return self.dead_reason is not None

    @cached_property
    def image_maps(self) -> np.ndarray:
        """(K, H, W) float32 in [0, 1] on the original image, NaN outside the model's crop."""
        return self.geometry.grid_to_image(normalize_maps(self.grid_maps))

    def image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """Like ``image_maps`` on a (W, H) canvas covering the whole image (for display of large photos).

        shared=True scales all prompts by one common maximum instead of each on its own, so that a
        weak prompt's map looks weak.
        """
        scaled = normalize_shared(self.grid_maps) if shared else normalize_maps(self.grid_maps)
        return self.geometry.grid_to_image(scaled, size)


@dataclass(frozen=True)
class Sweep:
    """Scores and maps for K prompts at every chosen layer, from one forward pass.

    ``grid_maps`` is (L, K, rows, cols) raw maps; ``layers`` holds the 1-based layer numbers.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,)
    probs: np.ndarray  # (K,)
    layers: tuple[int, ...]
    grid_maps: np.ndarray  # (L, K, rows, cols) float32
    geometry: CropGeometry
    image: Image.Image
    model: str
    sublayer: str
    target: str = DEFAULT_TARGET
    method: str = DEFAULT_METHOD
    dead_reasons: tuple[str | None, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @cached_property
    def image_maps(self) -> np.ndarray:
        """(L, K, H, W) float32 in [0, 1] on the original image, NaN outside the crop."""
        return self.image_maps_at(self.geometry.image_size)

    def image_maps_at(self, size: tuple[int, int] | None = None, shared: bool = False) -> np.ndarray:
        """(L, K, H, W) on a (W, H) canvas covering the whole image; shared=True scales the prompts
        of each layer by one common maximum."""
        scaled = np.stack([normalize_shared(m) for m in self.grid_maps]) if shared else normalize_maps(self.grid_maps)
        flat = scaled.reshape(-1, *scaled.shape[2:])
        out = self.geometry.grid_to_image(flat, size)
        return out.reshape(*scaled.shape[:2], *out.shape[1:])

    def at(self, layer: int) -> Explanation:
        """The sweep's result for one layer, as an Explanation."""
        i = self.layers.index(layer)
        return Explanation(
            prompts=self.prompts, logits=self.logits, probs=self.probs, grid_maps=self.grid_maps[i],
            geometry=self.geometry, image=self.image, model=self.model, layer=layer,
            sublayer=self.sublayer, target=self.target, method=self.method, dead_reason=self.dead_reasons[i], notes=self.notes, seconds=self.seconds,
        )


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


def check_method(method: str) -> str:
    """Return ``method`` if it is one of METHODS, else raise ValueError listing them."""
    return check_choice(method, METHODS, "method")


def check_target(target: str) -> str:
    """Return ``target`` if it is one of TARGETS, else raise ValueError listing them."""
    return check_choice(target, TARGETS, "target")


def target_scores(logits: torch.Tensor, target: str) -> torch.Tensor:
    """The K quantities that are explained, from CLIP's K logits (..., K) (the last axis: prompts)."""
    if target == "log_softmax":
        return torch.log_softmax(logits, dim=-1)
    if target == "contrast":
        return logits - logits.mean(dim=-1, keepdim=True)
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - logits.max())
    return z / z.sum()


class Explainer:
    """Explains one loaded CLIP model. Cheap to make and safe to share between threads: calls keep
    no state on it; text embeddings go to the model's lock-guarded cache."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        crop = loaded.image_processor.crop_size if getattr(loaded.image_processor, "do_center_crop", False) else None
        image_size = loaded.model.config.vision_config.image_size
        if crop is not None and (size_setting(crop, "height"), size_setting(crop, "width")) != (image_size, image_size):
            raise ValueError(
                f"The image processor crops to {size_setting(crop, 'width')}×{size_setting(crop, 'height')} but the vision "
                f"model expects {image_size}×{image_size} inputs."
            )

    @property
    def model(self):
        """The underlying transformers CLIPModel (frozen)."""
        return self.loaded.model

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def num_layers(self) -> int:
        """Number of vision-encoder layers, numbered 1..num_layers."""
        return num_layers(self.model)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the patch-token grid."""
        return token_grid(self.model)

    @property
    def default_layer(self) -> int:
        """The second-to-last layer, where the reference notebook looks first."""
        return max(1, self.num_layers - 1)

    def masked_forwards(self, method: str, sublayer: str, layers: int = 1) -> int:
        """How many masked forward passes a call runs: channels × layers for Score-CAM, else 0."""
        if check_method(method) not in MASKING_METHODS:
            return 0
        return channels(self.model.config.vision_config, sublayer) * layers

    # ----------------------------------------------------------------- inputs
    def prepare_image(self, image: object) -> tuple[Image.Image, torch.Tensor, CropGeometry, list[str]]:
        """Read the image and run CLIP's processor: (rgb image, pixel_values (1,3,S,S), geometry, notes)."""
        rgb, notes = load_image(image)
        pixels = self.loaded.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.loaded.device, self.loaded.dtype)  # (1, 3, S, S)
        geometry = CropGeometry.from_processor(self.loaded.image_processor, rgb.size, self.grid)
        return rgb, pixels, geometry, notes

    def text_embeddings(self, prompts: Sequence[str]) -> tuple[torch.Tensor, tuple[str, ...]]:
        """Unit-norm text embeddings (K, P) for the prompts, cached per prompt list, and notes."""
        key = tuple(prompts)
        cached = self.loaded.text_cache.get(key)
        if cached is not None:
            return cached
        tokenizer = self.loaded.tokenizer
        max_len = self.model.config.text_config.max_position_embeddings
        lengths = [len(ids) for ids in tokenizer(list(key))["input_ids"]]
        notes = tuple(
            f"Prompt {i + 1} is {n} tokens long; CLIP reads at most {max_len}, so only its start was used."
            for i, n in enumerate(lengths) if n > max_len
        )
        tokens = tokenizer(list(key), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.no_grad():  # not inference_mode: these tensors enter the autograd graph later
            emb = self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.loaded.device),
                attention_mask=tokens["attention_mask"].to(self.loaded.device),
            ).pooler_output  # (K, P)
            emb = emb / emb.pow(2).sum(dim=-1, keepdim=True).sqrt()
        self.loaded.text_cache.put(key, (emb, notes))
        return emb, notes

    # ----------------------------------------------------------------- core pass
    def _batch_logits(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """CLIP's logits_per_image (B, K), exactly as CLIPModel.forward computes them."""
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output  # (B, Dv)
        return self._embedding_logits(pooled, text)

    def _logits(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """CLIP's logits_per_image[0] (K,) for one image."""
        return self._batch_logits(pixels, text)[0]

    def _embedding_logits(self, pooled: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, Dv) pooled vision states → (B, K) logits: projection, unit norm, scaled cosine."""
        image = self.model.visual_projection(pooled)  # (B, P)
        image = image / image.pow(2).sum(dim=-1, keepdim=True).sqrt()
        return ((text @ image.T) * self.model.logit_scale.exp()).T  # (B, K)

    def _layer_logits(self, hidden: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """LeGrad's reading of a layer (1, T, D): its tokens' mean through the final layer norm and
        projection, scored like CLIP's image embedding → (K,)."""
        pooled = self.model.vision_model.post_layernorm(hidden.mean(dim=1))  # (1, Dv)
        return self._embedding_logits(pooled, text)[0]

    def _grad_cam_pass(
        self, pixels: torch.Tensor, text: torch.Tensor, modules: Sequence[torch.nn.Module], target: str,
        method: str = DEFAULT_METHOD,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward, one batched gradient: logits (K,) and raw CAM maps (K, rows, cols) per module."""
        with capture_outputs(modules) as acts, torch.enable_grad():
            logits = self._logits(pixels, text)  # (K,)
            scores = target_scores(logits, target)  # (K,)
        missing = [i for i, a in enumerate(acts) if a is None]
        if missing:
            raise RuntimeError(f"Hooked modules {missing} did not run in the forward pass.")
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)  # row k selects prompt k
        grads = torch.autograd.grad(
            scores, acts, grad_outputs=eye, is_grads_batched=True, allow_unused=True
        )  # each (K, 1, 1+N, D) or None when the activation cannot reach the output
        maps = []
        for act, grad in zip(acts, grads):
            if grad is None:
                grad = torch.zeros((k, *act.shape), dtype=act.dtype, device=act.device)
            maps.append(cam_maps(method, act[0], grad[:, 0], self.grid))
        return logits.detach().float().cpu().numpy(), maps

    def _score_cam_pass(self, pixels: torch.Tensor, text: torch.Tensor, modules: Sequence[torch.nn.Module],
                        target: str, progress: Progress | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward to read the activations, then Score-CAM's masked forwards for each module."""
        with capture_outputs([], values=modules) as acts, torch.no_grad():
            logits = self._logits(pixels, text)
        total = sum(a.shape[-1] for a in acts)
        maps, done = [], 0
        for act in acts:
            report = None if progress is None else (lambda n, _, base=done: progress(base + n, total))
            maps.append(score_cam_maps(pixels, act[0], self.grid,
                                       lambda batch: target_scores(self._batch_logits(batch, text), target), report))
            done += act.shape[-1]
        return logits.float().cpu().numpy(), maps

    def _attention_pass(self, pixels: torch.Tensor, text: torch.Tensor, start: int, target: str, method: str
                        ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward and batched gradients: logits (K,) and the maps (K, rows, cols) of an
        attention method for every start layer from ``start`` to the last."""
        blocks = list(self.model.vision_model.encoder.layers)[start - 1:]
        n = len(blocks)
        outs = [b.self_attn.out_proj for b in blocks]
        qkv = [m for b in blocks for m in (b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj)]
        states = blocks if method == "legrad" else []  # LeGrad reads every layer's output
        with capture_outputs([*outs, *states], values=qkv) as caught, torch.enable_grad():
            logits = self._logits(pixels, text)  # (K,)
            scores = target_scores(logits, target)
            layer_scores = [target_scores(self._layer_logits(h, text), target) for h in caught[n:n + len(states)]]
        out_acts, values = caught[:n], caught[n + len(states):]
        k = logits.shape[0]
        eye = torch.eye(k, dtype=logits.dtype, device=logits.device)
        heads = self.model.config.vision_config.num_attention_heads
        weights = [b.self_attn.out_proj.weight.float() for b in blocks]
        qkvs = [tuple(t[0].float() for t in values[3 * i: 3 * i + 3]) for i in range(n)]  # (T, D) each
        if method == "legrad":  # each layer's own score, differentiated at its own attention only
            per_layer = []
            for out, layer_score, w, (_, _, v) in zip(out_acts, layer_scores, weights, qkvs):
                (grad,) = torch.autograd.grad(layer_score, out, grad_outputs=eye, is_grads_batched=True,
                                              retain_graph=True)
                per_layer.append(layer_map(grad[:, 0].float(), w, v, heads))
            maps = legrad_maps(per_layer, self.grid)
        else:
            grads = torch.autograd.grad(scores, out_acts, grad_outputs=eye, is_grads_batched=True)
            if method == "gradeclip":
                maps = grad_eclip_maps([layer_terms(g[:, 0].float(), w, q, key, v)
                                        for g, w, (q, key, v) in zip(grads, weights, qkvs)], self.grid)
            else:
                maps = relevance_from([weighted_attention(attention_probs(q, key, heads),
                                                          attention_grads(g[:, 0].float(), w, v, heads))
                                       for g, w, (q, key, v) in zip(grads, weights, qkvs)], self.grid)
        return logits.detach().float().cpu().numpy(), maps

    # ----------------------------------------------------------------- public API
    def explain(
        self,
        image: object,
        prompts: Sequence[str] | str,
        layer: int | None = None,
        sublayer: str = DEFAULT_SUBLAYER,
        target: str = DEFAULT_TARGET,
        method: str = DEFAULT_METHOD,
        progress: Progress | None = None,
    ) -> Explanation:
        """Scores and one heatmap per prompt at ``layer`` (1-based; default: second-to-last).

        method: one of METHODS (default Grad-CAM); for ATTENTION_METHODS the sublayer is ignored and
        the method runs from ``layer`` to the last. target: what is explained per prompt
        (clipcam.constants.TARGETS). progress(done, total) follows Score-CAM's forward passes.
        """
        start = time.perf_counter()
        layer = check_layer(self.default_layer if layer is None else layer, self.num_layers)
        sublayer = check_sublayer(sublayer)
        target = check_target(target)
        method = check_method(method)
        prompts = clean_prompts(prompts)
        rgb, pixels, geometry, notes = self.prepare_image(image)
        text, text_notes = self.text_embeddings(prompts)
        if method in ATTENTION_METHODS:
            logits, per_start = self._attention_pass(pixels, text, layer, target, method)
            maps, reason, sublayer = per_start[0], None, "self_attn"
        elif method in MASKING_METHODS:  # no gradient: every sublayer's activations make masks
            logits, (maps,) = self._score_cam_pass(pixels, text, [target_module(self.model, layer, sublayer)],
                                                   target, progress)
            reason = None
        else:
            logits, (maps,) = self._grad_cam_pass(pixels, text, [target_module(self.model, layer, sublayer)],
                                                  target, method)
            reason = dead_reason(layer, self.num_layers, sublayer)
        if method == "eigencam" and len(prompts) > 1:
            notes.append("EigenCAM does not use the prompts (it is the activations' first principal component), "
                         "so every prompt gets the same map; pick another method to compare prompts.")
        if len(prompts) == 1 and target != "logit":
            notes.append(f"With a single prompt the {target} target is constant, so its heatmap is empty; "
                         "add prompts to compare, or use the logit target.")
        if reason is None and not maps.any():
            notes.append("The heatmaps are all zero here: no patch pushes any prompt's score up at this layer.")
        return Explanation(
            prompts=prompts, logits=logits, probs=_softmax(logits), grid_maps=maps, geometry=geometry,
            image=rgb, model=self.name, layer=layer, sublayer=sublayer, target=target, method=method,
            dead_reason=reason,
            notes=tuple(notes) + text_notes, seconds=time.perf_counter() - start,
        )

    def sweep(
        self,
        image: object,
        prompts: Sequence[str] | str,
        sublayer: str = DEFAULT_SUBLAYER,
        layers: Sequence[int] | None = None,
        target: str = DEFAULT_TARGET,
        method: str = DEFAULT_METHOD,
        progress: Progress | None = None,
    ) -> Sweep:
        """Maps of every layer (or the given ones) × every prompt, from a single forward pass
        (Score-CAM adds its masked forwards per layer)."""
        start = time.perf_counter()
        sublayer = check_sublayer(sublayer)
        target = check_target(target)
        method = check_method(method)
        chosen = tuple(range(1, self.num_layers + 1)) if layers is None else tuple(
            check_layer(layer, self.num_layers) for layer in layers
        )
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError("Give each layer of the sweep once, and at least one layer.")
        prompts = clean_prompts(prompts)
        rgb, pixels, geometry, notes = self.prepare_image(image)
        text, text_notes = self.text_embeddings(prompts)
        if method in ATTENTION_METHODS:  # one pass gives the maps for every start layer
            logits, per_start = self._attention_pass(pixels, text, min(chosen), target, method)
            maps = [per_start[layer - min(chosen)] for layer in chosen]
            sublayer = "self_attn"
        elif method in MASKING_METHODS:
            modules = [target_module(self.model, layer, sublayer) for layer in chosen]
            logits, maps = self._score_cam_pass(pixels, text, modules, target, progress)
        else:
            modules = [target_module(self.model, layer, sublayer) for layer in chosen]
            logits, maps = self._grad_cam_pass(pixels, text, modules, target, method)
        return Sweep(
            prompts=prompts, logits=logits, probs=_softmax(logits), layers=chosen,
            grid_maps=np.stack(maps), geometry=geometry, image=rgb, model=self.name, sublayer=sublayer,
            target=target, method=method,
            dead_reasons=tuple(None if method not in CAM_METHODS else dead_reason(layer, self.num_layers, sublayer)
                               for layer in chosen),
            notes=tuple(notes) + text_notes, seconds=time.perf_counter() - start,
        )

    def scores(self, image: object, prompts: Sequence[str] | str) -> tuple[np.ndarray, np.ndarray]:
        """CLIP's (logits, softmax probabilities) for the prompts, without gradients."""
        prompts = clean_prompts(prompts)
        _, pixels, _, _ = self.prepare_image(image)
        text, _ = self.text_embeddings(prompts)
        with torch.no_grad():
            logits = self._logits(pixels, text).float().cpu().numpy()
        return logits, _softmax(logits)


def load_explainer(model: str = "base", device: str = "auto", half: bool = False) -> Explainer:
    """An Explainer for a model alias ("base", "large"), a hub id or a local directory."""
    return Explainer(load_model(model, device=device, half=half))
