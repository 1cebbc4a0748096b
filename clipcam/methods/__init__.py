"""Explanation methods: one module each, each declaring one ``Method`` record; this is the registry.

``METHODS``, the app's labels and sentences, which controls a method disables, which model
families it supports, the command line's help and the benchmarks' plans all come from here.
Adding a method is one new module with its record, listed in ``_MODULES``, plus one test; a
pytorch-grad-cam variant is one row of clipcam.methods.cam.CAM_TABLE. How each kind of method reads
the model is in clipcam.methods.kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from ..constants import check_choice
from ..models.base import CAPABILITIES
from .kinds import DenseDefaults, PassKind


@dataclass(frozen=True)
class Method:
    """One explanation method, as data."""

    name: str  # what the library, the CLI and the HTTP API take
    label: str  # what the app's dropdown shows
    paper: str  # authors, venue, year
    about: str  # one sentence: what it reads and how
    pass_kind: PassKind  # how it reads the model (clipcam.methods.kinds); its name picks the pass
    compute: Callable  # the maths, in the form its pass kind asks for (clipcam.methods.kinds)
    needs: frozenset[str] = frozenset({"sublayer"})  # adapter capabilities (clipcam.models.base.CAPABILITIES)
    uses_prompts: bool = True  # False: every prompt gets the same map (EigenCAM, rollout)
    uses_layer: bool = True  # False: the method always explains the last layer, whatever layer is chosen
    same_map_because: str = ""  # with uses_prompts False: why every prompt gets the same map (a clause)
    dense: DenseDefaults | None = None  # a training-free dense method's own post-processing (its authors')
    default_layer: Callable[[int, frozenset[str]], int] | None = None  # (layers, capabilities) → its authors' start
    float32: str = ""  # why the method's passes run in float32 even on a bfloat16 model (a clause); "": they need not

    @property
    def sublayer_applies(self) -> bool:
        """Whether the chosen sublayer matters (the Grad-CAM family and Score-CAM read one)."""
        return self.pass_kind.sublayer_applies

    @property
    def layer_role(self) -> str:
        """"reads": the method reads the chosen layer; "starts": it runs from there to the last."""
        return self.pass_kind.layer_role

    @property
    def cost(self) -> str:
        """"one pass": one forward and batched gradients; "per channel": one forward per channel."""
        return self.pass_kind.cost

    @property
    def takes_gradient(self) -> bool:
        """Whether it takes a gradient (a sublayer that cannot reach the score leaves it blind)."""
        return self.pass_kind.gradient

    @property
    def short(self) -> str:
        """The name for people without the dropdown's remark: "Score-CAM", "LeGrad"."""
        return self.label.split(" (")[0]


#: The pytorch-grad-cam variants (rows of clipcam.methods.cam.CAM_TABLE) come first, then these modules.
_MODULES = ("scorecam", "chefer", "gradeclip", "gradeclip_authors", "legrad", "rollout",
            "maskclip", "sclip", "clearclip", "naclip", "gem", "clipsurgery")

#: name → record, in the order the app and the CLI list them.
REGISTRY: dict[str, Method] = {m.name: m for m in (*import_module(f"{__name__}.cam").CAM_RECORDS,
                                                  *(import_module(f"{__name__}.{mod}").METHOD for mod in _MODULES))}
METHODS: tuple[str, ...] = tuple(REGISTRY)
#: The library's and the CLI's default: the reference notebook's Grad-CAM.
DEFAULT_METHOD = "gradcam"


def get_method(name: str) -> Method:
    """The record of method ``name``, else a ValueError naming every method."""
    return REGISTRY[check_choice(name, METHODS, "method")]


def unsupported_reason(method: str, capabilities: frozenset[str], family_label: str) -> str | None:
    """None when ``method`` runs on a model with these capabilities, else one sentence saying why not."""
    record = get_method(method)
    missing = sorted(record.needs - capabilities)
    if not missing:
        return None
    what = " and ".join(CAPABILITIES[m] for m in missing)
    return (f"{record.short} needs {what}, which {family_label} models do not have; "
            "pick Grad-CAM or another method that this model supports.")


def supported_methods(capabilities: frozenset[str]) -> tuple[str, ...]:
    """The methods that run on a model with these capabilities, in registry order."""
    return tuple(name for name, m in REGISTRY.items() if m.needs <= capabilities)
