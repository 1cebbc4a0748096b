"""GEM: Grounding Everything (Bousselham, Petersen, Ferrari & Kuehne, "Grounding Everything:
Emerging Localization Properties in Vision-Language Transformers", CVPR 2024).

As the authors' code computes it (WalBouss/GEM):
- ``gem/gem_utils.py``, ``SelfSelfAttention.forward``: per head, each of v, k and q (L2-normalised)
  attends to itself, softmax((z/|z|)(z/|z|)ᵀ · τ) with the inverse temperature τ = head_dim^-½ ×
  the mean over tokens of |ln_1(x)| (``ss_attn_temp=None``); ``ss_attn_iter`` = 1 iteration
  z ← A·z, then normalised once more, and the three attentions are applied to v and averaged,
  (A_v + A_k + A_q)·v / 3, then the output projection.
- ``GEMResidualBlock.forward``: that attention reads ``ln_1`` of the original path's tokens; the
  GEM path adds its output (after ``ls_1``) and skips the FFN; the original path is the model's own.
- ``gem/gem_wrapper.py``, ``GEMWrapper.apply_gem``: ``depth=7`` changes ``resblocks[-1]`` …
  ``resblocks[-6]``, the last 6 blocks; ``modified_vit_forward``: ``ln_post`` and ``proj`` on
  every token of the GEM path; ``GEMWrapper.forward``: L2-normalised, class token dropped
  (``image_feat[:, 1:]``), times the unit text embeddings.

clipcam's raw map is that cosine on the patch grid: no ``100 ×`` (``batched_forward``), no
upsampling, no min–max. The layer is where the GEM path starts (its first changed block); by
default the authors' last 6 blocks. The scores stay the model's own: the hooks only record the
unchanged forward, and the GEM path is computed beside it (clipcam.methods.parallel).

Post-processing defaults (DenseDefaults): the softmax over prompts at 100, the scale of
``GEMWrapper.batched_forward``. The README's background rule (softmax of the min–max maps, then
``threshold = 0.85``) is not carried over: on maps in [0, 1] no pixel passes it once there are two
prompts (e / (e + 1) ≈ 0.73), so ``prob_thd`` is 0. The authors define no sliding window (they
resize to 448 × 448); clipcam's window defaults stand.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.base import BlockView, ModelAdapter
from . import Method
from .kinds import FORWARD, DenseDefaults, ForwardMethod
from .parallel import PathRecord, merge_heads, on_patches, parallel_paths, record_path, split_heads, unit_readout

#: ``GEMWrapper(depth=7)`` changes the last ``depth - 1`` blocks.
GEM_BLOCKS = 6
#: ``ss_attn_iter``: how many self-self attention iterations before the final one.
ITERATIONS = 1


def self_self_attention(view: BlockView, qkv: tuple[torch.Tensor, ...], x: torch.Tensor,
                        iterations: int = ITERATIONS) -> torch.Tensor:
    """GEM's attention from the block's q, k, v and ln_1's tokens x (B, T, D each) → its output after
    out_proj (B, T, D). The three self-self attentions run as one batch through
    scaled_dot_product_attention (softmax(z·zᵀ·τ)·z, fused); τ, which differs per image, scales the queries."""
    q, k, v = (split_heads(t, view.heads) for t in qkv)  # (B, H, T, E) each
    b = v.shape[0]
    inv_temp = x.float().norm(dim=-1).mean(dim=-1) * q.shape[-1] ** -0.5  # (B,)
    inv_temp = inv_temp.repeat(3)[:, None, None, None]  # (3B, 1, 1, 1)
    z = torch.cat([v, k, q])  # (3B, H, T, E): the v–v, k–k and q–q ensembles
    for _ in range(iterations):
        z = F.normalize(z, dim=-1)
        z = F.scaled_dot_product_attention(z * inv_temp, z, z, scale=1.0)
    z = F.normalize(z, dim=-1)
    out = F.scaled_dot_product_attention(z * inv_temp, z, v.repeat(3, 1, 1, 1), scale=1.0)  # (3B, H, T, E)
    out = out.reshape(3, b, *out.shape[1:]).mean(dim=0)  # (B, H, T, E): (A_v + A_k + A_q)·v / 3
    return view.out_proj(merge_heads(out).to(view.out_proj.weight.dtype))


def gem_start(layers: int, capabilities: frozenset[str]) -> int:
    """The authors' default start for a model of ``layers`` layers: the first of the last 6 blocks
    (the first block on a shorter tower)."""
    return max(1, layers - GEM_BLOCKS + 1)


def gem_maps(record: PathRecord, adapter: ModelAdapter, text: torch.Tensor, grid: tuple[int, int]) -> list[np.ndarray]:
    """GEM's map from every start layer on: (K, rows, cols) float32 cosines in [-1, 1]."""
    prefix, unit_text = adapter.prefix, text.float()
    maps = []
    for tokens in parallel_paths(record, self_self_attention, grid, prefix):
        feats = unit_readout(adapter, tokens)[0]  # (T, P)
        maps.append(on_patches(feats @ unit_text.T, grid, prefix))
    return maps


METHOD = Method(
    name="gem",
    label="GEM (training-free, self-self attention)",
    paper="Bousselham et al., CVPR 2024",
    about="each patch read out through GEM's self-self attention (q–q, k–k and v–v, without the MLP) over the last "
          "blocks and compared with the prompt; these maps read the model's patch features through a changed path "
          "and do not explain the score the way a gradient method does",
    pass_kind=FORWARD,
    compute=ForwardMethod(read=record_path, maps=gem_maps),
    needs=frozenset({"parallel_path"}),
    default_layer=gem_start,
    dense=DenseDefaults(logit_scale=100.0, prob_thd=0.0),
)
