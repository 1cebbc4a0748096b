"""What the commands share: an argument parser whose errors are one sentence, the model options,
each family's sublayer names for --help, and quiet weight loading."""

from __future__ import annotations

import argparse
import sys

from transformers.utils import logging as hf_logging

from ..models import MODEL_ALIASES, families
from ..precision import PRECISION_ENV, PRECISIONS, precision_setting


class SentenceParser(argparse.ArgumentParser):
    """An argument parser whose errors are one sentence on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message[0].upper() + message[1:]}{'' if message.endswith('.') else '.'} "
                     f"See {self.prog} --help.\n")


def quiet_transformers() -> None:
    """No weight-loading progress bars from transformers between clipcam's own."""

    hf_logging.disable_progress_bar()


def add_model_options(parser: argparse.ArgumentParser, model_default: str) -> None:
    """The model / device options that explain, batch and eval share."""
    aliases = ", ".join(MODEL_ALIASES)
    parser.add_argument("-m", "--model", default=model_default,
                        help=f"model alias ({aliases}), a Hugging Face CLIP id or a local directory (default: {model_default})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present; default), cpu or cuda")
    add_precision_options(parser)


def add_precision_options(parser: argparse.ArgumentParser) -> None:
    """--precision, and --half, its older spelling of --precision fp16."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--precision", default=None, choices=PRECISIONS,
                       help=f"number format: auto (default; or {PRECISION_ENV}) picks bf16 on a CPU that computes "
                       "it natively (AVX512-BF16 or AMX) and on a CUDA GPU that has it (else fp16 there), fp32 "
                       "elsewhere; fp32; bf16 (runs anywhere, emulated and slower on other CPUs); fp16 (CUDA only)")
    which.add_argument("--half", action="store_true",
                       help="the same as --precision fp16 (kept from before --precision; CUDA only)")


def refused(prog: str, err: ValueError | OSError) -> int:
    """A command's bad input or unwritable output as one sentence on stderr; exit status 2."""
    if isinstance(err, OSError):
        print(f"{prog}: cannot write the outputs: {err.strerror or err} ({err.filename}).", file=sys.stderr)
    else:
        print(f"{prog}: {err}", file=sys.stderr)
    return 2


def precision_of(args: argparse.Namespace) -> str:
    """The precision the options ask for: --half is fp16; without --precision, CLIPCAM_PRECISION, else
    auto (a ValueError sentence when CLIPCAM_PRECISION names none)."""
    if args.half:
        return "fp16"
    return args.precision or precision_setting()


def sublayer_help() -> str:
    """Each family's sublayer names, for --help."""

    return "; ".join(f"{cls.family_label}: {', '.join(cls.sublayers)}" for cls in families().values()) + "."
