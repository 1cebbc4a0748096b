"""What a person waits for: /explain over HTTP against bare Gradio plus the explain core, in one run.

    python benchmarks/latency.py                # 640×480 and a 12 MP JPEG, 20 calls each
    python benchmarks/latency.py --calls 5      # a smoke run

The real ViT-B/32 architecture with random weights (the hub cannot be reached here; timing does not
depend on the weights' values), K = 8 prompts, the app's starting settings (Chefer relevance from
layer 11). Three things are timed for each image, p50 over ``--calls`` calls after two warm-ups
(every call's seconds are kept in the JSON, under "times_s"):

- core: ``Explainer.explain(path, ...)`` in this process (decoding, processor, forward, maps);
- floor: a bare Gradio app, started here in its own process, whose one event takes the same image
  upload and prompt text and returns 8 ready-made gallery images at display size and a label;
  measured with Gradio's default gallery format (WebP) and with JPEG, which clipcam's gallery uses;
- /explain: clipcam's app (app.py, its own process) through gradio_client, the same upload.

Each gradio_client call uploads the file again, as a person's new photo does. The goal (issue 11)
is p50(/explain) ≤ 1.15 × (p50(floor) + p50(core)). Also timed: a display change (/restyle) over
HTTP and in-process (server time), the refusal of a 1 MB prompt (time and peak memory of the
prompt check, and over HTTP), and the CPU seconds one call costs each server and the core (read
from /proc, so less sensitive to other load than the wall times).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

from PIL import Image

from benchmarks._common import PROMPTS, RESULTS, ROOT, make_images, random_model, serve, timed
from clipcam import load_explainer
from clipcam.render import display_size

FLOOR_APP = '''
import sys
import gradio as gr
from PIL import Image
size, fmt, port = (int(sys.argv[1]), int(sys.argv[2])), sys.argv[3], int(sys.argv[4])
tiles = [(Image.new("RGB", size, (30 * k, 90, 200 - 20 * k)), f"prompt {k} — 12.5 %") for k in range(8)]
def answer(image, prompts_text):
    return tiles, {f"prompt {k}": 0.125 for k in range(8)}
with gr.Blocks(analytics_enabled=False) as demo:
    image, text = gr.Image(type="filepath", image_mode=None), gr.Textbox()
    gallery, label = gr.Gallery(format=fmt), gr.Label()
    gr.Button().click(answer, [image, text], [gallery, label], api_name="floor")
demo.queue().launch(server_name="127.0.0.1", server_port=port, ssr_mode=False, quiet=True)
'''


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_call(pid: int | None, fn, calls: int) -> float:
    """CPU seconds one call costs in process ``pid`` (None: this process), averaged over ``calls``."""
    read = (lambda: cpu_seconds(pid)) if pid else time.process_time
    start = read()
    for _ in range(calls):
        fn()
    return (read() - start) / calls


def p50(fn, calls: int, warmup: int = 2) -> dict:
    """The median of ``calls`` timed calls after ``warmup`` untimed ones, and every call's seconds."""
    times = timed(fn, calls, warmup)
    return {"p50": statistics.median(times), "times": [round(t, 4) for t in times]}


def bounds(url: str, model: str) -> dict:
    """The 1 MB prompt: refused by the prompt check in how long, with how much memory, and over HTTP."""
    # gradio_client (also through gradio) reads the temporary folder once, at import: after main() set it
    from gradio_client import Client, handle_file

    from clipcam.prompts import parse_prompts

    text = "a" * 1_000_000
    tracemalloc.start()
    start = time.perf_counter()
    try:
        parse_prompts(text)
    except ValueError as err:
        sentence = str(err)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    client = Client(url, verbose=False)

    def refused(prompts_text: str) -> tuple[float, str]:
        start = time.perf_counter()
        try:
            client.predict(image=handle_file(str(ROOT / "assets" / "chelsea.png")), prompts_text=prompts_text,
                           model=model, layer=11, sublayer="mlp.fc1", target="logit", method="chefer",
                           colormap="inferno", alpha=0.5, shared=False, api_name="/explain")
            return time.perf_counter() - start, "(no error)"
        except Exception as err:  # noqa: BLE001 - the sentence is the point
            return time.perf_counter() - start, str(err)

    empty = [refused("")[0] for _ in range(5)]  # the same round trip, refused at once
    huge = [refused(text) for _ in range(5)]
    return {"check_seconds": round(seconds, 5), "check_peak_mb": round(peak / 2**20, 3), "sentence": sentence,
            "http_seconds": round(statistics.median(t for t, _ in huge), 3),
            "http_seconds_empty_prompt": round(statistics.median(empty), 3), "http_sentence": huge[0][1][:300],
            "http_times_s": [round(t, 4) for t, _ in huge], "http_times_empty_prompt_s": [round(t, 4) for t in empty]}


