"""A request over HTTP is bounded in time and stops when its client goes; its files go away."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from apphelpers import running_app

from clipcam import load_explainer

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.slow  # the app served over HTTP: not in `make test-fast`

CAT = str(Path(__file__).resolve().parents[1] / "assets" / "chelsea.png")
VIEW = dict(colormap="inferno", alpha=0.5, shared=False)


class SlowExplainer:
    """A real explainer whose explain first reports 400 progress points 10 ms apart (like a long
    Score-CAM), recording how far it got and what stopped it."""

    def __init__(self, name, **kwargs):
        self.inner = load_explainer(name, **kwargs)
        self.started, self.finished = threading.Event(), threading.Event()
        self.steps, self.error = 0, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def explain(self, image, prompts, progress=None, **kwargs):
        self.started.set()
        try:
            for step in range(400):
                time.sleep(0.01)
                progress(step + 1, 400)
                self.steps = step + 1
        except BaseException as err:
            self.error = err
            raise
        finally:
            self.finished.set()
        return self.inner.explain(image, prompts, **kwargs)


def slow_app(tiny_dir, **kwargs):
    slow = SlowExplainer(str(tiny_dir), device="cpu")
    return slow, running_app([tiny_dir], loader=lambda name, **_: slow, **kwargs)


def explain_args(tiny_dir):
    return dict(image=handle_file(CAT), prompts_text="a cat\na dog", model=str(tiny_dir), layer=1,
                sublayer="mlp.fc1", target="logit", method="gradcam", **VIEW, api_name="/explain")


def test_a_request_stops_at_the_time_limit(tiny_dir):
    slow, app = slow_app(tiny_dir, time_limit=0.3)
    with app as url:
        with pytest.raises(Exception) as err:
            Client(url, verbose=False).predict(**explain_args(tiny_dir))
    assert ("This request ran past the server's time limit of 0.3 s (CLIPCAM_TIME_LIMIT), so it was stopped."
            in str(err.value))
    assert 0 < slow.steps < 400


def test_work_stops_when_the_client_goes(tiny_dir):
    """Cancelling the job (what a closed page does to its event stream) stops the work at its next
    progress point instead of running to the end."""
    slow, app = slow_app(tiny_dir)
    with app as url:
        job = Client(url, verbose=False).submit(**explain_args(tiny_dir))
        assert slow.started.wait(30)
        time.sleep(0.2)
        job.cancel()
        assert slow.finished.wait(30)
    assert type(slow.error).__name__ == "Stopped" and slow.steps < 400
    assert str(slow.error) == "The page that asked for this result was closed, so the work was stopped."


def test_gradio_deletes_its_cached_files(tiny_dir):
    from clipcam.app.layout import build_demo

    assert build_demo(models=[str(tiny_dir)], cache_seconds=60).delete_cache == (30, 60)


def test_on_zero_gpu_the_model_work_runs_inside_spaces_gpu(tiny_dir, monkeypatch):
    """With a ``spaces`` module that wraps (as on ZeroGPU), /explain with Grad-CAM and Score-CAM runs through
    the wrapped gpu_task, which ZeroGPU is asked to hold for the method's duration."""
    import sys
    import types

    from clipcam.app.server import gpu_duration

    calls = []

    def gpu(duration):
        def wrap(fn):
            def run(*args, **kwargs):
                calls.append(duration(*args, **kwargs))
                return fn(*args, **kwargs)
            return run
        return wrap

    fake = types.ModuleType("spaces")
    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_duration(42, "anything") == 42
    with running_app([tiny_dir]) as url:
        client = Client(url, verbose=False)
        gallery, _, scores, *_ = client.predict(**explain_args(tiny_dir))
        client.predict(**{**explain_args(tiny_dir), "method": "scorecam", "sublayer": "self_attn.v_proj"})
    assert len(gallery) == 2 and scores["method"] == "gradcam"
    assert calls == [30, 30]  # 30 s + 0.02 s per masked forward (32 here, rounded down)
