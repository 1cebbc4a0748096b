"""Memory over many calls: resident memory must not grow with use.

    python benchmarks/memory.py                 # 300 explain calls on the base architecture
    python benchmarks/memory.py --calls 50

Random-weight ViT-B/32 (see benchmarks/speed.py). Each call uses a different image size, prompt
list, layer and sublayer, so that the text-embedding cache fills up and must evict. Resident memory
(VmRSS) is read after a warm-up of 20 calls and at the end; the growth is the figure that matters.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from clipcam import SUBLAYERS, load_explainer  # noqa: E402
from clipcam.testing import architecture_config, save_random_clip, word_tokenizer  # noqa: E402

WORDS = "cat dog astronaut flag rocket helmet spoon coffee table circle square triangle".split()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.json")
    args = parser.parse_args()
    tok = word_tokenizer()
    path = save_random_clip(Path(tempfile.mkdtemp()) / "base", config=architecture_config("base", tok), tokenizer=tok)
    ex = load_explainer(str(path), device="cpu")
    rng = np.random.default_rng(0)
    base_img = Image.open(ROOT / "assets" / "coffee.png").convert("RGB")
    trace = []
    start = time.perf_counter()
    for i in range(args.calls):
        w, h = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        prompts = [f"a photo of a {WORDS[j]}." for j in rng.choice(len(WORDS), size=int(rng.integers(1, 9)), replace=False)]
        prompts.append(f"a photo number {i}.")  # a new prompt list every call: the text cache must evict
        res = ex.explain(base_img.resize((w, h)), prompts, layer=int(rng.integers(1, 12)),
                         sublayer=SUBLAYERS[i % len(SUBLAYERS)])
        _ = res.image_maps  # the full-resolution maps too
        trace.append(rss_mb())
    after_warmup, end = trace[args.warmup - 1], trace[-1]
    result = {"calls": args.calls, "warmup": args.warmup, "rss_after_warmup_mb": round(after_warmup, 1),
              "rss_end_mb": round(end, 1), "growth_mb": round(end - after_warmup, 1),
              "rss_max_mb": round(max(trace), 1), "text_cache_entries": len(ex.adapter.text_cache),
              "seconds": round(time.perf_counter() - start, 1), "command": "python " + " ".join(sys.argv),
              "trace_mb": [round(x, 1) for x in trace]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "trace_mb"}, indent=1))


if __name__ == "__main__":
    main()
