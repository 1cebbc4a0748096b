"""Backpropagation one block at a time, so that a pass over many layers holds one block's graph.

A gradient at layer l needs the graph from layer l to the score. Kept whole, that graph is most
of a pass's memory: for ViT-L/14 from its first layer, about 530 MB for one image, whatever the
number of prompts. A pass that spans many blocks therefore runs the model once with the graph
kept only after the last block, and records each block's inputs on the way (one hidden state per
block, 1 MB on ViT-L). Going back from the last block, it runs each block again from its recorded
input with the graph on, takes the prompts' gradients at that block's hooked modules and at its
input, and lets the block's graph go: the gradient at a block's input is the gradient at the
previous block's output. This is the chain rule taken one block at a time, so the gradients are
those of one backward through the whole model (up to summation order); the price is one more
forward through the spanned blocks.

It needs blocks that feed one another directly: each block's output (or the first item of its
output tuple) is the next block's hidden state, passed as the first positional argument (or as
``hidden_states``), and the image embedding follows from the last block's output alone. The
adapter says so by returning its blocks from ``ModelAdapter.blocks``. The sublayer and attention
passes use these pieces when a pass spans more than common.DIRECT_BLOCKS blocks.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import torch

from ..hooks import Call, capture_outputs, record_calls
from ..targets import target_scores
from .common import PassInput, logits_of


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """How many bytes the tensors' elements take."""
    return sum(t.numel() * t.element_size() for t in tensors)


def hidden_of(call: Call) -> torch.Tensor:
    """The hidden state a block was called with."""
    args, kwargs = call
    return args[0] if args else kwargs["hidden_states"]


def rerun(block: torch.nn.Module, call: Call, hidden: torch.Tensor) -> torch.Tensor:
    """The block's output for ``hidden`` in place of its recorded hidden state, every other argument as recorded."""
    args, kwargs = call
    out = block(hidden, *args[1:], **kwargs) if args else block(**{**kwargs, "hidden_states": hidden})
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def saved_bytes(params: Sequence[torch.Tensor] = ()) -> Iterator[list[int]]:
    """Within the block, count the bytes of the tensors autograd saves for backward into the
    yielded one-item list, not counting ``params`` (saved by reference, never copied). A batched
    backward through that graph makes gradients of about this size for every prompt, which is what
    sizes its groups of prompts."""
    total = [0]
    skip = {p.data_ptr() for p in params}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.data_ptr() not in skip:
            total[0] += nbytes([tensor])
        # detached (same storage and version counter): an op that saves its own output would
        # otherwise hold itself through its grad_fn, a cycle Python's collector cannot see
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


def tail_pass(inp: PassInput, first: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Call]]:
    """One forward whose graph starts at the last block's output. Returns the logits (K,), the
    target scores (K,) (differentiable), that output (a leaf), and the call of every block from
    ``first`` to the last."""
    blocks = inp.adapter.blocks()[first - 1:]
    with record_calls(blocks) as calls, capture_outputs([blocks[-1]]) as caught, torch.enable_grad():
        logits = logits_of(inp)  # (K,)
        scores = target_scores(logits, inp.target)
    if caught[0] is None or any(call is None for call in calls):
        raise RuntimeError("The model's blocks did not run in the forward pass.")
    return logits, scores, caught[0], calls  # type: ignore[return-value]
