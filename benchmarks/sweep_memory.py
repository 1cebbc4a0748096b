"""Extra memory of one large sweep through the app's path: 16 prompts, every layer, a 12 MP photo.

    python benchmarks/sweep_memory.py                  # large: Grad-CAM on mlp.fc1 and block, Chefer
    python benchmarks/sweep_memory.py --arch base

Random weights of the real architecture (the hub cannot be reached here). In one process: load
the model and warm it up on a small image, then run the sweep, keep the result as the app does,
draw the sweep sheet and build the downloads. Reports the peak resident memory above the warmed-up
level (VmHWM, reset after the warm-up, in a fresh process per sublayer) and the download's size. The
level is read after handing freed memory back to the system, as the app does after every run (so
what the allocator kept from the warm-up does not hide part of the sweep's working memory). Issue 11's bound:
under 300 MB extra and a download under 50 MB.

Each row runs twice, side by side: backpropagating one block at a time (clipcam.blockwise, what a
sweep does) and with one backward through the whole graph (``--direct``: ``DIRECT_BLOCKS`` set
past the model's depth, the path before block-wise backpropagation), with the sweep's seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

from PIL import Image

import clipcam.passes.common
from benchmarks._common import RESULTS, make_images, random_model, rss_mb, status_mb
from clipcam import load_explainer
from clipcam.app.kept import keep
from clipcam.app.pictures import sweep_picture, write_downloads
from clipcam.memory import release_memory


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM; Linux: 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def one(arch: str, sublayer: str, method: str, model: str, direct: bool) -> dict:
    ex = load_explainer(model, device="cpu")
    if direct:
        clipcam.passes.common.DIRECT_BLOCKS = ex.num_layers
    prompts = [f"a photo of a thing number {i}." for i in range(16)]
    [photo] = make_images(Path(tempfile.mkdtemp()), [((4032, 3024), "jpg")], asset="astronaut.png")
    ex.sweep(Image.new("RGB", (64, 64)), prompts[:2], sublayer=sublayer, method=method)  # warm-up
    release_memory()  # as the app does after every run: the level between requests
    base = rss_mb()
    # the peak so far (loading the weights can briefly need more than the sweep) is reset, so the
    # peak read afterwards is the sweep's own; where the kernel does not allow it, ru_maxrss is the
    # peak of the whole process and the figure is a lower bound
    reset = reset_peak()
    peak_before = base if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    res = ex.sweep(str(photo), prompts, sublayer=sublayer, method=method)
    seconds = time.perf_counter() - start
    kept = keep(res, {}, [])
    del res
    sweep_picture(kept, "inferno", 0.5)
    files = write_downloads(kept, "inferno", 0.5, False, Path(tempfile.mkdtemp()))
    peak = status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"arch": arch, "sublayer": sublayer, "method": method, "backward": "whole graph" if direct else "blockwise",
            "sweep_s": round(seconds, 2), "rss_warm_mb": round(base, 1),
            "peak_extra_mb": round(peak - max(base, peak_before), 1), "peak_reset": reset,
            "download_mb": round(sum(Path(f).stat().st_size for f in files) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="large", choices=["base", "large"])
    parser.add_argument("--one", nargs=3, metavar=("SUBLAYER", "METHOD", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep_memory.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.arch, *args.one, direct=args.direct)))
        return
    model = random_model(args.arch, Path(tempfile.mkdtemp()) / args.arch)
    rows = []
    for sublayer, method in (("mlp.fc1", "gradcam"), ("block", "gradcam"), ("block", "chefer"), ("block", "legrad")):
        for direct in (False, True):
            out = subprocess.run([sys.executable, __file__, "--arch", args.arch, "--one", sublayer, method, str(model),
                                  *(["--direct"] if direct else [])], capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    result = {"command": "python " + " ".join(sys.argv), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
