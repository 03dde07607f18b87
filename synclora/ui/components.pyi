"""Gradio components that check what they receive before Gradio itself decodes it.

Gradio opens every uploaded image with Pillow while preparing the event's inputs, before our function runs: a
decompression bomb (a small PNG that decodes to 30000×30000, a JPEG header claiming 65000×65000) would fail there
with a generic error, or be decoded in full. `CheckedImage` reads the header first and answers with our sentence.
"""

from __future__ import annotations

import gradio as gr

from synclora.errors import SyncloraError, user_error
from synclora.ui.glue import sentence

from gradio.events import Dependency

class CheckedImage(gr.Image):
    """`gr.Image` (same widget, same API) whose uploads are checked by `edit.image.check_image` first."""

    def get_block_name(self) -> str:  # the browser renders it as the ordinary image component
        return "image"

    def preprocess(self, payload):
        from synclora.edit.image import check_image

        try:
            if payload is not None and getattr(payload, "path", None):
                check_image(payload.path, "image")
            value = super().preprocess(payload)
            if isinstance(value, str):  # e.g. pasted from the clipboard: written to a file just now
                check_image(value, "image")
            return value
        except gr.Error:
            raise
        except Exception as exc:
            error = exc if isinstance(exc, SyncloraError) else user_error(exc)
            if error is None:
                raise
            raise gr.Error(sentence(str(error)), print_exception=False) from None
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component