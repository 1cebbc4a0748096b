"""Grad-CAM maths for vision transformers (Selvaraju et al., ICCV 2017, "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization").

For prompt k and a hooked activation A (tokens × channels), the channel weights are the
token-mean of the gradient, w_c = mean_n ∂logit_k/∂A_nc, and the map is ReLU(Σ_c w_c·A_nc)
over the patch tokens (the CLS token is dropped), laid out on the token grid. This is what
pytorch-grad-cam's GradCAM computes with a reshape transform that drops CLS.
"""

from __future__ import annotations

import numpy as np
import torch

from .constants import NORM_EPS


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Raw Grad-CAM maps, one per prompt.

    activations: (1+N, D) one image's hooked output, CLS first.
    gradients:   (K, 1+N, D) ∂logit_k/∂activations for each of K prompts.
    Returns (K, rows, cols) float32, ≥ 0, not normalised (comparable across prompts).
    """
    rows, cols = grid
    acts = activations[1:].float()  # (N, D) patch tokens only
    grads = gradients[:, 1:].float()  # (K, N, D)
    weights = grads.mean(dim=1)  # (K, D)
    cam = torch.relu(weights @ acts.T)  # (K, N)
    return cam.reshape(-1, rows, cols).detach().cpu().numpy().astype(np.float32)


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each map on its own to [0, 1], exactly as pytorch-grad-cam's scale_cam_image.

    maps: (..., rows, cols). An all-zero map stays all zero.
    """
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(-2, -1), keepdims=True)
    shifted = maps - low
    return shifted / (NORM_EPS + shifted.max(axis=(-2, -1), keepdims=True))


def normalize_shared(maps: np.ndarray) -> np.ndarray:
    """Scale maps (K, rows, cols) by one common maximum, so that prompts can be compared by strength."""
    maps = np.asarray(maps, dtype=np.float32)
    return maps / (NORM_EPS + maps.max()) if maps.size else maps
