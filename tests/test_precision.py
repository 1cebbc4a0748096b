"""Precision (issue 25): what "auto" picks and why, the options that ask for one, and the quality gate
of bfloat16 against float32 on the shipped shapes models (trained weights).

The gate, per prompt and against the same model in float32: the maps' Pearson r and whether their peaks
lie in the same or an adjacent patch, the pointing game, the probabilities, and the word methods' most
negative (signed) or most relevant word. On a CPU without native bfloat16 (this machine's) torch
emulates it: the maps are the same numbers, only slower, so the tests stay small. Random-weight base
and large models are compared by benchmarks/precision.py (BENCHMARKS.md), not here: emulated, one
ViT-B/16 call in bfloat16 takes seconds.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from clipcam import load_explainer
from clipcam.constants import SHAPES_MODEL_DIR
from clipcam.eval.evaluate import shapes_samples
from clipcam.models import load_model
from clipcam.precision import FP32, choose, cpu_flags, native_cpu_bf16, precision_setting
from clipcam.words import WORD_REGISTRY
from tests.clihelpers import run_cli

#: The shipped shapes models: HF CLIP, SigLIP and an open_clip ResNet (next to SHAPES_MODEL_DIR).
SHAPES = {name: str(SHAPES_MODEL_DIR.parent / name) for name in ("shapes-clip", "shapes-siglip", "shapes-rn")}
#: Score-CAM reads one forward per channel: a narrow (sublayer, layer) of each model keeps the test short.
NARROW = {"shapes-clip": ("self_attn.v_proj", None), "shapes-siglip": ("self_attn.v_proj", None),
          "shapes-rn": (None, 1)}


def pair(name: str):
    return (load_explainer(SHAPES[name], device="cpu", precision="fp32"),
            load_explainer(SHAPES[name], device="cpu", precision="bf16"))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r, written out; 1 for two constant maps that are equal."""
    x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / den) if den > 0 else float(np.allclose(x, y))


def peak_patch(grid_map: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(grid_map), grid_map.shape))


def hit(image_map: np.ndarray, mask: np.ndarray) -> bool:
    """Pointing game, written out: the map's highest pixel inside the mask grown by 2 px."""
    values = np.nan_to_num(image_map, nan=-np.inf)
    if values.max() <= 0:
        return False
    y, x = np.unravel_index(np.argmax(values), values.shape)
    return bool(cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))[y, x])


def compare(name: str, methods, samples) -> dict:
    """Per-prompt r, peak distance (patches), pointing hits and probability differences, bf16 vs fp32."""
    full, half = pair(name)
    out = {"r": [], "far": [], "hits32": [], "hits16": [], "dprob": []}
    for method in methods:
        sub, layer = NARROW[name] if method == "scorecam" else (None, None)
        for s in samples[:1] if method == "scorecam" else samples:  # Score-CAM: one forward per channel, 1 scene
            a = full.explain(s.image, list(s.prompts), method=method, sublayer=sub, layer=layer)
            b = half.explain(s.image, list(s.prompts), method=method, sublayer=sub, layer=layer)
            assert b.grid_maps.dtype == np.float32 and b.image_maps.dtype == np.float32
            for k in range(len(s.prompts)):
                out["r"].append((method, pearson(a.grid_maps[k], b.grid_maps[k])))
                pa, pb = peak_patch(a.grid_maps[k]), peak_patch(b.grid_maps[k])
                tie = a.grid_maps[k][pb] >= 0.98 * a.grid_maps[k][pa]  # float32 has (almost) the same peak there too
                out["far"].append((method, 0 if tie else max(abs(pa[0] - pb[0]), abs(pa[1] - pb[1]))))
                out["hits32"].append(hit(a.image_maps[k], s.masks[k]))
                out["hits16"].append(hit(b.image_maps[k], s.masks[k]))
            out["dprob"].append(float(np.abs(a.probs - b.probs).max()))
    return out


