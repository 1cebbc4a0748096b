"""Memory and disk over many requests: the served app's resident memory and files must not grow with use.

    python benchmarks/memory.py                                 # 300 varied calls on the base architecture
    python benchmarks/memory.py --arch tiny --calls 1000 --light  # disk over 1,000 quick requests

The app (app.py) runs in its own process with a temporary folder of its own (TMPDIR and
GRADIO_TEMP_DIR point inside it), serving the random-weight ViT-B/32 architecture (the hub cannot
be reached here) and the shipped shapes model; requests come through gradio_client, as a person's
do. The calls vary: images from 16×16 to 12 MP (JPEG and PNG), 1 to 16 prompts (a new prompt
list every call, so the text cache must evict), every layer and sublayer, explain, sweeps (every
7th call), Score-CAM on the shapes model (every 10th: 128 masked forwards; on base one call would
take minutes), a display change (every 3rd) and the downloads (every 5th). --light keeps to
explain on images up to 640×480. The server's RSS (VmRSS) and the bytes under its temporary
folder are read after every call; the growth after the warm-up is the figure that matters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import numpy as np

from benchmarks._common import RESULTS, make_images, random_model, rss_mb, serve
from clipcam.constants import SUBLAYERS

WORDS = "cat dog astronaut flag rocket helmet spoon coffee table circle square triangle".split()
SIZES = [(16, 16), (64, 48), (33, 400), (320, 240), (640, 480), (1024, 768), (1920, 1080), (3000, 2000),
         (4032, 3024)]


def disk_mb(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*")) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--arch", choices=["base", "tiny"], default="base")
    parser.add_argument("--light", action="store_true", help="explain only, images up to 640×480")
    parser.add_argument("--cache-seconds", type=int, default=60, help="the app's CLIPCAM_CACHE_SECONDS")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or RESULTS / f"memory-{args.arch}{'-light' if args.light else ''}.json"

    work = Path(tempfile.mkdtemp(prefix="clipcam-memory-"))
    (work / "client").mkdir()
    tempfile.tempdir = str(work / "client")  # gradio_client's uploads and downloads: deleted with the work folder

    from gradio_client import Client, handle_file  # only now: it reads the temporary folder once, at import

    served = work / "server-tmp"  # everything the server writes
    served.mkdir()
    model = random_model(args.arch, work / "model")
    n_layers = 12 if args.arch == "base" else 2
    specs = [(size, "jpg" if i % 2 else "png") for i, size in enumerate(SIZES)]  # JPEG and PNG in turn
    images = make_images(work, [(size, ext) for size, ext in specs if not args.light or size[0] * size[1] <= 640 * 480],
                         asset="astronaut.png")
    proc, url = serve(["app.py", "--port", "PORT", "--device", "cpu", "--cache-seconds", str(args.cache_seconds)],
                      env={"CLIPCAM_MODELS": f"{model},shapes", "TMPDIR": str(served),
                           "GRADIO_TEMP_DIR": str(served / "gradio")})
    client = Client(url, verbose=False, download_files=str(work / "client"))
    rng = np.random.default_rng(0)
    view = dict(colormap="inferno", alpha=0.5, shared=False)
    rss, disk, kinds, failures = [], [], [], []
    start = time.perf_counter()
    try:
        for i in range(args.calls):
            image = handle_file(str(images[i % len(images)]))
            k = int(rng.integers(1, 17))
            prompts = [f"a photo of a {WORDS[j % len(WORDS)]} number {j}." for j in rng.choice(64, size=k - 1,
                                                                                            replace=False)]
            prompts.append(f"a photo number {i}.")  # a new prompt list every call: the text cache must evict
            common = dict(image=image, prompts_text="\n".join(prompts), target="logit", **view)
            try:
                if not args.light and i % 10 == 9:
                    kind = "scorecam"
                    client.predict(**common, model="shapes", layer=4, sublayer="self_attn.v_proj", method="scorecam",
                                   api_name="/explain")
                elif not args.light and i % 7 == 6:
                    kind = "sweep"
                    client.predict(**common, model=model, sublayer=SUBLAYERS[i % len(SUBLAYERS)],
                                   method="gradcam" if i % 2 else "chefer", api_name="/sweep")
                else:
                    kind = "explain"
                    client.predict(**common, model=model, layer=int(rng.integers(1, n_layers + 1)),
                                   sublayer=SUBLAYERS[i % len(SUBLAYERS)], method=["gradcam", "chefer"][i % 2],
                                   api_name="/explain")
                if i % 3 == 0:
                    client.predict(colormap="jet", alpha=0.7, shared=bool(i % 2), api_name="/restyle")
                if i % 5 == 0:
                    client.predict(**view, api_name="/sweep_downloads" if kind == "sweep" else "/downloads")
            except Exception as err:  # noqa: BLE001 - counted and reported
                failures.append(f"call {i} ({kind}): {type(err).__name__}: {str(err)[:200]}")
            kinds.append(kind)
            rss.append(rss_mb(proc.pid))
            disk.append(disk_mb(served))
    finally:
        proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    w = args.warmup - 1
    result = {
        "command": "python " + " ".join(sys.argv), "arch": args.arch, "calls": args.calls, "warmup": args.warmup,
        "calls_by_kind": {k: kinds.count(k) for k in sorted(set(kinds))}, "failures": len(failures),
        "failure_examples": failures[:3], "cache_seconds": args.cache_seconds,
        "rss_after_warmup_mb": round(rss[w], 1), "rss_end_mb": round(rss[-1], 1),
        "rss_growth_mb": round(rss[-1] - rss[w], 1), "rss_max_mb": round(max(rss), 1),
        "disk_after_warmup_mb": round(disk[w], 1), "disk_end_mb": round(disk[-1], 1),
        "disk_max_mb": round(max(disk), 1), "seconds": round(time.perf_counter() - start, 1),
        "rss_trace_mb": [round(x, 1) for x in rss], "disk_trace_mb": [round(x, 1) for x in disk],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("trace_mb")}, indent=1))


if __name__ == "__main__":
    main()
