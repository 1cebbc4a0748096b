"""ClearCLIP (Lan et al., "ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language
Inference", ECCV 2024), as the authors' code computes it (mc-lan/ClearCLIP).

``open_clip/transformer.py``, ``VisionTransformer.forward`` (``model_type='ClearCLIP'``,
``ignore_residual=True``, ``last_n_layers=1``) and ``custom_attn``: only the last block changes; its
output is the attention alone, softmax(q qᵀ/√d) over the values through the output projection,
with the residual and the FFN dropped (``output += self.custom_attn(...)``). Every token then goes
through ``ln_post`` and ``proj``, and ``clearclip_segmentor.py`` (``forward_feature``) takes the
cosine of each patch with each text embedding.

Post-processing (``DenseDefaults``, ``ClearCLIPSegmentation.__init__``): ``logit_scale=50``,
``prob_thd=0.0`` (0.5, 0.15 and 0.4 in their VOC21, Context60 and COCO-Object configs),
``slide_crop=448``, ``slide_stride=224``; their configs resize the short side to 448.
"""

from __future__ import annotations

import torch

from . import Method
from .dense import NOT_A_GRADIENT, ON_SIGLIP, LastBlock, block_method, self_softmax
from .kinds import FORWARD, DenseDefaults


def query_query(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """ClearCLIP's self-self attention for (B, H, T, d) queries → (B, H, T, T)."""
    return self_softmax(q)


CHANGE = LastBlock(attention=query_query, residual=False, ffn=False)

METHOD = Method(
    name="clearclip",
    label="ClearCLIP (dense, training-free)",
    paper="Lan et al., ECCV 2024",
    about="the last block reduced to its q–q self-attention, without the residual and the FFN, every patch read "
          f"out and compared with each prompt ({ON_SIGLIP}); {NOT_A_GRADIENT}",
    pass_kind=FORWARD,
    compute=block_method(CHANGE),
    needs=frozenset({"dense"}),
    uses_layer=False,
    dense=DenseDefaults(logit_scale=50.0, prob_thd=0.0, crop=448, stride=224, short_side=448),
)
