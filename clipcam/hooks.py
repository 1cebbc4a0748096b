"""Forward hooks that live inside a ``with`` block: capture a module's output as a gradient leaf,
record what a module returns, replace it, or record a block's call.

Every hook acts only in the thread that registered it (a server explains several requests at
once on one model) and is removed on exit, also on an exception.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch

#: One block's call in a recorded forward: its positional and keyword arguments.
Call = tuple[tuple[Any, ...], dict[str, Any]]
#: A forward hook's body: (module, args, output) → a replacement output, or None to keep it.
OutputHook = Callable[[torch.nn.Module, tuple, Any], Any]


@contextmanager
def forward_hooks(hooks: Sequence[tuple[torch.nn.Module, OutputHook]]) -> Iterator[None]:
    """Within the block, each (module, hook) pair runs as the module's forward hook, in this thread
    only; forwards in other threads pass through untouched. Removed on exit."""
    owner = threading.get_ident()

    def only_here(hook: OutputHook) -> OutputHook:
        return lambda module, args, output: hook(module, args, output) if threading.get_ident() == owner else None

    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(only_here(hook)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def first(output: Any) -> torch.Tensor:
    """A module's output tensor: the output itself, or the first item of its output tuple."""
    return output[0] if isinstance(output, tuple) else output


def replaced(output: Any, tensor: torch.Tensor) -> Any:
    """``output`` with its tensor (or its tuple's first item) replaced by ``tensor``."""
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def capture_outputs(
    modules: Sequence[torch.nn.Module], values: Sequence[torch.nn.Module] = ()
) -> Iterator[list[torch.Tensor | None]]:
    """Within the block, each module's output (in this thread only) is collected in the yielded
    list, in the order of ``modules``, as a tensor that requires grad; the outputs of ``values``
    follow, recorded as they are (detached), for methods that only read them.

    The earliest hooked output becomes a detached leaf, so the backward stops there; later ones
    already depend on it and are kept in the graph as they are (detaching them too would cut the
    paths through them from the gradients of earlier layers). Values are unchanged, so the
    forward computes exactly what it would without hooks. Hooks are removed on
    exit, also on an exception; forwards in other threads pass through untouched.
    """
    captured: list[torch.Tensor | None] = [None] * (len(modules) + len(values))

    def make_hook(index: int) -> OutputHook:
        def hook(module, args, output):
            tensor = first(output)
            if index >= len(modules):  # read-only
                captured[index] = tensor.detach()
                return None
            if tensor.requires_grad:  # downstream of an earlier hooked activation: keep the graph whole
                captured[index] = tensor
                return None
            leaf = tensor.detach().requires_grad_(True)
            captured[index] = leaf
            return replaced(output, leaf)

        return hook

    with forward_hooks([(module, make_hook(i)) for i, module in enumerate([*modules, *values])]):
        yield captured


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


def on_grid(tokens: torch.Tensor, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """tokens (..., T, D) → the prefix and grid tokens (..., prefix + rows·cols, D). What follows
    them is padding (SigLIP 2's NaFlex pads every image's patches to one count; the model masks
    it out), which no method may see; for the other families this keeps every token."""
    return tokens[..., :prefix + grid[0] * grid[1], :]
