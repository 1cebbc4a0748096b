"""MaskCLIP (Zhou, Loy & Dai, "Extract Free Dense Labels from CLIP", ECCV 2022), as the authors'
code computes it (chongzhou96/MaskCLIP).

ViTs (``mmseg/models/backbones/vit.py``, ``TransformerEncoderLayer.forward`` with ``return_qkv``,
and ``VisionTransformer.forward`` with ``final_norm``; config ``configs/_base_/models/maskclip_vit16.py``):
the last block's query–key attention is dropped and each token keeps its own value, v through the
output projection; the residual and the FFN stay (``v += x``; ``v = self.ffn(self.norm2(v),
identity=v)``), then the final norm, and ``decode_heads/maskclip_head.py`` (``MaskClipHead.forward``,
``cls_seg``) projects every patch with the visual projection and takes its cosine with each text
embedding. ClearCLIP's code also has a "MaskCLIP" mode (identity attention with its residual and
FFN dropped); this follows MaskCLIP's own repository, which keeps both.

ResNets (``MaskClipHead.forward``, ``attn_pooling=False``): every position of the last stage goes
through the attention pool's ``v_proj`` then ``c_proj``, without the pool's positional embedding.

Post-processing (``DenseDefaults``): the authors' ``refine_output`` takes a softmax of 100 × the
cosines; they have no background threshold; their test config runs the whole image at once
(``test_cfg=dict(mode='whole')``, position embeddings interpolated to it), which a fixed-size model
input cannot, so the window given is one 224-pixel input per 224 pixels, without overlap or resize. Key smoothing and prompt denoising
(``ks_thresh``, ``pd_thresh``) are off in their configs and not part of the raw map.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from ..models.base import ModelAdapter, ValuePool
from . import Method
from .dense import NOT_A_GRADIENT, ON_SIGLIP, Captured, LastBlock, block_maps, capture_input, cosine_maps, each_layer, read_last_block
from .kinds import FORWARD, DenseDefaults, ForwardMethod

#: The last block without its query–key attention: each token's value, the residual and the FFN kept.
VALUE_PATH = LastBlock(attention=None, residual=True, ffn=True)


def pool_of(adapter: ModelAdapter) -> ValuePool | None:
    """The attention pool that makes the embedding (a ResNet's, SigLIP's head), whose values MaskCLIP
    reads; None for a ViT that reads its embedding from a token, whose last block MaskCLIP changes."""
    try:
        return adapter.value_pool()
    except ValueError:
        return None


@contextmanager
def read(adapter: ModelAdapter, start: int, grid: tuple[int, int]) -> Iterator[Captured]:
    """The last block's input on a CLIP ViT, the attention pool's input on a ResNet (or SigLIP)."""
    pool = pool_of(adapter)
    if pool is None:
        with read_last_block(adapter, start, grid) as state:
            yield state
    else:
        with capture_input(pool.module, start) as state:
            yield state


def maps(state: Captured, adapter: ModelAdapter, text: torch.Tensor, grid: tuple[int, int]) -> list[np.ndarray]:
    """(K, rows, cols) cosine maps, the same for every start layer."""
    pool = pool_of(adapter)
    if pool is None:
        return block_maps(VALUE_PATH)(state, adapter, text, grid)
    features = pool.values(state.input)[0]  # (N, P), no prefix
    read_on = tuple(state.input.shape[-2:]) if state.input.ndim == 4 else grid  # a ResNet's last stage, or the tokens'
    return each_layer(adapter, state, cosine_maps(features, text, read_on, 0), grid)


METHOD = Method(
    name="maskclip",
    label="MaskCLIP (dense, training-free)",
    paper="Zhou, Loy & Dai, ECCV 2022",
    about="every patch read out through the last attention's value path (no query–key mixing) and compared "
          f"with each prompt ({ON_SIGLIP}); {NOT_A_GRADIENT}",
    pass_kind=FORWARD,
    compute=ForwardMethod(read=read, maps=maps),
    needs=frozenset({"value_path"}),
    uses_layer=False,
    dense=DenseDefaults(logit_scale=100.0, prob_thd=0.0, crop=224, stride=224, short_side=None),
)
