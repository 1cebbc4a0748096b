"""Every bound on a request: the bad input gets its sentence, and the limit is where it is said to be."""

from __future__ import annotations

import pytest

from clipcam.constants import MAX_PROMPT_CHARS
from clipcam.explainer import clean_prompts


def test_library_caps_a_prompt_in_characters():
    assert clean_prompts(["x" * MAX_PROMPT_CHARS]) == ("x" * MAX_PROMPT_CHARS,)
    with pytest.raises(ValueError) as err:
        clean_prompts(["a cat", "y" * 1_000_000])
    assert str(err.value) == (f"Prompt 2 is 1000000 characters long; clipcam accepts at most {MAX_PROMPT_CHARS} "
                              "per prompt (CLIP reads only 77 tokens). Shorten it.")
