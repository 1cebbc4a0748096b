"""The gradio side of each event: call the service, map its dataclass onto the components.

One method per event of ``Handlers``, usable without serving (``request`` may be None). On the page
an expected error becomes one sentence in the tab's notice and the other outputs keep what they
showed (``on_page``); through the HTTP API the same handler raises ``gr.Error`` (``user_errors``).
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import gradio as gr
from gradio.components.plot import PlotData
from gradio.context import LocalContext
from gradio.processing_utils import encode_plot_to_base64

from ..render import shorten
from .server import Stopped
from .service import Service
from .settings import ModelState, Settings

log = logging.getLogger("clipcam.app")


def unexpected(err: Exception) -> str:
    """The sentence for an error nobody expected: what it was, and that the inputs are kept."""
    return (f"Something went wrong ({type(err).__name__}: {shorten(str(err), 200)}). Your inputs are kept; please "
            "try again or pick other settings.")


def user_errors(fn: Callable) -> Callable:
    """For the HTTP API: turn expected errors into a gr.Error sentence (logged as one line); log and
    report anything unexpected with its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, Stopped) as err:
            log.info("%s refused: %s", fn.__name__, shorten(str(err), 300))
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - a server must answer, not die
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(unexpected(err)) from None

    return wrapper


def on_page(fn: Callable, outputs: int, notice: int) -> Callable:
    """For the page: the same handler, but an error becomes one sentence in output ``notice`` (of
    ``outputs``) while every other output keeps what it showed (no "Error" badges, no toast)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (gr.Error, ValueError, Stopped) as err:
            text = err.message if isinstance(err, gr.Error) else str(err)
            log.info("%s refused: %s", fn.__name__, shorten(str(text), 300))
            message = f"⚠️ {text}"
        except Exception as err:  # noqa: BLE001 - a server must answer, not die
            log.exception("unexpected error in %s", fn.__name__)
            message = f"⚠️ {unexpected(err)}"
        out = [gr.update() for _ in range(outputs)]
        out[notice] = message
        return tuple(out) if outputs > 1 else out[0]

    return wrapper


def blank_on_error(fn: Callable, outputs: int) -> Callable:
    """For the page's follow-up steps (word relevance after a run): an error leaves them blank, since
    the run's notice already says what was wrong (no "Error" badges)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the notice above says it; log it here
            log.info("%s left blank: %s", fn.__name__, shorten(str(err), 300))
            return "" if outputs == 1 else ("",) * outputs

    return wrapper


def client_alive() -> Callable[[], bool]:
    """Whether the client of the event running in this thread is still there. In gradio 6.31 a page
    that closes its event stream gets its events marked dead (``Queue.clean_events`` sets
    ``Event.alive = False``), and a cancelled event leaves the queue's active jobs; either way the
    function itself keeps running, so the request checks this at its progress points. Outside a
    queued event it always answers True."""
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return lambda: True

    def alive() -> bool:
        for job in list(queue.active_jobs):
            for event in job or ():
                if event._id == event_id:
                    return event.alive
        return False  # no longer an active job: gradio cancelled it

    return alive


def session_of(request: gr.Request | None) -> str:
    """The key under which a request's results are kept: its page's (or API client's) session."""
    return (request.session_hash if request is not None else None) or "no-session"


def rendered_plot(fig, image_format: str = "webp") -> PlotData:
    """gr.Plot's data for a matplotlib figure, rendered here (as gr.Plot would, in its default
    format), and the figure then taken apart, so that gradio never holds a figure and the Agg
    canvas's pixel buffer is freed at once. The rest of a figure is a web of reference cycles that
    only a full garbage collection frees (benchmarks/plot_memory.py measures what stays resident)."""
    import matplotlib.pyplot as plt  # after clipcam.app.pictures chose the Agg backend: pyplot fixes one on import

    try:
        return PlotData(type="matplotlib", plot=encode_plot_to_base64(fig, image_format))
    finally:
        plt.close(fig)
        fig.canvas.__dict__.pop("renderer", None)  # the Agg pixel buffer, held by the canvas alone
        fig.clear()


def kept_or_not(value: object) -> object:
    """A value for a component, or gr.update() (it keeps what it shows) where there is none."""
    return gr.update() if value is None else value


