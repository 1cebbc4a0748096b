"""clipcam's two gradio component subclasses, alone in a module: gradio writes a ``.pyi`` stub
beside the module that defines a component, and this keeps that stub small."""

from __future__ import annotations

import logging

import gradio as gr

from ..render import shorten

log = logging.getLogger("clipcam.app")


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
