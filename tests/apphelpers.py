"""Launch the real app on 127.0.0.1 with tiny models injected through the normal loading code."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator, Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(models: Sequence[str], queue_size: int = 16, max_file_size: str | None = None,
                **demo_kwargs) -> Iterator[str]:
    """Serve build_demo(models) on a free loopback port; yield its URL; close it afterwards."""
    from clipcam.app.layout import build_demo

    demo = build_demo(models=[str(m) for m in models], device="cpu", **demo_kwargs)
    demo.queue(max_size=queue_size, default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                max_file_size=max_file_size)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
