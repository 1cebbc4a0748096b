"""Many users at once: threads on one explainer, and concurrent HTTP clients on one served model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from apphelpers import running_app
from conftest import PROMPTS, noise_image

from clipcam.constants import SUBLAYERS

pytestmark = pytest.mark.slow  # eight HTTP clients on a served app: not in `make test-fast`

ROOT = Path(__file__).resolve().parents[1]


def test_threads_mixing_explain_sweep_and_failures(explainer5, monkeypatch):
    """Threads with different layers, sublayers and sweeps get exactly their sequential results;
    threads whose calls fail mid-forward leave no hook behind and disturb nobody."""
    jobs = []
    for i in range(9):
        img, prompts = noise_image(50 + 9 * i, 70 - 3 * i, seed=10 + i), PROMPTS[: 1 + i % 3]
        if i % 3 == 2:
            jobs.append(("sweep", img, prompts, None, SUBLAYERS[i % len(SUBLAYERS)]))
        else:
            jobs.append(("explain", img, prompts, 1 + i % 3, SUBLAYERS[(2 * i) % len(SUBLAYERS)]))

    def call(kind, img, prompts, layer, sublayer):
        if kind == "sweep":
            return explainer5.sweep(img, prompts, sublayer=sublayer).layer_maps
        return explainer5.explain(img, prompts, layer=layer, sublayer=sublayer).layer_maps

    expected = [call(*job) for job in jobs]
    original = explainer5.model.visual_projection.forward

    def sometimes_fail(*args, **kwargs):
        if threading.current_thread().name.startswith("fail"):
            raise RuntimeError("failed mid-forward")
        return original(*args, **kwargs)

    monkeypatch.setattr(explainer5.model.visual_projection, "forward", sometimes_fail)
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(len(jobs))}
    failures: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs) + 3)

    def work(i):
        try:
            start.wait()
            for _ in range(4):
                got[i].append(call(*jobs[i]))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    def fail():
        start.wait()
        for _ in range(4):
            try:
                explainer5.explain(noise_image(40, 40), PROMPTS, layer=1)
            except RuntimeError as err:
                failures.append(str(err))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    threads += [threading.Thread(target=fail, name=f"fail-{j}") for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert failures == ["failed mid-forward"] * 12
    for i, want in enumerate(expected):
        for answer in got[i]:
            np.testing.assert_array_equal(answer, want)
    assert not any(m._forward_hooks for m in explainer5.model.modules())


def test_concurrent_http_clients_get_their_own_results(tiny5_dir):
    """8 gradio_client clients at once, each with its own request, repeated: every answer equals
    the same request made alone, none fails, none mixes results (benchmarks/load.py runs this for
    two minutes on the base architecture and reports latency)."""
    from benchmarks.load import run

    result = run(clients=8, seconds=8, model_dir=tiny5_dir)
    assert result["failures"] == 0, result["failure_examples"]
    assert result["mixed_results"] == 0
    assert min(result["per_client_requests"]) >= 1
    assert result["max_abs_diff_vs_alone"] <= 1e-6


def test_full_queue_says_busy(tiny_dir):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    img = str(ROOT / "assets" / "chelsea.png")
    with running_app([tiny_dir], queue_size=1) as url:
        def one(_):
            try:
                Client(url, verbose=False).predict(
                    image=handle_file(img), prompts_text="a cat\na dog", model=str(tiny_dir), sublayer="mlp.fc1",
                    target="logit", method="gradcam", colormap="inferno", alpha=0.5, shared=False,
                    api_name="/sweep")
                return "ok"
            except Exception as err:  # noqa: BLE001 - the message is the point
                return str(err)

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
    assert "ok" in answers
    assert any("Queue is full! Please try again." in a for a in answers), answers

