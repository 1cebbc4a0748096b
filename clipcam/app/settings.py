"""What the page's settings show, in plain Python: for a model (its own starting settings, the
methods its family runs), for a method, for a click on an example, for a share link, and the link
itself. Each returns a dataclass that the layout maps onto its controls."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from ..methods import METHODS
from ..models import resolve_device
from ..precision import PRECISION_ENV, choose, precision_setting
from .choices import (
    compare_partner, controls, family_class, layer_label, method_choices, method_layer, method_note_for,
    model_defaults, model_layers, model_problem, startup_model,
)
from .examples import EXAMPLE_KINDS, EXAMPLES, Example, example_model, example_order, get_example, model_kind
from .inputs import read_share, relative_layer, share_query

#: The example groups on the page: two slots, each showing one kind (the current model's first).
GROUPS = [(slot, kind) for slot in (0, 1) for kind in EXAMPLE_KINDS]


def app_precision(precision: str | None = None) -> str:
    """The precision the app's models compute in: as given, else CLIPCAM_PRECISION, else "auto"."""
    return precision_setting() if precision is None else precision


def precision_line(precision: str, device: str) -> str:
    """The page's one line on the number format the models compute in and why (clipcam.precision)."""
    chosen = choose(precision, resolve_device(device))
    return f"Precision: {chosen.label} — {chosen.reason} Set by {PRECISION_ENV} (default auto)."


@dataclass(frozen=True)
class ModelState:
    """The controls for a model: the layer slider (its maximum, value, label, whether it applies),
    the sublayers its family names, the target, the methods it runs, the sentence about the method,
    a notice when it cannot be loaded now, and which example groups show."""

    name: str
    layers: int
    layer: int
    layer_label: str
    layer_applies: bool
    sublayers: list[str]
    sublayer: str
    sublayer_applies: bool
    target: str
    target_applies: bool
    methods: list[tuple[str, str]]
    method: str
    method_info: str
    notice: str
    groups: list[bool]


@dataclass(frozen=True)
class MethodState:
    """The controls that follow a method: whether sublayer, target and layer apply, the layer's label
    and starting value, and the sentence about the method."""

    sublayer_applies: bool
    target_applies: bool
    layer_label: str
    layer_applies: bool
    layer: int
    method_info: str


@dataclass(frozen=True)
class Start:
    """The page as it opens: a notice, the example shown, the display settings a share link sets
    (only those it sets), the model's controls and Compare's right-hand model."""

    notice: str
    example: Example
    view: dict
    state: ModelState
    right: str


