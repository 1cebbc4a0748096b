"""The Gradio web UI: top-level handlers (``App``) and the layout (``build_demo``); ``app.py`` launches it.

The only module that imports gradio. It adds no logic of its own: each handler checks its inputs
once (``service.check_request``), calls ``clipcam.app.service`` and the explainer, and returns
widget updates. On the page an expected error becomes one sentence in the tab's notice, and the
other outputs keep what they showed; through the HTTP API the same handler raises ``gr.Error``.
Models load lazily, on the first request that needs them, through the library's cached loader.
"""

from __future__ import annotations

import functools
import html
import json
import logging
from typing import Callable, Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from ..constants import TARGETS, check_choice
from ..explainer import ATTENTION_METHODS, MASKING_METHODS, METHODS, Explainer, load_explainer
from ..images import MAX_PIXELS
from ..methods import get_method
from ..render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, shorten, words_html
from ..words import WORD_REGISTRY
from . import service as sv
from .service import (
    CACHE_SECONDS, EXAMPLE_KINDS, EXAMPLES, HOW_TO_READ, MAX_APP_PROMPTS, MAX_FORWARDS, TIME_LIMIT, Deadline,
    Janitor, Sessions, Stopped,
)

log = logging.getLogger("clipcam.app.ui")

#: The word-relevance control: off, or a method that shades each prompt's words (clipcam.words).
WORD_CHOICES: list[tuple[str, str]] = [("Off", "off")] + [(m.label, m.name) for m in WORD_REGISTRY.values()]
#: Integrated gradients: signed (a wrong word shows as the most negative) and the library method that
#: finds a wrong word most often and orders words for deletion best on the shapes CLIP (BENCHMARKS.md,
#: "Which words matter"); a text pass of 16 path points, run after the heatmaps are on the page.
DEFAULT_WORDS = "intgrad"
#: Where the session store keeps the word relevance shown on the Explain tab and on Compare's two sides.
WORD_TABS = ("words-explain", "words-left", "words-right")

INTRO = """# clipcam — where does a CLIP model look?
Pick an example (or upload an image and type a few prompts, one per line) and press **Run**
(Ctrl/⌘+Enter): one heatmap per prompt, with the model's score for each."""

#: The page's own styles: tiles' scores, the legend, and a layout that fits a phone.
CSS = """
#scores .scores-title, #left-scores .scores-title, #right-scores .scores-title { font-weight: 600; margin: 4px 0; }
.score-row { display: grid; grid-template-columns: 2em 1fr auto; gap: 2px 8px; align-items: baseline;
  padding: 4px 0; border-bottom: 1px solid var(--border-color-primary); }
.score-index { font-weight: 700; }
.score-prompt { overflow-wrap: anywhere; font-size: 0.95em; }
.score-value { font-variant-numeric: tabular-nums; font-weight: 700; white-space: nowrap; }
.score-bar { grid-column: 2 / 4; height: 6px; background: var(--background-fill-secondary); border-radius: 3px; }
.score-bar > span { display: block; height: 100%; background: var(--color-accent); border-radius: 3px; }
.score-hint { grid-column: 2 / 4; font-size: 0.85em; opacity: 0.8; }
.tile-extra:empty { display: none; }
.legend { font-size: 0.9em; }
.legend ul { margin: 4px 0 0 1.1em; padding: 0; }
.legend-bar { display: flex; align-items: center; gap: 6px; flex-wrap: wrap; }
.legend-ramp { display: inline-block; width: 180px; max-width: 40vw; height: 12px; border-radius: 2px; }
.legend-hatch { display: inline-block; width: 24px; height: 12px; margin-left: 12px;
  background: repeating-linear-gradient(45deg, #969696 0 3px, #262626 3px 12px); }
.example-group button { justify-content: flex-start; }
#model input, #left-model input, #right-model input { text-overflow: ellipsis; padding-right: 2.2em; }
#gallery .grid-wrap, #left-gallery .grid-wrap, #right-gallery .grid-wrap {
  min-height: 0 !important; height: auto !important; max-height: none !important; }
#gallery .grid-container { grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)) !important; }
#left-gallery .grid-container, #right-gallery .grid-container {
  grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)) !important; }
.downloads .empty { min-height: 48px !important; height: 48px !important; }
@media (max-width: 640px) {
  .legend-ramp { width: 120px; }
  #gallery .grid-container { grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)) !important; }
}
"""

#: Ctrl/⌘+Enter runs the visible tab's main button; the page's styles are added here too (gradio
#: 6 takes css and js only at launch, and tests launch the demo themselves).
ON_LOAD_JS = """
() => {
  if (!document.getElementById('clipcam-style')) {
    const style = document.createElement('style');
    style.id = 'clipcam-style';
    style.textContent = %s;
    document.head.appendChild(style);
  }
  if (!window.__clipcamKeys) {
    window.__clipcamKeys = true;
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        const button = ['#run', '#sweep', '#compare'].map((id) => document.querySelector(id))
          .find((b) => b && b.offsetParent !== null);
        if (button) { e.preventDefault(); button.click(); }
      }
    });
  }
}
"""


