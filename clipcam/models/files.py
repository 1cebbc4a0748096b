"""Which model files clipcam reads: safetensors only, never a pickle.

A pickle checkpoint can run code when it is read, so every weights file of a local folder, and
every shard a weights index names, must be ``.safetensors``. Every refusal is one ValueError
sentence. Shared by every family's loader.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Weight files that are pickles (refused) and the indexes of sharded safetensors weights.
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".h5", ".msgpack", ".npz")
_INDEX_FILES = ("model.safetensors.index.json", "open_clip_model.safetensors.index.json")


def check_safetensors_only(folder: Path, what: str, config: str = "config.json") -> None:
    """Refuse a local model folder that is not a model, or whose weights are not all safetensors:
    any pickle weights file beside them, and any shard an index names that is not .safetensors."""
    if not folder.is_dir():
        raise ValueError(f"{what} {quoted(folder)} is not a directory holding a saved model.")
    if not (folder / config).is_file():
        raise ValueError(f"{what} {quoted(folder)} has no {config}: it is not a saved model.")
    for index in _INDEX_FILES:
        if (folder / index).is_file():
            check_index(folder / index, what)
    files = [f for f in folder.iterdir() if f.is_file()]
    pickles = sorted(f.name for f in files if f.suffix.lower() in _PICKLE_SUFFIXES)
    has_safetensors = any(f.suffix == ".safetensors" for f in files)
    if pickles and not has_safetensors:
        raise ValueError(
            f"{what} {quoted(folder)} holds only a pickle checkpoint; clipcam loads safetensors weights "
            "only, because reading a pickle can run code. Convert it with save_pretrained(safe_serialization=True)."
        )
    if pickles:
        raise ValueError(
            f"{what} {quoted(folder)} holds pickle weights ({', '.join(pickles)[:80]}) beside its safetensors; "
            "clipcam loads safetensors weights only, so remove the pickle files."
        )
    if not has_safetensors:
        raise ValueError(f"{what} {quoted(folder)} has no .safetensors weights.")


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


def quoted(path: object, limit: int = 120) -> str:
    """A path or value as it is quoted in a sentence, shortened so that a huge value is never echoed."""
    text = str(path)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")

