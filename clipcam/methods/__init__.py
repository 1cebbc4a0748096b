"""Explanation methods: one module each, each declaring one ``Method`` record; this is the registry.

``METHODS``, the app's labels and sentences, which controls a method disables, which model
families it supports, the command line's help and the benchmarks' plans all come from here.
Adding a method is one new module with its record, listed in ``_MODULES``, plus one test.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from ..constants import check_choice

#: How a method reads the model, which decides what the explainer hands it:
#: "sublayer": one forward and a batched gradient at a sublayer's output (the Grad-CAM family);
#: "masking": one masked forward per channel of a sublayer (Score-CAM);
#: "attention": q, k, v and gradients at the attention of every layer from a start layer.
READS: tuple[str, ...] = ("sublayer", "masking", "attention")


@dataclass(frozen=True)
class Method:
    """One explanation method, as data."""

    name: str  # what the library, the CLI and the HTTP API take
    label: str  # what the app's dropdown shows
    paper: str  # authors, venue, year
    about: str  # one sentence: what it reads and how
    reads: str  # one of READS
    compute: Callable  # the maths; its signature depends on ``reads`` (see clipcam.explainer)
    needs: frozenset[str] = frozenset({"sublayer"})  # adapter capabilities (clipcam.models.base.CAPABILITIES)
    uses_prompts: bool = True  # False: every prompt gets the same map (EigenCAM)
    per_layer_score: bool = False  # attention methods: each layer scored on its own (LeGrad)
    single_head: bool = False  # attention methods: the last layer recomputed as one head (Grad-ECLIP's own code)
    uses_layer: bool = True  # False: the method always explains the last layer, whatever layer is chosen

    @property
    def sublayer_applies(self) -> bool:
        """Whether the chosen sublayer matters (the Grad-CAM family and Score-CAM read one)."""
        return self.reads in ("sublayer", "masking")

    @property
    def layer_role(self) -> str:
        """"reads": the method reads the chosen layer; "starts": it runs from there to the last."""
        return "starts" if self.reads == "attention" else "reads"

    @property
    def cost(self) -> str:
        """"one pass": one forward and batched gradients; "per channel": one forward per channel."""
        return "per channel" if self.reads == "masking" else "one pass"

    @property
    def short(self) -> str:
        """The name for people without the dropdown's remark: "Score-CAM", "LeGrad"."""
        return self.label.split(" (")[0]


_MODULES = ("gradcam", "hirescam", "gradcampp", "xgradcam", "layercam", "eigencam", "eigengradcam",
            "gradcam_elementwise", "scorecam", "chefer", "gradeclip", "gradeclip_authors", "legrad")

#: name → record, in the order the app and the CLI list them.
REGISTRY: dict[str, Method] = {m.name: m for m in (import_module(f"{__name__}.{mod}").METHOD for mod in _MODULES)}
METHODS: tuple[str, ...] = tuple(REGISTRY)
#: The library's and the CLI's default: the reference notebook's Grad-CAM.
DEFAULT_METHOD = "gradcam"


def get_method(name: str) -> Method:
    """The record of method ``name``, else a ValueError naming every method."""
    return REGISTRY[check_choice(name, METHODS, "method")]


def methods_reading(reads: str) -> tuple[str, ...]:
    """The names of the methods that read the model this way."""
    return tuple(name for name, m in REGISTRY.items() if m.reads == reads)


def unsupported_reason(method: str, capabilities: frozenset[str], family_label: str) -> str | None:
    """None when ``method`` runs on a model with these capabilities, else one sentence saying why not."""
    from ..models.base import CAPABILITIES

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