class ImageInput(gr.Image):
    """gr.Image that hands over the uploaded file's path even when gradio cannot read it, so that
    clipcam's own reader answers with a sentence saying what is wrong and what is accepted."""

    is_template = True  # the browser draws it as a plain Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - clipcam.images.load_image explains the problem
            return None if payload is None or payload.path is None else str(payload.path)


class Choice(gr.Dropdown):
    """gr.Dropdown whose refusal of a value outside its choices echoes the value shortened (the
    HTTP API can send megabytes) and prints no traceback; otherwise gradio's own check."""

    is_template = True  # the browser draws it as a plain Dropdown

    def preprocess(self, payload):
        allowed = [value for _, value in self.choices]
        if not self.multiselect and payload is not None and payload not in allowed:
            log.info("refused a value outside the %s choices: %s", self.label, shorten(str(payload), 80))
            raise gr.Error(f"Value: {shorten(str(payload), 80)} is not in the list of choices: {allowed}",
                           print_exception=False)
        return super().preprocess(payload)


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


def unexpected(err: Exception) -> str:
    return (f"Something went wrong ({type(err).__name__}: {shorten(str(err), 200)}). Your inputs are kept; please "
            "try again or pick other settings.")


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


def releases_memory(fn: Callable) -> Callable:
    """A run handler that hands the memory it freed back to the operating system when it ends,
    however it ends (see service.release_memory)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            sv.release_memory()

    return wrapper


def client_alive() -> Callable[[], bool]:
    """Whether the client of the event running in this thread is still there. In gradio 6.31 a page
    that closes its event stream gets its events marked dead (``Queue.clean_events`` sets
    ``Event.alive = False``), and a cancelled event leaves the queue's active jobs; either way the
    function itself keeps running, so the request checks this at its progress points. Outside a
    queued event it always answers True."""
    from gradio.context import LocalContext

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


def layer_label(method: str, noun: str = "layer") -> str:
    return ("Start layer (from here to the last)" if method in ATTENTION_METHODS
            else f"{noun.capitalize()} (1 = closest to the pixels)")


def follow(progress, what: str, method: str):
    """A progress(done, total) callback for the explainer that moves the page's bar: Score-CAM's
    masked images, or the layers a block-by-block pass has gone back through."""
    if progress is None:
        return None
    unit = "masked images" if method in MASKING_METHODS else "layers, from the last back"
    return lambda done, total: progress(done / total, desc=f"{what}: {done} of {total} {unit}")


class App:
    """The app's handlers, one method per event, over one allowlist of models, one loader and one
    session store. Usable without serving: call the methods (``request`` may be None)."""

    def __init__(self, models: Sequence[str] | None = None, device: str = "auto", half: bool = False,
                 loader: Callable[..., Explainer] = load_explainer, max_pixels: int = MAX_PIXELS,
                 max_forwards: int = MAX_FORWARDS, time_limit: float = TIME_LIMIT, sessions: int = 32,
                 cache_seconds: int = CACHE_SECONDS, reason_for: Callable[[str], str | None] | None = None) -> None:
        self.models = list(models or sv.allowed_models())
        self.device, self.half, self.loader = device, half, loader
        self.max_pixels, self.max_forwards, self.time_limit = max_pixels, max_forwards, time_limit
        self.cache_seconds = cache_seconds
        self.store = Sessions(sessions)
        self.janitor = Janitor(get_upload_folder(), cache_seconds)
        self.gpu = sv.spaces_gpu()  # None unless the spaces package (Hugging Face Spaces) is importable
        if reason_for is None:
            from ..models import unavailable_reason as reason_for
        self.reason_for = reason_for

    # ------------------------------------------------------------------ helpers
    def explainer_for(self, name: str) -> Explainer:
        """The model's explainer; a model that cannot be loaded gets one sentence saying why."""
        self.janitor.tidy()  # every request may delete gradio's old cached files (at most every cache_seconds / 2)
        check_choice(name, self.models, "model")
        try:
            return self.loader(name, device=self.device, half=self.half)
        except Exception as err:  # noqa: BLE001 - offline, not cached, not a model: say which, in one sentence
            local = name.startswith(("/", ".", "~"))  # a path: the library says what is wrong with the folder
            reason = None if local and isinstance(err, ValueError) else self.reason_for(name)
            if reason is not None:
                offline = " Pick shapes, which works offline." if "shapes" in self.models and name != "shapes" else ""
                raise ValueError(f"{name} cannot be loaded now: {reason}{offline}") from None
            if isinstance(err, ValueError):
                raise
            raise ValueError(f"{name} could not be loaded as a CLIP-family model ({type(err).__name__}: "
                             f"{shorten(str(err), 160)}).") from None

    def layers_of(self, name: str) -> int:
        try:
            return sv.model_layers(name)
        except Exception:  # noqa: BLE001 - an unreachable model must not break the page
            return 12

    def run_core(self, ex: Explainer, name: str, kind: str, image, prompts, deadline: Deadline, progress,
                 forwards: int, **options):
        """ex.explain or ex.sweep, checked against the deadline at every progress point; inside
        spaces.GPU on Hugging Face ZeroGPU (there the worker is a forked process, so the progress
        callbacks stay behind and ZeroGPU's duration bounds the time)."""
        deadline.check()
        if self.gpu is not None:
            result = self.gpu(sv.gpu_seconds(forwards), name, self.device, self.half, kind, image, prompts, options)
        else:
            result = getattr(ex, kind)(image, prompts, progress=deadline.progress(progress), **options)
        deadline.check()
        return result

    @staticmethod
    def tokenizer(ex: Explainer):
        return getattr(ex.adapter, "tokenizer", None)

    # ------------------------------------------------------------------ runs
    @releases_memory
    def explain(self, image, prompts_text, model, layer, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request = None, progress=gr.Progress()):
        """(gallery, scores, record, notice, files, legend) for one layer."""
        deadline = Deadline(self.time_limit, client_alive())
        got = sv.check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared,
                               self.max_pixels, decode=False)
        ex = self.explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer)
        sv.check_forwards(forwards, self.max_forwards, 1, sublayer)
        res = self.run_core(ex, model, "explain", got.image, got.prompts, deadline,
                            follow(progress, sv.short_name(method), method), forwards,
                            layer=layer, sublayer=sublayer, target=target, method=method)
        notes = got.notes + list(res.notes) + sv.result_notes(res, self.tokenizer(ex))
        kept = sv.keep(res, model, notes)
        self.store.put(session_of(request), "explain", kept)
        gallery = sv.gallery_items(kept, got.colormap, got.alpha, got.shared)
        return (gallery, sv.scores_html(kept.prompts, kept.probs, kept.prob_kind, got.shared), kept.settings,
                sv.notice_text(notes, res.dead_reason), None, sv.legend_html(got.colormap, got.shared, kept.prob_kind))

    @releases_memory
    def sweep(self, image, prompts_text, model, sublayer, target, method, colormap, alpha, shared,
              request: gr.Request = None, progress=gr.Progress()):
        """(layers × prompts picture, concentration plot, notice, files, legend) for every layer."""
        deadline = Deadline(self.time_limit, client_alive())
        got = sv.check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared,
                               self.max_pixels, decode=False)
        progress(0.05, desc="Loading the model")
        ex = self.explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer, ex.num_layers)
        sv.check_forwards(forwards, self.max_forwards, ex.num_layers, sublayer)
        progress(0.25, desc=f"One pass through all {ex.num_layers} layers")
        res = self.run_core(ex, model, "sweep", got.image, got.prompts, deadline,
                            follow(progress, f"{sv.short_name(method)}, all layers", method), forwards,
                            sublayer=sublayer, target=target, method=method)
        progress(0.7, desc="Drawing the grid")
        notes = got.notes + list(res.notes)
        dead = [layer for layer, reason in zip(res.layers, res.dead_reasons) if reason]
        if dead:
            notes.append(f"Layer {', '.join(map(str, dead))}: {sublayer} cannot influence the score there "
                         "(its patch tokens never reach the CLS token), so its row is blank.")
        notes += sv.result_notes(res, self.tokenizer(ex))
        kept = sv.keep(res, model, notes)
        self.store.put(session_of(request), "sweep", kept)
        fig = sv.concentration_figure(res.layers, res.prompts, sv.concentration(res.layer_maps), res.probs)
        progress(1.0, desc="Done")
        return (sv.sweep_picture(kept, got.colormap, got.alpha, got.shared), fig, sv.notice_text(notes), None,
                sv.legend_html(got.colormap, got.shared, kept.prob_kind))

    @releases_memory
    def compare(self, image, prompts_text, left, right, depth, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request = None):
        """(left gallery, left scores, right gallery, right scores, notice): each side on its own, so
        one that cannot run says why and leaves the other working."""
        deadline = Deadline(self.time_limit, client_alive())
        got = sv.check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared,
                               self.max_pixels)
        depth = sv.check_depth(depth)
        lines, sides = [], []  # (name, explainer, its own sublayer, why it cannot run)
        for name in (left, right):  # each side on its own: one that cannot run leaves the other working
            try:
                ex = self.explainer_for(name)
                own = sublayer if sublayer in ex.sublayers else ex.default_sublayer  # families name them differently
                ex.check_method(method)
                sides.append((name, ex, own, None))
            except ValueError as err:
                sides.append((name, None, None, err))
        runnable = [(ex, own) for _, ex, own, err in sides if err is None]
        forwards = sum(ex.masked_forwards(method, own) for ex, own in runnable)  # both models count together
        sv.check_forwards(forwards, self.max_forwards, 1, sublayer, models=len(runnable))
        outputs = []
        for side, (name, ex, own, err) in zip(("left", "right"), sides):
            if err is None:
                try:
                    layer = sv.relative_layer(depth, ex.num_layers)
                    res = self.run_core(ex, name, "explain", got.image, got.prompts, deadline, None,
                                        ex.masked_forwards(method, own), layer=layer, sublayer=own, target=target,
                                        method=method)
                except ValueError as error:
                    err = error
            if err is not None:
                outputs += [[], ""]
                lines.append(f"**{name}**: ⚠️ {err}")
                continue
            kept = sv.keep(res, name, got.notes)
            self.store.put(session_of(request), side, kept)
            outputs += [sv.gallery_items(kept, got.colormap, got.alpha, got.shared),
                        sv.scores_html(kept.prompts, kept.probs, kept.prob_kind, got.shared)]
            noun = ex.adapter.layer_noun
            lines.append(f"**{name}**: {noun} {layer} of {ex.num_layers}"
                         + (f", sublayer {own}" if own != sublayer and get_method(method).reads != "attention" else "")
                         + f", {res.seconds:.2f} s" + (" (sigmoid scores)" if res.prob_kind == "sigmoid" else "")
                         + (f" — ⚠️ {res.dead_reason}" if res.dead else ""))
            unknown = sv.unknown_words_note(kept.prompts, self.tokenizer(ex))
            if unknown:
                lines.append(f"**{name}**: ℹ️ {unknown}")
        return (*outputs, "\n\n".join(lines + [f"ℹ️ {n}" for n in got.notes]))

    @staticmethod
    def word_method(words: str) -> str | None:
        """The word method a request asks for, None for off (the HTTP API bypasses the dropdown)."""
        check_choice(words, [name for _, name in WORD_CHOICES], "word method")
        return None if words == "off" else words

    @releases_memory
    def explain_words(self, image, prompts_text, model, sublayer, target, method, colormap, alpha, words,
                      request: gr.Request = None):
        """Each prompt's words shaded by relevance, under the Explain tab's heatmaps ("" when off).
        The relevance is kept for the session, so a display change re-colours the words too."""
        name = self.word_method(words)
        session = session_of(request)
        self.store.put(session, "words-explain", None)
        if name is None:
            return ""
        got = sv.check_request(image, prompts_text, sublayer, target, method, colormap, alpha, False, self.max_pixels)
        relevance = self.explainer_for(model).words(got.image, got.prompts, method=name, target=target)
        self.store.put(session, "words-explain", relevance)
        return words_html(relevance, got.colormap, [p.prompt for p in relevance.prompts])

    @releases_memory
    def compare_words(self, image, prompts_text, left, right, sublayer, target, method, colormap, alpha, words,
                      request: gr.Request = None):
        """The same for both models of the Compare tab, each side on its own."""
        name = self.word_method(words)
        session = session_of(request)
        for tab in WORD_TABS[1:]:
            self.store.put(session, tab, None)
        if name is None:
            return "", ""
        got = sv.check_request(image, prompts_text, sublayer, target, method, colormap, alpha, False, self.max_pixels)
        out = []
        for tab, side in zip(WORD_TABS[1:], (left, right)):
            try:
                relevance = self.explainer_for(side).words(got.image, got.prompts, method=name, target=target)
            except ValueError as err:
                out.append(f"<p>⚠️ {html.escape(str(err), quote=False)}</p>")
                continue
            self.store.put(session, tab, relevance)
            out.append(words_html(relevance, got.colormap, [p.prompt for p in relevance.prompts]))
        return tuple(out)

    def words_changed(self, words, request: gr.Request = None):
        """The word method changed: Off blanks the three word panels and forgets their relevance."""
        if words != "off":
            return (gr.update(),) * len(WORD_TABS)
        for tab in WORD_TABS:
            self.store.put(session_of(request), tab, None)
        return ("",) * len(WORD_TABS)

    def restyle(self, colormap, alpha, shared, request: gr.Request = None):
        """Re-draw every kept result of this session with new display settings, without the model:
        (gallery, sweep picture, left gallery, right gallery, legend, sweep legend, scores, and the
        words of the Explain tab and of Compare's left and right)."""
        colormap, alpha = sv.check_view(colormap, alpha)
        shared = bool(shared)
        session = session_of(request)
        out, kinds = [], []
        for tab in ("explain", "sweep", "left", "right"):
            kept = self.store.get(session, tab)
            if kept is None:
                out.append(gr.update())
                continue
            kinds.append(kept.prob_kind)
            out.append(sv.sweep_picture(kept, colormap, alpha, shared) if tab == "sweep"
                       else sv.gallery_items(kept, colormap, alpha, shared))
        explained = self.store.get(session, "explain")
        swept = self.store.get(session, "sweep")
        return (*out, sv.legend_html(colormap, shared, explained.prob_kind if explained else "softmax"),
                sv.legend_html(colormap, shared, swept.prob_kind if swept else "softmax"),
                sv.scores_html(explained.prompts, explained.probs, explained.prob_kind, shared) if explained
                else gr.update(), *self.restyled_words(session, colormap))

    def restyled_words(self, session: str, colormap: str) -> list:
        """The kept word relevance of each word panel, re-coloured with ``colormap`` (unchanged where none)."""
        out = []
        for tab in WORD_TABS:
            relevance = self.store.get(session, tab)
            out.append(gr.update() if relevance is None else
                       words_html(relevance, colormap, [p.prompt for p in relevance.prompts]))
        return out

    def downloads(self, tab: str, colormap, alpha, shared, request: gr.Request = None):
        colormap, alpha = sv.check_view(colormap, alpha)
        return self.store.downloads(session_of(request), tab, colormap, alpha, bool(shared))

    def forget(self, request: gr.Request):
        """The page was closed: drop its kept results and files."""
        self.store.drop(session_of(request))

    # ------------------------------------------------------------------ settings that follow each other
    def about(self, model, method, sublayer) -> str:
        return sv.method_note_for(model, method, sublayer) if method in METHODS else ""

    def model_state(self, name: str, notice: str | None = None) -> tuple:
        """Updates for (model, layer, sublayer, target, method, method info, model notice, and the
        four example groups) when the page moves to model ``name``: its own starting settings, the
        methods its family supports, a sentence when it cannot be loaded now, its examples first."""
        n = self.layers_of(name)
        layer0, sublayer0, target0, method0 = sv.model_defaults(name, n)  # each model starts at its best settings
        family = sv.family_class(name)
        choices, missing = sv.method_choices(name)
        sublayers = list(family.sublayers)
        applies = sv.controls(method0)
        problem = sv.model_problem(name, self.reason_for) if notice is None else notice
        order = sv.example_order(name)
        groups = [gr.update(visible=order[slot] == kind) for slot in (0, 1) for kind in EXAMPLE_KINDS]
        return (gr.update(value=name),
                gr.update(maximum=n, value=layer0, label=layer_label(method0, family.layer_noun),
                          interactive=applies["layer"]),
                gr.update(choices=sublayers, value=sublayer0, interactive=applies["sublayer"] and len(sublayers) > 1),
                gr.update(value=target0, interactive=applies["target"]),
                gr.update(choices=choices, value=method0),
                self.about(name, method0, sublayer0) + (f"\n\nℹ️ {missing}" if missing else ""),
                problem, *groups)

    def on_model(self, name):
        return self.model_state(name)[1:]

    def on_method(self, model, method, sublayer):
        """Sublayer, target and layer follow the method: attention methods read no sublayer and
        start at a layer; EigenCAM has no target; each method starts where it measured best."""
        applies = sv.controls(method)
        n = self.layers_of(model)
        return (gr.update(interactive=applies["sublayer"]), gr.update(interactive=applies["target"]),
                gr.update(label=layer_label(method, sv.family_class(model).layer_noun), interactive=applies["layer"],
                          value=sv.method_layer(model, method, n)),
                self.about(model, method, sublayer))

    def use_example(self, key: str, current: str):
        """(image, prompts, example key, model notice, then model_state's updates without the
        notice) for a click on an example: a model that suits it, or a sentence saying why none can."""
        example = sv.get_example(key)
        name, notice = sv.example_model(example, current, self.models, self.reason_for)
        state = list(self.model_state(name, notice=notice)) if name != current else (
            [gr.update()] * 6 + [notice] + [gr.update()] * 4)
        return (str(example.path), example.prompts, key, *state)

    def on_load(self, request: gr.Request = None):
        """Start on the first model that can be loaded now (saying why when it is not the first
        choice), with its own settings and its first example filled in; a share link's query
        (model, example, settings) wins over both."""
        name, notice = sv.startup_model(self.models, self.reason_for)
        query = dict(request.query_params) if request is not None and request.query_params else {}
        shared_settings = sv.read_share(query, self.models)
        name = shared_settings.get("model", name)
        state = list(self.model_state(name))  # gr.update dicts, adjusted below to the link's settings
        example = sv.get_example(shared_settings["example"]) if "example" in shared_settings else next(
            e for e in EXAMPLES if e.kind == sv.model_kind(name))
        n, family = self.layers_of(name), sv.family_class(name)
        method = shared_settings.get("method")
        choices, missing = sv.method_choices(name)
        if method in [value for _, value in choices]:
            applies = sv.controls(method)
            state[1].update(value=sv.method_layer(name, method, n), label=layer_label(method, family.layer_noun),
                            interactive=applies["layer"])
            state[2].update(interactive=applies["sublayer"] and len(family.sublayers) > 1)
            state[3].update(interactive=applies["target"])
            state[4].update(value=method)
        if "layer" in shared_settings:
            state[1].update(value=min(shared_settings["layer"], n))
        if shared_settings.get("sublayer") in family.sublayers:
            state[2].update(value=shared_settings["sublayer"])
        if "target" in shared_settings:
            state[3].update(value=shared_settings["target"])
        state[5] = self.about(name, state[4]["value"], state[2]["value"]) + (f"\n\nℹ️ {missing}" if missing else "")
        if shared_settings:
            notice = "ℹ️ Settings restored from a shared link" + (
                "." if "example" in shared_settings else "; upload the image again (links carry only examples).")
        view = [gr.update(value=shared_settings[k]) if k in shared_settings else gr.update()
                for k in ("colormap", "alpha", "shared")]
        right = next((m for m in reversed(self.models) if m != name), name)
        return (notice, str(example.path), example.prompts, example.key, *view, gr.update(value=name),
                gr.update(value=right), *state)

    def share(self, example, model, layer, sublayer, target, method, colormap, alpha, shared,
              request: gr.Request = None) -> str:
        """A link to this page that restores the settings (and the example, when one is shown)."""
        base = ""
        if request is not None:
            base = (request.headers.get("referer") or "").split("?")[0]
        query = sv.share_query({"example": example, "model": model, "layer": layer, "sublayer": sublayer,
                                "target": target, "method": method, "colormap": colormap, "alpha": alpha,
                                "shared": bool(shared)})
        return f"{base}?{query}"


