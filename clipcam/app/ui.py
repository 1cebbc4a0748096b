"""The Gradio web UI: ``build_demo()`` returns the Blocks; ``app.py`` launches it.

The only module that imports gradio. It adds no maths: each event reads its inputs, calls
``clipcam.app.service`` and the explainer, and turns a ValueError into a ``gr.Error`` sentence, so bad
input never crashes the app and never clears the user's other inputs. Models load lazily, on
the first request that needs them, through the same cached loader the library uses.
"""

from __future__ import annotations

import functools
import logging
from html import escape as html_escape
from pathlib import Path
from typing import Callable, Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from ..constants import TARGETS, check_choice
from ..explainer import ATTENTION_METHODS, METHODS, Explainer, load_explainer
from ..images import MAX_PIXELS, check_file_size, load_image
from ..methods import get_method
from ..render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, shorten, words_html
from ..words import WORD_REGISTRY
from .service import (
    CACHE_SECONDS, MAX_APP_PROMPTS, MAX_FORWARDS, METHOD_LABELS, TIME_LIMIT, Deadline, Janitor, Sessions, Stopped,
    allowed_models, check_forwards, check_view, concentration, concentration_figure, controls, family_class,
    family_sublayers, gallery_items, gpu_seconds, keep, method_choices, method_note_for, model_defaults, model_label,
    model_layers, parse_prompts, relative_layer, score_label, scores_dict, short_name, spaces_gpu, startup_model,
    sweep_picture,
)

log = logging.getLogger("clipcam.app.ui")
ASSETS = Path(__file__).resolve().parents[2] / "assets"

#: Example images shipped in assets/ with prompt sets that fit them.
EXAMPLES: list[tuple[str, str]] = [
    ("chelsea.png", "a photo of a cat.\na photo of a dog.\na photo of a dog and a cat."),
    ("astronaut.png", "a photo of an astronaut.\na photo of a flag.\na photo of a space shuttle.\na photo of a helmet."),
    ("coffee.png", "a cup of coffee.\na spoon.\na wooden table."),
    ("rocket.jpg", "a photo of a rocket.\na photo of a cloud.\na photo of a tree."),
]
#: Shapes-world scenes for the offline model, with prompts naming their objects.
SHAPES_EXAMPLES: list[tuple[str, str]] = [
    ("shapes/scene-1.png", "a photo of a red circle.\na photo of a blue square.\na photo of a green triangle."),
    ("shapes/scene-2.png", "a photo of a yellow square.\na photo of a red triangle.\na photo of a blue circle."),
    ("shapes/scene-3.png", "a photo of a green circle.\na photo of a yellow triangle."),
]

#: The word-relevance control: off, or a method that shades each prompt's words (clipcam.words).
WORD_CHOICES: list[tuple[str, str]] = [("Off", "off")] + [(m.label, m.name) for m in WORD_REGISTRY.values()]
DEFAULT_WORDS = "gradinput"  # the best measured on shapes world (BENCHMARKS.md, "Which words matter")

INTRO = """# clipcam — where does CLIP look?
Upload an image, type a few prompts (one per line), pick a model, a vision-encoder layer and a
sublayer, and press **Run**: one heatmap per prompt, with CLIP's softmax score over the prompts.
Methods: Grad-CAM and its family, Score-CAM, and the attention methods (Chefer relevance,
Grad-ECLIP, LeGrad); targets: the logit, or what favours a prompt over the others. Layers are
numbered from 1 (layer 11 of the base model is `encoder.layers[10]`).
Areas CLIP never saw (outside its centre crop) are dimmed."""


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
    """Turn expected errors into a gr.Error sentence (logged as one line); log and report anything
    unexpected with its traceback."""

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
            raise gr.Error(f"Something went wrong ({type(err).__name__}: {shorten(str(err), 200)}). Your inputs "
                           "are kept; please try again or pick other settings.") from None

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


