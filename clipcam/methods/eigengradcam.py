"""EigenGrad-CAM (EigenCAM on gradient × activation): the first principal component of gradient × activation.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="eigengradcam",
    label="EigenGrad-CAM",
    paper="EigenCAM on gradient × activation",
    about="the first principal component of gradient × activation",
    reads="sublayer",
    compute=partial(cam_maps, "eigengradcam"),
)
