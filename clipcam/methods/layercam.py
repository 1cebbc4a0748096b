"""LayerCAM (Jiang et al., IEEE TIP 2021): the positive gradient weights each token's activation.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="layercam",
    label="LayerCAM",
    paper="Jiang et al., IEEE TIP 2021",
    about="the positive gradient weights each token's activation",
    reads="sublayer",
    compute=partial(cam_maps, "layercam"),
)
