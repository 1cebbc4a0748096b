"""Shapes world: small synthetic scenes with known object masks, and their captions.

A scene is a 64×64 image with 1–3 filled shapes (circle, square, triangle) in distinct colours
(red, green, blue, yellow) at random non-overlapping places and sizes, on a lightly noisy
background. Each object comes with its mask, so a heatmap for "a photo of a red circle." can be
scored against where the red circle really is. The project's own small CLIP (``clipcam/assets/shapes-clip``)
is trained on these scenes (``tools/train_shapes.py``); ``benchmarks/quality.py`` measures
heatmap quality on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
}
SIZE = 64
#: Words the shapes model's tokenizer knows as whole tokens.
VOCABULARY = ("a", "photo", "of", "and") + SHAPES + tuple(COLOURS)


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    center: tuple[int, int]  # (x, y) pixels
    radius: int  # half the object's extent in pixels

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (SIZE, SIZE, 3) uint8 RGB
    objects: tuple[ShapeObject, ...]
    masks: np.ndarray  # (n_objects, SIZE, SIZE) bool, one per object


def object_prompt(obj: ShapeObject) -> str:
    """The prompt that names one object: 'a photo of a red circle.'."""
    return f"a photo of a {obj.name}."


def caption(objects: list[ShapeObject] | tuple[ShapeObject, ...]) -> str:
    """A caption listing ``objects``: 'a photo of a red circle, a blue square and a green triangle.'."""
    return caption_of([o.name for o in objects])


def caption_of(names: list[str]) -> str:
    """A caption listing things by name: ['red circle', 'square'] → 'a photo of a red circle and a square.'."""
    items = [f"a {name}" for name in names]
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"a photo of {listed}."


def _draw(canvas: np.ndarray, obj: ShapeObject, colour: tuple[int, int, int]) -> None:
    x, y, r = obj.center[0], obj.center[1], obj.radius
    if obj.shape == "circle":
        cv2.circle(canvas, (x, y), r, colour, thickness=-1, lineType=cv2.LINE_8)
    elif obj.shape == "square":
        side = int(round(r * 0.85))
        cv2.rectangle(canvas, (x - side, y - side), (x + side, y + side), colour, thickness=-1)
    else:
        pts = np.array([[x, y - r], [x - r, y + int(0.8 * r)], [x + r, y + int(0.8 * r)]], np.int32)
        cv2.fillPoly(canvas, [pts], colour)


def render(objects: tuple[ShapeObject, ...], rng: np.random.Generator) -> Scene:
    """Draw the objects on a lightly noisy background; return the scene with its masks."""
    base = rng.uniform(150, 215)
    noise = rng.normal(0, 6, size=(SIZE, SIZE, 3))
    tint = rng.uniform(-10, 10, size=3)
    canvas = np.clip(base + tint + noise, 0, 255).astype(np.uint8)
    masks = np.zeros((len(objects), SIZE, SIZE), dtype=np.uint8)
    for i, obj in enumerate(objects):
        _draw(canvas, obj, COLOURS[obj.colour])
        _draw(masks[i], obj, (1,))
    return Scene(canvas, objects, masks.astype(bool))


def sample_objects(rng: np.random.Generator, n: int) -> tuple[ShapeObject, ...]:
    """n objects with distinct colours at non-overlapping places."""
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    placed: list[ShapeObject] = []
    for colour in colours:
        for _ in range(200):
            r = int(rng.integers(7, 14))
            x, y = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
            if all((x - o.center[0]) ** 2 + (y - o.center[1]) ** 2 > (r + o.radius + 3) ** 2 for o in placed):
                placed.append(ShapeObject(str(rng.choice(SHAPES)), str(colour), (x, y), r))
                break
    return tuple(placed)


def random_scene(rng: np.random.Generator, min_objects: int = 1, max_objects: int = 3) -> Scene:
    """A seeded random scene with between min_objects and max_objects objects."""
    return render(sample_objects(rng, int(rng.integers(min_objects, max_objects + 1))), rng)


def swap_colours(scene_objects: tuple[ShapeObject, ...], rng: np.random.Generator) -> tuple[ShapeObject, ...]:
    """The same shapes and places with the colours permuted so that no object keeps its colour."""
    n = len(scene_objects)
    shift = int(rng.integers(1, n)) if n > 1 else 0
    colours = [o.colour for o in scene_objects]
    return tuple(ShapeObject(o.shape, colours[(i + shift) % n], o.center, o.radius) for i, o in enumerate(scene_objects))


def evaluation_set(n: int = 300, seed: int = 2024) -> list[Scene]:
    """The fixed, seeded evaluation scenes of the quality benchmark: 2–3 objects each."""
    rng = np.random.default_rng(seed)
    return [random_scene(rng, 2, 3) for _ in range(n)]


# ----------------------------------------------------------------------------- harder scenes
#: Radii of the harder scenes' objects: down to 4 px (small objects; the easy scenes use 7–13).
HARD_RADII = (4, 13)
#: The least share of an object's own pixels that stays visible when later objects overlap it.
MIN_VISIBLE = 0.5


def visible_masks(objects: tuple[ShapeObject, ...]) -> np.ndarray:
    """(n, SIZE, SIZE) bool: each object's pixels that no later-drawn object covers (later ones lie on top)."""
    full = np.zeros((len(objects), SIZE, SIZE), dtype=np.uint8)
    for i, obj in enumerate(objects):
        _draw(full[i], obj, (1,))
    full = full.astype(bool)
    covered = np.zeros((SIZE, SIZE), bool)
    visible = np.zeros_like(full)
    for i in range(len(objects) - 1, -1, -1):
        visible[i] = full[i] & ~covered
        covered |= full[i]
    return visible