# ----------------------------------------------------------------------------- what auto picks
def test_auto_picks_bfloat16_only_where_the_cpu_computes_it():
    native = choose("auto", "cpu", native=(True, "torch's CPU check finds AMX"))
    assert (native.name, native.weights, native.compute) == ("bf16", torch.float32, torch.bfloat16)
    assert native.reason == "auto: this CPU computes bfloat16 natively (torch's CPU check finds AMX)."
    emulated = choose("auto", "cpu", native=(False, "/proc/cpuinfo lists neither avx512_bf16 nor amx_bf16"))
    assert emulated.name == "fp32" and emulated.reason == (
        "auto: this CPU would only emulate bfloat16 (/proc/cpuinfo lists neither avx512_bf16 nor amx_bf16), so float32.")
    asked = choose("bf16", "cpu")
    assert (asked.name, asked.reason) == ("bf16", "bfloat16 was asked for.")
    assert choose("fp32", "cpu") == FP32


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    assert {"avx512_bf16", "avx512f", "avx2", "fpu"} <= cpu_flags(info)
    assert native_cpu_bf16({"avx512f", "amx_bf16"}) == (True, "/proc/cpuinfo lists amx_bf16")
    assert native_cpu_bf16({"avx512f"}) == (False, "/proc/cpuinfo lists neither avx512_bf16 nor amx_bf16")
    assert cpu_flags(tmp_path / "missing") == set()
    how = native_cpu_bf16()[1]  # torch's own check on this machine: a sentence either way
    assert how.startswith("torch's CPU check finds")


def test_bad_precisions_get_one_sentence(monkeypatch):
    with pytest.raises(ValueError) as err:
        choose("int8", "cpu")
    assert str(err.value) == "Unknown precision 'int8': use one of auto, fp32, bf16, fp16."
    with pytest.raises(ValueError) as err:
        choose("fp16", "cpu")
    assert str(err.value) == "Half precision needs a CUDA GPU (fp16); on the CPU use precision 'bf16' or 'fp32'."
    with pytest.raises(ValueError) as err:
        load_model("shapes", device="cpu", half=True, precision="bf16")
    assert str(err.value) == "half=True means precision 'fp16', which contradicts precision 'bf16': give one of them."
    assert precision_setting({}) == "auto" and precision_setting({"CLIPCAM_PRECISION": "bf16"}) == "bf16"
    with pytest.raises(ValueError) as err:
        precision_setting({"CLIPCAM_PRECISION": "half"})
    assert str(err.value) == "CLIPCAM_PRECISION is 'half': use one of auto, fp32, bf16, fp16."


def test_autocast_is_entered_only_around_the_models_forward():
    """Inside the context a linear layer computes in bfloat16; outside it, float32 (the default path
    of every model loaded without a precision)."""
    layer, x = torch.nn.Linear(8, 8), torch.randn(2, 8)
    with choose("bf16", "cpu").forward("cpu"):
        assert layer(x).dtype == torch.bfloat16
    with FP32.forward("cpu"):
        assert layer(x).dtype == torch.float32
    assert load_model("shapes", device="cpu").precision == FP32


