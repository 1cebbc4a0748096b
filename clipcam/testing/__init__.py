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

#: Words the test tokenizer knows as one token each; anything else is spelled in pieces, letters at worst.
DEFAULT_WORDS = (
    "a photo of an the and cat dog astronaut flag space shuttle helmet cup coffee spoon wooden table "
    "rocket red green blue yellow circle square triangle with image"
).split()


def _segment(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one lower-case word: merge the lowest-ranked adjacent pair until none applies."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pair = min(zip(parts, parts[1:]), key=lambda p: ranks.get(p, len(ranks)))
        if pair not in ranks:
            break
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def word_tokenizer(words: Iterable[str] = DEFAULT_WORDS, **kwargs) -> CLIPTokenizer:
    """A CLIP BPE tokenizer that knows each of ``words`` as one token.

    Every lower-case letter, digit and punctuation mark is a token too (with and without the
    end-of-word marker), so any ASCII text tokenizes; ``<|endoftext|>`` is the unknown token,
    as in CLIP. The special tokens come last, so ids stay below a config's vocab_size.
    ``kwargs`` go to ``CLIPTokenizer`` (for SigLIP: ``model_max_length``, ``model_input_names``).

    Why the merges are appended the way they are: BPE always applies the lowest-ranked merge that
    fits, so a merge learned for one word ("r e" for "red") can pre-empt the chain another word
    needs ("g r", "gr e", ... for "green") and leave it in pieces. So each word is segmented with
    the merges so far, and merges of its leftover pieces are appended, left to right, until it is
    one token. An appended merge ranks below every earlier one, so it never changes how an earlier
    word (which never runs out of earlier merges before it is whole) is segmented.
    """
    symbols = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab: dict[str, int] = {}
    for sym in symbols:
        vocab.setdefault(sym, len(vocab))
        vocab.setdefault(sym + "</w>", len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        while len(parts := _segment(word, ranks)) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(ranks), **kwargs)


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
