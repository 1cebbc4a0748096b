"""HiResCAM (Draelos & Carin, arXiv:2011.08891, 2020): gradient × activation, summed over channels, per token.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="hirescam",
    label="HiResCAM",
    paper="Draelos & Carin, arXiv:2011.08891, 2020",
    about="gradient × activation, summed over channels, per token",
    reads="sublayer",
    compute=partial(cam_maps, "hirescam"),
)
