"""clipcam: where a CLIP model looks when it matches an image to each of several text prompts.

    from clipcam import load_explainer
    ex = load_explainer("base")
    res = ex.explain("cat.png", ["a photo of a cat.", "a photo of a dog."], layer=11, sublayer="mlp.fc1")
    res.probs, res.grid_maps, res.image_maps

This module never imports gradio; the web UI lives in ``clipcam.app.ui``.
"""

from .constants import DEFAULT_SUBLAYER, MODEL_ALIASES, SUBLAYERS
from .explainer import Explainer, Explanation, Sweep, load_explainer
from .geometry import CropGeometry
from .images import load_image
from .models import LoadedModel, load_model

__all__ = [
    "DEFAULT_SUBLAYER",
    "MODEL_ALIASES",
    "SUBLAYERS",
    "CropGeometry",
    "Explainer",
    "Explanation",
    "LoadedModel",
    "Sweep",
    "load_explainer",
    "load_image",
    "load_model",
]
__version__ = "0.1.0"
