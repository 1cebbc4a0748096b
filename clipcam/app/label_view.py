"""The Explain tab's label-map view (gradio): a threshold, the sliding-window switch, the picture,
its legend (each prompt's colour and "none") and the downloads; the work is clipcam.app.labels'.
Its own module so that the layout gains one call (``add_label_view``) and the handlers none."""

from __future__ import annotations

from typing import Callable

import gradio as gr

from .handlers import Handlers, client_alive, on_page, session_of, user_errors
from .labels import show_labels

ABOUT = ("Every pixel coloured by the prompt that wins it, *none* where the winner is below the background "
         "threshold. Dense methods use their authors' softmax over the prompts at their own logit scale and "
         "threshold; the other methods scale each map min–max as shown and call *none* what is below 0.5 of its "
         "peak. The raw maps and the downloads above are not changed.")


def label_map_handler(app: Handlers) -> Callable:
    """(picture, legend, files, notice) of the session's Explain result."""
    def label_map(prob_thd, slide, image, request: gr.Request = None):
        shown = show_labels(app.service, session_of(request), prob_thd, slide, image, alive=client_alive())
        return shown.picture, shown.legend, shown.files, ""
    return label_map


def add_label_view(app: Handlers, image: gr.components.Component) -> None:
    """Lay out the label-map view where it is called (inside the Explain tab) and wire it."""
    with gr.Accordion("Label map: which prompt wins each pixel", open=False, elem_id="label-map-view"):
        gr.Markdown(ABOUT)
        with gr.Row():
            thd = gr.Textbox(label="Background threshold, 0..1 (empty: the method's own)", value="",
                             elem_id="label-thd")
            slide = gr.Checkbox(label="Sliding window (dense methods: their authors' crops, one forward each)",
                                value=False, elem_id="label-slide")
        button = gr.Button("Draw the label map", size="sm", elem_id="label-map")
        notice = gr.Markdown(elem_id="label-notice")
        legend = gr.HTML(elem_id="label-legend")
        picture = gr.Image(type="pil", show_label=False, interactive=False, format="png", elem_id="label-image")
        files = gr.File(label="Downloads: label-map.png, labels.npz", file_count="multiple", elem_id="label-files")
        api = gr.Button("label_map", visible=False)
    handler = label_map_handler(app)
    outputs = [picture, legend, files, notice]
    button.click(on_page(handler, len(outputs), 3), [thd, slide, image], outputs, api_name=False)
    api.click(user_errors(handler), [thd, slide, image], outputs, api_name="label_map")
