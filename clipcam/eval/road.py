"""ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
ICML 2022) and its companions, through pytorch-grad-cam's own ``metrics`` package, used as it is.

For each prompt k the model's logit for prompt k is followed (``ClassifierOutputTarget(k)`` on the
(B, K) logits over the scene's prompts) while pixels are removed and filled by ROAD's noisy linear
imputation, most relevant first (MoRF: the score should fall, lower is better) or least relevant
first (LeRF: it should hold, higher is better), averaged over the removal percentiles 10–90; the
combined score is (LeRF − MoRF) / 2 (higher is better). Values are score differences after −
before, as the package returns them. The map is the method's raw grid map, min-max scaled and
resized bilinearly onto the model's input pixels (the crop the model saw). ROAD's imputation adds
noise from torch's generator; each call seeds a forked generator, so a run is repeatable.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

#: ROAD's removal percentiles (the package's default).
PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


class PromptLogits(torch.nn.Module):
    """pixels (B, 3, S, S) → the model's logits (B, K) for fixed text embeddings, as the explainer
    computes them (the adapter's image_features and logits)."""

    def __init__(self, adapter, text: torch.Tensor) -> None:
        super().__init__()
        self.adapter, self.text = adapter, text

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.adapter.logits(self.adapter.image_features(pixels), self.text)  # (B, K)


def road_scores(explainer, image: object, prompts: tuple[str, ...], grid_maps: np.ndarray, seed: int = 0,
                percentiles: tuple[int, ...] = PERCENTILES) -> dict[str, list[float]] | None:
    """{"road_morf", "road_lerf", "road_combined"}: one value per prompt, for maps (K, rows, cols);
    None for a model whose input is not one pixel tensor (SigLIP 2 NaFlex's patches)."""
    adapter = explainer.adapter
    _, pixels, _, _ = explainer.prepare_image(image)
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4:
        return None
    text, _ = explainer.text_embeddings(prompts)
    size = pixels.shape[-1], pixels.shape[-2]  # (W, H) of the input
    cams = []
    for m in np.asarray(grid_maps, dtype=np.float32):
        low, span = m.min(), m.max() - m.min()
        scaled = (m - low) / span if span > 0 else np.zeros_like(m)
        cams.append(cv2.resize(scaled, size, interpolation=cv2.INTER_LINEAR))
    cams = np.stack(cams)  # (K, H, W)
    batch = pixels.expand(len(prompts), *pixels.shape[1:]).contiguous()  # (K, 3, H, W)
    targets = [ClassifierOutputTarget(k) for k in range(len(prompts))]
    model = PromptLogits(adapter, text)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        morf = ROADMostRelevantFirstAverage(list(percentiles))(batch, cams, targets, model)
        lerf = ROADLeastRelevantFirstAverage(list(percentiles))(batch, cams, targets, model)
    morf, lerf = np.asarray(morf, np.float64).ravel(), np.asarray(lerf, np.float64).ravel()
    return {"road_morf": morf.tolist(), "road_lerf": lerf.tolist(), "road_combined": ((lerf - morf) / 2).tolist()}
