"""``python -m clipcam batch INPUT --out DIR``: explain a data set into Parquet, in the process or on Ray."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from ..constants import DEFAULT_TARGET, TARGETS
from ..eval.batch import Settings, read_inputs
from ..eval.engine import run_in_process, run_ray
from ..explainer import METHODS
from ..methods import DEFAULT_METHOD
from ..models import sublayer_names
from .common import SentenceParser, add_model_options, precision_of, quiet_transformers, refused, sublayer_help


def build_batch_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(
        prog="python -m clipcam batch",
        description="Explain every image of a data set and write one Parquet row per image × prompt "
        "(× layer with --sweep): image_id, image, prompt_index, prompt, layer, logit, prob, grid_map (the raw "
        "map on the token grid, flattened) with grid_shape, the settings, and error (why an image could not "
        "be explained; the run goes on). A rerun into the same --out skips the images already done.",
        epilog="INPUT is a folder of images (give the prompts with --prompt), a .csv manifest (columns image, "
        "prompts separated by '|', optional id), a .jsonl manifest ({\"image\": ..., \"prompts\": [...], \"id\": ...} "
        "per line; image paths relative to the manifest), or a folder written by datasets' save_to_disk "
        "(columns image, prompts or prompt, optional id).")
    parser.add_argument("input", help="folder of images, .csv / .jsonl manifest, or saved datasets folder")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder of Parquet files")
    parser.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                        help="a prompt for every image (repeat for several); a manifest's rows may name their own")
    add_model_options(parser, "base")
    parser.add_argument("-l", "--layer", type=int, default=None, help="layer 1..N (default: the second-to-last)")
    parser.add_argument("-s", "--sublayer", default=None, metavar="SUBLAYER",
                        help=f"the output inside the layer (default: the model family's, e.g. mlp.fc1). {sublayer_help()}")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS), metavar="METHOD",
                        help=f"one of {', '.join(METHODS)} (default: {DEFAULT_METHOD})")
    parser.add_argument("-t", "--target", default=DEFAULT_TARGET, choices=TARGETS, help="what is explained per prompt")
    parser.add_argument("--sweep", action="store_true", help="every layer, one row per layer")
    parser.add_argument("--overlays", type=Path, default=None, metavar="DIR",
                        help="also write one overlay PNG per image × prompt to DIR")
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                        help="run on Ray Data: 'auto' (or no value) joins a running cluster or starts a local one; "
                        "or a cluster address (needs clipcam[scale])")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray actors, one explainer each (default: one per GPU, else per CPU)")
    parser.add_argument("--chunk", type=int, default=32, help="images per Parquet file / Ray batch (default: 32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_batch(argv: Sequence[str]) -> int:
    """``python -m clipcam batch``: explain a data set into Parquet, in the process or on Ray."""

    parser = build_batch_parser()
    args = parser.parse_args(argv)
    quiet_transformers()
    if args.chunk < 1 or (args.workers is not None and args.workers < 1):
        parser.error("--chunk and --workers must be at least 1")

    if args.sublayer is not None and args.sublayer not in sublayer_names():
        parser.error(f"argument --sublayer: {args.sublayer!r} is none of the families' sublayers. {sublayer_help()}")
    start = time.perf_counter()
    try:
        settings = Settings(model=args.model, method=args.method, layer=args.layer, sublayer=args.sublayer,
                            target=args.target, sweep=args.sweep, device=args.device, precision=precision_of(args))
        items = read_inputs(args.input, args.prompt)
        if args.ray is None:
            done = run_in_process(items, settings, args.out, args.overlays, args.chunk, not args.no_progress)
        else:
            done = run_ray(items, settings, args.out, args.ray, args.workers, args.overlays, args.chunk,
                           not args.no_progress)
    except (ValueError, OSError) as err:
        return refused("clipcam batch", err)
    skipped = len(items) - done
    print(f"explained {done} images ({skipped} already in {args.out}) in {time.perf_counter() - start:.1f} s")
    return 0


#: What this module registers in clipcam.cli.COMMANDS.
COMMAND = ("batch", run_batch)
