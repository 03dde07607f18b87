"""What the served API takes before Gradio handles it: a size for every request body, and a type for every value.

Why here: a visitor of the page sends what the widgets make, but an API caller sends any JSON. Gradio validates a
value only inside the component that reads it, and answers a wrong type (a string where a number belongs, a list
where a file belongs) with its generic "error" and a traceback in the log; a 100 MiB text value costs the server
about 1 GB and was echoed back inside the error. So:

- `BodyLimit` (ASGI middleware) refuses any request body over `limits.MAX_REQUEST_BYTES` (uploads: the upload cap)
  with 413 and one sentence, counted as the bytes arrive, so nothing unbounded is ever held or parsed.
- `check_inputs` checks each value of an event against the component it is for — a file for a file, a number in
  the widget's range (the settings' documented bounds, `synclora.config`), a listed choice, text of bounded length —
  and answers with one sentence that quotes at most a few characters of what was sent (`errors.brief`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import gradio as gr

from synclora import limits
from synclora.errors import brief


# --------------------------------------------------------------------------------------------------- body size
class BodyLimit:
    """ASGI middleware: at most `max_bytes` of body per request (`upload_bytes` on Gradio's upload route)."""

    def __init__(self, app, max_bytes: int = limits.MAX_REQUEST_BYTES, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.upload_bytes = int(upload_bytes) if upload_bytes is not None else self.max_bytes

    def _cap(self, path: str) -> int:
        return self.upload_bytes if path.rstrip("/").endswith("/upload") else self.max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _too_large(send, cap)
            return
        seen = 0
        refused = False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    refused = True
                    raise _BodyTooLarge
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, cap)
        except Exception:
            if not refused:  # an exception a reader raised after our refusal is the refusal's
                raise
            if not started:
                await _too_large(send, cap)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, cap: int) -> None:
    body = json.dumps({"error": f"The request is larger than this server accepts ({_size(cap)})."}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB" if n >= 1024**2 else f"{n / 1024:.0f} KiB"


# --------------------------------------------------------------------------------------------------- values
def _label(block) -> str:
    return str(getattr(block, "label", None) or type(block).__name__).strip().rstrip(":")


def _is_file_payload(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path") or value.get("url"), str)


def _number(block, value: Any) -> Any:
    lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
    what = _label(block)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise gr.Error(f"{what} must be a number, got {brief(value)}.", print_exception=False)
    if isinstance(value, str):
        try:
            text = value.strip()
            value = int(text) if text.lstrip("+-").isdigit() else float(text)  # big seeds stay exact
        except ValueError:
            raise gr.Error(f"{what} must be a number, got {brief(value)}.", print_exception=False) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise gr.Error(f"{what} must be a finite number, got {value}.", print_exception=False)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise gr.Error(f"{what} must be from {lo:g} to {hi:g}, got {brief(value)}.", print_exception=False)
    return value


def check_value(block, value: Any) -> Any:
    """`value` as the component `block` takes it (a numeric string becomes its number), or a `gr.Error` sentence."""
    if value is None:  # "not given": a slider (which cannot take None) keeps its default
        return getattr(block, "value", None) if isinstance(block, gr.Slider) else None
    what = _label(block)
    if getattr(block, "data_model", None) is not None and isinstance(
            block, (gr.Video, gr.Image, gr.File, gr.Audio, gr.Model3D)):
        if isinstance(block, gr.File) and block.file_count != "single" and isinstance(value, list):
            if not all(_is_file_payload(v) for v in value):  # several files (the keyframe images)
                raise gr.Error(f"{what} must be files (from Python, pass a list of gradio_client.handle_file(path)), "
                               f"got {brief(value)}.", print_exception=False)
            return value
        if not _is_file_payload(value):
            raise gr.Error(f"{what} must be a file (upload it; from Python, pass gradio_client.handle_file(path)), "
                           f"got {brief(value)}.", print_exception=False)
        return value
    if isinstance(block, (gr.Slider, gr.Number)):
        return _number(block, value)
    if isinstance(block, (gr.Radio, gr.Dropdown)) and not getattr(block, "allow_custom_value", False) \
            and not getattr(block, "multiselect", False):
        allowed = [v for _, v in block.choices]
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value not in allowed:
            raise gr.Error(f"{what} must be one of: {', '.join(map(str, allowed))}; got {brief(value)}.",
                           print_exception=False)
        return value
    if isinstance(block, gr.Textbox):
        if not isinstance(value, str):
            raise gr.Error(f"{what} must be text, got {brief(value)}.", print_exception=False)
        if len(value) > limits.MAX_TEXT_CHARS:
            raise gr.Error(f"{what} is {len(value)} characters long; at most {limits.MAX_TEXT_CHARS} are taken.",
                           print_exception=False)
        return value
    if isinstance(block, gr.Checkbox) and not isinstance(value, bool):
        raise gr.Error(f"{what} must be true or false, got {brief(value)}.", print_exception=False)
    return value


def check_inputs(demo: gr.Blocks) -> gr.Blocks:
    """Make every event of `demo` check its values (`check_value`) before Gradio processes them: this instance's
    `preprocess_data` is wrapped (one place, whatever event an API caller picks)."""
    original: Callable = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, *args, **kwargs):
        blocks = list(block_fn.inputs)
        if len(inputs) < len(blocks):
            raise gr.Error(f"This call takes {len(blocks)} values ({', '.join(_label(b) for b in blocks)}); "
                           f"{len(inputs)} were sent.", print_exception=False)
        props = getattr(block_fn, "component_prop_inputs", ()) or ()

        def current(b):  # the session's own copy when an update changed it (e.g. a slider's range set per clip)
            return state[b._id] if state is not None and b._id in state else b

        inputs = [v if i in props or getattr(b, "stateful", False) else check_value(current(b), v)
                  for i, (b, v) in enumerate(zip(blocks, inputs))] + list(inputs[len(blocks):])
        return await original(block_fn, inputs, state, *args, **kwargs)

    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]
    return demo
