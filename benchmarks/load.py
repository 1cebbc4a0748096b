"""Concurrent users: N gradio_client clients hammer one served model; every answer must equal
the same request made alone.

    python benchmarks/load.py                     # 8 clients for 120 s on the base architecture
    python benchmarks/load.py --clients 4 --seconds 30 --arch tiny

The app is served on 127.0.0.1 only (a free port), with the real ViT-B/32 architecture and random
weights (the hub is unreachable here; see benchmarks/speed.py). Each client has its own image,
prompts, layer and sublayer and repeats its request until the time is up. Every response's
probabilities, and after every fourth request the raw grid maps (from the heatmaps.npz that
/downloads builds from the result kept for that client's session), are compared with the same
request run alone, in process, through the library. Reports throughput, p50/p95 latency of
/explain, failures and the largest difference; every request's latency is kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import numpy as np
from PIL import Image

from benchmarks._common import RESULTS, ROOT, random_model
from clipcam import load_explainer
from clipcam.constants import SUBLAYERS

sys.path.insert(0, str(ROOT / "tests"))  # the tests' running_app helper serves the app in this process

PROMPT_SETS = [
    ["a photo of a cat.", "a photo of a dog."],
    ["a cup of coffee.", "a spoon.", "a wooden table."],
    ["a photo of an astronaut.", "a photo of a flag.", "a photo of a space shuttle.", "a photo of a helmet."],
    ["a photo of a rocket.", "a photo of a cloud."],
    ["a red circle.", "a blue square.", "a green triangle."],
    ["a photo of a dog and a cat.", "a photo of a cat."],
    ["a yellow square.", "a photo of a helmet.", "a spoon."],
    ["a photo of a flag.", "a photo of a rocket.", "a cup of coffee.", "a wooden table.", "a photo of a cat."],
]
IMAGES = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"]


def make_requests(n: int, n_layers: int, folder: Path) -> list[dict]:
    """One distinct request per client: its own image (cropped differently), prompts, layer, sublayer."""
    requests = []
    for i in range(n):
        src = Image.open(ROOT / "assets" / IMAGES[i % len(IMAGES)]).convert("RGB")
        w, h = src.size
        img = src.crop((i * 7 % (w // 4), i * 5 % (h // 4), w - i * 3 % (w // 5), h))
        path = folder / f"client-{i}.png"
        img.save(path)
        requests.append({"image": str(path), "prompts": PROMPT_SETS[i % len(PROMPT_SETS)],
                         "layer": 1 + i % (n_layers - 1), "sublayer": SUBLAYERS[i % len(SUBLAYERS)]})
    return requests


def run(clients: int, seconds: float, model_dir: Path, queue_size: int = 32) -> dict:
    # gradio_client (also through the app) reads the temporary folder once, at import: after main() set it
    from apphelpers import running_app
    from gradio_client import Client, handle_file

    explainer = load_explainer(str(model_dir), device="cpu")
    folder = Path(tempfile.mkdtemp(prefix="clipcam-load-"))
    requests = make_requests(clients, explainer.num_layers, folder)
    solo = [explainer.explain(r["image"], r["prompts"], layer=r["layer"], sublayer=r["sublayer"]) for r in requests]
    results: list[list[dict]] = [[] for _ in requests]
    failures: list[str] = []
    with running_app([model_dir], queue_size=queue_size) as url:
        deadline = time.perf_counter() + seconds
        start_line = threading.Barrier(clients)

        def client_loop(i: int) -> None:
            client = Client(url, verbose=False)
            r = requests[i]
            start_line.wait()
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    _, _, scores, *_ = client.predict(
                        image=handle_file(r["image"]), prompts_text="\n".join(r["prompts"]), model=str(model_dir),
                        layer=r["layer"], sublayer=r["sublayer"], target="logit", method="gradcam", colormap="inferno",
                        alpha=0.5, shared=False, api_name="/explain")
                    answer = {"seconds": time.perf_counter() - t0, "probs": np.array(scores["probs"]),
                              "prompts": scores["prompts"], "grid_maps": None}
                    if len(results[i]) % 4 == 0:  # the maps kept for this session, through its downloads
                        files = client.predict(colormap="inferno", alpha=0.5, shared=False, api_name="/downloads")
                        answer["grid_maps"] = np.load([f for f in files if f.endswith(".npz")][0])["grid_maps"]
                    results[i].append(answer)
                except Exception as err:  # noqa: BLE001 - counted and reported
                    failures.append(f"client {i}: {type(err).__name__}: {err}")

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t_start
    worst, mixed, checked = 0.0, 0, 0
    for i, answers in enumerate(results):
        for a in answers:
            if a["prompts"] != list(solo[i].prompts):
                mixed += 1
                continue
            worst = max(worst, float(np.abs(a["probs"] - solo[i].probs).max()))
            if a["grid_maps"] is not None:
                checked += 1
                worst = max(worst, float(np.abs(a["grid_maps"] - solo[i].grid_maps).max()))
    latencies = [a["seconds"] for answers in results for a in answers]
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies), "failures": len(failures),
        "failure_examples": failures[:3], "mixed_results": mixed, "maps_checked": checked,
        "max_abs_diff_vs_alone": worst,
        "throughput_per_s": len(latencies) / elapsed if elapsed else 0.0,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
        "per_client_requests": [len(a) for a in results],
        "latencies_s": [round(x, 4) for x in latencies],  # every request, in each client's order
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--arch", choices=["base", "tiny"], default="base")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clipcam-load-run-"))
    tempfile.tempdir = str(work)  # the model, the requests' images and gradio_client's files: deleted at the end
    model_dir = Path(random_model(args.arch, Path(tempfile.mkdtemp(prefix=f"clipcam-{args.arch}-"))))
    try:
        result = {"arch": args.arch, "command": "python " + " ".join(sys.argv),
                  **run(args.clients, args.seconds, model_dir)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
