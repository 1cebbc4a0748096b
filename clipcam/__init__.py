"""clipcam: where a CLIP-family model looks when it matches an image to each of several text prompts.

    from clipcam import load_explainer
    ex = load_explainer("base")  # or "siglip", "rn50", "laion-b32", an open_clip "hf-hub:org/repo", a folder
    res = ex.explain("cat.png", ["a photo of a cat.", "a photo of a dog."], layer=11, sublayer="mlp.fc1")
    res.probs, res.grid_maps, res.image_maps      # one layer: (K, rows, cols) raw, (K, H, W) on the image
    sweep = ex.sweep("cat.png", ["a photo of a cat."])  # the same type with every layer
    sweep.layers, sweep.layer_maps, sweep.at(11).image_maps
    res = ex.explain("cat.png", ["a photo of a cat."], words="chefer")  # which words matter, too
    res.word_relevance[0].words, res.word_relevance[0].word_relevance
    label_map(res).labels   # (H, W): which prompt wins each pixel (-1 none, -2 unseen); raw maps unchanged

This module never imports gradio; the web UI lives in ``clipcam.app``.
"""

from .constants import DEFAULT_SUBLAYER, SUBLAYERS
from .dense import LabelMap, label_map
from .explainer import Explainer, Explanation, load_explainer
from .geometry import CropGeometry
from .images import load_image
from .models import MODEL_ALIASES, load_model
from .models.base import ModelAdapter
from .methods import METHODS, REGISTRY, Method
from .slide import slide_label_map
from .words import WORD_METHODS, PromptWords, WordRelevance

__all__ = [
    "DEFAULT_SUBLAYER",
    "MODEL_ALIASES",
    "SUBLAYERS",
    "CropGeometry",
    "Explainer",
    "Explanation",
    "LabelMap",
    "METHODS",
    "Method",
    "ModelAdapter",
    "REGISTRY",
    "PromptWords",
    "WORD_METHODS",
    "WordRelevance",
    "label_map",
    "load_explainer",
    "load_image",
    "load_model",
    "slide_label_map",
]
__version__ = "0.1.0"