def build_demo(models: Sequence[str] | None = None, device: str = "auto", half: bool = False,
               loader: Callable[..., Explainer] = load_explainer, max_pixels: int = MAX_PIXELS,
               max_forwards: int = MAX_FORWARDS, time_limit: float = TIME_LIMIT, sessions: int = 32,
               cache_seconds: int = CACHE_SECONDS) -> gr.Blocks:
    """Build the UI. ``models`` is the allowlist offered in the browser and accepted through the
    API (default: CLIPCAM_MODELS, else base, large and shapes); ``loader`` makes an Explainer from
    a name; images larger than ``max_pixels`` are refused before they are decoded; a Score-CAM
    request that needs more than ``max_forwards`` masked forward passes is refused; a request
    stops after ``time_limit`` seconds or when its page goes away. Results are kept for the
    ``sessions`` most recent sessions; gradio's cached files are deleted ``cache_seconds`` after
    they were made."""
    models = list(models or allowed_models())
    store = Sessions(sessions)
    janitor = Janitor(get_upload_folder(), cache_seconds)
    gpu = spaces_gpu()  # None unless the spaces package (Hugging Face Spaces) is importable
    all_sublayers = family_sublayers()  # the server accepts every family's names; the page narrows them

    def read_inputs(image, prompts_text, sublayer, target, method, colormap, alpha, decode: bool = True):
        """Check what every event shares (the HTTP API bypasses the widgets): (image, prompts, notes, colormap, alpha).
        The prompts are checked first: their length is bounded before anything else reads them.
        decode=False checks the image file's size from its header and hands the path on, so that the
        explainer decodes it once (its notes then come back on the result)."""
        prompts, prompt_notes = parse_prompts(prompts_text)
        if image is None:
            raise ValueError("No image: upload an image, paste one, or click an example.")
        check_choice(sublayer, all_sublayers, "sublayer")
        check_choice(target, TARGETS, "target")
        check_choice(method, list(METHODS), "method")
        colormap, alpha = check_view(colormap, alpha)
        if not decode:
            check_file_size(image, max_pixels)
            return image, prompts, prompt_notes, colormap, alpha
        image, notes = load_image(image, max_pixels=max_pixels)
        return image, prompts, notes + prompt_notes, colormap, alpha
    model_choices = [(model_label(m), m) for m in models]

    def explainer_for(name: str) -> Explainer:
        janitor.tidy()  # every request may sweep gradio's emptied cache folders (at most every cache_seconds / 2)
        check_choice(name, models, "model")
        return loader(name, device=device, half=half)

    def layers_of(name: str) -> int:
        try:
            return model_layers(name)
        except Exception:  # noqa: BLE001 - an unreachable config must not break the page
            return 12

    def notice_text(notes: Sequence[str], dead: str | None = None) -> str:
        lines = ([f"⚠️ **Dead sublayer.** {dead}"] if dead else []) + [f"ℹ️ {n}" for n in notes]
        return "\n\n".join(lines)

    def follow(progress, what: str):
        """A progress(done, total) callback for the explainer that moves the page's bar."""
        return lambda done, total: progress(done / total, desc=f"{what}: {done} of {total} masked images")

    def run_core(ex: Explainer, name: str, kind: str, image, prompts, deadline: Deadline, progress,
                 forwards: int, **options):
        """ex.explain or ex.sweep, checked against the deadline at every progress point; inside
        spaces.GPU on Hugging Face ZeroGPU (there the worker is a forked process, so the progress
        callbacks stay behind and ZeroGPU's duration bounds the time)."""
        deadline.check()
        if gpu is not None:
            result = gpu(gpu_seconds(forwards), name, device, half, kind, image, prompts, options)
        else:
            result = getattr(ex, kind)(image, prompts, progress=deadline.progress(progress), **options)
        deadline.check()
        return result

    @user_errors
    def explain(image, prompts_text, model, layer, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request, progress=gr.Progress()):
        deadline = Deadline(time_limit, client_alive())
        image, prompts, notes, colormap, alpha = read_inputs(image, prompts_text, sublayer, target, method,
                                                                colormap, alpha, decode=False)
        ex = explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer)
        check_forwards(forwards, max_forwards, 1, sublayer)
        res = run_core(ex, model, "explain", image, prompts, deadline, follow(progress, short_name(method)), forwards,
                       layer=layer, sublayer=sublayer, target=target, method=method)
        notes += list(res.notes)
        settings = {"model": model, "layer": res.layer, "sublayer": sublayer, "target": target, "method": method,
                    "dead": res.dead_reason}
        kept = keep(res, settings, notes)
        store.put(session_of(request), "explain", kept)
        gallery = gallery_items(kept, colormap, alpha, bool(shared))
        for note in ([res.dead_reason] if res.dead else []) + notes:
            gr.Warning(note)
        scores = {"prompts": list(res.prompts), "probs": [float(p) for p in res.probs],
                  "logits": [float(x) for x in res.logits], **settings, "seconds": round(res.seconds, 3)}
        return gallery, scores_dict(res), scores, notice_text(notes, res.dead_reason), None

    @user_errors
    def sweep(image, prompts_text, model, sublayer, target, method, colormap, alpha, shared,
              request: gr.Request, progress=gr.Progress()):
        deadline = Deadline(time_limit, client_alive())
        image, prompts, notes, colormap, alpha = read_inputs(image, prompts_text, sublayer, target, method,
                                                                colormap, alpha, decode=False)
        progress(0.05, desc="Loading the model")
        ex = explainer_for(model)
        forwards = ex.masked_forwards(method, sublayer, ex.num_layers)
        check_forwards(forwards, max_forwards, ex.num_layers, sublayer)
        progress(0.25, desc=f"One pass through all {ex.num_layers} layers")
        res = run_core(ex, model, "sweep", image, prompts, deadline,
                       follow(progress, f"{short_name(method)}, all layers"), forwards,
                       sublayer=sublayer, target=target, method=method)
        progress(0.7, desc="Drawing the grid")
        notes += list(res.notes)
        dead = [layer for layer, reason in zip(res.layers, res.dead_reasons) if reason]
        if dead:
            notes.append(f"Layer {', '.join(map(str, dead))}: {sublayer} cannot influence the score there "
                         "(its patch tokens never reach the CLS token), so its row is blank.")
        settings = {"model": model, "layers": list(res.layers), "sublayer": sublayer, "target": target,
                    "method": method}
        kept = keep(res, settings, notes)
        store.put(session_of(request), "sweep", kept)
        fig = concentration_figure(res.layers, res.prompts, concentration(res.grid_maps), res.probs)
        progress(1.0, desc="Done")
        return sweep_picture(kept, colormap, alpha, bool(shared)), fig, notice_text(notes), None

    @user_errors
    def compare(image, prompts_text, left, right, depth, sublayer, target, method, colormap, alpha, shared,
                request: gr.Request):
        deadline = Deadline(time_limit, client_alive())
        image, prompts, notes, colormap, alpha = read_inputs(image, prompts_text, sublayer, target, method,
                                                                colormap, alpha)
        depth = float(depth)
        if not 0.0 < depth <= 1.0:
            raise ValueError(f"Relative depth must be above 0 and at most 1; got {depth}.")
        sides = []  # (name, explainer, its own sublayer, why it cannot run)
        for name in (left, right):  # each side on its own: one that cannot run leaves the other working
            try:
                ex = explainer_for(name)
                own = sublayer if sublayer in ex.sublayers else ex.default_sublayer  # families name them differently
                ex.check_method(method)
                sides.append((name, ex, own, None))
            except ValueError as err:
                sides.append((name, None, None, err))
        runnable = [(ex, own) for _, ex, own, err in sides if err is None]
        forwards = sum(ex.masked_forwards(method, own) for ex, own in runnable)  # both models count together
        check_forwards(forwards, max_forwards, 1, sublayer, models=len(runnable))
        outputs, lines = [], []
        for side, (name, ex, own, err) in zip(("left", "right"), sides):
            if err is None:
                try:
                    layer = relative_layer(depth, ex.num_layers)
                    res = run_core(ex, name, "explain", image, prompts, deadline, None,
                                   ex.masked_forwards(method, own), layer=layer, sublayer=own, target=target,
                                   method=method)
                except ValueError as error:
                    err = error
            if err is not None:
                outputs += [[], {}]
                lines.append(f"**{name}**: ⚠️ {err}")
                continue
            kept = keep(res, {"model": name, "layer": layer, "sublayer": own, "target": target, "method": method},
                        notes)
            store.put(session_of(request), side, kept)
            outputs += [gallery_items(kept, colormap, alpha, bool(shared)), scores_dict(res)]
            noun = ex.adapter.layer_noun
            lines.append(f"**{name}**: {noun} {layer} of {ex.num_layers}"
                         + (f", sublayer {own}" if own != sublayer and get_method(method).reads != "attention" else "")
                         + f", {res.seconds:.2f} s" + (" (sigmoid scores)" if res.prob_kind == "sigmoid" else "")
                         + (f" — ⚠️ {res.dead_reason}" if res.dead else ""))
        return (*outputs, "\n\n".join(lines + [f"ℹ️ {n}" for n in notes]))

    def word_method(words: str) -> str | None:
        """The word method a request asks for, None for off (the HTTP API bypasses the dropdown)."""
        check_choice(words, [name for _, name in WORD_CHOICES], "word method")
        return None if words == "off" else words

    @user_errors
    def explain_words(image, prompts_text, model, sublayer, target, method, colormap, alpha, words):
        """Each prompt's words shaded by relevance, under the Explain tab's heatmaps ("" when off)."""
        name = word_method(words)
        if name is None:
            return ""
        image, prompts, _, colormap, _ = read_inputs(image, prompts_text, sublayer, target, method, colormap, alpha)
        relevance = explainer_for(model).words(image, prompts, method=name, target=target)
        return words_html(relevance, colormap, [p.prompt for p in relevance.prompts])

    @user_errors
    def compare_words(image, prompts_text, left, right, sublayer, target, method, colormap, alpha, words):
        """The same for both models of the Compare tab, each side on its own."""
        name = word_method(words)
        if name is None:
            return "", ""
        image, prompts, _, colormap, _ = read_inputs(image, prompts_text, sublayer, target, method, colormap, alpha)
        out = []
        for side in (left, right):
            try:
                relevance = explainer_for(side).words(image, prompts, method=name, target=target)
                out.append(words_html(relevance, colormap, [p.prompt for p in relevance.prompts]))
            except ValueError as err:
                out.append(f"<p>⚠️ {html_escape(str(err))}</p>")
        return tuple(out)

    @user_errors
    def restyle(colormap, alpha, shared, request: gr.Request):
        """Re-draw every kept result of this session with new display settings, without the model."""
        colormap, alpha = check_view(colormap, alpha)
        session = session_of(request)
        out = []
        for tab in ("explain", "sweep", "left", "right"):
            kept = store.get(session, tab)
            if kept is None:
                out.append(gr.update())
            elif tab == "sweep":
                out.append(sweep_picture(kept, colormap, alpha, bool(shared)))
            else:
                out.append(gallery_items(kept, colormap, alpha, bool(shared)))
        return tuple(out)

    def downloads_of(tab: str):
        @user_errors
        def downloads(colormap, alpha, shared, request: gr.Request):
            colormap, alpha = check_view(colormap, alpha)
            return store.downloads(session_of(request), tab, colormap, alpha, bool(shared))
        downloads.__name__ = f"{tab}_downloads"
        return downloads

    def forget(request: gr.Request):
        """The page was closed: drop its kept results and files."""
        store.drop(session_of(request))

    def layer_label(method_name: str, noun: str = "layer") -> str:
        return ("Start layer (from here to the last)" if method_name in ATTENTION_METHODS
                else f"{noun.capitalize()} (1 = closest to the pixels)")

    def about(model_name, method_name, sublayer_name) -> str:
        return method_note_for(model_name, method_name, sublayer_name) if method_name in METHODS else ""

    def on_method(model_name, name, sublayer_name):
        applies = controls(name)  # attention methods: no sublayer, the layer is a start; EigenCAM: no target
        return (gr.update(interactive=applies["sublayer"]), gr.update(interactive=applies["target"]),
                gr.update(label=layer_label(name, family_class(model_name).layer_noun), interactive=applies["layer"]),
                about(model_name, name, sublayer_name))

    def on_model(name):
        n = layers_of(name)
        layer0, sublayer0, target0, method0 = model_defaults(name, n)  # each model starts at its best settings
        family = family_class(name)
        choices, missing = method_choices(name)
        sublayers = list(family.sublayers)
        return (gr.update(maximum=n, value=layer0, label=layer_label(method0, family.layer_noun)),
                gr.update(choices=sublayers, value=sublayer0,
                          interactive=controls(method0)["sublayer"] and len(sublayers) > 1),
                gr.update(value=target0, interactive=controls(method0)["target"]),
                gr.update(choices=choices, value=method0),
                about(name, method0, sublayer0) + (f"\n\nℹ️ {missing}" if missing else ""),
                gr.update(label=score_label(family.prob_kind)))

    def on_load():
        """Start on the first model that can be loaded now (saying why when it is not the first
        choice), with the slider narrowed to that model and its own starting settings."""
        name, notice = startup_model(models)
        return (gr.update(value=name), notice, *on_model(name))

    with gr.Blocks(title="clipcam — where does CLIP look?", analytics_enabled=False,
                   delete_cache=(max(1, cache_seconds // 2), cache_seconds)) as demo:
        gr.Markdown(INTRO)
        startup_notice = gr.Markdown(elem_id="startup-notice")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                # image_mode=None: gradio hands over the upload as it is, clipcam.images reads every mode
                image = ImageInput(type="filepath", image_mode=None, label="Image",
                                   sources=["upload", "clipboard", "webcam"], height=300, elem_id="image")
                prompts = gr.Textbox(value=EXAMPLES[0][1], lines=4, max_lines=MAX_APP_PROMPTS + 2,
                                     label=f"Prompts — one per line, up to {MAX_APP_PROMPTS}", elem_id="prompts")
                model = Choice(model_choices, value=models[0], label="Model", elem_id="model")
                n0 = layers_of(models[0])
                layer0, sublayer0, target0, method0 = model_defaults(models[0], n0)
                # The server checks a slider against the maximum it was built with, whatever the page shows:
                # build it for the deepest model, let the page narrow it, and let the explainer check the rest.
                deepest = max(layers_of(m) for m in models)
                layer = gr.Slider(1, deepest, value=layer0, step=1, label=layer_label(method0), elem_id="layer")
                sublayer = Choice(all_sublayers, value=sublayer0, label="Sublayer",
                                       interactive=controls(method0)["sublayer"],
                                       info="block = the whole layer's output", elem_id="sublayer")
                target = Choice(list(TARGETS), value=target0, label="Target",
                                     info="logit: CLIP's score (as the reference); log_softmax / contrast: "
                                     "what favours this prompt over the others",
                                     interactive=controls(method0)["target"], elem_id="target")
                method = Choice([(METHOD_LABELS[m], m) for m in METHODS], value=method0, label="Method",
                                     elem_id="method")
                method_info = gr.Markdown(about(models[0], method0, sublayer0), elem_id="method-info")
                words = gr.Dropdown(WORD_CHOICES, value=DEFAULT_WORDS, label="Which words matter",
                                    info="each prompt's words shaded under the heatmaps (a text pass of its own); "
                                    "Off turns it off", elem_id="words")
                with gr.Accordion("Display", open=False):
                    colormap = Choice(list(COLORMAPS), value=DEFAULT_COLORMAP, label="Colour map", elem_id="colormap")
                    alpha = gr.Slider(0, 1, value=DEFAULT_ALPHA, step=0.05, label="Heatmap opacity")
                    shared = gr.Checkbox(False, label="One colour scale for all prompts (compare strengths)")
                    gr.Markdown("These redraw the results on the page at once, without running the model again.")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Explain"):
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        notice = gr.Markdown(elem_id="notice")
                        gallery = gr.Gallery(label="Heatmaps, one per prompt", columns=3, height="auto",
                                             object_fit="contain", format="jpeg", elem_id="gallery")
                        words_out = gr.HTML(elem_id="words-explain")
                        label = gr.Label(label="CLIP's softmax over the prompts", num_top_classes=MAX_APP_PROMPTS,
                                         elem_id="scores")
                        scores = gr.JSON(label="Scores and settings", visible=False)
                        files_btn = gr.Button("Prepare downloads: grid.png, scores.json, heatmaps.npz", size="sm",
                                              elem_id="downloads")
                        files = gr.File(label="Downloads", file_count="multiple", elem_id="files")
                    with gr.Tab("Layer sweep"):
                        gr.Markdown("Every layer × every prompt from one forward pass (Score-CAM adds its "
                                    "masked forwards for every layer). Rows are layers (1 at the top; the "
                                    "start layer for attention methods), columns are prompts.")
                        sweep_btn = gr.Button("Sweep all layers", variant="primary", elem_id="sweep")
                        sweep_notice = gr.Markdown()
                        sweep_img = gr.Image(type="pil", label="Layers × prompts", interactive=False)
                        sweep_plot = gr.Plot(label="Concentration per layer")
                        sweep_files_btn = gr.Button("Prepare downloads", size="sm")
                        sweep_files = gr.File(label="Downloads", file_count="multiple")
                    with gr.Tab("Compare models"):
                        with gr.Row():
                            left = Choice(model_choices, value=models[0], label="Left model")
                            right = Choice(model_choices, value=models[-1], label="Right model")
                        depth = gr.Slider(0.05, 1.0, value=0.9, step=0.05,
                                          label="Relative depth (0.9 = layer 11 of 12, layer 22 of 24)")
                        compare_btn = gr.Button("Compare", variant="primary")
                        compare_notice = gr.Markdown()
                        with gr.Row():
                            with gr.Column():
                                left_gallery = gr.Gallery(label="Left", columns=2, height="auto", format="jpeg")
                                left_words = gr.HTML(elem_id="words-left")
                                left_label = gr.Label(label="Left scores")
                            with gr.Column():
                                right_gallery = gr.Gallery(label="Right", columns=2, height="auto", format="jpeg")
                                right_words = gr.HTML(elem_id="words-right")
                                right_label = gr.Label(label="Right scores")
        gr.Examples([[str(ASSETS / name), text] for name, text in EXAMPLES if (ASSETS / name).exists()],
                    inputs=[image, prompts], label="Photos (public domain / CC0, see assets/ATTRIBUTION.md)")
        if "shapes" in models:
            gr.Examples([[str(ASSETS / name), text] for name, text in SHAPES_EXAMPLES if (ASSETS / name).exists()],
                        inputs=[image, prompts], label="Shapes-world scenes (for the offline shapes model)")

        model.change(on_model, model, [layer, sublayer, target, method, method_info, label], api_name=False)
        demo.load(on_load, None, [model, startup_notice, layer, sublayer, target, method, method_info, label],
                  api_name=False)
        method.change(on_method, [model, method, sublayer], [sublayer, target, layer, method_info], api_name=False)
        sublayer.change(about, [model, method, sublayer], method_info, api_name=False)
        view = [colormap, alpha, shared]
        run.click(explain, [image, prompts, model, layer, sublayer, target, method, *view],
                  [gallery, label, scores, notice, files], api_name="explain"
                  ).success(explain_words, [image, prompts, model, sublayer, target, method, colormap, alpha, words],
                            words_out, api_name="explain_words")
        sweep_btn.click(sweep, [image, prompts, model, sublayer, target, method, *view],
                        [sweep_img, sweep_plot, sweep_notice, sweep_files], api_name="sweep")
        compare_btn.click(compare, [image, prompts, left, right, depth, sublayer, target, method, *view],
                          [left_gallery, left_label, right_gallery, right_label, compare_notice], api_name="compare"
                          ).success(compare_words, [image, prompts, left, right, sublayer, target, method, colormap,
                                                    alpha, words], [left_words, right_words], api_name="compare_words")
        words.change(lambda w: ("", "", "") if w == "off" else (gr.update(),) * 3, words,
                     [words_out, left_words, right_words], api_name=False)
        shown = [gallery, sweep_img, left_gallery, right_gallery]
        colormap.change(restyle, view, shown, api_name="restyle", show_progress="hidden", trigger_mode="always_last")
        alpha.release(restyle, view, shown, api_name=False, show_progress="hidden", trigger_mode="always_last")
        shared.change(restyle, view, shown, api_name=False, show_progress="hidden", trigger_mode="always_last")
        files_btn.click(downloads_of("explain"), view, files, api_name="downloads")
        sweep_files_btn.click(downloads_of("sweep"), view, sweep_files, api_name="sweep_downloads")
        demo.unload(forget)
    return demo
