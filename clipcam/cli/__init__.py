"""The command line: one module per command, each declaring ``COMMAND = (name, run)`` where
``run(argv) -> exit status``; the command named None (explain one image) runs when the first
argument names no command. A new command is one new module here.

    python -m clipcam IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR   # explain one image
    python -m clipcam batch INPUT --out DIR [--prompt TEXT ...] [--ray [ADDRESS]]   # a data set → Parquet
    python -m clipcam eval (--shapes easy|hard | --coco ANNOTATIONS --images DIR) --out DIR   # metrics
    python -m clipcam decompose IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR   # the logit by layer and head

Bad input gets one sentence on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Callable, Sequence

Command = Callable[[Sequence[str]], int]


def _commands() -> dict[str | None, Command]:
    """Every module's COMMAND, by name."""
    found: dict[str | None, Command] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            name, run = module.COMMAND
            assert name not in found, f"two commands are named {name!r}"
            found[name] = run
    return found


#: Every command of the command line, by name (None: explain one image).
COMMANDS: dict[str | None, Command] = _commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command the first argument names (or explain one image); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    return COMMANDS[name](argv[1:] if name is not None else argv)
