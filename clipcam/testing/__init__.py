"""Offline CLIP models for tests and timing: seeded random weights, a small word-level BPE tokenizer.

The Hugging Face hub may be unreachable (CI, these machines), so tests build a ``CLIPModel`` from
a ``CLIPConfig`` with a fixed seed, ``save_pretrained`` it with a tokenizer and image processor,
and load it back through the same code path as hub models. The weights are random: these models
are for checking maths, geometry and plumbing, and for timing the real architectures — not for
judging what CLIP sees.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

#: Words the test tokenizer knows as whole tokens; anything else is spelled letter by letter.
DEFAULT_WORDS = (
    "a photo of an the and cat dog astronaut flag space shuttle helmet cup coffee spoon wooden table "
    "rocket red green blue yellow circle square triangle with image"
).split()


def word_tokenizer(words: Iterable[str] = DEFAULT_WORDS) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell out ``words`` as single tokens.

    Every lower-case letter, digit and punctuation mark is a token too (with and without the
    end-of-word marker), so any ASCII text tokenizes; ``<|endoftext|>`` is the unknown token,
    as in CLIP. The special tokens come last, so ids stay below a config's vocab_size.
    """
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab: dict[str, int] = {}
    for sym in symbols:
        vocab.setdefault(sym, len(vocab))
        vocab.setdefault(sym + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            merged = left + right
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((left, right))
            left = merged
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_config(
    tokenizer: CLIPTokenizer,
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    projection: int = 16,
) -> CLIPConfig:
    """A small CLIPConfig in the style of transformers' own CLIP tests (hidden 32, two layers)."""
    vocab = tokenizer.get_vocab()
    text = dict(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=32, bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS], pad_token_id=vocab[EOS],
    )
    vision = dict(
        hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers, num_attention_heads=heads,
        image_size=image_size, patch_size=patch_size,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)


def architecture_config(arch: str, tokenizer: CLIPTokenizer) -> CLIPConfig:
    """The real ViT-B/32 ("base") or ViT-L/14 ("large") architecture, for timing with random weights."""
    vocab = tokenizer.get_vocab()
    ids = dict(bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    if arch == "base":
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8, **ids)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=32)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)
    if arch == "large":
        text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, **ids)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14)
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)
    raise ValueError(f"Unknown architecture {arch!r}: use 'base' or 'large'.")


def save_random_clip(path: str | Path, config: CLIPConfig | None = None, tokenizer: CLIPTokenizer | None = None,
                     seed: int = 0, **config_kwargs) -> Path:
    """Build a seeded random CLIPModel and save it (safetensors), its tokenizer and processor to ``path``."""
    path = Path(path)
    tokenizer = tokenizer or word_tokenizer()
    config = config or tiny_config(tokenizer, **config_kwargs)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = config.vision_config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    processor.save_pretrained(path)
    return path
