"""Prompt checking, once for the library, the command line and the app.

The library takes a sequence of prompts (``clean_prompts``); the app takes one text with a prompt
per line (``parse_prompts``), bounded before it is split. Both refuse a prompt longer than
MAX_PROMPT_CHARS with the same sentence, naming who refuses it ("clipcam" or "the app").
"""

from __future__ import annotations

from typing import Sequence

from .constants import MAX_PROMPT_CHARS, MAX_PROMPTS

#: The most prompts the app accepts at once, one per line (the library allows MAX_PROMPTS).
MAX_APP_PROMPTS = 16


def check_prompt_length(index: int, prompt: str, who: str = "clipcam") -> None:
    """Refuse prompt number ``index`` (0-based) when it is longer than MAX_PROMPT_CHARS: CLIP reads
    only 77 tokens, and a huge text must cost nothing before it is refused."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"Prompt {index + 1} is {len(prompt)} characters long; {who} accepts at most "
                         f"{MAX_PROMPT_CHARS} per prompt (CLIP reads only 77 tokens). Shorten it.")


def clean_prompts(prompts: Sequence[str] | str) -> tuple[str, ...]:
    """Strip prompts and drop blank ones; raise ValueError when none is left, too many are given or
    one is longer than MAX_PROMPT_CHARS (checked before stripping, so a huge text costs nothing)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            check_prompt_length(i, p)
    cleaned = tuple(p.strip() for p in prompts if isinstance(p, str) and p.strip())
    if not cleaned:
        raise ValueError("No prompts given: type at least one text prompt, such as 'a photo of a cat.'.")
    if len(cleaned) > MAX_PROMPTS:
        raise ValueError(f"{len(cleaned)} prompts given; clipcam explains at most {MAX_PROMPTS} at once.")
    return cleaned


def parse_prompts(text: str | None, limit: int = MAX_APP_PROMPTS) -> tuple[list[str], list[str]]:
    """One prompt per line: blank lines ignored, duplicates dropped (with a notice). Returns (prompts, notices).

    The text's length is checked first, before it is split or copied: at most ``limit`` prompts of
    MAX_PROMPT_CHARS characters (and their line breaks), each line at most MAX_PROMPT_CHARS.
    """
    text = text or ""
    if not isinstance(text, str):
        raise ValueError(f"The prompts must be text, one per line; got {type(text).__name__}.")
    most = limit * (MAX_PROMPT_CHARS + 2)  # a line break (\r\n) after each prompt
    if len(text) > most:
        raise ValueError(f"The prompts are {len(text)} characters long; the app accepts at most {most} in all "
                         f"({limit} prompts of up to {MAX_PROMPT_CHARS} characters, one per line).")
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(line for line in lines if line):
        check_prompt_length(i, line, "the app")
    prompts = list(dict.fromkeys(line for line in lines if line))
    notices = []
    if not prompts:
        raise ValueError("No prompts given: type at least one prompt, one per line, such as 'a photo of a cat.'.")
    dropped = sum(1 for line in lines if line) - len(prompts)
    if dropped:
        notices.append(f"{dropped} duplicate prompt{'s were' if dropped > 1 else ' was'} dropped.")
    if len(prompts) > limit:
        raise ValueError(f"Too many prompts: {len(prompts)} given, at most {limit} at once. Remove some lines.")
    return prompts, notices
