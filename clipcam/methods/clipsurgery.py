"""CLIP Surgery (Li, Wang, Duan, Zhang & Li, "A closer look at the explainability of Contrastive
language-image pre-training", Pattern Recognition 2025; arXiv 2304.05653, 2023).

As the authors' code computes it (xmed-lab/CLIP_Surgery):
- ``clip/clip_surgery_model.py``, ``VisionTransformer.forward``: the last 6 blocks
  (``resblocks[-1]`` … ``resblocks[-6]``) get a second path; ``ResidualAttentionBlock.forward``:
  its attention reads ``ln_1`` of the original path's tokens, it adds the output (no FFN), and the
  original path stays the model's own; ``Attention.forward``: v–v attention, softmax(v·vᵀ ·
  head_dim^-½)·v per head, then the output projection; at the end the class token is taken from
  the original path (``x[0, :, :] = x_ori[0, :, :]``) and every token goes through ``ln_post``
  and ``proj``.
- ResNets, ``AttentionPool2d.forward``: the pool's q, k and v all become ``v_proj`` (its fused
  weight is ``v_proj``'s three times), so every token of the pool, the mean token included, is
  softmax(v·vᵀ · head_dim^-½)·v through ``c_proj``. The ``settings == 'resnet'`` branch of
  ``Attention`` (L2-normalised v, 8× scale) is never switched on by their pool; we follow the code
  as it runs.
- ``clip/clip.py``, ``clip_feature_surgery``: with several prompts, w = softmax(2 · cos(class
  token, t_k)) / its mean over the prompts, and each token's similarity is the sum over channels of
  f ⊙ t_k · w_k minus its mean over the prompts (the redundant features); ``demo.py`` ("CLIP
  Surgery for a single text"): one prompt is compared as f · (t − r), r the unit
  ``encode_text_with_prompt_ensemble`` of the empty string over the authors' 85 templates.

clipcam's raw map is that similarity on the patch grid, the class (or mean) token dropped: no
min–max (``get_similarity_map``), no upsampling. The person's prompts are used as written (the
authors ensemble every class name over the templates; clipcam encodes a prompt once, as for every
method), and only the empty string's features are ensembled, as theirs. The layer is where the
second path starts, by default the authors' last 6 blocks; on a ResNet only the pool changes, so
every chosen stage shows the pool's one map (resampled onto an earlier stage's grid, as MaskCLIP's
ResNet map), and a sweep over the stages works. The scores stay the model's own (the hooks only record the forward).

Post-processing defaults (DenseDefaults): the authors define no softmax, threshold or window for
these maps (they min–max them); clipcam uses CLIP's own logit scale, 100, no background threshold
and its window defaults.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..hooks import record_calls
from ..models.base import BlockView, ModelAdapter
from ..models.pool import PoolView
from . import Method
from .dense import on_start_grid
from .kinds import FORWARD, DenseDefaults, ForwardMethod
from .parallel import PathRecord, merge_heads, on_patches, parallel_paths, record_path, split_heads, unit_readout

#: ``VisionTransformer.forward``'s ``for i in range(1, 7)``: the last 6 blocks change.
SURGERY_BLOCKS = 6
#: ``encode_text_with_prompt_ensemble``'s default templates (clip/clip.py), in the authors' order.
TEMPLATES = (
    'a bad photo of a {}.', 'a photo of many {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.', 'a bad photo of the {}.',
    'a cropped photo of the {}.', 'a tattoo of a {}.', 'the embroidered {}.', 'a photo of a hard to see {}.',
    'a bright photo of a {}.', 'a photo of a clean {}.', 'a photo of a dirty {}.', 'a dark photo of the {}.',
    'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.', 'a painting of the {}.', 'a painting of a {}.',
    'a pixelated photo of the {}.', 'a sculpture of the {}.', 'a bright photo of the {}.', 'a cropped photo of a {}.',
    'a plastic {}.', 'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.',
    'a photo of the {}.', 'a good photo of the {}.', 'a rendering of the {}.', 'a {} in a video game.',
    'a photo of one {}.', 'a doodle of a {}.', 'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.', 'a photo of the clean {}.',
    'a photo of a large {}.', 'a rendition of a {}.', 'a photo of a nice {}.', 'a photo of a weird {}.',
    'a blurry photo of a {}.', 'a cartoon {}.', 'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.',
    'a pixelated photo of a {}.', 'itap of the {}.', 'a jpeg corrupted photo of the {}.', 'a good photo of a {}.',
    'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.', 'a photo of the weird {}.',
    'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.', 'a photo of the large {}.',
    'a black and white photo of a {}.', 'the plushie {}.', 'a dark photo of a {}.', 'itap of a {}.',
    'graffiti of the {}.', 'a toy {}.', 'itap of my {}.', 'a photo of a cool {}.', 'a photo of a small {}.',
    'a tattoo of the {}.', 'there is a {} in the scene.', 'there is the {} in the scene.',
    'this is a {} in the scene.', 'this is the {} in the scene.', 'this is one {} in the scene.',
)


@dataclass
class PoolRecord:
    """What the unchanged forward of a ResNet recorded: its attention pool and the pool's input."""

    pool: PoolView
    calls: list
    start: int  # the chosen stage: the pool's one map is shown for it and every later stage


