"""Model sources and loading: a name, a hub id or a local directory → a frozen model behind its
family's adapter (clipcam.models.base.ModelAdapter).

Families: Hugging Face ``CLIPModel``, ``SiglipModel`` and ``Siglip2Model`` (clipcam.models.hf_clip,
clipcam.models.siglip2) and open_clip models (clipcam.models.open_clip), named as open_clip names
them: ``hf-hub:org/repo`` or ``local-dir:/path``. Which family explains a model, and the short
names, are decided in one place, the family registry (clipcam.models.registry).

Only safetensors weights are loaded (clipcam.models.files), and ``trust_remote_code`` is never
set. Every loading error is one ValueError sentence. Loaded models live in one small,
lock-guarded LRU cache, the only global mutable state in the package.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ..cache import LockedLRU
from ..precision import Precision, check_precision, choose
from .base import ModelAdapter
from .files import check_index, check_safetensors_only, quoted
from .hf_clip import missing_package_sentence
from .registry import (MODEL_ALIASES, MODEL_INFO, OPEN_CLIP_PREFIXES, ModelInfo, families, is_open_clip, load_adapter,
                       resolve_source, start_settings, sublayer_names, wide_sublayers)

__all__ = [
    "MODEL_ALIASES", "MODEL_CACHE_SIZE", "MODEL_INFO", "OPEN_CLIP_PREFIXES", "ModelAdapter", "ModelInfo",
    "cached_models", "check_index", "check_safetensors_only", "clear_cache", "families", "is_open_clip",
    "load_model", "resolve_device", "resolve_dtype", "resolve_precision", "resolve_source", "start_settings", "sublayer_names",
    "unavailable_reason", "wide_sublayers",
]

#: How many loaded models the cache keeps before dropping the least recently used.
MODEL_CACHE_SIZE = 3


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when it is present, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu' or 'cuda'.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for, but no CUDA GPU is available: use 'auto' or 'cpu'.")
    return resolved


def resolve_dtype(half: bool, device: torch.device) -> torch.dtype:
    """float16 on a GPU when asked for; float32 otherwise (half precision on a CPU is slow and lossy)."""
    return resolve_precision(device, half).weights


def resolve_precision(device: torch.device, half: bool = False, precision: str | None = None) -> Precision:
    """The precision a model computes in on ``device`` (clipcam.precision.choose), with its reason.
    ``half=True`` is the older spelling of precision "fp16"; neither given means "fp32"."""
    if half and precision not in (None, "fp16"):
        raise ValueError(f"half=True means precision 'fp16', which contradicts precision {precision!r}: give one of them.")
    return choose("fp16" if half else check_precision("fp32" if precision is None else precision), device)


def _load_uncached(name: str, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
    source = resolve_source(name)
    try:
        adapter = load_adapter(name, source, device, dtype)
    except ValueError:
        raise
    except ImportError as err:  # a library a family needs (open_clip, timm) is not installed: say which
        raise ValueError(missing_package_sentence(source, err)) from None
    except (OSError, RuntimeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"Could not load the model {quoted(name)} ({quoted(source)}): {_first_line(err)} Check the id or path, "
            "that the model has safetensors weights, and that the Hugging Face hub can be reached "
            "(or the model is in the local cache)."
        ) from None
    adapter.model.requires_grad_(False)  # frozen: gradients only ever flow to hooked activations
    adapter.model.eval().to(device)
    return adapter


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0][:200] if text else type(err).__name__
    return line if line.endswith(".") else line + "."


_cache: LockedLRU[ModelAdapter] = LockedLRU(MODEL_CACHE_SIZE)
_load_locks: dict[tuple[str, str, str], threading.Lock] = {}
_load_locks_guard = threading.Lock()


def load_model(name: str, device: str | torch.device = "auto", half: bool = False,
               precision: str | None = None) -> ModelAdapter:
    """Load (or fetch from the cache) a CLIP model by alias, hub id or local directory.

    ``precision``: "auto", "fp32" (the default), "bf16" or "fp16" (clipcam.precision; the adapter's
    ``precision`` says which was used and why); ``half=True`` is an alias of "fp16". Two requests
    for the same model share one load; a slow load of one model does not block requests for models
    already in the cache. Raises ValueError with a sentence a person can act on when the model
    cannot be loaded.
    """
    dev = resolve_device(device)
    chosen = resolve_precision(dev, half, precision)
    key = (resolve_source(name), str(dev), chosen.name)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    with _load_locks_guard:
        key_lock = _load_locks.setdefault(key, threading.Lock())
    with key_lock:
        cached = _cache.get(key)  # loaded by another thread while this one waited
        if cached is not None:
            return cached
        try:
            loaded = _load_uncached(name, dev, chosen.weights)
            loaded.precision = chosen
            _cache.put(key, loaded)
        finally:
            with _load_locks_guard:
                _load_locks.pop(key, None)
        return loaded


def unavailable_reason(name: str, timeout: float = 2.0) -> str | None:
    """None when model ``name`` can be loaded (a local directory, in the local Hugging Face cache,
    or the hub answers within ``timeout`` seconds); otherwise a sentence saying why it cannot."""
    source = resolve_source(name)
    files = ("config.json", "model.safetensors")
    if source.startswith("local-dir:"):
        source = source[len("local-dir:"):]
    elif source.startswith("hf-hub:"):
        source, files = source[len("hf-hub:"):], ("open_clip_config.json", "open_clip_model.safetensors")
    if Path(source).expanduser().exists():
        return None
    try:
        # huggingface_hub is imported when a model outside the project is asked about, not at import
        from huggingface_hub import try_to_load_from_cache

        if all(isinstance(try_to_load_from_cache(source, f), str) for f in files):
            return None
    except Exception:  # noqa: BLE001 - a broken cache just means "not cached"
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return f"{source} is not in the local cache and HF_HUB_OFFLINE is set, so it cannot be downloaded."
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/api/models/{source}", method="HEAD"), timeout=timeout)
        return None
    except urllib.error.HTTPError:  # the hub answered; loading will say what is wrong with the id
        return None
    except Exception as err:  # noqa: BLE001 - any failure means "cannot reach it now"
        return f"the Hugging Face hub could not be reached to download {source} ({type(err).__name__})."


def cached_models() -> list[str]:
    """The sources of the models now in the cache, least recently used first."""
    return [key[0] for key in _cache.keys()]


def clear_cache() -> None:
    """Drop every cached model (tests and long-running servers use it to free memory)."""
    _cache.clear()
