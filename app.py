"""clipcam's web app: `python app.py [--host H] [--port P]`, or `make run`.

Wiring only: read the settings, build the demo (clipcam.app.layout.build_demo), launch it.
Settings: --host/--port, else GRADIO_SERVER_NAME/GRADIO_SERVER_PORT (Spaces sets them), else
127.0.0.1:7860; CLIPCAM_MODELS (comma-separated allowlist of models offered, default base,large);
CLIPCAM_QUEUE_SIZE (waiting requests beyond which people are told to retry, default 32);
CLIPCAM_DEVICE (auto, cpu or cuda); CLIPCAM_MAX_UPLOAD_MB (largest upload, default 50);
CLIPCAM_MAX_PIXELS (largest image in pixels, checked before decoding, default 120 million);
CLIPCAM_MAX_FORWARDS (most masked forward passes of one request, default 5000);
CLIPCAM_TIME_LIMIT (seconds one request may run, default 600); CLIPCAM_CACHE_SECONDS (age at
which gradio's cached files are deleted, default 1800).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no outbound calls of our own at start-up
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve clipcam's web app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--device", default=os.environ.get("CLIPCAM_DEVICE", "auto"))
    parser.add_argument("--queue-size", type=int, default=int(os.environ.get("CLIPCAM_QUEUE_SIZE", "32")))
    parser.add_argument("--max-upload-mb", type=float, default=float(os.environ.get("CLIPCAM_MAX_UPLOAD_MB", "50")))
    parser.add_argument("--max-pixels", type=int, default=int(os.environ.get("CLIPCAM_MAX_PIXELS", "120000000")))
    parser.add_argument("--max-forwards", type=int, default=int(os.environ.get("CLIPCAM_MAX_FORWARDS", "5000")))
    parser.add_argument("--time-limit", type=float, default=float(os.environ.get("CLIPCAM_TIME_LIMIT", "600")))
    parser.add_argument("--cache-seconds", type=int, default=int(os.environ.get("CLIPCAM_CACHE_SECONDS", "1800")))
    args = parser.parse_args()

    from clipcam.app.layout import build_demo  # after parsing: --help answers without loading gradio

    demo = build_demo(device=args.device, max_pixels=args.max_pixels, max_forwards=args.max_forwards,
                      time_limit=args.time_limit, cache_seconds=args.cache_seconds)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=2)
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=True,
                max_file_size=f"{args.max_upload_mb:g}mb")


if __name__ == "__main__":
    main()
