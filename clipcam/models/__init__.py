"""Model sources and loading: a name, a hub id or a local directory → a frozen model behind its
family's adapter (clipcam.models.base.ModelAdapter).

Families: Hugging Face ``CLIPModel`` and ``SiglipModel`` (clipcam.models.hf_clip) and open_clip
models (clipcam.models.open_clip), named as open_clip names them: ``hf-hub:org/repo`` or
``local-dir:/path``. A local directory is recognised by its files (``open_clip_config.json`` for
open_clip, ``config.json`` for transformers).

Only safetensors weights are loaded (a pickle checkpoint can run code when it is read): every
weights file, and every shard an index names, must be ``.safetensors``, and ``trust_remote_code``
is never set. Every loading error is one ValueError sentence. Loaded models live in one small,
lock-guarded LRU cache, the only global mutable state in the package.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ..cache import LockedLRU
from ..constants import MODEL_ALIASES
from .base import ModelAdapter

#: How many loaded models the cache keeps before dropping the least recently used.
MODEL_CACHE_SIZE = 3

#: Weight files that are pickles (refused) and the safetensors files clipcam reads.
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".h5", ".msgpack", ".npz")
_INDEX_FILES = ("model.safetensors.index.json", "open_clip_model.safetensors.index.json")
OPEN_CLIP_PREFIXES = ("hf-hub:", "local-dir:")


def families() -> dict[str, type[ModelAdapter]]:
    """Every family clipcam explains: family id → its adapter class (static facts: sublayers,
    capabilities, layer noun, probability kind), so the app can set itself up before loading."""
    from .hf_clip import HFClipAdapter, SiglipAdapter
    from .open_clip import (OpenClipConvNeXtAdapter, OpenClipResNetAdapter, OpenClipTimmViTAdapter,
                            OpenClipViTAdapter)
    from .siglip2 import Siglip2NaFlexAdapter

    classes = (HFClipAdapter, SiglipAdapter, Siglip2NaFlexAdapter, OpenClipViTAdapter, OpenClipResNetAdapter,
               OpenClipTimmViTAdapter, OpenClipConvNeXtAdapter)
    return {c.family: c for c in classes}


def sublayer_names() -> list[str]:
    """Every family's sublayer names, in a stable order (what the app, batch and eval accept; the
    explainer then checks the name against the loaded model's own family)."""
    return list(dict.fromkeys(s for cls in families().values() for s in cls.sublayers))


def resolve_source(name: str) -> str:
    """Turn a short name into a hub id; hub ids, open_clip names and paths pass through unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            "No model given: use a short name (base, large, shapes, siglip, rn50, laion-b32), a Hugging Face "
            "model id, an open_clip name (hf-hub:org/repo, local-dir:/path) or a local directory."
        )
    name = name.strip()
    return MODEL_ALIASES.get(name, name)


def is_open_clip(source: str) -> bool:
    """True for open_clip's own names and for local directories in open_clip's layout."""
    if source.startswith(OPEN_CLIP_PREFIXES):
        return True
    path = Path(source).expanduser()
    return path.is_dir() and (path / "open_clip_config.json").is_file()


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


def check_safetensors_only(folder: Path, what: str, config: str = "config.json") -> None:
    """Refuse a local model folder that is not a model, or whose weights are not all safetensors:
    any pickle weights file beside them, and any shard an index names that is not .safetensors."""
    if not folder.is_dir():
        raise ValueError(f"{what} {_short(folder)} is not a directory holding a saved model.")
    if not (folder / config).is_file():
        raise ValueError(f"{what} {_short(folder)} has no {config}: it is not a saved model.")
    for index in _INDEX_FILES:
        if (folder / index).is_file():
            check_index(folder / index, what)
    files = [f for f in folder.iterdir() if f.is_file()]
    pickles = sorted(f.name for f in files if f.suffix.lower() in _PICKLE_SUFFIXES)
    has_safetensors = any(f.suffix == ".safetensors" for f in files)
    if pickles and not has_safetensors:
        raise ValueError(
            f"{what} {_short(folder)} holds only a pickle checkpoint; clipcam loads safetensors weights "
            "only, because reading a pickle can run code. Convert it with save_pretrained(safe_serialization=True)."
        )
    if pickles:
        raise ValueError(
            f"{what} {_short(folder)} holds pickle weights ({', '.join(pickles)[:80]}) beside its safetensors; "
            "clipcam loads safetensors weights only, so remove the pickle files."
        )
    if not has_safetensors:
        raise ValueError(f"{what} {_short(folder)} has no .safetensors weights.")


def check_index(index: Path, what: str = "Model") -> None:
    """Refuse a weights index that names any shard that is not a .safetensors file."""
    try:
        shards = set(json.loads(index.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{what} index {index.name} is not a valid weights index (a JSON weight_map).") from None
    unsafe = sorted(str(s) for s in shards if not str(s).endswith(".safetensors"))
    if unsafe:
        raise ValueError(
            f"{what} index {index.name} names weights that are not safetensors ({', '.join(unsafe)[:80]}); "
            "clipcam loads safetensors weights only, because reading a pickle can run code."
        )


def _short(path: object, limit: int = 120) -> str:
    """A path or value as it is quoted in a sentence, shortened so that a huge value is never echoed."""
    text = str(path)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _load_uncached(name: str, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
    source = resolve_source(name)
    try:
        if is_open_clip(source):
            from .open_clip import load_open_clip

            adapter = load_open_clip(name, source, device, dtype)
        else:
            from .hf_clip import load_hf

            adapter = load_hf(name, source, device, dtype)
    except ValueError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, AttributeError, ImportError) as err:
        raise ValueError(
            f"Could not load the model {_short(name)} ({_short(source)}): {_first_line(err)} Check the id or path, "
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


def load_model(name: str, device: str | torch.device = "auto", half: bool = False) -> ModelAdapter:
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
    files = ("config.json", "model.safetensors")
    if source.startswith("local-dir:"):
        source = source[len("local-dir:"):]
    elif source.startswith("hf-hub:"):
        source, files = source[len("hf-hub:"):], ("open_clip_config.json", "open_clip_model.safetensors")
    if Path(source).expanduser().exists():
        return None
    try:
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
