"""CAM maths for vision transformers: Grad-CAM and its family, from one image's hooked activation
and the K prompts' gradients.

Grad-CAM (Selvaraju et al., ICCV 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization"): for prompt k and a hooked activation A (tokens × channels), the
channel weights are the token-mean of the gradient, w_c = mean_n ∂logit_k/∂A_nc, and the map is
ReLU(Σ_c w_c·A_nc) over the patch tokens (the CLS token is dropped), laid out on the token grid.
This is what pytorch-grad-cam's GradCAM computes with a reshape transform that drops CLS.

The other members of the family reuse pytorch-grad-cam's own weighting code (its
``get_cam_image``/``get_cam_weights``), fed with clipcam's single forward and batched gradients
instead of the package's per-target forward and backward. Each variant is one row of CAM_TABLE,
which makes its method record.
"""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np
import pytorch_grad_cam as pgc
import torch

from ..constants import NORM_EPS
from . import Method
from .kinds import SUBLAYER

#: The pytorch-grad-cam variants, one row each: (name, label, the pytorch-grad-cam class whose
#: weighting code is reused, paper, about, uses_prompts). Adding a variant is one row (and its parity
#: test); the rows keep the registry's order.
CAM_TABLE: tuple[tuple[str, str, type, str, str, bool], ...] = (
    ("gradcam", "Grad-CAM", pgc.GradCAM, "Selvaraju et al., ICCV 2017",
     "the token-mean gradient weights the sublayer's channels", True),
    ("hirescam", "HiResCAM", pgc.HiResCAM, "Draelos & Carin, arXiv:2011.08891, 2020",
     "gradient × activation, summed over channels, per token", True),
    ("gradcam++", "Grad-CAM++", pgc.GradCAMPlusPlus, "Chattopadhay et al., WACV 2018",
     "channel weights from second- and third-order gradient terms", True),
    ("xgradcam", "XGrad-CAM", pgc.XGradCAM, "Fu et al., BMVC 2020",
     "channel weights normalised by the activations' sum", True),
    ("layercam", "LayerCAM", pgc.LayerCAM, "Jiang et al., IEEE TIP 2021",
     "the positive gradient weights each token's activation", True),
    ("eigencam", "EigenCAM (prompt-independent)", pgc.EigenCAM, "Muhammad & Yeasin, IJCNN 2020",
     "the first principal component of the activations, the same for every prompt", False),
    ("eigengradcam", "EigenGrad-CAM", pgc.EigenGradCAM, "EigenCAM on gradient × activation",
     "the first principal component of gradient × activation", True),
    ("gradcam-elementwise", "Grad-CAM element-wise", pgc.GradCAMElementWise, "Grad-CAM with element-wise ReLU",
     "ReLU of gradient × activation before the channel sum", True),
)


def cam_maps(cls: type, activations: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int],
             prefix: int = 1) -> np.ndarray:
    """Raw maps of the CAM variant whose pytorch-grad-cam class is ``cls``, one per prompt:
    (K, rows, cols) float32, ≥ 0, not normalised.

    activations: (P+N, D), the P prefix tokens (a class token, or none) first; gradients: (K, P+N, D).
    """
    if cls is pgc.GradCAM:
        return grad_cam(activations, gradients, grid, prefix)
    rows, cols = grid
    k = gradients.shape[0]
    to_maps = lambda t: t[..., prefix:, :].float().reshape(-1, rows, cols, t.shape[-1]).permute(0, 3, 1, 2)  # noqa: E731
    acts = to_maps(activations[None]).expand(k, -1, -1, -1).detach().cpu().numpy()  # (K, D, rows, cols)
    grads = to_maps(gradients).detach().cpu().numpy()  # (K, D, rows, cols)
    if cls in (pgc.EigenCAM, pgc.EigenGradCAM):
        # The package's own recipe, with one SVD instead of K for EigenCAM (its activations are the
        # same for every prompt) and reduced SVDs (its full_matrices SVD costs seconds per prompt).
        if cls is pgc.EigenCAM:
            cam = np.repeat(eigen_projection(acts[:1]), k, axis=0)
        else:
            cam = eigen_projection(grads * acts)
        return np.maximum(cam, 0).astype(np.float32)
    # The package's weighting code as plain functions: no instance, so none of its hooks or forward passes.
    weights_only = SimpleNamespace(get_cam_weights=partial(cls.get_cam_weights, None))
    cam = cls.get_cam_image(weights_only, None, None, None, acts, grads, eigen_smooth=False)  # (K, rows, cols)
    return np.maximum(cam, 0).astype(np.float32)


#: Variants that bfloat16's rounding moves far (per-prompt Pearson r against float32 down to −0.8 on the
#: shapes models, tests/test_precision.py), so they run in float32: XGrad-CAM and Grad-CAM++ weigh
#: channels by ratios whose denominators cancel (Σa; 2g² + Σa·g³), EigenGrad-CAM's first principal
#: component swaps with the second where their singular values are close.
FLOAT32_CAMS: dict[str, str] = {
    "xgradcam": "its channel weights divide by each channel's sum of activations, which cancels",
    "gradcam++": "its channel weights divide by sums of activations times cubed gradients, which cancel",
    "eigengradcam": "its map is a first principal component, which bfloat16's rounding can swap with the second",
}

#: The table's rows as method records, in its order (clipcam.methods lists them first).
CAM_RECORDS: tuple[Method, ...] = tuple(
    Method(name=name, label=label, paper=paper, about=about, pass_kind=SUBLAYER, compute=partial(cam_maps, cls),
           uses_prompts=uses_prompts,
           same_map_because="" if uses_prompts else "it is the activations' first principal component",
           float32=FLOAT32_CAMS.get(name, ""))
    for name, label, cls, paper, about, uses_prompts in CAM_TABLE
)


def eigen_projection(maps: np.ndarray) -> np.ndarray:
    """Each (D, rows, cols) map projected on its first principal component: (K, rows, cols).

    The same centring, SVD and sign as pytorch-grad-cam's ``get_2d_projection`` (tested against
    it), but with a reduced SVD: only the first right singular vector is used, and the full one
    builds a D×D matrix (3072² for mlp.fc1 of ViT-B) for nothing.
    """
    maps = np.nan_to_num(maps, nan=0.0)
    out = []
    for channels in maps:
        flat = channels.reshape(channels.shape[0], -1).T  # (N, D): tokens × channels
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        out.append((flat @ vt[0]).reshape(channels.shape[1:]))
    return np.asarray(out, dtype=np.float32)


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> np.ndarray:
    """Raw Grad-CAM maps, one per prompt.

    activations: (P+N, D) one image's hooked output, the P prefix tokens first (a CNN stage: P = 0).
    gradients:   (K, P+N, D) ∂score_k/∂activations for each of K prompts.
    Returns (K, rows, cols) float32, ≥ 0, not normalised (comparable across prompts).
    """
    rows, cols = grid
    acts = activations[prefix:].float()  # (N, D) grid tokens only
    grads = gradients[:, prefix:].float()  # (K, N, D)
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
