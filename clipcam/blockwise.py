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
adapter says so by returning its blocks from ``ModelAdapter.blocks``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

import torch

#: One block's call in the recorded forward: its positional and keyword arguments.
Call = tuple[tuple[Any, ...], dict[str, Any]]


@contextmanager
def record_calls(blocks: Sequence[torch.nn.Module]) -> Iterator[list[Call | None]]:
    """Within the block, each module's arguments (in this thread only) are recorded in the yielded
    list, in the order of ``blocks``; tensors are detached. Hooks are removed on exit."""
    calls: list[Call | None] = [None] * len(blocks)
    owner = threading.get_ident()

    def make_hook(index: int):
        def hook(module, args, kwargs):
            if threading.get_ident() == owner:
                calls[index] = (tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args), dict(kwargs))
            return None

        return hook

    handles = []
    try:
        for index, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(make_hook(index), with_kwargs=True))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


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
