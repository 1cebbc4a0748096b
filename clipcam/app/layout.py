"""The page's layout: gradio components and events only. ``build_demo(...) -> gr.Blocks`` lays out
the components and wires each event to a handler (clipcam.app.handlers), which calls the plain
service (clipcam.app.service) and maps its result onto the components; ``app.py`` launches it."""

from __future__ import annotations

import functools
import json
from typing import Callable, Sequence

import gradio as gr
from gradio.utils import get_upload_folder

from ..constants import TARGETS
from ..explainer import Explainer, load_explainer
from ..images import MAX_PIXELS
from ..methods import METHODS
from ..prompts import MAX_APP_PROMPTS
from ..render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP
from .choices import (
    DEFAULT_WORDS, METHOD_LABELS, WORD_CHOICES, compare_partner, controls, family_sublayers, layer_label, model_defaults,
    model_label,
)
from .components import Choice, ImageInput
from .examples import EXAMPLE_KINDS, EXAMPLES, example_order
from .handlers import Handlers, blank_on_error, on_page, user_errors
from .heads_layout import heads_tab
from .inputs import MAX_FORWARDS
from .label_view import add_label_view
from .page import CSS, HOW_TO_READ, INTRO, ON_LOAD_JS, legend_html
from .server import CACHE_SECONDS, TIME_LIMIT
from .service import Service
from .settings import GROUPS, app_precision, precision_line


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
               cache_seconds: int = CACHE_SECONDS, precision: str | None = None) -> gr.Blocks:
    """The layout, wired to the handlers of one Service. ``models`` is the allowlist offered in the browser and
    accepted through the API (default: CLIPCAM_MODELS, else the short names); ``loader`` makes an
    Explainer from a name; images larger than ``max_pixels`` are refused before they are decoded; a
    Score-CAM request that needs more than ``max_forwards`` masked forward passes is refused; a
    request stops after ``time_limit`` seconds or when its page goes away. Results are kept for the
    ``sessions`` most recent sessions; gradio's cached files are deleted ``cache_seconds`` after
    they were made. ``precision``: the models' number format (default: CLIPCAM_PRECISION, else auto)."""
    precision = "fp16" if half else app_precision(precision)
    app = Handlers(Service(models, device, half, loader, max_pixels, max_forwards, time_limit, sessions,
                           cache_seconds, cache_folder=get_upload_folder(), precision=precision))
    models = app.models
    model_choices = [(model_label(m), m) for m in models]
    first = models[0]
    n0 = app.service.layers_of(first)
    layer0, sublayer0, target0, method0 = model_defaults(first, n0)
    all_sublayers = family_sublayers()  # the server accepts every family's names; the page narrows them

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
                    for slot, kind in GROUPS:
                        visible = example_order(first)[slot] == kind
                        with gr.Column(visible=visible, elem_classes=["example-group"],
                                       elem_id=f"examples-{slot}-{kind}") as group:
                            gr.Markdown(f"**{EXAMPLE_KINDS[kind]}**")
                            with gr.Row():
                                buttons = example_buttons(kind)
                        groups.append((group, buttons))
                model = Choice(model_choices, value=first, label="Model", elem_id="model")
                model_notice = gr.Markdown(elem_id="model-notice")
                gr.Markdown(precision_line(precision, device), elem_id="precision")
                # The server checks a slider against the maximum it was built with, whatever the page shows:
                # build it for the deepest model, let the page narrow it, and let the explainer check the rest.
                deepest = max(app.service.layers_of(m) for m in models)
                layer = gr.Slider(1, deepest, value=layer0, step=1, label=layer_label(method0), elem_id="layer")
                sublayer = Choice(all_sublayers, value=sublayer0, label="Sublayer",
                                  interactive=controls(method0)["sublayer"],
                                  info="block = the whole layer's output", elem_id="sublayer")
                target = Choice(list(TARGETS), value=target0, label="Target",
                                info="logit: the model's score (as the reference); log_softmax / contrast: "
                                "what favours this prompt over the others",
                                interactive=controls(method0)["target"], elem_id="target")
                method = Choice([(METHOD_LABELS[m], m) for m in METHODS], value=method0, label="Method",
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
                with gr.Tabs() as tabs:
                    with gr.Tab("Explain"):
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        notice = gr.Markdown(elem_id="notice")
                        legend = gr.HTML(legend_html(DEFAULT_COLORMAP), elem_id="legend")
                        gallery = gr.Gallery(show_label=False, columns=3, height="auto", object_fit="contain",
                                             format="jpeg", elem_id="gallery", preview=False)
                        words_out = gr.HTML(elem_id="words-explain")
                        scores_box = gr.HTML(elem_id="scores")
                        record = gr.JSON(label="Scores and settings", visible=False)
                        files_btn = gr.Button("Prepare downloads: grid.png, scores.json, heatmaps.npz", size="sm",
                                              elem_id="downloads")
                        files = gr.File(label="Downloads", file_count="multiple", elem_id="files",
                                        elem_classes=["downloads"])
                        add_label_view(app, image)
                    with gr.Tab("Layer sweep"):
                        gr.Markdown("Every layer × every prompt from one pass through the model (Score-CAM adds "
                                    "its masked forwards for every layer; a deep model is gone back through one "
                                    "layer at a time, which keeps memory small). Rows are layers (1 at the top; the "
                                    "start layer for attention methods), columns are prompts, named at the top.")
                        sweep_btn = gr.Button("Sweep all layers", variant="primary", elem_id="sweep")
                        sweep_notice = gr.Markdown(elem_id="sweep-notice")
                        sweep_legend = gr.HTML(legend_html(DEFAULT_COLORMAP), elem_id="sweep-legend")
                        sweep_img = gr.Image(type="pil", show_label=False, interactive=False, elem_id="sweep-image")
                        sweep_plot = gr.Plot(label="Concentration per layer")
                        sweep_files_btn = gr.Button("Prepare downloads", size="sm", elem_id="sweep-downloads")
                        sweep_files = gr.File(label="Downloads", file_count="multiple", elem_classes=["downloads"])
                    with gr.Tab("Compare models"):
                        with gr.Row():
                            left = Choice(model_choices, value=first, label="Left model", elem_id="left-model")
                            right0 = compare_partner(first, models)
                            right = Choice(model_choices, value=right0, label="Right model", elem_id="right-model")
                        depth = gr.Slider(0.05, 1.0, value=0.9, step=0.05, elem_id="depth",
                                          label=app.settings.depth_label(0.9, first, right0))
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
                    heads_tab(app, demo, tabs, image, prompts, model, example_key, colormap, alpha)

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
        for picker in (left, right):  # the depth label follows the two models; one that cannot load says why
            picker.change(app.on_compare_models, [left, right, depth], [depth, compare_notice], api_name=False)
        depth.release(app.on_depth, [left, right, depth], depth, api_name=False, queue=False)
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
    # the janitor keeps the examples and defaults gradio keeps, and forgets what it deletes in gradio's sets
    app.janitor.watch(lambda: set().union(*(getattr(b, "keep_in_cache", ()) for b in list(demo.blocks.values()))),
                      lambda: list(demo.temp_file_sets))
    demo.clipcam_app = app  # tests reach the handlers through it
    return demo
