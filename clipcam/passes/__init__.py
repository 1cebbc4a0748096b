"""How a method reads the model: one pass function per kind of pass, with one signature.

``PASSES`` maps a method record's ``pass_kind`` (clipcam.methods.kinds, which also says what each
kind hands the method's ``compute``) to its pass: PassInput → (the model's logits (K,), one raw map
(K, rows, cols) per chosen layer). The explainer checks the inputs, calls ``PASSES[kind]`` and
assembles the result; it knows no method and no kind.

A method with a new kind of pass is one method module, one pass module here, and its row in
PASSES and in clipcam.methods.kinds.PASS_KINDS.
"""

from __future__ import annotations

from typing import Callable

from ..methods.kinds import PASS_KINDS
from .attention import attention_pass
from .common import PassInput, PassOutput, Progress
from .forward import forward_pass
from .masking import masking_pass
from .single_head import single_head_pass
from .sublayer import sublayer_pass

#: pass kind → pass function.
PASSES: dict[str, Callable[[PassInput], PassOutput]] = {
    "sublayer": sublayer_pass,
    "masking": masking_pass,
    "attention": attention_pass,
    "single_head": single_head_pass,
    "forward": forward_pass,
}
assert set(PASSES) == set(PASS_KINDS), "every kind of pass has its pass function and its traits"

__all__ = ["PASSES", "PassInput", "PassOutput", "Progress"]
