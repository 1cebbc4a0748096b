"""What every benchmark shares: random-weight models of the real architectures, test images, a timer
that keeps every repeat, a server started on a free port, and the resident memory read from /proc.

The hub cannot be reached from the machines these run on, and an explanation's cost does not
depend on the weights' values, so every benchmark times the real architectures with seeded random
weights. Those models come from clipcam.testing's builders, called here only (one place to re-point
when the builders change). Each script puts the repository root on ``sys.path`` first, so that run
as ``python benchmarks/NAME.py`` it imports this checkout's clipcam and ``benchmarks._common``, as
the tests that import a benchmark (``benchmarks.load``, ``benchmarks.quality``) do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    SiglipConfig, SiglipImageProcessor, SiglipModel, Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The K = 8 prompts of the speed, latency and family tables.
PROMPTS = [
    "a photo of a cat.", "a photo of a dog.", "a photo of a dog and a cat.", "a cup of coffee.",
    "a spoon.", "a wooden table.", "a photo of an astronaut.", "a photo of a rocket.",
]

#: Model kinds: the test-sized CLIP, Hugging Face CLIP at ViT-B/32 and ViT-L/14 sizes, SigLIP base,
#: SigLIP 2 NaFlex base, and open_clip's RN50, ViT-B/32 and ViT-H/14 configs.
OPEN_CLIP_NAMES = {"rn50": "RN50", "laion-b32": "ViT-B-32", "vit-h": "ViT-H-14"}
KINDS = ("tiny", "base", "large", "siglip", "siglip2", *OPEN_CLIP_NAMES)


def random_model(kind: str, path: Path, seed: int = 0) -> str:
    """Save (once) a seeded random-weight model of ``kind`` to ``path``; return the name clipcam loads.

    "tiny" is the tests' two-layer CLIP; "base" / "large" the real ViT-B/32 / ViT-L/14 with a
    word-level tokenizer whose prompts are about as long as CLIP's BPE makes them; "siglip" and
    "siglip2" transformers' default configs (siglip-base-patch16-224's and
    siglip2-base-patch16-naflex's sizes, at most 256 patches); the rest open_clip's built-in configs,
    saved in open_clip's own format (a ``local-dir:`` name).
    """
    # imported here, not at the top: benchmarks/families.py must import clipcam only after putting the
    # code it times (this checkout or an older worktree) first on sys.path
    from clipcam import testing
    from clipcam.testing.families import gemma_word_tokenizer

    path = Path(path)
    if kind in ("tiny", "base", "large"):
        if not (path / "model.safetensors").exists():
            tok = testing.word_tokenizer()
            config = None if kind == "tiny" else testing.architecture_config(kind, tok)
            testing.save_random_clip(path, config=config, tokenizer=tok, seed=seed)
        return str(path)
    if kind == "siglip":
        if not (path / "model.safetensors").exists():
            torch.manual_seed(seed)
            SiglipModel(SiglipConfig()).eval().save_pretrained(path, safe_serialization=True)
            testing.word_tokenizer().save_pretrained(path)
            SiglipImageProcessor(size={"height": 224, "width": 224}).save_pretrained(path)
        return str(path)
    if kind == "siglip2":
        if not (path / "model.safetensors").exists():
            torch.manual_seed(seed)
            Siglip2Model(Siglip2Config()).eval().save_pretrained(path, safe_serialization=True)
            processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
            Siglip2Processor(image_processor=processor, tokenizer=gemma_word_tokenizer()).save_pretrained(path)
        return str(path)
    if kind not in OPEN_CLIP_NAMES:
        raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(KINDS)}")
    name = OPEN_CLIP_NAMES[kind]
    if not (path / "open_clip_model.safetensors").exists():
        path.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
        preprocess = {"size": [224, 224], "mode": "RGB", "mean": list(open_clip.OPENAI_DATASET_MEAN),
                      "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                      "resize_mode": "shortest", "fill_color": 0}
        (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config(name),
                                                                "preprocess_cfg": preprocess}))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    return f"local-dir:{path}"


def photo(size: tuple[int, int] = (640, 480), asset: str = "coffee.png") -> Image.Image:
    """One of the repository's example photos, in RGB, resized to ``size`` (width, height)."""
    return Image.open(ROOT / "assets" / asset).convert("RGB").resize(size, Image.BICUBIC)


def make_images(folder: Path, specs: Iterable[tuple[tuple[int, int], str]], asset: str = "coffee.png") -> list[Path]:
    """Save ``asset`` at each (size, "png" | "jpg") of ``specs`` to ``folder``/WxH.EXT (JPEG at quality 90)."""
    paths = []
    for (width, height), ext in specs:
        path = Path(folder) / f"{width}x{height}.{ext}"
        photo((width, height), asset).save(path, **({"quality": 90} if ext == "jpg" else {}))
        paths.append(path)
    return paths


def noise_images(folder: Path, n: int, side: int = 224) -> None:
    """``n`` seeded side×side noise PNGs, 00000.png onwards (a data set whose content does not matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = (np.random.RandomState(i).rand(side, side, 3) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")


def timed(fn: Callable[[], object], repeats: int = 1, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones: every repeat, so
    the results keep them (a median alone hides how much the machine's other work moved them)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/PID/status in MB (VmRSS: resident now; VmHWM: the peak); NaN if absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (VmRSS) in MB; by default this process's."""
    return status_mb("VmRSS", pid)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python ARGS`` (PORT in them replaced by a free port) from the repository root and wait
    until its Gradio server answers; return the process and its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, *[a.replace("PORT", str(port)) for a in args]], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server {args} did not start")
