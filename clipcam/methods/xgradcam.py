"""XGrad-CAM (Fu et al., BMVC 2020): channel weights normalised by the activations' sum.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="xgradcam",
    label="XGrad-CAM",
    paper="Fu et al., BMVC 2020",
    about="channel weights normalised by the activations' sum",
    reads="sublayer",
    compute=partial(cam_maps, "xgradcam"),
)
