"""Kinds of pass: how a method reads the model, what the pass hands the method's ``compute``, and
what the app and the command line may know about it.

A method record's ``pass_kind`` is one of these PassKind values; its name picks the pass function
in clipcam.passes.PASSES, and its traits tell the app and the command line what they may know.
What each kind's ``compute`` must be:

- ``"sublayer"``: one forward and a batched gradient at a sublayer's output (the Grad-CAM family).
  compute(tokens (P+N, D), gradients (K, P+N, D), grid, prefix) → maps (K, rows, cols).
- ``"masking"``: one masked forward per channel of a sublayer, no gradient (Score-CAM).
  compute(size, tokens (P+N, D), grid, scores_of, progress, prefix=) → maps (K, rows, cols), where
  scores_of(masks (B, 1, H, W)) gives the K target scores of the masked inputs (B, K).
- ``"attention"``: q, k, v and the gradients at the attention of every layer from a start layer to
  the last (Chefer, Grad-ECLIP, LeGrad). compute is a clipcam.methods.attention.LayerFold; its
  optional ``layer_score`` scores each layer on its own instead of the explained score.
- ``"single_head"``: the last layer's attention replaced by a head the method gives, the gradient
  taken at that head's output (Grad-ECLIP as its authors compute it). compute is a ReplacedHead.
- ``"forward"``: one forward without any gradient, which the method may read or change through
  its own hooks (attention rollout; next, dense maps from a changed forward such as MaskCLIP).
  compute is a ForwardMethod. A new such method is one method module; a forward that needs more
  than hooks (several forwards, a second input) adds one pass module beside passes/forward.py.

A new kind of pass is a PassKind declared in the method module that first uses it, and one module
in clipcam/passes that registers its pass under the kind's name (``PASS = (name, function)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import numpy as np
import torch


@dataclass(frozen=True)
class PassKind:
    """A kind of pass: its name (a key of clipcam.passes.PASSES) and what the app and the command
    line may know about it."""

    name: str
    sublayer_applies: bool  # the chosen sublayer matters
    layer_role: str  # "reads": the method reads the chosen layer; "starts": it runs from there to the last
    cost: str  # "one pass": one forward (and batched gradients); "per channel": one forward per channel
    gradient: bool  # it takes a gradient, so a sublayer that cannot reach the score leaves it blind


#: The kinds of pass clipcam has; each is the name of a pass in clipcam.passes.PASSES.
SUBLAYER = PassKind("sublayer", True, "reads", "one pass", gradient=True)
MASKING = PassKind("masking", True, "reads", "per channel", gradient=False)
ATTENTION = PassKind("attention", False, "starts", "one pass", gradient=True)
SINGLE_HEAD = PassKind("single_head", False, "starts", "one pass", gradient=True)
FORWARD = PassKind("forward", False, "starts", "one pass", gradient=False)


@dataclass(frozen=True)
class ReplacedHead:
    """A ``"single_head"`` method: ``head(q, k, v)`` (T, D) each → (T, D) replaces the last layer's
    attention heads; ``maps(grad (K, T, D) at the head's output, q, k, v, out_weight (D, D),
    out_bias (D,) or None, grid)`` → (K, rows, cols) float32."""

    head: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    maps: Callable[..., np.ndarray]


@dataclass(frozen=True)
class ForwardMethod:
    """A ``"forward"`` method, which takes no gradient.

    ``read(adapter, start, grid)`` is a context manager whose hooks read (or change) the forward
    that the pass runs inside it, once, without gradients; it yields the method's state.
    ``maps(state, adapter, text (K, P), grid)`` then gives one (K, rows, cols) map per start layer
    from ``start`` to the last. ``changes_forward``: the hooks change what the model computes, so
    the pass runs the unchanged model once more for the scores it shows.
    """

    read: Callable[[Any, int, tuple[int, int]], ContextManager[Any]]
    maps: Callable[[Any, Any, torch.Tensor, tuple[int, int]], list[np.ndarray]]
    changes_forward: bool = False


@dataclass(frozen=True)
class DenseDefaults:
    """The authors' own post-processing of a training-free dense method (MaskCLIP, SCLIP, …), as the
    options of clipcam.dense apply it to the raw cosine maps: the softmax over prompts at
    ``logit_scale``, the background threshold ``prob_thd`` on its probabilities, and the sliding
    window of ``crop``-pixel squares every ``stride`` pixels after the short side is resized to
    ``short_side`` (None: no resize). Each value is the authors' default, cited in the method's module."""

    logit_scale: float
    prob_thd: float = 0.0
    crop: int = 224
    stride: int = 112
    short_side: int | None = None
