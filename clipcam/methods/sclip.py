"""SCLIP (Wang, Mei & Wang, "SCLIP: Rethinking Self-Attention for Dense Vision-Language
Inference", ECCV 2024), as the authors' code computes it (wangf3014/SCLIP).

``clip/model.py``, ``VisionTransformer.forward`` (``csa=True``) and ``custom_attn``: only the last
block changes; its attention is the correlative self-attention softmax(q qᵀ/√d) + softmax(k kᵀ/√d)
(each row sums to 2), over the values; the residual and the FFN stay (``x = x +
custom_attn(...)``; ``x = x + blk.mlp(blk.ln_2(x))``). Every token then goes through ``ln_post``
and ``proj`` (``return_all=True``), and ``clip_segmentor.py`` (``forward_feature``) takes the cosine
of each patch with each text embedding.

Post-processing (``DenseDefaults``, ``CLIPForSegmentation.__init__``): ``logit_scale=40``,
``prob_thd=0.0`` (0.1 in their configs of data sets with a background class), ``slide_crop=224``,
``slide_stride=112``; their configs resize the short side to 336 (``Resize, scale=(2048, 336)``).
"""

from __future__ import annotations

import torch

from . import Method
from .dense import NOT_A_GRADIENT, ON_SIGLIP, LastBlock, block_method, self_softmax
from .kinds import FORWARD, DenseDefaults


def correlative(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """SCLIP's correlative self-attention for (B, H, T, d) q, k → (B, H, T, T), rows summing to 2."""
    return self_softmax(q) + self_softmax(k)


CHANGE = LastBlock(attention=correlative, residual=True, ffn=True)

METHOD = Method(
    name="sclip",
    label="SCLIP (dense, training-free)",
    paper="Wang, Mei & Wang, ECCV 2024",
    about="the last block rerun with q–q plus k–k self-attention, every patch read out and compared with each "
          f"prompt ({ON_SIGLIP}); {NOT_A_GRADIENT}",
    pass_kind=FORWARD,
    compute=block_method(CHANGE),
    needs=frozenset({"dense"}),
    uses_layer=False,
    dense=DenseDefaults(logit_scale=40.0, prob_thd=0.0, crop=224, stride=112, short_side=336),
)
