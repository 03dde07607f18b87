"""Gradio components that check what they receive before Gradio itself decodes it.

Gradio opens every uploaded image with Pillow while preparing the event's inputs, before our function runs: a
decompression bomb (a small PNG that decodes to 30000×30000, a JPEG header claiming 65000×65000) would fail there
with a generic error, or be decoded in full. `checked_image` reads the header first and answers with our sentence.
"""

from __future__ import annotations

import gradio as gr

from synclora.errors import shown, user_error
from synclora.ui.common import sentence


def checked_image(**kwargs) -> gr.Image:
    """A `gr.Image` (the same widget and API) whose uploads go through `edit.image.check_image` before Gradio's own
    preprocessing. Pass `image_mode=None` with `type="filepath"` so Gradio hands the file over without decoding it.

    The check wraps this one instance's `preprocess` (a subclass would make Gradio write a .pyi stub into the
    package at import time)."""
    image = gr.Image(**kwargs)
    original = image.preprocess

    def preprocess(payload):
        from synclora.edit.image import check_image

        try:
            if payload is not None and getattr(payload, "path", None):
                check_image(payload.path, "image")
            value = original(payload)
            if isinstance(value, str):  # e.g. pasted from the clipboard: written to a file just now
                check_image(value, "image")
            return value
        except gr.Error:
            raise
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            raise gr.Error(sentence(shown(str(error))), print_exception=False) from None

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image