def measure(path: Path, ex, client, app_pid: int, model: str, settings: dict, view: dict, work: Path,
            calls: int) -> dict:
    """core, floor (WebP and JPEG gallery) and /explain p50 for one image, and the display change;
    every call's seconds under "times_s"."""
    # gradio_client (also through gradio) reads the temporary folder once, at import: after main() set it
    from gradio_client import Client, handle_file

    from clipcam.app.kept import DISPLAY_SIDE, keep
    from clipcam.app.pictures import gallery_items

    size = display_size(Image.open(path).size, DISPLAY_SIDE)
    floors = {}
    for fmt in ("webp", "jpeg"):
        floor, floor_url = serve(["-c", FLOOR_APP, str(size[0]), str(size[1]), fmt, "PORT"],
                                 env={"GRADIO_TEMP_DIR": str(work / f"floor-{fmt}")})
        try:
            floor_client = Client(floor_url, verbose=False)
            floors[fmt] = p50(lambda c=floor_client: c.predict(handle_file(str(path)), "\n".join(PROMPTS),
                                                               api_name="/floor"), calls)
            floors[fmt + "_cpu"] = cpu_per_call(floor.pid, lambda c=floor_client: c.predict(
                handle_file(str(path)), "\n".join(PROMPTS), api_name="/floor"), 5)
        finally:
            floor.kill()
    core = p50(lambda: ex.explain(str(path), PROMPTS, **settings), calls)
    http = p50(lambda: client.predict(image=handle_file(str(path)), prompts_text="\n".join(PROMPTS), model=model,
                                      **settings, **view, api_name="/explain"), calls)
    core_cpu = cpu_per_call(None, lambda: ex.explain(str(path), PROMPTS, **settings), 5)
    http_cpu = cpu_per_call(app_pid, lambda: client.predict(image=handle_file(str(path)), prompts_text="\n".join(PROMPTS),
                                                            model=model, **settings, **view, api_name="/explain"), 5)
    restyle_http = p50(lambda: client.predict(colormap="jet", alpha=0.6, shared=True, api_name="/restyle"), calls)
    kept = keep(ex.explain(str(path), PROMPTS, **settings), {}, [])
    restyle_server = p50(lambda: gallery_items(kept, "jet", 0.6, True), calls)
    return {
        "core_s": round(core["p50"], 3), "floor_webp_s": round(floors["webp"]["p50"], 3),
        "floor_jpeg_s": round(floors["jpeg"]["p50"], 3), "explain_http_s": round(http["p50"], 3),
        "ratio_vs_floor_webp_plus_core": round(http["p50"] / (floors["webp"]["p50"] + core["p50"]), 3),
        "ratio_vs_floor_jpeg_plus_core": round(http["p50"] / (floors["jpeg"]["p50"] + core["p50"]), 3),
        "restyle_http_s": round(restyle_http["p50"], 3), "restyle_server_s": round(restyle_server["p50"], 4),
        "cpu_per_call_s": {"core": round(core_cpu, 3), "explain_server": round(http_cpu, 3),
                           "floor_webp_server": round(floors["webp_cpu"], 3),
                           "floor_jpeg_server": round(floors["jpeg_cpu"], 3)},
        "times_s": {"core": core["times"], "floor_webp": floors["webp"]["times"], "floor_jpeg": floors["jpeg"]["times"],
                    "explain_http": http["times"], "restyle_http": restyle_http["times"],
                    "restyle_server": restyle_server["times"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clipcam-latency-"))
    (work / "client").mkdir()
    tempfile.tempdir = str(work / "client")  # gradio_client's uploads and downloads: deleted with the work folder
    from gradio_client import Client  # only now: it reads the temporary folder once, at import

    model = random_model("base", work / "base")
    images = {p.stem: p for p in make_images(work, [((640, 480), "jpg"), ((4032, 3024), "jpg")])}
    settings = dict(layer=11, sublayer="mlp.fc1", target="logit", method="chefer")
    view = dict(colormap="inferno", alpha=0.5, shared=False)
    ex = load_explainer(model, device="cpu")
    app, app_url = serve(["app.py", "--port", "PORT", "--device", "cpu"],
                         env={"CLIPCAM_MODELS": model, "GRADIO_TEMP_DIR": str(work / "gradio")})
    servers = [app]
    rows = {}
    try:
        client = Client(app_url, verbose=False)
        for name, path in images.items():
            rows[name] = measure(path, ex, client, app.pid, model, settings, view, work, args.calls)
            print(name, json.dumps(rows[name]), flush=True)
        refused = bounds(app_url, model)
    finally:
        for proc in servers:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    result = {"command": "python " + " ".join(sys.argv), "arch": "base (random weights)", "k": len(PROMPTS),
              "calls": args.calls, "settings": settings, "images": rows, "prompt_1mb": refused}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
