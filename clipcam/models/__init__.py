"""Model sources and loading: a name, a Hugging Face hub id or a local directory → a frozen CLIP.

Only safetensors weights are loaded (a pickle checkpoint can run code when it is read) and
``trust_remote_code`` is never set. Loaded models live in one small, lock-guarded LRU cache,
the only global mutable state in the package.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from ..cache import LockedLRU
from ..constants import MODEL_ALIASES

#: How many loaded models the cache keeps before dropping the least recently used.
MODEL_CACHE_SIZE = 3
#: How many prompt lists' text embeddings each loaded model keeps.
TEXT_CACHE_SIZE = 256

_PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt", "tf_model.h5")
_SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


@dataclass(frozen=True)
class LoadedModel:
    """A frozen CLIP model with the tokenizer and image processor that belong to it."""

    name: str  # what the caller asked for ("base", a hub id or a path)
    source: str  # the hub id or directory it was loaded from
    model: CLIPModel
    tokenizer: object
    image_processor: object
    device: torch.device
    dtype: torch.dtype
    #: prompt tuple → (unit-norm text embeddings (K, P), notes); shared by every Explainer of this model
    text_cache: LockedLRU = field(default_factory=lambda: LockedLRU(TEXT_CACHE_SIZE), compare=False, repr=False)


def resolve_source(name: str) -> str:
    """Turn a short name into a hub id; hub ids and paths pass through unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            "No model given: use 'base', 'large', a Hugging Face CLIP model id "
            "or a local directory written by save_pretrained."
        )
    name = name.strip()
    return MODEL_ALIASES.get(name, name)


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
    if half and device.type != "cuda":
        raise ValueError("Half precision needs a CUDA GPU; on the CPU clipcam runs in float32.")
    return torch.float16 if half else torch.float32


def check_local_weights(path: Path) -> None:
    """Refuse a local directory that is not a model or holds only a pickle checkpoint."""
    if not path.is_dir():
        raise ValueError(f"Model path {str(path)!r} is not a directory written by save_pretrained.")
    if not (path / "config.json").is_file():
        raise ValueError(f"Model path {str(path)!r} has no config.json: it is not a saved CLIP model.")
    if any((path / f).is_file() for f in _SAFETENSORS_FILES):
        return
    if any((path / f).is_file() for f in _PICKLE_FILES):
        raise ValueError(
            f"Model path {str(path)!r} holds only a pickle checkpoint; clipcam loads safetensors weights "
            "only, because reading a pickle can run code. Convert it with save_pretrained(safe_serialization=True)."
        )
    raise ValueError(f"Model path {str(path)!r} has no model.safetensors weights.")


def _load_uncached(name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    source = resolve_source(name)
    local = Path(source).expanduser()
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local:
        check_local_weights(local)
        source = str(local.resolve())
    try:
        model = CLIPModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        image_processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False)
    except (OSError, EnvironmentError) as err:
        raise ValueError(
            f"Could not load the CLIP model {name!r} ({source}): {_first_line(err)} "
            "Check the id or path, that the model has safetensors weights, and that the Hugging Face hub "
            "can be reached (or the model is in the local cache)."
        ) from err
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{source!r} is not a CLIP model clipcam can load: {_first_line(err)}") from err
    model.requires_grad_(False)  # frozen: gradients only ever flow to hooked activations
    model.eval().to(device)
    return LoadedModel(
        name=name, source=source, model=model, tokenizer=tokenizer,
        image_processor=image_processor, device=device, dtype=dtype,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if line.endswith(".") else line + "."


_cache: LockedLRU[LoadedModel] = LockedLRU(MODEL_CACHE_SIZE)
_load_locks: dict[tuple[str, str, str], threading.Lock] = {}
_load_locks_guard = threading.Lock()


def load_model(name: str, device: str | torch.device = "auto", half: bool = False) -> LoadedModel:
    """Load (or fetch from the cache) a CLIP model by alias, hub id or local directory.

    Two requests for the same model share one load; a slow load of one model does not block
    requests for models already in the cache. Raises ValueError with a sentence a person can
    act on when the model cannot be loaded.
    """
    dev = resolve_device(device)
    dtype = resolve_dtype(half, dev)
    key = (resolve_source(name), str(dev), str(dtype))
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
            loaded = _load_uncached(name, dev, dtype)
            _cache.put(key, loaded)
        finally:
            with _load_locks_guard:
                _load_locks.pop(key, None)
        return loaded


def unavailable_reason(name: str, timeout: float = 2.0) -> str | None:
    """None when model ``name`` can be loaded (a local directory, in the local Hugging Face cache,
    or the hub answers within ``timeout`` seconds); otherwise a sentence saying why it cannot."""
    source = resolve_source(name)
    if Path(source).expanduser().exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        if all(isinstance(try_to_load_from_cache(source, f), str) for f in ("config.json", "model.safetensors")):
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
