"""Write the shapes-world example scenes the app offers (clipcam/assets/shapes/scene-N.png).

    python tools/make_shapes_examples.py

Each is a fixed 64×64 scene, saved enlarged 4× with nearest-neighbour so that it is visible in the
browser; CLIP's processor shrinks it back to the 64×64 the model was trained on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam.constants import SHAPES_SCENES_DIR  # noqa: E402
from clipcam.eval.shapes import ShapeObject, render  # noqa: E402

SCENES = [
    (ShapeObject("circle", "red", (16, 18), 11), ShapeObject("square", "blue", (46, 20), 11),
     ShapeObject("triangle", "green", (30, 47), 12)),
    (ShapeObject("square", "yellow", (48, 46), 10), ShapeObject("triangle", "red", (18, 40), 12),
     ShapeObject("circle", "blue", (40, 14), 9)),
    (ShapeObject("circle", "green", (46, 40), 12), ShapeObject("triangle", "yellow", (17, 20), 11)),
]


def main() -> None:
    out = SHAPES_SCENES_DIR
    out.mkdir(parents=True, exist_ok=True)
    for i, objects in enumerate(SCENES, start=1):
        scene = render(objects, np.random.default_rng(i))
        Image.fromarray(scene.image).resize((256, 256), Image.NEAREST).save(out / f"scene-{i}.png")


if __name__ == "__main__":
    main()
