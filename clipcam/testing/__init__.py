"""Code for tests, benchmarks and tools: tiny seeded models of every family, their tokenizers, and
the reference pipelines that clipcam's maths is checked against (clipcam.testing.reference).

The hub may be unreachable (CI, these machines), so tests build small random models of each
family (``FAMILIES``, ``tiny_model``), save them in the family's own format and load them back
through the same code path as hub models. Random weights: these models are for checking maths,
geometry and plumbing, and for timing the real architectures, not for judging what a model sees.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPTokenizer

from .families import FAMILIES, Builder, architecture_config, model_folder, perturb, tiny_config, tiny_model
from .tokenizers import (BOS, DEFAULT_WORDS, EOS, clip_tokenizer, gemma_word_tokenizer, siglip_tokenizer,
                         word_tokenizer)

__all__ = [
    "BOS", "Builder", "DEFAULT_WORDS", "EOS", "FAMILIES", "architecture_config", "clip_tokenizer",
    "gemma_word_tokenizer", "model_folder", "perturb", "save_random_clip", "siglip_tokenizer", "tiny_config",
    "tiny_model", "word_tokenizer",
]


def save_random_clip(path: str | Path, config: CLIPConfig | None = None, tokenizer: CLIPTokenizer | None = None,
                     seed: int = 0, **config_kwargs) -> Path:
    """The benchmarks' name for ``tiny_model("clip", …)`` with a given config and tokenizer: a seeded
    random CLIPModel saved (safetensors) with its tokenizer and processor to ``path``."""
    return model_folder(tiny_model("clip", path, seed=seed, config=config, tokenizer=tokenizer, **config_kwargs))
