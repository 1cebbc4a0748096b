"""The reference notebook's pipeline, kept as the yardstick for parity tests and benchmarks.

It is the research notebook's recipe — pytorch-grad-cam's ``GradCAM`` over a wrapper module that
returns ``logits_per_image``, with a reshape transform that drops the CLS token — with two of its
defects mended so that it can be compared at all: the wrapper uses the tensor it is given (the
notebook's re-downloaded the image), and the token grid is read from the config (the notebook
hard-coded 7×7 and 16×16). It still runs the whole CLIP forward and backward once per prompt,
as the notebook does. clipcam's explainer must agree with it; it is not used to serve users.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import open_clip
import pytorch_grad_cam as pgc
import torch
import transformers
from PIL import Image

#: pytorch-grad-cam's class for each CAM method, named here rather than read from clipcam's own
#: table, so that a wrong row there cannot hide on both sides.
REFERENCE_CAMS: dict[str, type] = {
    "gradcam": pgc.GradCAM,
    "hirescam": pgc.HiResCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "layercam": pgc.LayerCAM,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
    "gradcam-elementwise": pgc.GradCAMElementWise,
    "scorecam": pgc.ScoreCAM,
}


class OwnModel(NamedTuple):
    """A saved model as its own library loads it: the model (eval, frozen), its tokenizer and its
    image preprocessing (an RGB image → the model's input (1, 3, H, W))."""

    model: torch.nn.Module
    tokenizer: Any
    preprocess: Callable[[Image.Image], torch.Tensor]


@lru_cache(maxsize=8)
def own_model(source: str) -> OwnModel:
    """The model saved at ``source`` (a folder, or ``local-dir:FOLDER`` for open_clip), loaded by
    its family's own library from the saved files, never through clipcam's loader: open_clip's
    ``create_model_and_transforms`` (which reads the folder's weights itself), or transformers'
    Auto classes. A reference built on it sees any bug in how clipcam loads a model."""
    if source.startswith("local-dir:"):
        model, _, transform = open_clip.create_model_and_transforms(source)
        return OwnModel(model.eval().requires_grad_(False), open_clip.get_tokenizer(source),
                        lambda image: transform(image)[None])
    folder = Path(source)
    model = transformers.AutoModel.from_pretrained(folder, use_safetensors=True).eval().requires_grad_(False)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    return OwnModel(model, transformers.AutoTokenizer.from_pretrained(folder),
                    lambda image: processor(images=image, return_tensors="pt")["pixel_values"])


def token_grid(model) -> tuple[int, int]:
    """(rows, cols) of a transformers CLIP/SigLIP vision tower, from its config (the reference's own
    reading, not clipcam's adapter, so that an addressing error cannot hide on both sides)."""
    cfg = model.config.vision_config
    return cfg.image_size // cfg.patch_size, cfg.image_size // cfg.patch_size


def target_module(model, layer: int, sublayer: str) -> torch.nn.Module:
    """The module named by a 1-based layer and a sublayer, addressed directly in the model."""
    block = model.vision_model.encoder.layers[layer - 1]
    return block if sublayer == "block" else block.get_submodule(sublayer)


class LogitsPerImage(torch.nn.Module):
    """Wraps a CLIPModel as image tensor → logits_per_image (B, K) for fixed tokenized prompts."""

    def __init__(self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.input_ids = input_ids
        self.attention_mask = attention_mask

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, input_ids=self.input_ids, attention_mask=self.attention_mask)
        return out.logits_per_image


class PromptTarget:
    """pytorch-grad-cam target: the logit of one prompt (the notebook's ClassifierOutputTarget), or
    its log-softmax over the prompts, or the logit minus the prompts' mean logit."""

    def __init__(self, index: int, target: str = "logit") -> None:
        self.index = index
        self.target = target

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if self.target == "log_softmax":
            output = torch.log_softmax(output, dim=-1)
        elif self.target == "contrast":
            output = output - output.mean(dim=-1, keepdim=True)
        return output[self.index] if output.ndim == 1 else output[:, self.index]


def vit_reshape(grid: tuple[int, int]):
    """Reshape transform: (B, 1+N, D) tokens → (B, D, rows, cols), CLS dropped."""
    rows, cols = grid

    def reshape(x: torch.Tensor) -> torch.Tensor:
        tokens = x[:, 1:, :]  # (B, N, D)
        return tokens.reshape(tokens.shape[0], rows, cols, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def reference_grad_cam(
    model, tokenizer, image_processor, image, prompts: Sequence[str], layer: int, sublayer: str,
    target: str = "logit", method: str = "gradcam",
) -> np.ndarray:
    """The notebook's pipeline: per prompt, process the inputs and run GradCAM (full forward + backward).

    Returns (K, S, S): each prompt's map min-max scaled and resized to the S×S model input, as
    pytorch-grad-cam returns it.
    """
    grid = token_grid(model)
    maps = []
    trainable = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)  # as in the notebook: every weight takes part in the backward
    try:
        _run_per_prompt(model, tokenizer, image_processor, image, prompts, layer, sublayer, target,
                        REFERENCE_CAMS[method], grid, maps)
    finally:
        for param, flag in zip(model.parameters(), trainable):
            param.requires_grad_(flag)
            param.grad = None
    return np.stack(maps).astype(np.float32)


def _run_per_prompt(model, tokenizer, image_processor, image, prompts, layer, sublayer, target, cam_class, grid,
                    maps) -> None:
    with torch.enable_grad():
        for k in range(len(prompts)):
            inputs = image_processor(images=image, return_tensors="pt")
            tokens = tokenizer(list(prompts), padding=True, return_tensors="pt")
            wrapper = LogitsPerImage(model, tokens["input_ids"], tokens["attention_mask"])
            with cam_class(model=wrapper, target_layers=[target_module(model, layer, sublayer)],
                         reshape_transform=vit_reshape(grid)) as cam:
                maps.append(cam(input_tensor=inputs["pixel_values"], targets=[PromptTarget(k, target)])[0])
