"""What a person should know about a result, as sentences: one builder for the library, the
command line and the app.

The method's own notes (``method_notes``: a method that ignores the prompts or the layer, a target
that is constant for one prompt), one prompt's trivial 100 %, the part of the image the model's
centre crop cut off, the prompt words the model's vocabulary lacks, and the layers where a sublayer
cannot reach the score. ``result_notes`` gathers them for a result in the order the app shows them.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from .geometry import CropGeometry
from .methods import Method
from .results import Explanation

#: Fewer letters per token than this means a word was spelled out, not read (see unknown_words).
LETTERS_PER_PIECE = 1.5


def method_notes(record: Method, prompts: Sequence[str], target: str) -> list[str]:
    """The method's own notes for a request: a method that ignores the prompts or the chosen layer,
    and a target that is constant for a single prompt (the explainer's notes, ``Explanation.notes``)."""
    notes = []
    if not record.uses_prompts and len(prompts) > 1:
        notes.append(f"{record.short} does not use the prompts ({record.same_map_because}), "
                     "so every prompt gets the same map; pick another method to compare prompts.")
    if not record.uses_layer:
        notes.append(f"{record.short} always explains the last layer, as its authors' code does, whatever "
                     "layer is chosen; the scores shown are the model's own.")
    if len(prompts) == 1 and target != "logit":
        notes.append(f"With a single prompt the {target} target is constant, so its heatmap is empty; "
                     "add prompts to compare, or use the logit target.")
    return notes


def single_prompt_note(prompts: Sequence[str], prob_kind: str) -> str | None:
    """Why one prompt scores 100 %: CLIP's softmax shares 100 % among the prompts, so one gets it all."""
    if len(prompts) == 1 and prob_kind == "softmax":
        return ("With one prompt the score is 100 % by definition (CLIP's softmax shares 100 % among the prompts); "
                "add a second prompt to compare against.")
    return None


def crop_note(geometry: CropGeometry) -> str | None:
    """A sentence when the model's centre crop cut part of the image off (it never saw that part)."""
    width, height = geometry.image_size
    left, top, right, bottom = geometry.crop_box()
    seen_w, seen_h = min(right, width) - max(left, 0), min(bottom, height) - max(top, 0)
    if seen_w >= width - 1 and seen_h >= height - 1:
        return None
    return (f"The model saw only the centre {seen_w:.0f}×{seen_h:.0f} pixels of this {width}×{height} image; "
            "the hatched parts were cut off, so it cannot find anything there, whatever its score.")


def dead_layers_note(layers: Sequence[int], dead_reasons: Sequence[str | None], sublayer: str) -> str | None:
    """For a sweep: the layers where ``sublayer`` cannot influence the score (their rows are blank)."""
    dead = [layer for layer, reason in zip(layers, dead_reasons) if reason]
    if not dead:
        return None
    return (f"Layer {', '.join(map(str, dead))}: {sublayer} cannot influence the score there "
            "(its patch tokens never reach the CLS token), so its row is blank.")


def word_pieces(tokenizer: object) -> Callable[[str], list] | None:
    """A function word → its tokens for a model's tokenizer (Hugging Face ``tokenize``, open_clip's
    ``encode``), or None when the tokenizer offers neither."""
    for name in ("tokenize", "encode"):
        fn = getattr(tokenizer, name, None)
        if callable(fn):
            return lambda word, fn=fn: list(fn(word))
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps a Hugging Face one
    return word_pieces(inner) if inner is not None and inner is not tokenizer else None


def vocabulary(tokenizer: object) -> set[str]:
    """The tokenizer's whole-word tokens with their markers stripped ("green</w>", "▁green" →
    "green"); empty when it does not list them."""
    vocab = None
    for source in (tokenizer, getattr(tokenizer, "tokenizer", None)):
        get = getattr(source, "get_vocab", None)
        vocab = get() if callable(get) else getattr(source, "encoder", None)  # open_clip's SimpleTokenizer
        if isinstance(vocab, dict):
            break
    if not isinstance(vocab, dict):
        return set()
    return {t.replace("</w>", "").lstrip("▁Ġ").lower() for t in vocab if isinstance(t, str)}


def unknown_words(prompt: str, pieces: Callable[[str], list], known: set[str] = frozenset()) -> list[str]:
    """The words of ``prompt`` (three letters or more) that the tokenizer spells (nearly) letter by
    letter, fewer than LETTERS_PER_PIECE letters per token: the model's vocabulary has no piece for
    them, so their meaning is lost. A BPE vocabulary trained on real text splits a rare word into a
    few long pieces ("xylo", "phone"); a word it never saw falls apart into letters. Words that
    are whole tokens of the vocabulary (``known``, see vocabulary) are known however they split."""
    out = []
    for word in dict.fromkeys(w.lower() for w in re.findall(r"[^\W\d_]{3,}", prompt)):
        tokens = [t for t in pieces(word) if not isinstance(t, str) or t.replace("</w>", "").strip("▁Ġ ")]
        if word not in known and tokens and len(word) / len(tokens) < LETTERS_PER_PIECE:
            out.append(word)
    return out


def unknown_words_note(prompts: Sequence[str], tokenizer: object) -> str | None:
    """One sentence naming the words the model's vocabulary lacks (see unknown_words), or None."""
    pieces = word_pieces(tokenizer) if tokenizer is not None else None
    if pieces is None:
        return None
    known = vocabulary(tokenizer)
    found = []
    for i, prompt in enumerate(prompts):
        found += [f"'{w}' (prompt {i + 1})" for w in unknown_words(prompt, pieces, known)]
    if not found:
        return None
    listed = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    return (f"This model's vocabulary does not know {listed}: its tokenizer spells such words letter by letter, so "
            "their meaning is lost and the scores and maps for them mean little. Use words the model was trained on.")


def seen_notes(result: Explanation, tokenizer: object) -> list[str]:
    """What the model could not see or read: the part of the image its crop cut off, and the prompt
    words its vocabulary lacks (what the command line adds to the library's notes)."""
    notes = [crop_note(result.geometry), unknown_words_note(result.prompts, tokenizer)]
    return [n for n in notes if n]


def result_notes(result: Explanation, tokenizer: object, first: Sequence[str] = (),
                 swept: str | None = None) -> list[str]:
    """Every note about a result, in the order the app shows them: ``first`` (notes about the
    request, such as dropped duplicates), the library's, for a sweep of the sublayer ``swept`` its
    blank layers, one prompt's trivial 100 %, then seen_notes (the crop and unknown words)."""
    notes = list(first) + list(result.notes)
    if swept is not None:
        notes.append(dead_layers_note(result.layers, result.dead_reasons, swept))
    notes += [single_prompt_note(result.prompts, result.prob_kind)] + seen_notes(result, tokenizer)
    return [n for n in notes if n]
