"""``python -m clipcam heads --model M --images INPUT --texts FILE --out DIR``: TextSpan labels for
the heads of a model's last layers, in the process or on Ray (clipcam.eval.heads)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from ..decompose.textspan import LAST_LAYERS, SPAN_RANK, TEXTS_PER_HEAD
from ..eval.batch import read_inputs
from ..eval.engine import CHUNK
from ..eval.heads import HeadsSettings, read_texts, run_heads
from .common import SentenceParser, add_model_options, precision_of, quiet_transformers, refused


def build_heads_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(
        prog="python -m clipcam heads",
        description="Label each attention head of the model's last layers with the texts whose directions explain "
        "most of its output's variance over the images (TextSpan, Gandelsman et al., ICLR 2024), with the zero-shot "
        "accuracy when each head, the other heads or the MLPs are mean-ablated. Writes heads.parquet (one row per "
        "head), heads.md and heads.json (the heads file the app reads when it lies in the model's folder).",
        epilog="INPUT is as for batch: a folder of images (with --prompt), a .csv or .jsonl manifest, or a saved "
        "datasets folder. The zero-shot classes are all the prompts the images name; an image's own prompts are its "
        "right answers. FILE holds one text a line ('#' starts a comment).")
    parser.add_argument("--images", required=True, metavar="INPUT", help="folder of images, .csv / .jsonl manifest, "
                        "or saved datasets folder")
    parser.add_argument("--texts", required=True, type=Path, metavar="FILE", help="the text bank, one text a line")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    parser.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                        help="a prompt for every image (repeat for several); a manifest's rows may name their own")
    add_model_options(parser, "base")
    parser.add_argument("--last", type=int, default=LAST_LAYERS, help=f"how many last layers (default: {LAST_LAYERS})")
    parser.add_argument("--per-head", type=int, default=TEXTS_PER_HEAD,
                        help=f"texts per head (default: {TEXTS_PER_HEAD})")
    parser.add_argument("--rank", type=int, default=SPAN_RANK,
                        help=f"the rank of the span the texts are projected onto (default: {SPAN_RANK})")
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                        help="collect the terms on Ray: 'auto' (or no value) joins a running cluster or starts a local "
                        "one; or a cluster address (needs clipcam[scale])")
    parser.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"images per forward (default: {CHUNK})")
    return parser


def run(argv: Sequence[str]) -> int:
    """``python -m clipcam heads``: TextSpan over a data set's images."""
    parser = build_heads_parser()
    args = parser.parse_args(argv)
    quiet_transformers()
    if min(args.chunk, args.per_head, args.rank, args.workers or 1) < 1:
        parser.error("--chunk, --per-head, --rank and --workers must be at least 1")
    settings = HeadsSettings(model=args.model, last=args.last, per_head=args.per_head, rank=args.rank,
                             device=args.device, precision=precision_of(args))
    start = time.perf_counter()
    try:
        items = read_inputs(args.images, args.prompt)
        texts = read_texts(args.texts)
        report = run_heads(items, texts, settings, args.out, args.ray, args.workers, args.chunk)
    except (ValueError, OSError) as err:
        return refused("clipcam heads", err)
    full = report.accuracy["full"]
    shown = "" if full is None else f"; zero-shot accuracy {full:.1f} %"
    print(f"labelled {len(report.rows)} heads over {report.images} images in {time.perf_counter() - start:.1f} s"
          f"{shown}; see {args.out / 'heads.md'}")
    return 0


#: What this module registers in clipcam.cli.COMMANDS.
COMMAND = ("heads", run)
