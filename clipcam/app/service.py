"""What the app does, in plain Python: explain, sweep, compare, words, restyle and downloads, each
returning a dataclass that the layout maps onto its components.

No gradio here: a request's session is a string, its client's presence a callable and its progress
bar a callable, so the service is tested without serving. Every input is checked once where it
enters (clipcam.app.inputs); expected errors are ValueError (or Stopped) with one sentence.
Models load lazily, on the first request that needs them, through the library's cached loader.
The settings the page shows for a model, a method, an example or a share link are in
clipcam.app.settings.
"""

from __future__ import annotations

import functools
import html
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..constants import check_choice
from ..explainer import Explainer, load_explainer
from ..images import MAX_PIXELS
from ..methods import get_method
from ..models import unavailable_reason
from ..notes import result_notes, unknown_words_note
from ..render import shorten, words_html
from ..results import Explanation
from ..words import WordRelevance
from .choices import allowed_models, model_defaults, model_layers, short_name, word_method
from .inputs import MAX_FORWARDS, check_depth, check_forwards, check_request, check_view, relative_layer
from .kept import Kept, keep
from .page import legend_html, notice_text, scores_html
from .pictures import concentration, concentration_plot, gallery_items, sweep_picture
from .server import CACHE_SECONDS, TIME_LIMIT, Deadline, Janitor, gpu_seconds, release_memory, spaces_gpu
from .sessions import Sessions

#: Where the session store keeps the word relevance shown on the Explain tab and on Compare's two sides.
WORD_TABS = ("words-explain", "words-left", "words-right")
#: A progress bar: progress(fraction, desc=...), as gradio's gr.Progress is called.
Progress = Callable[..., None]
Gallery = list[tuple[Image.Image, str]]


def releases_memory(fn: Callable) -> Callable:
    """A run that hands the memory it freed back to the operating system when it ends, however it
    ends (see clipcam.memory.release_memory)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_memory()

    return wrapper


def follow(progress: Progress | None, what: str, method: str) -> Callable[[int, int], None] | None:
    """A progress(done, total) callback for the explainer that moves the page's bar: Score-CAM's
    masked images, or the layers a block-by-block pass has gone back through."""
    if progress is None:
        return None
    unit = "masked images" if get_method(method).cost == "per channel" else "layers, from the last back"
    return lambda done, total: progress(done / total, desc=f"{what}: {done} of {total} {unit}")


@dataclass(frozen=True)
class Shown:
    """One layer's result as the Explain tab shows it: tiles, scores (HTML), notice (Markdown), legend."""

    kept: Kept
    gallery: Gallery
    scores: str
    notice: str
    legend: str


@dataclass(frozen=True)
class Swept:
    """A sweep as its tab shows it: the layers × prompts sheet, the concentration plot (a matplotlib
    figure), the notice and the legend."""

    kept: Kept
    picture: Image.Image
    plot: object
    notice: str
    legend: str


@dataclass(frozen=True)
class Compared:
    """Compare's two sides (tiles and scores; empty for a side that could not run) and its notice."""

    left: Gallery
    left_scores: str
    right: Gallery
    right_scores: str
    notice: str


@dataclass(frozen=True)
class Restyled:
    """Every kept result of a session re-drawn with new display settings; None where nothing is kept
    (that component keeps what it shows)."""

    gallery: Gallery | None
    sweep: Image.Image | None
    left: Gallery | None
    right: Gallery | None
    legend: str
    sweep_legend: str
    scores: str | None
    words: tuple[str | None, ...]