class Handlers:
    """The app's event handlers over one Service (the runs) and one Settings (the controls)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = Settings(service.models, service.reason_for, service.layers_of)
        self.models, self.janitor = service.models, service.janitor

    # ------------------------------------------------------------------ runs
    def explain(self, image, prompts_text, model, layer, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request = None, progress=gr.Progress()):
        """(gallery, scores, record, notice, files, legend) for one layer."""
        shown = self.service.explain(session_of(request), image, prompts_text, model, layer, sublayer, target, method,
                                     colormap, alpha, shared, alive=client_alive(), progress=progress)
        return shown.gallery, shown.scores, shown.kept.settings, shown.notice, None, shown.legend

    def sweep(self, image, prompts_text, model, sublayer, target, method, colormap, alpha, shared,
              request: gr.Request = None, progress=gr.Progress()):
        """(layers × prompts picture, concentration plot, notice, files, legend) for every layer."""
        swept = self.service.sweep(session_of(request), image, prompts_text, model, sublayer, target, method,
                                   colormap, alpha, shared, alive=client_alive(), progress=progress)
        return swept.picture, rendered_plot(swept.plot), swept.notice, None, swept.legend

    def compare(self, image, prompts_text, left, right, depth, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request = None):
        """(left gallery, left scores, right gallery, right scores, notice)."""
        done = self.service.compare(session_of(request), image, prompts_text, left, right, depth, sublayer, target,
                                    method, colormap, alpha, shared, alive=client_alive())
        return done.left, done.left_scores, done.right, done.right_scores, done.notice

    def explain_words(self, image, prompts_text, model, sublayer, target, method, colormap, alpha, words,
                      request: gr.Request = None):
        return self.service.explain_words(session_of(request), image, prompts_text, model, sublayer, target, method,
                                          colormap, alpha, words)

    def compare_words(self, image, prompts_text, left, right, sublayer, target, method, colormap, alpha, words,
                      request: gr.Request = None):
        return self.service.compare_words(session_of(request), image, prompts_text, left, right, sublayer, target,
                                          method, colormap, alpha, words)

    def words_changed(self, words, request: gr.Request = None):
        """Off blanks the three word panels; another method leaves them until the next run."""
        off = self.service.words_off(session_of(request), words)
        return ("",) * 3 if off else (gr.update(),) * 3

    def restyle(self, colormap, alpha, shared, request: gr.Request = None):
        """(gallery, sweep picture, left gallery, right gallery, legend, sweep legend, scores, and the
        words of the Explain tab and of Compare's left and right), re-drawn without the model."""
        done = self.service.restyle(session_of(request), colormap, alpha, shared)
        return (*map(kept_or_not, (done.gallery, done.sweep, done.left, done.right)), done.legend, done.sweep_legend,
                kept_or_not(done.scores), *map(kept_or_not, done.words))

    def downloads(self, tab: str, colormap, alpha, shared, request: gr.Request = None):
        return self.service.downloads(session_of(request), tab, colormap, alpha, shared)

    def forget(self, request: gr.Request):
        """The page was closed: drop its kept results and files."""
        self.service.forget(session_of(request))

    # ------------------------------------------------------------------ settings that follow each other
    def about(self, model, method, sublayer) -> str:
        return self.settings.about(model, method, sublayer)

    @staticmethod
    def model_updates(state: ModelState) -> tuple:
        """Updates for (model, layer, sublayer, target, method, method info, model notice, and the
        four example groups)."""
        return (gr.update(value=state.name),
                gr.update(maximum=state.layers, value=state.layer, label=state.layer_label,
                          interactive=state.layer_applies),
                gr.update(choices=state.sublayers, value=state.sublayer, interactive=state.sublayer_applies),
                gr.update(value=state.target, interactive=state.target_applies),
                gr.update(choices=state.methods, value=state.method),
                state.method_info, state.notice, *[gr.update(visible=shown) for shown in state.groups])

    def on_model(self, name):
        return self.model_updates(self.settings.model_state(name))[1:]

    def on_method(self, model, method, sublayer):
        state = self.settings.method_state(model, method, sublayer)
        return (gr.update(interactive=state.sublayer_applies), gr.update(interactive=state.target_applies),
                gr.update(label=state.layer_label, interactive=state.layer_applies, value=state.layer),
                state.method_info)

    def on_compare_models(self, left, right, depth):
        """(depth slider, Compare's notice) when a Compare model changes: the label for the two models,
        and at once why one cannot be loaded now."""
        label, notice = self.settings.compare_models(left, right, float(depth))
        return gr.update(label=label), notice

    def on_depth(self, left, right, depth):
        """Compare's depth slider label for a new depth."""
        return gr.update(label=self.settings.depth_label(float(depth), left, right))

    def use_example(self, key: str, current: str):
        """(image, prompts, example key, then the model's updates with the notice) for a click on an example."""
        example, name, notice = self.settings.pick_example(key, current)
        state = self.model_updates(self.settings.model_state(name, notice=notice)) if name != current else (
            [gr.update()] * 6 + [notice] + [gr.update()] * 4)
        return (str(example.path), example.prompts, key, *state)

    def on_load(self, request: gr.Request = None):
        """The page opens: (notice, image, prompts, example key, colour map, opacity, shared scale,
        left, right, then the model's updates), following a share link's query where there is one."""
        query = dict(request.query_params) if request is not None and request.query_params else {}
        start = self.settings.start(query)
        view = [gr.update(value=start.view[k]) if k in start.view else gr.update()
                for k in ("colormap", "alpha", "shared")]
        return (start.notice, str(start.example.path), start.example.prompts, start.example.key, *view,
                gr.update(value=start.state.name), gr.update(value=start.right), *self.model_updates(start.state))

    def share(self, example, model, layer, sublayer, target, method, colormap, alpha, shared,
              request: gr.Request = None) -> str:
        """A link to this page that restores the settings (and the example, when one is shown)."""
        base = (request.headers.get("referer") or "").split("?")[0] if request is not None else ""
        return self.settings.share_link(base, {"example": example, "model": model, "layer": layer,
                                               "sublayer": sublayer, "target": target, "method": method,
                                               "colormap": colormap, "alpha": alpha, "shared": bool(shared)})
