"""How a method reads the model: one pass function per kind of pass, with one signature.

``PASSES`` maps a method record's ``pass_kind`` (clipcam.methods.kinds, which also says what each
kind hands the method's ``compute``) to its pass: PassInput → (the model's logits (K,), one raw map
(K, rows, cols) per chosen layer). The explainer checks the inputs, calls ``PASSES[kind]`` and
assembles the result; it knows no method and no kind.

A method with a new kind of pass is one method module (declaring its PassKind, listed in
clipcam.methods._MODULES) and one pass module here declaring ``PASS = (kind name, function)``,
which PASSES finds by itself.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import Callable

from .common import PassInput, PassOutput, Progress

#: pass kind's name → pass function: every module of this package that declares ``PASS``.
PASSES: dict[str, Callable[[PassInput], PassOutput]] = dict(
    module.PASS for module in (import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__))
    if hasattr(module, "PASS")
)

__all__ = ["PASSES", "PassInput", "PassOutput", "Progress"]
