"""The word-level BPE tokenizer of clipcam.testing, and the one shipped with the shapes models."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from clipcam.constants import SHAPES_MODEL_DIR
from clipcam.eval.shapes import VOCABULARY
from clipcam.testing import DEFAULT_WORDS, word_tokenizer


@pytest.mark.parametrize("words", [VOCABULARY, DEFAULT_WORDS], ids=["shapes", "default"])
def test_every_listed_word_is_one_token(words):
    tokenizer = word_tokenizer(words)
    pieces = {w: tokenizer.tokenize(w) for w in words}
    assert {w: p for w, p in pieces.items() if p != [w + "</w>"]} == {}
    ids = tokenizer(" ".join(words), add_special_tokens=False).input_ids
    assert len(ids) == len(words) and tokenizer.unk_token_id not in ids


def test_other_text_still_tokenises_down_to_letters():
    tokenizer = word_tokenizer(VOCABULARY)
    assert tokenizer.tokenize("qxz") == ["q", "x", "z</w>"]
    text = "a greenish zebra, 42 triangles!"
    pieces = tokenizer.tokenize(text)
    assert "".join(pieces).replace("</w>", "") == text.replace(" ", "")
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]  # <|endoftext|> is both unknown and end: only at the end


@pytest.mark.skipif(not (SHAPES_MODEL_DIR / "tokenizer.json").exists(), reason="the shapes model is not shipped")
def test_shipped_shapes_tokenizer_knows_each_vocabulary_word_as_one_token():
    tokenizer = AutoTokenizer.from_pretrained(SHAPES_MODEL_DIR)
    assert {w: tokenizer.tokenize(w) for w in VOCABULARY if len(tokenizer.tokenize(w)) != 1} == {}
