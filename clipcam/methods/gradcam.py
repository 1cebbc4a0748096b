"""Grad-CAM (Selvaraju et al., ICCV 2017): the token-mean gradient weights the sublayer's channels.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="gradcam",
    label="Grad-CAM",
    paper="Selvaraju et al., ICCV 2017",
    about="the token-mean gradient weights the sublayer's channels",
    reads="sublayer",
    compute=partial(cam_maps, "gradcam"),
)
