"""Throughput of ``clipcam batch``: in the process against Ray Data with N workers, in the same run,
and a projection to paper scale (ImageNet val, 50,000 images).

    flock /work/bench.lock python benchmarks/scale.py --arch base --images 48
    flock /work/bench.lock python benchmarks/scale.py --arch large --images 12

The model is the real ViT-B/32 ("base") or ViT-L/14 ("large") architecture with seeded random
weights (clipcam.testing.architecture_config): the hub cannot be reached here, and the cost of an
explanation does not depend on the weights' values. The images are 224×224 noise PNGs, two
prompts each, Grad-CAM on the default sublayer. Each engine runs the whole ``batch`` pipeline
(read, explain, write Parquet). Ray's workers each start a process and load the model, a fixed
cost that a 50,000-image run pays once; so Ray is also timed on one image per worker, and its
*marginal* rate, (images - workers) / (time - that time), is what a long run sustains. The
projection to ImageNet val uses the whole Ray run's rate per worker (start-up included). The
in-process run is repeated after Ray, and the 1-minute load average is recorded, so that other
work on the machine shows instead of passing for an engine's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import ray
import torch

from benchmarks._common import RESULTS, noise_images, random_model, timed
from clipcam.eval.batch import Settings, read_inputs, read_results
from clipcam.eval.engine import run_in_process, run_ray

PROMPTS = ["a photo of a cat.", "a photo of a dog."]
IMAGENET_VAL = 50_000


def once(fn) -> float:
    """Seconds of one call (each engine's run is timed once: a whole data set is its own repeat)."""
    return timed(fn)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("base", "large"), default="base")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: results/scale-<arch>-cpu.json)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clipcam-scale-"))
    try:
        model = random_model(args.arch, work / "model")
        noise_images(work / "images", args.images)
        items = read_inputs(work / "images", PROMPTS)
        settings = Settings(model=str(model), method=args.method, device="cpu")
        threads = torch.get_num_threads()
        load_before = os.getloadavg()[0]
        here = once(lambda: run_in_process(items, settings, work / "here", progress=False))
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            start_only = once(lambda: run_ray(items[:args.workers], settings, work / "ray-start",
                                              workers=args.workers, batch_size=1, progress=False))
            on_ray = once(lambda: run_ray(items, settings, work / "ray", workers=args.workers, batch_size=1,
                                          progress=False))
        finally:
            ray.shutdown()
        # in the process again, after Ray: a change in the machine's load shows as a gap between the two
        here_again = once(lambda: run_in_process(items, settings, work / "again", progress=False))
        load_after = os.getloadavg()[0]
        rows_here, rows_ray = read_results(work / "here").num_rows, read_results(work / "ray").num_rows
        assert rows_here == rows_ray == 2 * args.images, (rows_here, rows_ray)
        # the marginal rate only means something when the start-only run was the shorter one; on a
        # machine shared with other work it may not be, and then the whole run's rate is used
        marginal = (args.images - args.workers) / (on_ray - start_only) if on_ray > start_only else None
        per_worker = args.images / on_ray / args.workers  # start-up included: the cautious projection
        result = {
            "arch": args.arch, "method": args.method, "images": args.images, "prompts": len(PROMPTS),
            "torch_threads_in_process": threads,
            "workers": args.workers,
            "in_process_s": round(here, 2), "in_process_again_s": round(here_again, 2),
            "in_process_img_s": round(args.images / here, 3),
            "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
            "ray_total_s": round(on_ray, 2), "ray_img_s": round(args.images / on_ray, 3),
            "ray_start_s": round(start_only, 2),
            "ray_marginal_img_s": None if marginal is None else round(marginal, 3),
            "ray_overhead_marginal": None if marginal is None else round(1 - marginal / (args.images / here), 3),
            "ray_overhead_total": round(on_ray / here - 1, 3),
            "per_worker_img_s": round(per_worker, 3),
            "imagenet_val_hours_per_worker": round(IMAGENET_VAL / per_worker / 3600, 2),
            "command": "python " + " ".join(sys.argv),
        }
        for workers in (1, 8, 64):
            result[f"imagenet_val_hours_{workers}_workers"] = round(IMAGENET_VAL / (per_worker * workers) / 3600, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = args.out or RESULTS / f"scale-{args.arch}-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
