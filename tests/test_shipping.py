"""The package as it ships (issue 26): the wheel built from the project holds the three offline shapes
models and the shapes scenes (and none of the repository's photos), and, installed with --no-deps into
a folder of its own, explains a shapes scene with each offline model from outside the checkout, with
the project's interpreter and only that folder on the path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel, then two fresh interpreters

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "clipcam" / "assets"
PROMPTS = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green triangle."]
#: The centres (row, column) of scene-1's objects on its 64×64 scene (tools/make_shapes_examples.py;
#: the PNG is that scene times 4), in PROMPTS' order.
CENTRES = np.array([(18, 16), (20, 46), (47, 30)])

#: Run in the installed package: each offline model explains scene 1 at its starting settings.
PROBE = """
import json
import numpy as np
import clipcam
from clipcam import load_explainer
from clipcam.constants import SHAPES_SCENES_DIR
from clipcam.models import start_settings
out = {"clipcam": clipcam.__file__}
for name in ("shapes", "shapes-siglip", "shapes-rn"):
    ex, start = load_explainer(name, device="cpu"), start_settings(name)
    res = ex.explain(str(SHAPES_SCENES_DIR / "scene-1.png"), PROMPTS, layer=ex.num_layers - start.from_end,
                     sublayer=start.sublayer, target=start.target, method=start.method)
    out[name] = [[int(i) for i in np.unravel_index(np.nanargmax(m), m.shape)] for m in res.image_maps]
print(json.dumps(out))
"""


def build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the project's package files (so that the build leaves nothing in the
    checkout), built offline with the build backend installed in the project's environment."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "clipcam", source / "clipcam", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next((tmp / "dist").glob("clipcam-*.whl"))


def test_the_wheel_ships_the_offline_models_and_explains_with_them(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"clipcam/assets/{p.relative_to(PACKAGED).as_posix()}" for p in PACKAGED.rglob("*") if p.is_file()}
    assert shipped <= names  # every model file and scene, at the same place as in the checkout
    assert {"clipcam/assets/shapes-rn/open_clip_model.safetensors", "clipcam/assets/shapes/scene-1.png"} <= shipped
    assert not [n for n in names if n.startswith("assets/") or n.endswith(("chelsea.png", "screenshot.png"))]

    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(site), str(wheel)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    scene = site / "clipcam" / "assets" / "shapes" / "scene-1.png"
    args = [a for p in PROMPTS for a in ("--prompt", p)]
    cli = subprocess.run([sys.executable, "-m", "clipcam", str(scene), "--model", "shapes", *args, "--out", "out"],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert (outside / "out" / "grid.png").is_file() and (outside / "out" / "scores.json").is_file()

    probe = subprocess.run([sys.executable, "-c", f"PROMPTS = {PROMPTS!r}\n{PROBE}"], cwd=outside, env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    peaks = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(peaks.pop("clipcam")).is_relative_to(site)  # the installed package, not the checkout
    assert sorted(peaks) == ["shapes", "shapes-rn", "shapes-siglip"]
    for name, model_peaks in peaks.items():  # each prompt's map peaks nearer its own object than the others
        nearest = [int(np.argmin(np.hypot(*(CENTRES - np.array(p) / 4).T))) for p in model_peaks]
        assert nearest == [0, 1, 2], (name, model_peaks)
