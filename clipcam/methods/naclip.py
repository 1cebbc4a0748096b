"""NACLIP (Hajimiri, Ben Ayed & Dolz, "Pay Attention to Your Neighbours: Training-Free
Open-Vocabulary Semantic Segmentation", WACV 2025), as the authors' code computes it
(sinahmr/NACLIP).

``clip/model.py``, ``VisionTransformer.forward`` (``arch='reduced'``), ``custom_attn``
(``attn_strategy='naclip'``), ``gaussian_window`` and ``get_attention_addition``: only the last
block changes; its output is the attention alone, softmax(k kᵀ/√d + Ω) over the values through the
output projection, with the residual and the FFN dropped. Ω adds to the logit of patch i attending
to patch j a Gaussian of their distance on the grid, exp(-|p_i - p_j|² / (2σ²)) with σ = 5
(``gaussian_std=5.``); the class token's row and column get nothing (``adjust_for_cls``). Every
token then goes through ``ln_post`` and ``proj`` (``return_all=True``), and ``naclip.py``
(``forward_feature``) takes the cosine of each patch with each text embedding.

Post-processing (``DenseDefaults``, ``NACLIP.__init__``): ``logit_scale=40``, ``prob_thd=0.0`` (0.1
in their configs with a background class), ``slide_crop=224``, ``slide_stride=112``; their configs
resize the short side to 336. Their default PAMR refinement (``pamr_steps=10``) is not part of the map.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from . import Method
from .dense import NOT_A_GRADIENT, ON_SIGLIP, LastBlock, block_method
from .kinds import FORWARD, DenseDefaults

#: The authors' default spread of the neighbourhood window, in patches.
SIGMA = 5.0


@lru_cache(maxsize=16)
def neighbourhood(grid: tuple[int, int], prefix: int, sigma: float) -> torch.Tensor:
    """Ω (T, T) float32: exp(-squared grid distance / (2σ²)) between patches, 0 for prefix tokens."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    at = torch.stack([rows.flatten(), cols.flatten()], dim=-1).float()  # (N, 2)
    omega = torch.exp(-torch.cdist(at, at).pow(2) / (2 * sigma ** 2))  # (N, N)
    t = prefix + omega.shape[0]
    out = torch.zeros(t, t)
    out[prefix:, prefix:] = omega
    return out


def neighbour_attention(sigma: float = SIGMA):
    """NACLIP's attention with spread ``sigma``: (B, H, T, d) keys → (B, H, T, T)."""

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
        omega = neighbourhood(tuple(grid), prefix, float(sigma)).to(k.device, k.dtype)  # (T, T)
        return torch.softmax(k @ k.transpose(-1, -2) * k.shape[-1] ** -0.5 + omega, dim=-1)

    return attention


CHANGE = LastBlock(attention=neighbour_attention(SIGMA), residual=False, ffn=False)

METHOD = Method(
    name="naclip",
    label="NACLIP (dense, training-free)",
    paper="Hajimiri, Ben Ayed & Dolz, WACV 2025",
    about="the last block reduced to k–k self-attention plus a Gaussian neighbourhood (σ = 5 patches), without the "
          f"residual and the FFN, every patch read out and compared with each prompt ({ON_SIGLIP}); {NOT_A_GRADIENT}",
    pass_kind=FORWARD,
    compute=block_method(CHANGE),
    needs=frozenset({"dense"}),
    uses_layer=False,
    dense=DenseDefaults(logit_scale=40.0, prob_thd=0.0, crop=224, stride=112, short_side=336),
)
