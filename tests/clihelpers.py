"""Running the command line in tests: in this process (the default: no interpreter start, no second
import of torch, the model cache shared), or as ``python -m clipcam`` in a subprocess for the one
smoke test per subcommand that proves the module runs as a program."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from clipcam.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: object) -> subprocess.CompletedProcess:
    """``clipcam.__main__.main(args)`` in this process, with what it writes to stdout and stderr and its
    exit status (argparse's ``SystemExit`` included), in the shape ``subprocess.run`` returns."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:  # --help and argument errors: argparse prints, then exits
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess(["python", "-m", "clipcam", *argv], code, out.getvalue(), err.getvalue())


def run_cli_subprocess(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m clipcam ARGS`` in a fresh interpreter from the repository root."""
    return subprocess.run([sys.executable, "-m", "clipcam", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
