"""The results each browser session has on screen, and its download folder."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from ..words import WordRelevance
from .kept import Kept
from .pictures import write_downloads


class Sessions:
    """The results each browser session (or API client) has on screen, and its download folder.

    At most ``size`` sessions are kept, least recently used dropped first; each holds one Kept per
    tab (explain, sweep, compare-left, compare-right), so the store holds at most
    size × 4 × (3 MB + grid maps), and the word relevance of three word panels (a few kB each). A
    dropped session's folder is deleted. Every access is locked.
    """

    def __init__(self, size: int = 32, root: Path | None = None) -> None:
        if size < 1:
            raise ValueError("The session store must hold at least one session.")
        self.size = size
        self.root = Path(root or tempfile.mkdtemp(prefix="clipcam-sessions-"))
        self._items: OrderedDict[str, dict[str, Kept | WordRelevance | None]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, tab: str, kept: Kept | WordRelevance | None) -> None:
        """Keep ``kept`` as the session's result for ``tab`` (a Kept, or the word relevance shown
        there; None forgets it)."""
        with self._lock:
            self._items.setdefault(session, {})[tab] = kept
            self._items.move_to_end(session)
            dropped = []
            while len(self._items) > self.size:
                dropped.append(self._items.popitem(last=False)[0])
        for name in dropped:
            shutil.rmtree(self.folder(name), ignore_errors=True)

    def get(self, session: str, tab: str) -> Kept | WordRelevance | None:
        """The session's kept result for ``tab``, or None."""
        with self._lock:
            tabs = self._items.get(session)
            if tabs is None:
                return None
            self._items.move_to_end(session)
            return tabs.get(tab)

    def drop(self, session: str) -> None:
        """Forget a session (its page was closed) and delete its files."""
        with self._lock:
            self._items.pop(session, None)
        shutil.rmtree(self.folder(session), ignore_errors=True)

    def folder(self, session: str) -> Path:
        """The session's download folder (one per session; each new download replaces the last)."""
        return self.root / hashlib.sha256(session.encode()).hexdigest()[:16]

    def downloads(self, session: str, tab: str, colormap: str, alpha: float, shared: bool) -> list[str]:
        """Build the downloads of the session's result on ``tab``, replacing its previous files."""
        kept = self.get(session, tab)
        if kept is None:
            raise ValueError("Nothing to download yet: run an explanation first (results are kept for the "
                             f"{self.size} most recent sessions).")
        folder = self.folder(session)
        shutil.rmtree(folder, ignore_errors=True)
        return write_downloads(kept, colormap, alpha, shared, folder / tab)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        """Delete every session's files."""
        with self._lock:
            self._items.clear()
        shutil.rmtree(self.root, ignore_errors=True)