def example_buttons(kind: str) -> list[tuple[gr.Button, str]]:
    """The buttons of one example group (a thumbnail and its prompts' gist), with their example keys."""
    buttons = []
    for example in EXAMPLES:
        if example.kind == kind and example.path.exists():
            buttons.append((gr.Button(example.label, icon=str(example.path), size="sm", variant="secondary",
                                      elem_classes=["example"], elem_id=f"example-{example.key}-{kind}"), example.key))
    return buttons


def build_demo(models: Sequence[str] | None = None, device: str = "auto", half: bool = False,
               loader: Callable[..., Explainer] = load_explainer, max_pixels: int = MAX_PIXELS,
               max_forwards: int = MAX_FORWARDS, time_limit: float = TIME_LIMIT, sessions: int = 32,
               cache_seconds: int = CACHE_SECONDS) -> gr.Blocks:
    """The layout, wired to an App's handlers. ``models`` is the allowlist offered in the browser and
    accepted through the API (default: CLIPCAM_MODELS, else the short names); ``loader`` makes an
    Explainer from a name; images larger than ``max_pixels`` are refused before they are decoded; a
    Score-CAM request that needs more than ``max_forwards`` masked forward passes is refused; a
    request stops after ``time_limit`` seconds or when its page goes away. Results are kept for the
    ``sessions`` most recent sessions; gradio's cached files are deleted ``cache_seconds`` after
    they were made."""
    app = App(models, device, half, loader, max_pixels, max_forwards, time_limit, sessions, cache_seconds)
    models = app.models
    model_choices = [(sv.model_label(m), m) for m in models]
    first = models[0]
    n0 = app.layers_of(first)
    layer0, sublayer0, target0, method0 = sv.model_defaults(first, n0)
    all_sublayers = sv.family_sublayers()  # the server accepts every family's names; the page narrows them

    with gr.Blocks(title="clipcam — where does a CLIP model look?", analytics_enabled=False,
                   delete_cache=(max(1, cache_seconds // 2), cache_seconds)) as demo:
        gr.Markdown(INTRO)
        startup_notice = gr.Markdown(elem_id="startup-notice")
        example_key = gr.State(None)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                # image_mode=None: gradio hands over the upload as it is, clipcam.images reads every mode
                image = ImageInput(type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard", "webcam"],
                                   height=280, elem_id="image")
                prompts = gr.Textbox(lines=3, max_lines=MAX_APP_PROMPTS + 2, elem_id="prompts",
                                     label=f"Prompts — one per line, up to {MAX_APP_PROMPTS}",
                                     placeholder="a photo of a cat.\na photo of a dog.")
                groups = []
                with gr.Column(elem_id="examples"):
                    for slot in (0, 1):
                        for kind in EXAMPLE_KINDS:
                            visible = sv.example_order(first)[slot] == kind
                            with gr.Column(visible=visible, elem_classes=["example-group"],
                                           elem_id=f"examples-{slot}-{kind}") as group:
                                gr.Markdown(f"**{EXAMPLE_KINDS[kind]}**")
                                with gr.Row():
                                    buttons = example_buttons(kind)
                            groups.append((group, buttons))
                model = Choice(model_choices, value=first, label="Model", elem_id="model")
                model_notice = gr.Markdown(elem_id="model-notice")
                # The server checks a slider against the maximum it was built with, whatever the page shows:
                # build it for the deepest model, let the page narrow it, and let the explainer check the rest.
                deepest = max(app.layers_of(m) for m in models)
                layer = gr.Slider(1, deepest, value=layer0, step=1, label=layer_label(method0), elem_id="layer")
                sublayer = Choice(all_sublayers, value=sublayer0, label="Sublayer",
                                       interactive=sv.controls(method0)["sublayer"],
                                       info="block = the whole layer's output", elem_id="sublayer")
                target = Choice(list(TARGETS), value=target0, label="Target",
                                     info="logit: the model's score (as the reference); log_softmax / contrast: "
                                     "what favours this prompt over the others",
                                     interactive=sv.controls(method0)["target"], elem_id="target")
                method = Choice([(sv.METHOD_LABELS[m], m) for m in METHODS], value=method0, label="Method",
                                     elem_id="method")
                method_info = gr.Markdown(app.about(first, method0, sublayer0), elem_id="method-info")
                words = gr.Dropdown(WORD_CHOICES, value=DEFAULT_WORDS, label="Which words matter",
                                    info="each prompt's words shaded under the heatmaps (a text pass of its own); "
                                    "Off turns it off", elem_id="words")
                with gr.Accordion("Display (redraws at once, no new run)", open=False, elem_id="display"):
                    colormap = Choice(list(COLORMAPS), value=DEFAULT_COLORMAP, label="Colour map",
                                           elem_id="colormap")
                    alpha = gr.Slider(0, 1, value=DEFAULT_ALPHA, step=0.05, label="Heatmap opacity", elem_id="alpha")
                    shared = gr.Checkbox(False, label="One colour scale for all prompts (compare strengths)",
                                         elem_id="shared")
                with gr.Accordion("How to read the maps", open=False, elem_id="how-to-read"):
                    gr.Markdown(HOW_TO_READ)
                with gr.Accordion("Share these settings", open=False, elem_id="share"):
                    share_btn = gr.Button("Make a link", size="sm", elem_id="share-button")
                    share_link = gr.Textbox(label="Link (restores the example and the settings)", interactive=False,
                                            buttons=["copy"], elem_id="share-link")
            with gr.Column(scale=3, min_width=300):
                with gr.Tabs():
                    with gr.Tab("Explain"):
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        notice = gr.Markdown(elem_id="notice")
                        legend = gr.HTML(sv.legend_html(DEFAULT_COLORMAP), elem_id="legend")
                        gallery = gr.Gallery(show_label=False, columns=3, height="auto", object_fit="contain",
                                             format="jpeg", elem_id="gallery", preview=False)
                        words_out = gr.HTML(elem_id="words-explain")
                        scores_box = gr.HTML(elem_id="scores")
                        record = gr.JSON(label="Scores and settings", visible=False)
                        files_btn = gr.Button("Prepare downloads: grid.png, scores.json, heatmaps.npz", size="sm",
                                              elem_id="downloads")
                        files = gr.File(label="Downloads", file_count="multiple", elem_id="files",
                                        elem_classes=["downloads"])
                    with gr.Tab("Layer sweep"):
                        gr.Markdown("Every layer × every prompt from one pass through the model (Score-CAM adds "
                                    "its masked forwards for every layer; a deep model is gone back through one "
                                    "layer at a time, which keeps memory small). Rows are layers (1 at the top; the "
                                    "start layer for attention methods), columns are prompts, named at the top.")
                        sweep_btn = gr.Button("Sweep all layers", variant="primary", elem_id="sweep")
                        sweep_notice = gr.Markdown(elem_id="sweep-notice")
                        sweep_legend = gr.HTML(sv.legend_html(DEFAULT_COLORMAP), elem_id="sweep-legend")
                        sweep_img = gr.Image(type="pil", show_label=False, interactive=False, elem_id="sweep-image")
                        sweep_plot = gr.Plot(label="Concentration per layer")
                        sweep_files_btn = gr.Button("Prepare downloads", size="sm", elem_id="sweep-downloads")
                        sweep_files = gr.File(label="Downloads", file_count="multiple", elem_classes=["downloads"])
                    with gr.Tab("Compare models"):
                        with gr.Row():
                            left = Choice(model_choices, value=first, label="Left model", elem_id="left-model")
                            right = Choice(model_choices, value=models[-1], label="Right model",
                                                elem_id="right-model")
                        depth = gr.Slider(0.05, 1.0, value=0.9, step=0.05,
                                          label="Relative depth (0.9 = layer 11 of 12, layer 22 of 24)")
                        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare")
                        compare_notice = gr.Markdown(elem_id="compare-notice")
                        with gr.Row():
                            with gr.Column(min_width=240):
                                left_gallery = gr.Gallery(label="Left", columns=2, height="auto", format="jpeg",
                                                          elem_id="left-gallery")
                                left_words = gr.HTML(elem_id="words-left")
                                left_scores = gr.HTML(elem_id="left-scores")
                            with gr.Column(min_width=240):
                                right_gallery = gr.Gallery(label="Right", columns=2, height="auto", format="jpeg",
                                                           elem_id="right-gallery")
                                right_words = gr.HTML(elem_id="words-right")
                                right_scores = gr.HTML(elem_id="right-scores")

        # ------------------------------------------------------------ wiring
        group_boxes = [group for group, _ in groups]
        model_outputs = [model, layer, sublayer, target, method, method_info, model_notice, *group_boxes]
        view = [colormap, alpha, shared]
        demo.load(None, js=ON_LOAD_JS % json.dumps(CSS))
        demo.load(app.on_load, None, [startup_notice, image, prompts, example_key, *view, left, right, *model_outputs],
                  api_name=False)
        model.input(app.on_model, model, model_outputs[1:], api_name=False)
        method.input(app.on_method, [model, method, sublayer], [sublayer, target, layer, method_info], api_name=False)
        sublayer.input(app.about, [model, method, sublayer], method_info, api_name=False)
        image.upload(lambda: None, None, example_key, api_name=False, queue=False)
        for _, buttons in groups:
            for button, key in buttons:
                button.click(functools.partial(app.use_example, key), model,
                             [image, prompts, example_key, *model_outputs], api_name=False)

        explain_in = [image, prompts, model, layer, sublayer, target, method, *view]
        explain_out = [gallery, scores_box, record, notice, files, legend]
        sweep_in = [image, prompts, model, sublayer, target, method, *view]
        sweep_out = [sweep_img, sweep_plot, sweep_notice, sweep_files, sweep_legend]
        compare_in = [image, prompts, left, right, depth, sublayer, target, method, *view]
        compare_out = [left_gallery, left_scores, right_gallery, right_scores, compare_notice]
        working = "⏳ Working…"
        # The page: a run first replaces the old notice, then shows its own (an error as one sentence).
        words_in = [image, prompts, model, sublayer, target, method, colormap, alpha, words]
        compare_words_in = [image, prompts, left, right, sublayer, target, method, colormap, alpha, words]
        run.click(lambda: working, None, notice, queue=False, api_name=False).then(
            on_page(app.explain, len(explain_out), 3), explain_in, explain_out, api_name=False).then(
            blank_on_error(app.explain_words, 1), words_in, words_out, api_name=False)
        sweep_btn.click(lambda: working, None, sweep_notice, queue=False, api_name=False).then(
            on_page(app.sweep, len(sweep_out), 2), sweep_in, sweep_out, api_name=False)
        compare_btn.click(lambda: working, None, compare_notice, queue=False, api_name=False).then(
            on_page(app.compare, len(compare_out), 4), compare_in, compare_out, api_name=False).then(
            blank_on_error(app.compare_words, 2), compare_words_in, [left_words, right_words], api_name=False)
        # The HTTP API: the same handlers, which answer a bad request with gr.Error.
        with gr.Row(visible=False):
            api = {name: gr.Button(name, visible=False) for name in ("explain", "sweep", "compare")}
        api["explain"].click(user_errors(app.explain), explain_in, explain_out, api_name="explain").success(
            user_errors(app.explain_words), words_in, words_out, api_name="explain_words")
        api["sweep"].click(user_errors(app.sweep), sweep_in, sweep_out, api_name="sweep")
        api["compare"].click(user_errors(app.compare), compare_in, compare_out, api_name="compare").success(
            user_errors(app.compare_words), compare_words_in, [left_words, right_words], api_name="compare_words")
        words.change(app.words_changed, words, [words_out, left_words, right_words], api_name=False)

        shown = [gallery, sweep_img, left_gallery, right_gallery, legend, sweep_legend, scores_box,
                 words_out, left_words, right_words]
        restyle = user_errors(app.restyle)
        colormap.change(restyle, view, shown, api_name="restyle", show_progress="hidden", trigger_mode="always_last")
        alpha.release(restyle, view, shown, api_name=False, show_progress="hidden", trigger_mode="always_last")
        shared.change(restyle, view, shown, api_name=False, show_progress="hidden", trigger_mode="always_last")

        def downloads_of(tab: str, page: bool):
            def downloads(colormap, alpha, shared, request: gr.Request):
                files = app.downloads(tab, colormap, alpha, shared, request)
                return (files, gr.update()) if page else files
            downloads.__name__ = f"{tab}_downloads"
            return on_page(downloads, 2, 1) if page else user_errors(downloads)

        files_btn.click(downloads_of("explain", True), view, [files, notice], api_name=False)
        sweep_files_btn.click(downloads_of("sweep", True), view, [sweep_files, sweep_notice], api_name=False)
        with gr.Row(visible=False):
            api_files = gr.Button("downloads", visible=False)
            api_sweep_files = gr.Button("sweep_downloads", visible=False)
        api_files.click(downloads_of("explain", False), view, files, api_name="downloads")
        api_sweep_files.click(downloads_of("sweep", False), view, sweep_files, api_name="sweep_downloads")
        share_btn.click(app.share, [example_key, model, layer, sublayer, target, method, *view], share_link,
                        api_name=False, queue=False)
        demo.unload(app.forget)
    app.janitor.watch(demo)  # keeps the examples and defaults gradio keeps; forgets what it deletes
    demo.clipcam_app = app  # tests reach the handlers through it
    return demo
