"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, "Score-CAM: Score-Weighted Visual
Explanations for Convolutional Neural Networks", CVPR Workshops 2020), computed as
pytorch-grad-cam's ScoreCAM computes it, but with one set of masked forwards for all prompts.

Each channel c of the hooked activation, laid out on the token grid, is upsampled to the model's
input size (bilinear, corners aligned), min-max scaled to [0, 1] and multiplied into the input
image; CLIP scores the masked image. Channel c's weight for prompt k is the softmax over channels
of prompt k's target score; the map is ReLU(Σ_c w_kc·A_c). No gradient is used, so every layer
and sublayer gives a map, but it costs one forward pass per channel (768 for a ViT-B/32 sublayer,
3072 for its mlp.fc1). pytorch-grad-cam repeats those forwards once per prompt; one masked image's
forward scores every prompt at once, so clipcam runs them once, in batches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import Method
from .kinds import MASKING

#: Masked images per forward pass.
BATCH_SIZE = 32


def channel_masks(activations: torch.Tensor, grid: tuple[int, int], size: tuple[int, int],
                  prefix: int = 1) -> torch.Tensor:
    """activations (P+N, D), prefix tokens first → (D, 1, H, W) masks in [0, 1] of ``size`` (H, W), one per channel."""
    rows, cols = grid
    maps = activations[prefix:].float().T.reshape(1, -1, rows, cols)  # (1, D, rows, cols)
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=True)[0]  # (D, H, W)
    low = up.amin(dim=(1, 2), keepdim=True)
    high = up.amax(dim=(1, 2), keepdim=True)
    return ((up - low) / (high - low + 1e-8))[:, None]  # the package's scaling, epsilon included


def score_cam_maps(
    size: tuple[int, int],
    activations: torch.Tensor,
    grid: tuple[int, int],
    scores_of: Callable[[torch.Tensor], torch.Tensor],
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH_SIZE,
    prefix: int = 1,
) -> np.ndarray:
    """Score-CAM maps (K, rows, cols) float32, ≥ 0, not normalised.

    size (H, W): the model input's image size, where the masks are made; activations (P+N, D):
    the hooked output for the image, prefix first; scores_of: masks (B, 1, H, W) in [0, 1] → the
    K prompts' target scores (B, K) of the input multiplied by each mask (the adapter's
    ``mask_inputs``); progress(done, total) is called after every batch of forwards.
    """
    masks = channel_masks(activations, grid, size, prefix)  # (D, 1, H, W)
    channels = masks.shape[0]
    scores = []
    with torch.inference_mode():
        for start in range(0, channels, batch_size):
            scores.append(scores_of(masks[start:start + batch_size]).float())  # (B, K)
            if progress is not None:
                progress(min(start + batch_size, channels), channels)
    weights = torch.softmax(torch.cat(scores).T, dim=-1)  # (K, D): softmax over channels
    cam = torch.relu(weights @ activations[prefix:].float().T)  # (K, N)
    return cam.reshape(-1, *grid).cpu().numpy().astype(np.float32)


METHOD = Method(
    name="scorecam",
    label="Score-CAM (slow: masked forwards)",
    paper="Wang et al., CVPR Workshops 2020",
    about="uses no gradient: every channel of the sublayer masks the image once and the model scores the masked images",
    pass_kind=MASKING,
    compute=score_cam_maps,
)
