"""The page's examples, grouped by the kind of model they suit, and which model to use for one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..constants import PACKAGE_ASSETS, check_choice
from ..models import unavailable_reason

#: The photos live in the repository's assets/ (not in the wheel); the shapes scenes are package data.
PHOTOS = Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class Example:
    """An example on the page: an image (a packaged shapes scene or a photo in the repository's assets/),
    prompts that fit it, and the kind of model it suits ("photo": a CLIP-family model trained on photos;
    "shapes": the offline shapes models, SHAPES_MODELS)."""

    key: str
    image: str
    prompts: str
    label: str
    kind: str

    @property
    def path(self) -> Path:
        return (PACKAGE_ASSETS if self.kind == "shapes" else PHOTOS) / self.image


#: The offline shapes-world models (a CLIP, a SigLIP and an open_clip ResNet CLIP): the shapes scenes
#: are their examples, and a photo means nothing to them.
SHAPES_MODELS: tuple[str, ...] = ("shapes", "shapes-siglip", "shapes-rn")

EXAMPLES: tuple[Example, ...] = (
    Example("shapes-1", "shapes/scene-1.png", "a photo of a red circle.\na photo of a blue square.\n"
            "a photo of a green triangle.", "Red circle, blue square, green triangle", "shapes"),
    Example("shapes-2", "shapes/scene-2.png", "a photo of a yellow square.\na photo of a red triangle.\n"
            "a photo of a blue circle.", "Yellow square, red triangle, blue circle", "shapes"),
    Example("shapes-3", "shapes/scene-3.png", "a photo of a green circle.\na photo of a yellow triangle.",
            "Green circle, yellow triangle", "shapes"),
    Example("cat", "chelsea.png", "a photo of a cat.\na photo of a dog.\na photo of a dog and a cat.",
            "Cat (cat, dog, both)", "photo"),
    Example("astronaut", "astronaut.png", "a photo of an astronaut.\na photo of a flag.\n"
            "a photo of a space shuttle.\na photo of a helmet.", "Astronaut, flag, shuttle, helmet", "photo"),
    Example("coffee", "coffee.png", "a cup of coffee.\na spoon.\na wooden table.", "Coffee, spoon, table", "photo"),
    Example("rocket", "rocket.jpg", "a photo of a rocket.\na photo of a cloud.\na photo of a tree.",
            "Rocket, cloud, tree", "photo"),
)
EXAMPLE_KINDS: dict[str, str] = {"shapes": "Shapes-world scenes (for the offline shapes models)",
                                 "photo": "Photos (for CLIP models trained on photos)"}


def get_example(key: str) -> Example:
    """The example called ``key``; ValueError naming the known ones otherwise."""
    for example in EXAMPLES:
        if example.key == key:
            return example
    check_choice(key, [e.key for e in EXAMPLES], "example")
    raise AssertionError  # check_choice raised


def model_kind(name: str) -> str:
    """Which examples a model suits: "shapes" for the shapes models, "photo" for every other."""
    return "shapes" if name in SHAPES_MODELS else "photo"


def example_order(current: str) -> list[str]:
    """The example kinds in the order the page shows them: the current model's kind first."""
    first = model_kind(current)
    return [first] + [k for k in EXAMPLE_KINDS if k != first]


def example_model(example: Example, current: str, models: Sequence[str],
                  reason_for: Callable[[str], str | None] | None = None) -> tuple[str, str]:
    """(model to use, notice) when a person picks ``example`` while on ``current``: the current
    model when it suits the example, else the first offered model that suits it and can be loaded
    now, else the current one with a sentence saying why none fits."""
    if model_kind(current) == example.kind:
        return current, ""
    if example.kind == "shapes":
        offered = [m for m in models if model_kind(m) == "shapes"]
        if offered:
            return offered[0], f"Switched to the **{offered[0]}** model: this scene comes from its shapes world."
        return current, (f"This scene is made for the shapes model, which this server does not offer; {current} "
                         "will run on it, but it was not trained on such scenes.")
    reason_for = reason_for or unavailable_reason
    reasons = []
    for name in models:
        if model_kind(name) != "photo":
            continue
        reason = reason_for(name)
        if reason is None:
            return name, (f"Switched to **{name}**: the shapes model knows only coloured shapes and a few words, so "
                          "its scores on a photo would mean nothing.")
        reasons.append(reason)
    why = f"none can be loaded now ({reasons[0]})" if reasons else "this server offers none"
    return current, (f"⚠️ This photo needs a model trained on photos, and {why}. The shapes model knows only coloured "
                     "shapes and a few words, so its scores on this photo mean nothing.")
