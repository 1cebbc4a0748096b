"""Server hygiene: gradio's cached files (Janitor), each request's time limit and cancellation
(Deadline), and the GPU on Hugging Face ZeroGPU. Plain Python: the layout hands in what gradio owns."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..explainer import load_explainer
from ..memory import release_memory
from ..results import Explanation

__all__ = ["CACHE_SECONDS", "TIME_LIMIT", "Deadline", "Janitor", "Stopped", "gpu_duration", "gpu_seconds", "gpu_task",
           "release_memory", "spaces_gpu"]


class Janitor:
    """Deletes gradio's cached files (uploads, shown images, downloads) older than ``age`` seconds and
    the folders they leave empty, at most once every ``every`` seconds.

    gradio's own schedule (``Blocks(delete_cache=...)``) cannot be relied on: its background task
    walks the live sets of cached paths while request threads add to them, and the first "Set
    changed size during iteration" ends the task for good, so under concurrent requests the cache
    only grows. The janitor walks the folder instead, keeps what gradio must keep (``keep()``: the
    components' default values and examples) and drops the deleted paths from gradio's sets
    (``tracked()``), so they do not grow either. Age is the file's modification time, which gradio
    refreshes when it hands out a cached copy again."""

    def __init__(self, root: Path | str, age: float, every: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root, self.age, self.every, self.clock = Path(root), age, every or age / 2, clock
        self.keep: Callable[[], set[str]] = set
        self.tracked: Callable[[], list[set[str]]] = list
        self._last = clock()
        self._lock = threading.Lock()

    def watch(self, keep: Callable[[], set[str]], tracked: Callable[[], list[set[str]]]) -> None:
        """Keep the paths ``keep()`` names, and forget deleted files in the sets ``tracked()`` gives
        (the layout hands over its demo's: clipcam.app.layout.build_demo)."""
        self.keep, self.tracked = keep, tracked

    def tidy(self) -> int:
        """Delete old files and empty folders under the root (if it is time); return how many."""
        with self._lock:
            now = self.clock()
            if now - self._last < self.every:
                return 0
            self._last = now
        keep, gone, emptied = self.keep(), set(), set()
        for path in self.root.rglob("*"):
            try:
                if not path.is_dir() and str(path) not in keep and now - path.lstat().st_mtime > self.age:
                    path.unlink()
                    gone.add(str(path))
                    emptied.add(path.parent)
            except OSError:  # gone already
                continue
        for paths in self.tracked():
            paths.difference_update(gone)
        removed = len(gone)
        for folder in sorted((p for p in self.root.glob("**/") if p != self.root), key=lambda p: -len(p.parts)):
            try:
                old = folder in emptied or now - folder.stat().st_mtime > self.age
                if old and not any(folder.iterdir()):
                    folder.rmdir()
                    removed += 1
            except OSError:  # gone already, or filled meanwhile
                continue
        return removed


# ----------------------------------------------------------------- time limit and cancellation
class Stopped(Exception):
    """Raised from the explainer's progress callback (or between steps) to stop a request early;
    its message is the sentence for the person."""


#: The longest one request may run, in seconds; app.py reads CLIPCAM_TIME_LIMIT.
TIME_LIMIT = 600.0
#: Gradio's cached files (uploads, shown images, downloads) are deleted this many seconds after
#: they were made, checked every half of it; app.py reads CLIPCAM_CACHE_SECONDS.
CACHE_SECONDS = 1800


class Deadline:
    """A request's time limit and a way to learn that its client has gone. ``check()`` raises
    Stopped once either happens; ``progress()`` wraps a progress callback so that Score-CAM and
    sweeps check at every batch of masked forwards."""

    def __init__(self, seconds: float = TIME_LIMIT, alive: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.alive, self.clock = seconds, alive, clock
        self.start = clock()

    def check(self) -> None:
        if self.alive is not None and not self.alive():
            raise Stopped("The page that asked for this result was closed, so the work was stopped.")
        if self.clock() - self.start > self.seconds:
            raise Stopped(f"This request ran past the server's time limit of {self.seconds:g} s (CLIPCAM_TIME_LIMIT), "
                          "so it was stopped. Pick a narrower sublayer, fewer layers or a gradient method.")

    def progress(self, inner: Callable[[int, int], None] | None = None) -> Callable[[int, int], None]:
        """A progress(done, total) callback that checks the deadline, then calls ``inner``."""
        def report(done: int, total: int) -> None:
            self.check()
            if inner is not None:
                inner(done, total)
        return report


# ----------------------------------------------------------------- GPU on Hugging Face Spaces
def gpu_task(seconds: float, name: str, device: str, half: bool, kind: str, image: Image.Image,
             prompts: Sequence[str], options: dict, precision: str | None = None) -> Explanation:
    """The GPU work of one request, as a module-level function of picklable arguments: ZeroGPU runs
    it in a forked worker, which finds the model in the library's cache. ``seconds`` is only read
    by ZeroGPU's scheduler (see gpu_duration)."""
    explainer = load_explainer(name, device=device, half=half, precision=precision)
    return getattr(explainer, kind)(image, list(prompts), **options)


def gpu_duration(seconds: float, *args, **kwargs) -> float:
    """ZeroGPU's duration for a gpu_task call: its first argument."""
    return seconds


def gpu_seconds(forwards: int) -> int:
    """How long to reserve a ZeroGPU for a request: 30 s for a gradient method (one forward and
    one backward, a sweep being one pass), plus 0.02 s per masked forward pass (Score-CAM)."""
    return int(30 + 0.02 * forwards)


def spaces_gpu() -> Callable | None:
    """gpu_task wrapped in ``spaces.GPU`` on Hugging Face's ZeroGPU hardware; None elsewhere: when the
    ``spaces`` package cannot be imported, or when it hands the function back unchanged (it does
    off ZeroGPU), so that the app then runs as it always does, with its progress bar and deadline."""
    try:
        import spaces  # optional: only Hugging Face Spaces installs it
    except ImportError:
        return None
    wrapped = spaces.GPU(duration=gpu_duration)(gpu_task)
    return None if wrapped is gpu_task else wrapped