class Service:
    """The app's work over one allowlist of models, one loader and one session store.

    ``models`` is the allowlist (default: CLIPCAM_MODELS, else the short names); ``loader`` makes an
    Explainer from a name; images larger than ``max_pixels`` are refused before they are decoded; a
    Score-CAM request that needs more than ``max_forwards`` masked forward passes is refused; a
    request stops after ``time_limit`` seconds or when its client goes away. Results are kept for the
    ``sessions`` most recent sessions; gradio's cached files under ``cache_folder`` are deleted
    ``cache_seconds`` after they were made."""

    def __init__(self, models: Sequence[str] | None = None, device: str = "auto", half: bool = False,
                 loader: Callable[..., Explainer] = load_explainer, max_pixels: int = MAX_PIXELS,
                 max_forwards: int = MAX_FORWARDS, time_limit: float = TIME_LIMIT, sessions: int = 32,
                 cache_seconds: int = CACHE_SECONDS, reason_for: Callable[[str], str | None] | None = None,
                 cache_folder: Path | str | None = None, precision: str = "fp32") -> None:
        self.models = list(models or allowed_models())
        self.device, self.half, self.loader = device, half, loader
        self.precision = precision  # clipcam.precision: "auto", "fp32", "bf16" or "fp16" (half=True is "fp16")
        self.max_pixels, self.max_forwards, self.time_limit = max_pixels, max_forwards, time_limit
        self.cache_seconds = cache_seconds
        self.store = Sessions(sessions)
        self.janitor = Janitor(cache_folder or Path(tempfile.gettempdir()) / "gradio", cache_seconds)
        self.gpu = spaces_gpu()  # None unless the spaces package (Hugging Face Spaces) is importable
        self.reason_for = reason_for or unavailable_reason

    # ------------------------------------------------------------------ helpers
    def explainer_for(self, name: str) -> Explainer:
        """The model's explainer; a model that cannot be loaded gets one sentence saying why."""
        self.janitor.tidy()  # every request may delete gradio's old cached files (at most every cache_seconds / 2)
        check_choice(name, self.models, "model")
        try:
            return self.loader(name, device=self.device, half=self.half, precision=None if self.half else self.precision)
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
        """A model's number of layers; 12 when it cannot be loaded now (the page must not break)."""
        try:
            return model_layers(name)
        except Exception:  # noqa: BLE001 - an unreachable model must not break the page
            return 12

    def run_core(self, ex: Explainer, name: str, kind: str, image: object, prompts: Sequence[str],
                 deadline: Deadline, progress: Callable[[int, int], None] | None, forwards: int,
                 **options) -> Explanation:
        """ex.explain or ex.sweep, checked against the deadline at every progress point; inside
        spaces.GPU on Hugging Face ZeroGPU (there the worker is a forked process, so the progress
        callbacks stay behind and ZeroGPU's duration bounds the time)."""
        deadline.check()
        if self.gpu is not None:
            result = self.gpu(gpu_seconds(forwards), name, self.device, self.half, kind, image, prompts, options,
                              None if self.half else self.precision)
        else:
            result = getattr(ex, kind)(image, prompts, progress=deadline.progress(progress), **options)
        deadline.check()
        return result

    @staticmethod
    def tokenizer(ex: Explainer) -> object:
        """The model's tokenizer (for the unknown-words note), None when its adapter has none."""
        return getattr(ex.adapter, "tokenizer", None)

    # ------------------------------------------------------------------ runs
    @releases_memory
    def explain(self, session: str, image: object, prompts_text: object, model: str, layer: int, sublayer: str,
                target: str, method: str, colormap: str, alpha: object, shared: object,
                alive: Callable[[], bool] | None = None, progress: Progress | None = None) -> Shown:
        """One layer's heatmaps, kept for the session's Explain tab."""
        deadline = Deadline(self.time_limit, alive)
        got = check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared,
                            self.max_pixels, decode=False)
        ex = self.explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer)
        check_forwards(forwards, self.max_forwards, 1, sublayer)
        res = self.run_core(ex, model, "explain", got.image, got.prompts, deadline,
                            follow(progress, short_name(method), method), forwards,
                            layer=layer, sublayer=sublayer, target=target, method=method)
        notes = result_notes(res, self.tokenizer(ex), got.notes)
        kept = keep(res, model, notes)
        self.store.put(session, "explain", kept)
        return Shown(kept, gallery_items(kept, got.colormap, got.alpha, got.shared),
                     scores_html(kept.prompts, kept.probs, kept.prob_kind, got.shared),
                     notice_text(notes, res.dead_reason), legend_html(got.colormap, got.shared, kept.prob_kind))

    @releases_memory
    def sweep(self, session: str, image: object, prompts_text: object, model: str, sublayer: str, target: str,
              method: str, colormap: str, alpha: object, shared: object, alive: Callable[[], bool] | None = None,
              progress: Progress | None = None) -> Swept:
        """Every layer × every prompt from one pass, kept for the session's sweep tab."""
        step = progress or (lambda *args, **kwargs: None)
        deadline = Deadline(self.time_limit, alive)
        got = check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared,
                            self.max_pixels, decode=False)
        step(0.05, desc="Loading the model")
        ex = self.explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer, ex.num_layers)
        check_forwards(forwards, self.max_forwards, ex.num_layers, sublayer)
        step(0.25, desc=f"One pass through all {ex.num_layers} layers")
        res = self.run_core(ex, model, "sweep", got.image, got.prompts, deadline,
                            follow(progress, f"{short_name(method)}, all layers", method), forwards,
                            sublayer=sublayer, target=target, method=method)
        step(0.7, desc="Drawing the grid")
        notes = result_notes(res, self.tokenizer(ex), got.notes, swept=sublayer)
        kept = keep(res, model, notes)
        self.store.put(session, "sweep", kept)
        plot = concentration_plot(res.layers, res.prompts, concentration(res.layer_maps), res.probs)
        step(1.0, desc="Done")
        return Swept(kept, sweep_picture(kept, got.colormap, got.alpha, got.shared), plot, notice_text(notes),
                     legend_html(got.colormap, got.shared, kept.prob_kind))

    @releases_memory
    def compare(self, session: str, image: object, prompts_text: object, left: str, right: str, depth: object,
                sublayer: str, target: str, method: str, colormap: str, alpha: object, shared: object,
                alive: Callable[[], bool] | None = None) -> Compared:
        """Two models at the same relative depth, each side on its own: one that cannot be loaded says
        why and leaves the other working, one whose family cannot run the method runs its own starting
        method and says so; Score-CAM's forward passes of both count against one budget."""
        deadline = Deadline(self.time_limit, alive)
        got = check_request(image, prompts_text, sublayer, target, method, colormap, alpha, shared, self.max_pixels)
        depth = check_depth(depth)
        lines, sides = [], []  # (name, explainer, its own sublayer, its method, why it cannot run)
        for name in (left, right):
            try:
                ex = self.explainer_for(name)
                own, own_method = sublayer if sublayer in ex.sublayers else ex.default_sublayer, method
                if method not in ex.methods:  # e.g. Chefer on a SigLIP: the side shows where it starts
                    _, own, _, own_method = model_defaults(name, ex.num_layers)
                    lines.append(f"**{name}**: ℹ️ {ex.adapter.family_label} models cannot run {short_name(method)}, "
                                 f"so this side shows {short_name(own_method)}, where {name} starts.")
                ex.check_method(own_method)
                sides.append((name, ex, own, own_method, None))
            except ValueError as err:
                sides.append((name, None, None, method, err))
        runnable = [(ex, own, m) for _, ex, own, m, err in sides if err is None]
        forwards = sum(ex.masked_forwards(m, own) for ex, own, m in runnable)  # both models count together
        check_forwards(forwards, self.max_forwards, 1, sublayer, models=len(runnable))
        outputs: list = []
        for tab, (name, ex, own, own_method, err) in zip(("left", "right"), sides):
            if err is None:
                try:
                    layer = relative_layer(depth, ex.num_layers)
                    res = self.run_core(ex, name, "explain", got.image, got.prompts, deadline, None,
                                        ex.masked_forwards(own_method, own), layer=layer, sublayer=own, target=target,
                                        method=own_method)
                except ValueError as error:
                    err = error
            if err is not None:
                outputs += [[], ""]
                lines.append(f"**{name}**: ⚠️ {err}")
                continue
            kept = keep(res, name, got.notes)
            self.store.put(session, tab, kept)
            outputs += [gallery_items(kept, got.colormap, got.alpha, got.shared),
                        scores_html(kept.prompts, kept.probs, kept.prob_kind, got.shared)]
            lines += side_lines(name, ex, res, layer, own, sublayer, self.tokenizer(ex))
        return Compared(*outputs, "\n\n".join(lines + [f"ℹ️ {n}" for n in got.notes]))

    # ------------------------------------------------------------------ words
    @releases_memory
    def explain_words(self, session: str, image: object, prompts_text: object, model: str, sublayer: str,
                      target: str, method: str, colormap: str, alpha: object, words: str) -> str:
        """Each prompt's words shaded by relevance, under the Explain tab's heatmaps ("" when off).
        The relevance is kept for the session, so a display change re-colours the words too."""
        name = word_method(words)
        self.store.put(session, WORD_TABS[0], None)
        if name is None:
            return ""
        got = check_request(image, prompts_text, sublayer, target, method, colormap, alpha, False, self.max_pixels)
        relevance = self.explainer_for(model).words(got.image, got.prompts, method=name, target=target)
        self.store.put(session, WORD_TABS[0], relevance)
        return words_shown(relevance, got.colormap)

    @releases_memory
    def compare_words(self, session: str, image: object, prompts_text: object, left: str, right: str,
                      sublayer: str, target: str, method: str, colormap: str, alpha: object,
                      words: str) -> tuple[str, str]:
        """The same for both models of the Compare tab, each side on its own."""
        name = word_method(words)
        for tab in WORD_TABS[1:]:
            self.store.put(session, tab, None)
        if name is None:
            return "", ""
        got = check_request(image, prompts_text, sublayer, target, method, colormap, alpha, False, self.max_pixels)
        out = []
        for tab, side in zip(WORD_TABS[1:], (left, right)):
            try:
                relevance = self.explainer_for(side).words(got.image, got.prompts, method=name, target=target)
            except ValueError as err:
                out.append(f"<p>⚠️ {html.escape(str(err), quote=False)}</p>")
                continue
            self.store.put(session, tab, relevance)
            out.append(words_shown(relevance, got.colormap))
        return out[0], out[1]

    def words_off(self, session: str, words: str) -> bool:
        """The word method changed: True when it is Off, after forgetting the three panels' relevance."""
        if words != "off":
            return False
        for tab in WORD_TABS:
            self.store.put(session, tab, None)
        return True

    # ------------------------------------------------------------------ display and downloads
    def restyle(self, session: str, colormap: str, alpha: object, shared: object) -> Restyled:
        """Re-draw every kept result of this session with new display settings, without the model."""
        colormap, alpha = check_view(colormap, alpha)
        shared = bool(shared)
        drawn = {}
        for tab in ("explain", "sweep", "left", "right"):
            kept = self.store.get(session, tab)
            if kept is not None:
                draw = sweep_picture if tab == "sweep" else gallery_items
                drawn[tab] = draw(kept, colormap, alpha, shared)
        explained, swept = self.store.get(session, "explain"), self.store.get(session, "sweep")
        words = tuple(None if (relevance := self.store.get(session, tab)) is None else words_shown(relevance, colormap)
                      for tab in WORD_TABS)
        return Restyled(drawn.get("explain"), drawn.get("sweep"), drawn.get("left"), drawn.get("right"),
                        legend_html(colormap, shared, explained.prob_kind if explained else "softmax"),
                        legend_html(colormap, shared, swept.prob_kind if swept else "softmax"),
                        scores_html(explained.prompts, explained.probs, explained.prob_kind, shared)
                        if explained else None, words)

    def downloads(self, session: str, tab: str, colormap: str, alpha: object, shared: object) -> list[str]:
        """grid.png, scores.json and heatmaps.npz of the session's result on ``tab``."""
        colormap, alpha = check_view(colormap, alpha)
        return self.store.downloads(session, tab, colormap, alpha, bool(shared))

    def forget(self, session: str) -> None:
        """The page was closed: drop its kept results and files."""
        self.store.drop(session)


def words_shown(relevance: WordRelevance, colormap: str) -> str:
    """A word panel's HTML: each prompt's words shaded by relevance in ``colormap``."""
    return words_html(relevance, colormap, [p.prompt for p in relevance.prompts])


def side_lines(name: str, ex: Explainer, res: Explanation, layer: int, own: str, sublayer: str,
               tokenizer: object) -> list[str]:
    """Compare's notice lines for one side: where it read (its own sublayer when the family names it
    differently), how long it took, its dead sublayer, and the prompt words it does not know."""
    lines = [f"**{name}**: {ex.adapter.layer_noun} {layer} of {ex.num_layers}"
             + (f", sublayer {own}" if own != sublayer and get_method(res.method).sublayer_applies else "")
             + f", {res.seconds:.2f} s" + (" (sigmoid scores)" if res.prob_kind == "sigmoid" else "")
             + (f" — ⚠️ {res.dead_reason}" if res.dead else "")]
    unknown = unknown_words_note(res.prompts, tokenizer)
    if unknown:
        lines.append(f"**{name}**: ℹ️ {unknown}")
    return lines