# ----------------------------------------------------------------------------- the options
def test_the_command_line_takes_precision_and_half_as_its_alias(tmp_path, monkeypatch):
    image = tmp_path / "scene.png"
    sample = shapes_samples(1)[0]
    cv2.imwrite(str(image), np.asarray(sample.image)[:, :, ::-1])
    done = run_cli(image, "-m", "shapes", "-p", "a red circle", "-p", "a blue square", "-o", tmp_path / "out",
                   "--precision", "bf16", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["precision"] == {"name": "bf16", "reason": "bfloat16 was asked for."}
    both = run_cli(image, "-m", "shapes", "-p", "a", "-o", tmp_path / "x", "--precision", "bf16", "--half")
    assert both.returncode == 2 and "argument --half: not allowed with argument --precision" in both.stderr
    monkeypatch.setenv("CLIPCAM_PRECISION", "fp8")
    bad = run_cli(image, "-m", "shapes", "-p", "a", "-o", tmp_path / "y", "--device", "cpu")
    assert bad.returncode == 2 and bad.stderr.strip() == "clipcam: CLIPCAM_PRECISION is 'fp8': use one of auto, fp32, bf16, fp16."


def test_the_page_says_the_precision_and_why():
    from clipcam.app.settings import precision_line  # the app's settings: only this test needs them

    assert precision_line("bf16", "cpu") == "Precision: bfloat16 — bfloat16 was asked for. Set by CLIPCAM_PRECISION (default auto)."


# ----------------------------------------------------------------------------- the quality gate
def test_ill_conditioned_methods_run_in_float32_and_say_so():
    """XGrad-CAM and Grad-CAM++ divide by sums that cancel, EigenGrad-CAM's component can swap; on a
    bfloat16 model they run in float32."""
    full, half = pair("shapes-clip")
    s = shapes_samples(2)[1]
    for method, label, why in (("xgradcam", "XGrad-CAM", "its channel weights divide by"),
                               ("gradcam++", "Grad-CAM++", "its channel weights divide by"),
                               ("eigengradcam", "EigenGrad-CAM", "its map is a first principal component")):
        a = full.explain(s.image, list(s.prompts), method=method)
        b = half.explain(s.image, list(s.prompts), method=method)
        assert any(n.startswith(f"{label} ran in float32, not bfloat16: {why}") for n in b.notes), b.notes
        np.testing.assert_allclose(b.grid_maps, a.grid_maps, rtol=1e-5, atol=1e-6)  # float32's maps


def test_bfloat16_maps_match_float32_on_the_shapes_clip():
    """Every gradient and attention method on the trained shapes CLIP, 3 scenes (6 prompts): r ≥ 0.99
    and the peak in the same or an adjacent patch, or where float32's map is within 2 % of its own
    peak (two near-equal peaks: Chefer once in 28 prompts). Score-CAM: the slow test."""
    full, _ = pair("shapes-clip")
    found = compare("shapes-clip", [m for m in full.methods if m != "scorecam"], shapes_samples(3))
    low = [(m, round(r, 4)) for m, r in found["r"] if r < 0.99]
    assert low == []
    assert [(m, d) for m, d in found["far"] if d > 1] == []
    assert max(found["dprob"]) < 0.007  # 0.61 percentage points: above the 0.5 (see the slow test)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHAPES))
def test_bfloat16_gate_on_every_shapes_model(name):
    """The gate on 6 scenes (12 prompts; Score-CAM 1 scene, shapes-rn's at its first stage) per model and every method it runs (peaks
    as in the fast test). Measured on 10 scenes (28 prompts): r ≥ 0.984 for every prompt and ≥ 0.99 for all but 1–3
    prompts of Grad-CAM, HiResCAM (shapes-clip) and EigenCAM (shapes-rn: 0.986), and EigenGrad-CAM's
    −0.2 on shapes-rn before it ran in float32; the probabilities within 0.7
    percentage points (a logit moves by up to 0.03 in bfloat16, the rounding of its 8-bit mantissa,
    whichever part of the model stays float32: text, attention or MLP, each tried)."""
    full, _ = pair(name)
    found = compare(name, full.methods, shapes_samples(6))
    rs = np.array([r for _, r in found["r"]])
    assert rs.min() >= 0.98 and np.mean(rs >= 0.99) >= 0.97
    assert np.mean([d <= 1 for _, d in found["far"]]) >= 0.97
    assert abs(np.mean(found["hits32"]) - np.mean(found["hits16"])) <= 0.01  # on ~17 prompts × methods: equal hits
    assert max(found["dprob"]) < 0.008


@pytest.mark.slow
def test_word_relevance_keeps_its_most_telling_word():
    """Every word method on the shapes CLIP, 10 scenes: the most negative word (signed methods) or the
    most relevant (non-negative ones) is the same in at least 98 % of prompts."""
    full, half = pair("shapes-clip")
    same = []
    for s in shapes_samples(10):
        prompts = [*s.prompts, "a yellow square"]
        for method, record in WORD_REGISTRY.items():
            a, b = full.words(s.image, prompts, method=method), half.words(s.image, prompts, method=method)
            pick = np.argmin if record.signed else np.argmax
            for wa, wb in zip(a.prompts, b.prompts):
                assert wb.word_relevance.dtype == np.float32
                same.append(pick(wa.word_relevance) == pick(wb.word_relevance))
    assert np.mean(same) >= 0.98, np.mean(same)
