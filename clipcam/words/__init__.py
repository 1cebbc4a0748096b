"""Which words matter: per-prompt word relevance, the text side of the match.

Each method explains, for prompt k, the same score as the heatmaps (the logit, or its
log-softmax or contrast over the prompts) on prompt k's own tokens: one value per token, and one
per word (its BPE pieces summed, since every method here is additive over tokens). The maths is
in one module per method (chefer.py, gradeclip.py, gradinput.py, intgrad.py), the single text forward and
backward in text_pass.py; this module is the registry and the result type.

The text side has a graph of its own, computed only when asked for (the image side caches text
embeddings without gradients).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

import numpy as np
import torch

from ..constants import check_choice


@dataclass(frozen=True)
class TextLayer:
    """What an attention word method reads from one text-encoder layer, for K prompts: grad_out
    (K, T, D), the gradient of each prompt's own score at the attention block's output; out_weight
    (D, D), its output projection; q, k, v (K, T, D), heads concatenated."""

    grad_out: torch.Tensor
    out_weight: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    heads: int


@dataclass(frozen=True)
class WordMethod:
    """One word-relevance method, as data."""

    name: str  # what the library, the CLI and the app take
    label: str  # what people read
    paper: str
    about: str  # one sentence: what it reads and how
    reads: str  # "attention": q, k, v and gradients of the text encoder's layers; "embedding": token embeddings;
    # "path": token embeddings and the gradients along the path from a zero embedding to them
    compute: Callable  # the maths (see clipcam.words.text_pass)
    signed: bool  # True: negative values speak against the prompt's score
    default_layer: Callable[[int], int | None]  # the text encoder's layer count → the authors' start layer

    @property
    def short(self) -> str:
        return self.label.split(" (")[0]


_MODULES = ("chefer", "gradeclip", "gradinput", "intgrad")

#: name → record, in the order the app and the CLI list them.
WORD_REGISTRY: dict[str, WordMethod] = {
    m.name: m for m in (import_module(f"{__name__}.{mod}").METHOD for mod in _MODULES)
}
WORD_METHODS: tuple[str, ...] = tuple(WORD_REGISTRY)


def get_word_method(name: str) -> WordMethod:
    """The record of word method ``name``, else a ValueError naming every word method."""
    return WORD_REGISTRY[check_choice(name, WORD_METHODS, "word method")]


@dataclass(frozen=True)
class PromptWords:
    """One prompt's relevance: per token and per word, raw (not normalised) float32 values.

    ``tokens`` are the prompt's own tokens as text (no start, end or padding tokens), in order;
    ``words`` merge a word's BPE pieces, and ``word_of_token[i]`` is token i's word.
    """

    prompt: str
    tokens: tuple[str, ...]
    token_relevance: np.ndarray  # (n_tokens,) float32
    words: tuple[str, ...]
    word_relevance: np.ndarray  # (n_words,) float32: the sum of the word's tokens
    word_of_token: tuple[int, ...]

    def shaded(self, signed: bool) -> np.ndarray:
        """Word values scaled for display: by the largest magnitude, so in [-1, 1] when signed
        and in [0, 1] otherwise; zeros when every value is zero."""
        top = float(np.abs(self.word_relevance).max()) if self.word_relevance.size else 0.0
        return self.word_relevance / top if top > 0 else np.zeros_like(self.word_relevance)


@dataclass(frozen=True)
class WordRelevance:
    """Word relevance for every prompt of a result, from one text forward and backward."""

    method: str
    layer: int | None  # the text encoder's 1-based start layer (attention methods), else None
    target: str
    signed: bool
    prompts: tuple[PromptWords, ...]

    @property
    def tokens(self) -> tuple[tuple[str, ...], ...]:
        return tuple(p.tokens for p in self.prompts)

    def __getitem__(self, k: int) -> PromptWords:
        return self.prompts[k]

    def __len__(self) -> int:
        return len(self.prompts)

    def as_dict(self) -> dict:
        """Plain lists for JSON (scores.json, the HTTP API)."""
        return {
            "method": self.method, "layer": self.layer, "target": self.target, "signed": self.signed,
            "prompts": [{"prompt": p.prompt, "tokens": list(p.tokens), "token_relevance": p.token_relevance.tolist(),
                         "words": list(p.words), "word_relevance": p.word_relevance.tolist(),
                         "word_of_token": list(p.word_of_token)} for p in self.prompts],
        }


def _byte_decoder() -> dict[str, int]:
    from open_clip.tokenizer import bytes_to_unicode  # open_clip loads on first use only, as in models.open_clip

    return {v: k for k, v in bytes_to_unicode().items()}


def split_words(pieces: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """A prompt's token strings → (token texts, words, word index of each token).

    CLIP's BPE marks a word's last piece with ``</w>`` and writes bytes as printable characters;
    SentencePiece (SigLIP) marks a word's first piece with ``▁``. Punctuation is its own word, as
    both tokenizers split it off.
    """
    bpe = any(p.endswith("</w>") for p in pieces)
    decoder = _byte_decoder() if bpe else {}

    def text(raw: str) -> str:
        if not bpe:
            return raw.replace("▁", "")
        return bytes(decoder.get(c, ord("?")) for c in raw).decode("utf-8", errors="replace")

    texts, words, owner = [], [], []
    raw_words: list[str] = []
    for i, piece in enumerate(pieces):
        starts = i == 0 or (pieces[i - 1].endswith("</w>") if bpe else piece.startswith("▁"))
        bare = piece[:-4] if bpe and piece.endswith("</w>") else piece
        if starts:
            raw_words.append("")
        raw_words[-1] += bare
        texts.append(text(bare))
        owner.append(len(raw_words) - 1)
    words = [text(w) for w in raw_words]
    return tuple(texts), tuple(words), tuple(owner)


def prompt_words(prompt: str, pieces: tuple[str, ...], values: np.ndarray) -> PromptWords:
    """One prompt's token values (n_tokens,) → its PromptWords, word values summed over pieces."""
    texts, words, owner = split_words(pieces)
    per_word = np.zeros(len(words), dtype=np.float32)
    np.add.at(per_word, np.asarray(owner, dtype=np.int64), values.astype(np.float32))
    return PromptWords(prompt=prompt, tokens=texts, token_relevance=values.astype(np.float32), words=words,
                       word_relevance=per_word, word_of_token=owner)
