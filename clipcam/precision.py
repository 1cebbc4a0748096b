"""Which number format a model computes in, and why: float32, bfloat16 or float16.

``choose(precision, device)`` resolves a person's choice ("auto", "fp32", "bf16", "fp16") on a
device into a ``Precision`` with one sentence saying why. "auto" picks bfloat16 on a CPU that
computes it natively (AVX512-BF16 or AMX), bfloat16 on a CUDA GPU that supports it (float16 on one
that does not), and float32 elsewhere: emulated bfloat16 is several times slower than float32.

How each runs. bfloat16 is autocast (``torch.autocast``) around the model's own forward: the
weights stay float32, matrix products and convolutions run in bfloat16, and the residual stream,
layer norms and softmaxes stay float32. float16 casts the weights (the old ``half=True``, CUDA
only). Whatever the precision, what a method computes from the model's activations (the Chefer
products over layers, the integrated-gradients path, every map numpy sees) is float32: passes
enter ``Precision.forward`` only around the model's own forward, and ``.float()`` what they read.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

#: What a person may ask for; "auto" is resolved by ``choose``.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
#: Each resolved precision's torch dtype and its name in sentences.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LABELS: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: The environment variable that sets the command line's and the app's precision (default "auto").
PRECISION_ENV = "CLIPCAM_PRECISION"
#: The /proc/cpuinfo flags that mean the CPU computes bfloat16 natively.
NATIVE_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (fp32, bf16 or fp16), the dtype the weights and the model's
    input are stored in, the dtype matrix products run in, and the sentence saying why."""

    name: str
    weights: torch.dtype
    compute: torch.dtype
    reason: str

    @property
    def label(self) -> str:
        """The precision's name in sentences: float32, bfloat16, float16."""
        return LABELS[self.name]

    def forward(self, device: torch.device | str) -> ContextManager:
        """The context the model's own forward runs in: autocast to the compute dtype where the
        weights are kept wider (bfloat16), nothing otherwise. Backward needs no context: autograd
        replays the dtypes the forward used."""
        if self.compute == self.weights:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.compute)


#: The precision of a model loaded the old way: float32 everywhere.
FP32 = Precision("fp32", torch.float32, torch.float32, "float32 was asked for.")


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def native_cpu_bf16(flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 natively, and how that was found out.

    Torch's own check (its cpuinfo library: ``torch.cpu._is_avx512_bf16_supported`` and
    ``_is_amx_tile_supported``) comes first; where torch lacks it, the flags of /proc/cpuinfo.
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is not used: it is true on any AVX-512 CPU,
    where oneDNN emulates bfloat16.)"""
    if flags is None:
        avx512, amx = getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)
        if avx512 is not None and amx is not None:
            found = [name for name, check in (("AVX512-BF16", avx512), ("AMX", amx)) if check()]
            if found:
                return True, f"torch's CPU check finds {' and '.join(found)}"
            return False, "torch's CPU check finds neither AVX512-BF16 nor AMX"
        flags = cpu_flags()
    found = [flag for flag in NATIVE_BF16_FLAGS if flag in flags]
    if found:
        return True, f"/proc/cpuinfo lists {' and '.join(found)}"
    return False, f"/proc/cpuinfo lists neither {' nor '.join(NATIVE_BF16_FLAGS)}"


def check_precision(precision: object) -> str:
    """The precision's name, or a ValueError sentence naming the accepted ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    return str(precision)


def precision_setting(environ: dict[str, str] | None = None) -> str:
    """The precision the command line and the app use unless told otherwise: CLIPCAM_PRECISION, else "auto"."""
    value = (os.environ if environ is None else environ).get(PRECISION_ENV, "").strip() or "auto"
    if value not in PRECISIONS:
        raise ValueError(f"{PRECISION_ENV} is {value!r}: use one of {', '.join(PRECISIONS)}.")
    return value


def _made(name: str, reason: str) -> Precision:
    weights = torch.float16 if name == "fp16" else torch.float32
    return Precision(name, weights, DTYPES[name], reason)


def choose(precision: str, device: torch.device | str, native: tuple[bool, str] | None = None) -> Precision:
    """Resolve ``precision`` ("auto", "fp32", "bf16", "fp16") on ``device`` into a Precision with
    the sentence saying why. ``native``: the CPU's bfloat16 check (default ``native_cpu_bf16()``).
    float16 needs a CUDA GPU (on the CPU it is slow and overflows); bfloat16 runs everywhere,
    emulated (slower than float32) on a CPU without native support."""
    precision, kind = check_precision(precision), torch.device(device).type
    if precision == "fp16" and kind != "cuda":
        raise ValueError("Half precision needs a CUDA GPU (fp16); on the CPU use precision 'bf16' or 'fp32'.")
    if precision != "auto":
        return _made(precision, f"{LABELS[precision]} was asked for.")
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return _made("bf16", "auto: this CUDA GPU computes bfloat16.")
        return _made("fp16", "auto: this CUDA GPU lacks bfloat16, so float16.")
    if kind == "cpu":
        supported, how = native_cpu_bf16() if native is None else native
        if supported:
            return _made("bf16", f"auto: this CPU computes bfloat16 natively ({how}).")
        return _made("fp32", f"auto: this CPU would only emulate bfloat16 ({how}), so float32.")
    return _made("fp32", f"auto: float32 on {kind}.")