class Settings:
    """The settings' logic over one allowlist of models; ``reason_for`` says why a model cannot be
    loaded now (None when it can), ``layers_of`` counts a model's layers without failing."""

    def __init__(self, models: Sequence[str], reason_for: Callable[[str], str | None],
                 layers_of: Callable[[str], int] | None = None) -> None:
        self.models, self.reason_for = list(models), reason_for
        self.layers_of = layers_of or model_layers

    def about(self, model: str, method: str, sublayer: str) -> str:
        """The sentence about a method for this model ("" for an unknown method)."""
        return method_note_for(model, method, sublayer) if method in METHODS else ""

    def model_state(self, name: str, notice: str | None = None) -> ModelState:
        """The page moves to model ``name``: its own starting settings, the methods its family
        supports, a sentence when it cannot be loaded now, its examples first."""
        n = self.layers_of(name)
        layer0, sublayer0, target0, method0 = model_defaults(name, n)  # each model starts at its best settings
        family = family_class(name)
        choices, missing = method_choices(name)
        sublayers = list(family.sublayers)
        applies = controls(method0)
        order = example_order(name)
        return ModelState(
            name, n, layer0, layer_label(method0, family.layer_noun), applies["layer"], sublayers, sublayer0,
            applies["sublayer"] and len(sublayers) > 1, target0, applies["target"], choices, method0,
            self.about(name, method0, sublayer0) + (f"\n\nℹ️ {missing}" if missing else ""),
            model_problem(name, self.reason_for) if notice is None else notice,
            [order[slot] == kind for slot, kind in GROUPS])

    def method_state(self, model: str, method: str, sublayer: str) -> MethodState:
        """Sublayer, target and layer follow the method: attention methods read no sublayer and
        start at a layer; EigenCAM has no target; each method starts where it measured best."""
        applies = controls(method)
        return MethodState(applies["sublayer"], applies["target"], layer_label(method, family_class(model).layer_noun),
                           applies["layer"], method_layer(model, method, self.layers_of(model)),
                           self.about(model, method, sublayer))

    def pick_example(self, key: str, current: str) -> tuple[Example, str, str]:
        """(example, model, notice) for a click on an example: a model that suits it, or a sentence
        saying why none can."""
        example = get_example(key)
        name, notice = example_model(example, current, self.models, self.reason_for)
        return example, name, notice

    def start(self, query: dict) -> Start:
        """Start on the first model that can be loaded now (saying why when it is not the first
        choice), with its own settings and its first example; a share link's query (model, example,
        settings) wins over both, where it fits the model."""
        name, notice = startup_model(self.models, self.reason_for)
        link = read_share(query, self.models)
        name = link.get("model", name)
        state = self.model_state(name)
        example = get_example(link["example"]) if "example" in link else next(
            e for e in EXAMPLES if e.kind == model_kind(name))
        state = self.follow_link(state, link)
        if link:
            notice = "ℹ️ Settings restored from a shared link" + (
                "." if "example" in link else "; upload the image again (links carry only examples).")
        right = compare_partner(name, self.models)
        view = {k: link[k] for k in ("colormap", "alpha", "shared") if k in link}
        return Start(notice, example, view, state, right)

    def follow_link(self, state: ModelState, link: dict) -> ModelState:
        """A model's controls with a share link's method, layer, sublayer and target where they fit
        the model (a method it runs, a sublayer its family names)."""
        method = link.get("method")
        if method in [value for _, value in state.methods]:
            applies = controls(method)
            noun = family_class(state.name).layer_noun
            state = replace(state, layer=method_layer(state.name, method, state.layers),
                            layer_label=layer_label(method, noun), layer_applies=applies["layer"],
                            sublayer_applies=applies["sublayer"] and len(state.sublayers) > 1,
                            target_applies=applies["target"], method=method)
        if "layer" in link:
            state = replace(state, layer=min(link["layer"], state.layers))
        if link.get("sublayer") in state.sublayers:
            state = replace(state, sublayer=link["sublayer"])
        if "target" in link:
            state = replace(state, target=link["target"])
        missing = method_choices(state.name)[1]
        return replace(state, method_info=self.about(state.name, state.method, state.sublayer)
                       + (f"\n\nℹ️ {missing}" if missing else ""))

    def depth_label(self, depth: float, left: str, right: str) -> str:
        """Compare's depth slider label, from the two models chosen: "Relative depth (0.9 = layer 4 of 4,
        layer 1 of 1)", each side's layer (a ResNet's stage) at that depth."""
        sides = []
        for name in (left, right):
            n = self.layers_of(name)
            sides.append(f"{family_class(name).layer_noun} {relative_layer(depth, n)} of {n}")
        return f"Relative depth ({depth:g} = {', '.join(sides)})"

    def compare_models(self, left: str, right: str, depth: float) -> tuple[str, str]:
        """(depth label, notice) when Compare's models change: the label for the two, and at once a
        sentence for each one that cannot be loaded now ("" when both can)."""
        problems = [p for p in (model_problem(n, self.reason_for) for n in dict.fromkeys((left, right))) if p]
        return self.depth_label(depth, left, right), "\n\n".join(problems)

    @staticmethod
    def share_link(base: str, settings: dict) -> str:
        """A link to ``base`` that restores the settings (and the example, when one is shown)."""
        return f"{base}?{share_query(settings)}"
