"""The Heads tab's gradio components and events (its plain logic: clipcam.app.heads). Called by
clipcam.app.layout.build_demo inside the page's tabs, with the sidebar's components it reads."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .handlers import Handlers, on_page, session_of, user_errors
from .heads import HeadsShown, HeadsTab, read_heads_query, share_heads
from .inputs import share_query

ABOUT = ("Each prompt's score split exactly into one term per layer and head, one per MLP and one for the "
         "embeddings (Gandelsman et al., ICLR 2024), from one forward pass: red cells raise the score, blue ones "
         "lower it. Click a head to see which patches it reads the score from.")


def grid_value(shown: HeadsShown):
    """The grid as a styled table: each cell coloured by its signed contribution."""
    frame = pd.DataFrame(shown.rows, columns=shown.header)
    colours = pd.DataFrame(shown.colours, columns=shown.header)
    return frame.style.apply(lambda _: colours, axis=None).format(precision=3, subset=shown.header[1:])


def outputs_of(shown: HeadsShown) -> tuple:
    """(prompt choice, grid, terms, top heads, picture, notice, prompt state, cell state)."""
    choices = [(f"{i}. {p}", i) for i, p in enumerate(shown.prompts, 1)]
    cell = None if shown.cell is None else f"{shown.cell[0]}.{shown.cell[1]}"
    return (gr.update(choices=choices, value=shown.prompt), grid_value(shown), shown.terms, shown.top,
            shown.picture, shown.notice, shown.prompt, cell)


def heads_tab(app: Handlers, demo: gr.Blocks, tabs: gr.Tabs, image, prompts, model, example_key, colormap,
              alpha) -> None:
    """Lay out the Heads tab (inside ``tabs``) and wire its events to the sidebar's inputs."""
    tab = HeadsTab(app.service)
    with gr.Tab("Heads", id="heads", elem_id="heads-tab"):
        gr.Markdown(ABOUT)
        run = gr.Button("Decompose", variant="primary", elem_id="heads-run")
        notice = gr.Markdown(elem_id="heads-notice")
        prompt = gr.Dropdown([], label="Prompt", elem_id="heads-prompt", interactive=True)
        terms = gr.Markdown(elem_id="heads-terms")
        grid = gr.Dataframe(interactive=False, elem_id="heads-grid", label="Contribution to the logit: layer × head, "
                            "and each layer's MLP")
        with gr.Row():
            picture = gr.Image(type="pil", label="The chosen head on the image", interactive=False,
                               elem_id="heads-map")
            top = gr.Markdown(elem_id="heads-top")
        with gr.Accordion("Link to this view", open=False):
            link_btn = gr.Button("Make a link", size="sm", elem_id="heads-share")
            link = gr.Textbox(label="Link", interactive=False, buttons=["copy"], elem_id="heads-link")
        wanted_prompt, wanted_cell = gr.State(1), gr.State(None)
        api = gr.Button("heads", visible=False)  # the HTTP API's endpoint

    def decompose(image, prompts_text, model, prompt, cell, colormap, alpha, request: gr.Request = None):
        return outputs_of(tab.decompose(session_of(request), image, prompts_text, model, prompt, cell, colormap, alpha))

    def show(prompt, cell, colormap, alpha, request: gr.Request = None):
        return outputs_of(tab.show(session_of(request), prompt, cell, colormap, alpha))

    def pick(prompt, colormap, alpha, evt: gr.SelectData, request: gr.Request = None):
        row, col = evt.index
        if col == 0:
            raise ValueError("Click a head's cell (not the layer's name) to see its map.")
        try:
            return show(prompt, f"{row + 1}.{col}", colormap, alpha, request)
        except ValueError as err:
            if "head from 1 to" in str(err):  # the MLP column
                raise ValueError("An MLP's term has no map: it acts on the class token alone. Click a head.") from None
            raise

    def restyle(prompt, cell, colormap, alpha, request: gr.Request = None):
        try:
            return show(prompt, cell, colormap, alpha, request)
        except ValueError:  # nothing kept yet: the display settings wait for the next run
            return tuple(gr.update() for _ in range(8))

    def share(example, model, colormap, alpha, prompt, cell, request: gr.Request = None) -> str:
        base = (request.headers.get("referer") or "").split("?")[0] if request is not None else ""
        query = share_query({"example": example, "model": model, "colormap": colormap, "alpha": alpha})
        return f"{base}?{share_heads(query, prompt, cell)}"

    def on_load(request: gr.Request = None):
        query = dict(request.query_params) if request is not None and request.query_params else {}
        wanted = read_heads_query(query)
        if not wanted:
            return gr.update(), 1, None
        return gr.Tabs(selected="heads"), wanted.get("prompt", 1), wanted.get("cell")

    out = [prompt, grid, terms, top, picture, notice, wanted_prompt, wanted_cell]
    view = [colormap, alpha]
    run.click(lambda: "⏳ Working…", None, notice, queue=False, api_name=False).then(
        on_page(decompose, len(out), 5), [image, prompts, model, wanted_prompt, wanted_cell, *view], out,
        api_name=False)
    prompt.input(on_page(show, len(out), 5), [prompt, wanted_cell, *view], out, api_name=False)
    grid.select(on_page(pick, len(out), 5), [wanted_prompt, *view], out, api_name=False)
    colormap.change(restyle, [wanted_prompt, wanted_cell, *view], out, api_name=False, show_progress="hidden")
    alpha.release(restyle, [wanted_prompt, wanted_cell, *view], out, api_name=False, show_progress="hidden")
    link_btn.click(share, [example_key, model, *view, wanted_prompt, wanted_cell], link, api_name=False, queue=False)
    demo.load(on_load, None, [tabs, wanted_prompt, wanted_cell], api_name=False)
    api.click(user_errors(decompose), [image, prompts, model, wanted_prompt, wanted_cell, *view], out,
              api_name="heads")
