"""Grad-CAM++ (Chattopadhay et al., WACV 2018): channel weights from second- and third-order gradient terms.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="gradcam++",
    label="Grad-CAM++",
    paper="Chattopadhay et al., WACV 2018",
    about="channel weights from second- and third-order gradient terms",
    reads="sublayer",
    compute=partial(cam_maps, "gradcam++"),
)
