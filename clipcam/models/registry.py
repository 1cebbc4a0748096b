"""The family registry: which adapter explains a model, the short names, and their starting settings.

Every fact about a family is declared once, on its adapter class (clipcam.models.base): the
library that loads it (``library``) and the models it takes (``matches``), its sublayers (the
default and the MLP-wide ones) and its short names (``short_names``: source, layer count,
widths and the app's starting settings, which cite the BENCHMARKS.md section they were measured
in). This module only gathers them: ``ADAPTERS`` is the one list of families, and ``MODEL_INFO``,
``MODEL_ALIASES``, ``families()`` and ``sublayer_names()`` are derived from it.

Adding a family: its adapter module (declaring the above) and one entry in ``ADAPTERS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from .base import ModelAdapter, ShortName, Start
from .hf_clip import HFClipAdapter, SiglipAdapter, build_hf, read_config
from .open_clip import OpenClipConvNeXtAdapter, OpenClipResNetAdapter, OpenClipTimmViTAdapter, OpenClipViTAdapter
from .open_clip_build import build_open_clip
from .siglip2 import Siglip2NaFlexAdapter

#: Every family clipcam explains, in the order they are tried and their short names are listed.
ADAPTERS: tuple[type[ModelAdapter], ...] = (
    HFClipAdapter, SiglipAdapter, Siglip2NaFlexAdapter,
    OpenClipResNetAdapter, OpenClipViTAdapter, OpenClipTimmViTAdapter, OpenClipConvNeXtAdapter,
)

#: open_clip's own names for its models: a hub repository or a local folder in its layout.
OPEN_CLIP_PREFIXES = ("hf-hub:", "local-dir:")


class ModelInfo(NamedTuple):
    """What is known about a short-named model without loading it (read by the app and the CLI)."""

    source: str  # Hugging Face hub id, open_clip name or a path inside the project
    layers: int  # vision-encoder layers (stages for a ResNet)
    description: str
    width: int = 0  # vision hidden size (0: read it from the config)
    mlp_width: int = 0  # vision MLP hidden size (the wide sublayers' output)
    family: str = "hf-clip"  # which adapter loads it (families())


def families() -> dict[str, type[ModelAdapter]]:
    """Every family clipcam explains: family id → its adapter class (static facts: sublayers,
    capabilities, layer noun, probability kind), so the app can set itself up before loading."""
    return {cls.family: cls for cls in ADAPTERS}


def sublayer_names() -> list[str]:
    """Every family's sublayer names, in a stable order (what the app, batch and eval accept; the
    explainer then checks the name against the loaded model's own family)."""
    return list(dict.fromkeys(s for cls in ADAPTERS for s in cls.sublayers))


def _short_names() -> dict[str, tuple[ShortName, type[ModelAdapter]]]:
    entries = {entry.name: (entry, cls) for cls in ADAPTERS for entry in cls.short_names}
    if len(entries) != sum(len(cls.short_names) for cls in ADAPTERS):
        raise RuntimeError("Two families declare the same short name.")
    return entries


_SHORT_NAMES = _short_names()

#: Short names a person can type. Layer counts let the UI set its slider without any download.
MODEL_INFO: dict[str, ModelInfo] = {
    name: ModelInfo(e.source, e.layers, e.description, e.width, e.mlp_width, cls.family)
    for name, (e, cls) in _SHORT_NAMES.items()
}

#: Short names mapped to their sources.
MODEL_ALIASES: dict[str, str] = {name: info.source for name, info in MODEL_INFO.items()}


def start_settings(name: str) -> Start | None:
    """The measured starting settings in the app of a short-named model (layer counted from the
    end, sublayer, target, method, CAM layer, and the BENCHMARKS.md section they come from), or
    None when the model starts on its family's defaults."""
    entry = _SHORT_NAMES.get(name)
    return entry[0].start if entry else None


def wide_sublayers(name_or_family: str) -> tuple[str, ...]:
    """The sublayers as wide as the MLP's hidden layer (``ModelInfo.mlp_width`` channels) of a
    short-named model or a family id; () when unknown. Every other sublayer has ``width``."""
    entry = _SHORT_NAMES.get(name_or_family)
    cls = entry[1] if entry else families().get(name_or_family)
    return cls.wide_sublayers if cls else ()


def resolve_source(name: str) -> str:
    """Turn a short name into a hub id; hub ids, open_clip names and paths pass through unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"No model given: use a short name ({', '.join(MODEL_ALIASES)}), a Hugging Face "
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


def _adapter_for(library: str, source: str, config: object) -> type[ModelAdapter] | None:
    return next((cls for cls in ADAPTERS if cls.library == library and cls.matches(source, config)), None)


def load_adapter(name: str, source: str, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
    """Load the model at ``source`` with its library and wrap it in the adapter of its family."""
    if is_open_clip(source):
        source, model, tokenizer, preprocess = build_open_clip(source, device, dtype)
        adapter_class = _adapter_for("open_clip", source, model.visual)
        if adapter_class is None:
            raise ValueError(f"{source} has a {type(model.visual).__name__} vision tower, which clipcam does not "
                             "know how to explain yet.")
        return adapter_class(name, source, model, device, dtype, tokenizer, preprocess)
    source, config = read_config(source)
    adapter_class = _adapter_for("transformers", source, config)
    if adapter_class is None:
        raise ValueError(
            f"{source} is a {config.model_type!r} model; clipcam explains CLIP, SigLIP and SigLIP 2 models from "
            "transformers and open_clip models (hf-hub:org/repo, local-dir:/path)."
        )
    model, tokenizer, image_processor = build_hf(source, adapter_class.model_class, dtype)
    return adapter_class(name, source, model, device, dtype, tokenizer, image_processor)
