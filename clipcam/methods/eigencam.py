"""EigenCAM (Muhammad & Yeasin, IJCNN 2020): the first principal component of the activations, the same for every prompt.

The maths is pytorch-grad-cam's own weighting code, fed with clipcam's single forward and batched
gradients (clipcam.methods.cam).
"""

from functools import partial

from . import Method
from .cam import cam_maps

METHOD = Method(
    name="eigencam",
    label="EigenCAM (prompt-independent)",
    paper="Muhammad & Yeasin, IJCNN 2020",
    about="the first principal component of the activations, the same for every prompt",
    reads="sublayer",
    compute=partial(cam_maps, "eigencam"),
    uses_prompts=False,
)