def sample_hard_objects(rng: np.random.Generator, n: int) -> tuple[ShapeObject, ...]:
    """n objects with distinct names (colour + shape) but shared colours and shapes (distractors),
    sizes from 4 px, and overlaps that leave each object at least MIN_VISIBLE of its pixels.

    The first two objects share a colour and the first and third share a shape, so every scene has
    a same-colour and a same-shape distractor; the rest are drawn at random among unused names.
    """
    names = [(str(c), str(s)) for c in COLOURS for s in SHAPES]
    first = names[int(rng.integers(len(names)))]
    same_colour = [x for x in names if x[0] == first[0] and x != first]
    second = same_colour[int(rng.integers(len(same_colour)))]
    same_shape = [x for x in names if x[1] == first[1] and x[0] not in (first[0], second[0])]
    chosen = [first, second, same_shape[int(rng.integers(len(same_shape)))]]
    rest = [x for x in names if x not in chosen]
    chosen += [rest[i] for i in rng.choice(len(rest), size=n - 3, replace=False)]
    order = rng.permutation(n)  # which of them is drawn on top is random too
    placed: list[ShapeObject] = []
    for colour, shape in (chosen[i] for i in order):
        for _ in range(400):
            r = int(rng.integers(HARD_RADII[0], HARD_RADII[1] + 1))
            x, y = (int(v) for v in rng.integers(r + 1, SIZE - r - 1, size=2))
            candidate = (*placed, ShapeObject(shape, colour, (x, y), r))
            own = np.array([visible_masks((o,))[0].sum() for o in candidate])  # each alone, unoccluded
            if (visible_masks(candidate).sum(axis=(1, 2)) >= MIN_VISIBLE * own).all():
                placed.append(candidate[-1])
                break
    return tuple(placed)


def hard_scene(rng: np.random.Generator, min_objects: int = 4, max_objects: int = 6) -> Scene:
    """A seeded harder scene: 4–6 objects with same-colour and same-shape distractors, small objects
    and partial occlusion; masks are each object's visible pixels (they never overlap)."""
    objects = sample_hard_objects(rng, int(rng.integers(min_objects, max_objects + 1)))
    scene = render(objects, rng)
    return Scene(scene.image, objects, visible_masks(objects))


def hard_evaluation_set(n: int = 300, seed: int = 2025) -> list[Scene]:
    """The fixed, seeded harder evaluation scenes (4–6 objects each)."""
    rng = np.random.default_rng(seed)
    return [hard_scene(rng) for _ in range(n)]
