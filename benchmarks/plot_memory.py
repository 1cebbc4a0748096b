"""What the sweep's concentration plot leaves resident: the figure handed to gr.Plot, or rendered first.

    python benchmarks/plot_memory.py               # 40 plots each way, 12 layers × 16 prompts

In one process of the served app's size (clipcam's UI built, the shapes model loaded), each plot
is made as a sweep makes it and turned into gr.Plot's data, then dropped; the resident memory
(VmRSS) is read after glibc's malloc_trim, as the app trims after every run, and again after a
full garbage collection. "figure": the matplotlib figure goes to ``gr.Plot().postprocess``, as the
app did before (it closes the figure but cannot free it: a figure is a web of reference cycles).
"rendered": ``service.rendered_plot``, what the app does now. Results go to
benchmarks/results/plot_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import matplotlib
import numpy as np

from benchmarks._common import RESULTS, rss_mb

matplotlib.use("Agg")  # before gradio and clipcam.app import pyplot

from gradio.components import Plot  # noqa: E402

from clipcam.app.handlers import rendered_plot  # noqa: E402
from clipcam.app.layout import build_demo  # noqa: E402
from clipcam.app.pictures import concentration_plot  # noqa: E402
from clipcam.memory import release_memory  # noqa: E402


def figure(layers: int, prompts: int, rng: np.random.Generator):
    """The concentration plot's figure, drawn as a sweep draws it."""
    return concentration_plot(list(range(1, layers + 1)), [f"a photo number {k}." for k in range(prompts)],
                                 rng.random((layers, prompts)), [1 / prompts] * prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plots", type=int, default=40)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "plot_memory.json")
    args = parser.parse_args()
    build_demo(models=["shapes"], device="cpu")  # a process of the served app's size
    gc.collect()
    plot, rng = Plot(), np.random.default_rng(0)
    ways = {"figure": lambda fig: plot.postprocess(fig), "rendered": rendered_plot}
    rows = []
    for name, make in ways.items():
        for _ in range(3):  # warm-up: fonts, caches
            make(figure(args.layers, args.prompts, rng))
        gc.collect()
        release_memory()
        before = rss_mb()
        start = time.perf_counter()
        for _ in range(args.plots):
            data = make(figure(args.layers, args.prompts, rng))
            del data
            release_memory()
        seconds = time.perf_counter() - start
        kept = rss_mb() - before
        t0 = time.perf_counter()
        gc.collect()
        gc_ms = (time.perf_counter() - t0) * 1000
        release_memory()
        rows.append({"way": name, "plots": args.plots, "kept_mb": round(kept, 1),
                     "after_full_gc_mb": round(rss_mb() - before, 1), "seconds": round(seconds, 2),
                     "full_gc_ms": round(gc_ms)})
        print(f"{name:9s} {args.plots} plots: +{kept:.1f} MB resident, +{rss_mb() - before:.1f} MB after a full "
              f"collection ({gc_ms:.0f} ms), {seconds:.2f} s", flush=True)
    result = {"command": "python benchmarks/plot_memory.py" + "".join(f" {a}" for a in sys.argv[1:]),
              "layers": args.layers, "prompts": args.prompts, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
