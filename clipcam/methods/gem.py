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


def self_self_attention(view: BlockView, x: torch.Tensor, iterations: int = ITERATIONS) -> torch.Tensor:
    """GEM's attention on ln_1's tokens x (B, T, D) → its output after out_proj (B, T, D)."""
    q, k, v = (split_heads(t.float(), view.heads) for t in view.qkv(x))  # (B, H, T, E) each
    scale = q.shape[-1] ** -0.5
    inv_temp = x.float().norm(dim=-1).mean(dim=-1)[:, None, None, None] * scale  # (B, 1, 1, 1)

    def attend(z: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z, dim=-1)
        return torch.softmax(z @ z.transpose(-1, -2) * inv_temp, dim=-1)  # (B, H, T, T)

    out = torch.zeros_like(v)
    for z in (v, k, q):
        for _ in range(iterations):
            z = attend(z) @ F.normalize(z, dim=-1)
        out = out + attend(z) @ v
    out = merge_heads(out / 3)  # (B, T, D)
    return view.out_proj(out.to(view.out_proj.weight.dtype))


def gem_start(adapter: ModelAdapter) -> int:
    """The authors' default start: the first of the last 6 blocks (the first block on a shorter tower)."""
    return max(1, adapter.num_layers - GEM_BLOCKS + 1)


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