def vv_attention(view: BlockView, qkv: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
    """v–v attention from the block's v (B, T, D) → its output after out_proj (B, T, D)."""
    v = split_heads(qkv[2], view.heads)  # (B, H, T, E)
    out = F.scaled_dot_product_attention(v, v, v)  # softmax(v·vᵀ·E^-½)·v, fused
    return view.out_proj(merge_heads(out).to(view.out_proj.weight.dtype))


def pool_tokens(pool: PoolView, stage: torch.Tensor) -> torch.Tensor:
    """The pool's v–v path on the last stage (B, C, H, W): every token, the mean token first, (B, 1+H·W, P)."""
    x = stage.flatten(2).transpose(1, 2)  # (B, H·W, C)
    x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pool.positional_embedding.to(x.dtype)  # (B, 1+H·W, C)
    v = split_heads(pool.v_proj(x).float(), pool.heads)  # (B, H, T, E)
    out = F.scaled_dot_product_attention(v, v, v)  # softmax(v·vᵀ·E^-½)·v
    return pool.c_proj(merge_heads(out).to(pool.c_proj.weight.dtype)).float()


def redundant_features(adapter: ModelAdapter) -> torch.Tensor:
    """The empty string's unit text embedding (P,), ensembled over TEMPLATES as the authors do
    (each template's unit embedding, their mean, normalised); cached with the adapter's text."""
    each, _ = adapter.text_embeddings(tuple(t.format("") for t in TEMPLATES))  # (85, P), unit rows
    mean = each.float().mean(dim=0)
    return mean / mean.norm()


def feature_surgery(feats: torch.Tensor, text: torch.Tensor, redundant: torch.Tensor | None) -> torch.Tensor:
    """clip_feature_surgery on unit token features (T, P) and unit text (K, P) → (T, K). The
    authors' (T, K, P) products summed over P are written as the same sums of dot products."""
    if redundant is not None:
        return feats @ (text - redundant).T
    prob = torch.softmax(2 * feats[0] @ text.T, dim=-1)  # (K,), from the class token
    weighted = feats @ text.T * (prob / prob.mean())  # (T, K)
    return weighted - weighted.mean(dim=-1, keepdim=True)


def surgery_start(layers: int, capabilities: frozenset[str]) -> int:
    """The authors' start for a model of ``layers`` layers: the first of the last 6 blocks; a
    ResNet's last stage (only its pool changes)."""
    if "parallel_path" not in capabilities:
        return layers
    return max(1, layers - SURGERY_BLOCKS + 1)


@contextmanager
def read_surgery(adapter: ModelAdapter, start: int, grid: tuple[int, int]) -> Iterator[PathRecord | PoolRecord]:
    """Record what the second path needs during the unchanged forward: a ViT's blocks' inputs, or
    the input of a ResNet's attention pool."""
    if "parallel_path" in adapter.capabilities:
        with record_path(adapter, start, grid) as record:
            yield record
        return
    pool = adapter.attention_pool()  # after the last stage, whichever stage is chosen: one map for all
    with record_calls([pool.module]) as calls:
        yield PoolRecord(pool, calls, start)


def surgery_maps(record: PathRecord | PoolRecord, adapter: ModelAdapter, text: torch.Tensor,
                 grid: tuple[int, int]) -> list[np.ndarray]:
    """CLIP Surgery's similarity from every start layer on: (K, rows, cols) float32."""
    unit_text = text.float()
    redundant = redundant_features(adapter) if text.shape[0] == 1 else None
    if isinstance(record, PoolRecord):
        pooled = record.calls[0][0][0].float()  # (1, C, H, W), the last stage's output, float32 whatever the precision
        out = pool_tokens(record.pool, pooled)[0]  # (1+H·W, P)
        feats = out / out.norm(dim=-1, keepdim=True)
        one = on_start_grid(on_patches(feature_surgery(feats, unit_text, redundant), tuple(pooled.shape[-2:]), 1), grid)
        return [one] * (adapter.num_layers - record.start + 1)  # the pool's map for the chosen stage and each later one
    prefix, maps = adapter.prefix, []
    final = record.output(grid, prefix)  # (B, T, D), the original path
    for tokens in parallel_paths(record, vv_attention, grid, prefix):
        tokens = torch.cat([final[:, :1], tokens[:, 1:]], dim=1)  # the class token from the original path
        feats = unit_readout(adapter, tokens)[0]  # (T, P)
        maps.append(on_patches(feature_surgery(feats, unit_text, redundant), grid, prefix))
    return maps


METHOD = Method(
    name="clipsurgery",
    label="CLIP Surgery (training-free, v–v attention)",
    paper="Li et al., 2023 (Pattern Recognition 2025)",
    about="each patch read out through v–v attention over the last blocks (a ResNet's attention pool), without the "
          "MLP, minus the features all prompts share; these maps read the model's patch features through a changed "
          "path and do not explain the score the way a gradient method does",
    pass_kind=FORWARD,
    compute=ForwardMethod(read=read_surgery, maps=surgery_maps),
    needs=frozenset({"surgery_path"}),
    default_layer=surgery_start,
    dense=DenseDefaults(logit_scale=100.0),
)
