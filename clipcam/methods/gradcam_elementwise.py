"""Grad-CAM element-wise (Grad-CAM with element-wise ReLU): ReLU of gradient × activation before the channel sum.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="gradcam-elementwise",
    label="Grad-CAM element-wise",
    paper="Grad-CAM with element-wise ReLU",
    about="ReLU of gradient × activation before the channel sum",
    reads="sublayer",
    compute=partial(cam_maps, "gradcam-elementwise"),
)
