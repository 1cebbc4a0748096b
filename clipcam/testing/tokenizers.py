"""The tokenizers of the tiny test models, each the family's real tokenizer class and files.

- CLIP (Hugging Face): ``CLIPTokenizer`` with the real BPE merges that open_clip's wheel ships
  (``bpe_simple_vocab_16e6.txt.gz``), the same 49,408-token vocabulary as openai/clip-*.
- SigLIP: ``SiglipTokenizer`` over a small SentencePiece model trained here (``spiece.model``),
  as google/siglip-* publish it.
- SigLIP 2: a Gemma-style BPE ``tokenizer.json`` (``Siglip2Tokenizer``).
- The shapes models: a word-level CLIP BPE (``word_tokenizer``) whose words are one token each.

open_clip's tiny models use open_clip's own tokenizer, built from their config.
"""

from __future__ import annotations

import gzip
import io
import string
import tempfile
from pathlib import Path
from typing import Iterable

import sentencepiece as spm
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from transformers import CLIPTokenizer, Siglip2Tokenizer, SiglipTokenizer

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


def clip_tokenizer(**kwargs) -> CLIPTokenizer:
    """OpenAI CLIP's own tokenizer: the byte-level BPE merges that open_clip ships, read as
    transformers' CLIPTokenizer builds openai/clip-vit-base-patch32's (vocab.json, merges.txt):
    256 byte symbols, the same with the end-of-word marker, one token per merge, then the start
    and end tokens (ids 49406, 49407)."""
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split()) for m in merges],
                         **kwargs)


def siglip_tokenizer(words: Iterable[str] = DEFAULT_WORDS, vocab_size: int = 160) -> SiglipTokenizer:
    """SigLIP's SiglipTokenizer over a small unigram SentencePiece model trained on ``words`` and
    the ASCII letters and digits, with SigLIP's special pieces: ``</s>`` (end and padding, id 1)
    and ``<unk>`` (id 2)."""
    words = list(dict.fromkeys(w.lower() for w in words))
    corpus = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    corpus += [" ".join(string.ascii_lowercase), " ".join(string.digits)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as folder:  # SiglipTokenizer reads its model from a file
        path = Path(folder) / "spiece.model"
        path.write_bytes(model.getvalue())
        return SiglipTokenizer(vocab_file=str(path))


def gemma_word_tokenizer(words=DEFAULT_WORDS):
    """A small transformers Siglip2Tokenizer (SigLIP 2's Gemma-style BPE with lower-casing, "▁" for
    spaces and byte fallback) whose merges spell ``words`` as single tokens, with and without a
    leading "▁"; every other ASCII character is a token of its own. It pads at the end, as
    big_vision's SigLIP 2 tokenizer does."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for sym in string.ascii_lowercase + string.digits + string.punctuation + "▁":
        vocab.setdefault(sym, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        for spelled in (word, "▁" + word):
            left = spelled[0]
            for right in spelled[1:]:
                if left + right not in vocab:
                    vocab[left + right] = len(vocab)
                    merges.append((left, right))
                left += right
    return Siglip2Tokenizer(vocab=vocab, merges=merges, padding_side="right")
