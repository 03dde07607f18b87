"""Turn what `gr.ImageEditor` returns into one RGB frame of exactly the source frame's size.

The editor hands back a dict (`background`, `layers`, `composite`) whose arrays may be RGBA, may have lost the
background (the user cleared it) or, if someone dropped another picture on the canvas, may not be the frame's size.
Propagation needs the frame itself with the user's strokes on top, pixel for pixel, so we rebuild it here instead of
trusting any single field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from synclora.errors import InputError

# Fewer changed pixels than this (fraction of the frame) means the user has not drawn anything yet.
MIN_CHANGED_FRACTION = 1e-4


def editor_value(frame: np.ndarray) -> dict[str, Any]:
    """The value that opens `gr.ImageEditor` on `frame` with no strokes (one empty layer to paint on)."""
    _check_frame(frame)
    h, w = frame.shape[:2]
    return {"background": frame, "layers": [np.zeros((h, w, 4), np.uint8)], "composite": frame}


def compose(value: Mapping[str, Any] | None, frame: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Flatten the editor's layers over `frame`; returns (H, W, 3) uint8 RGB at the frame's size and notices.

    Transparent pixels show the frame, not white: erasing a stroke gives the frame back.
    """
    _check_frame(frame)
    if not value:
        raise InputError("the editor is empty; pick a frame first, then draw on it")
    h, w = frame.shape[:2]
    notices: list[str] = []
    layers = [np.asarray(x) for x in (value.get("layers") or []) if x is not None]
    background = value.get("background")
    composite = value.get("composite")
    if layers or background is not None:
        base = frame if background is None else _rgba(np.asarray(background))
        out = _fit_to(base, w, h, "background", notices)
        out = _rgba(out)
        for layer in layers:
            out = _over(out, _fit_to(_rgba(layer), w, h, "a layer", notices))
        rgb = _over(_rgba(frame), out)[..., :3]
    elif composite is not None:
        rgb = _over(_rgba(frame), _fit_to(_rgba(np.asarray(composite)), w, h, "the canvas", notices))[..., :3]
    else:
        raise InputError("the editor is empty; pick a frame first, then draw on it")
    return np.ascontiguousarray(rgb, dtype=np.uint8), notices


def changed_fraction(edited: np.ndarray, frame: np.ndarray, threshold: int = 8) -> float:
    """Share of pixels whose largest channel difference exceeds `threshold` (0..1)."""
    if edited.shape != frame.shape:
        raise ValueError(f"shapes differ: {edited.shape} vs {frame.shape}")
    diff = np.abs(edited.astype(np.int16) - frame.astype(np.int16)).max(axis=-1)
    return float((diff > threshold).mean())


def require_change(edited: np.ndarray, frame: np.ndarray) -> None:
    """Raise a user error when the edit leaves the frame as it was (nothing would be propagated)."""
    if changed_fraction(edited, frame) < MIN_CHANGED_FRACTION:
        raise InputError("the edited frame is the same as the original; draw, instruct or upload a change first")


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {getattr(frame, 'shape', type(frame))}")


def _rgba(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.dtype.kind == "f" and a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if a.shape[2] != 4:
        raise InputError(f"the editor returned an image with {a.shape[2]} channels; expected RGB or RGBA")
    return a


def _fit_to(a: np.ndarray, w: int, h: int, what: str, notices: list[str]) -> np.ndarray:
    if a.shape[:2] == (h, w):
        return a
    notice = f"{what} was {a.shape[1]}×{a.shape[0]} and was resized to the frame's {w}×{h}"
    if notice not in notices:
        notices.append(notice)
    mode = "RGBA" if a.ndim == 3 and a.shape[2] == 4 else "RGB"
    return np.asarray(Image.fromarray(a, mode).resize((w, h), Image.Resampling.LANCZOS))


def _over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' for straight-alpha RGBA uint8 arrays."""
    ta = top[..., 3:4].astype(np.float32) / 255.0
    ba = bottom[..., 3:4].astype(np.float32) / 255.0
    out_a = ta + ba * (1.0 - ta)
    rgb = top[..., :3].astype(np.float32) * ta + bottom[..., :3].astype(np.float32) * ba * (1.0 - ta)
    rgb = np.where(out_a > 0, rgb / np.maximum(out_a, 1e-6), 0.0)
    return np.concatenate([np.clip(rgb + 0.5, 0, 255), np.clip(out_a * 255.0 + 0.5, 0, 255)], axis=2).astype(np.uint8)
