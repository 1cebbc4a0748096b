"""Handing freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import functools
from typing import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library is not glibc (macOS, musl)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> bool:
    """Hand the heap pages a request has freed back to the operating system (glibc's
    ``malloc_trim(0)``); True where that was possible.

    A request's large arrays (a 12 MP photo, its maps, torch's activations) are freed when it ends,
    but glibc keeps freed pages of its heaps and of the per-thread arenas that the server's worker
    threads use, and re-uses them only for allocations that fit the holes. So a long-running server's
    resident memory creeps up with the mix of image sizes although nothing is kept. Trimming after
    each run returns those pages; it takes a few milliseconds."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
