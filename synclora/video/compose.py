"""Composing frames for people: source and result side by side at the same height, each labelled; the source
blended into the result where an edit fades in or out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from synclora.limits import viewing_size


def side_by_side(
    left: Iterable[np.ndarray],
    right: Iterable[np.ndarray],
    labels: tuple[str, str] = ("source", "result"),
    *,
    gap: int = 4,
    max_side: int | None = None,
) -> Iterator[np.ndarray]:
    """Frames with `left` and `right` next to each other (`side_by_side_frame`), pair by pair."""
    li, ri = iter(left), iter(right)
    i = 0
    while True:
        a = next(li, None)
        b = next(ri, None)
        if a is None and b is None:
            return
        if a is None or b is None:
            raise ValueError(f"side_by_side: the {'left' if a is None else 'right'} clip ended at frame {i}")
        yield side_by_side_frame(a, b, labels, gap=gap, max_side=max_side)
        i += 1


def side_by_side_frame(a: np.ndarray, b: np.ndarray, labels: tuple[str, str] = ("source", "result"), *,
                       gap: int = 4, max_side: int | None = None) -> np.ndarray:
    """`a` and `b` next to each other at the same height, each with a small label; `max_side`: both shrunk so that
    neither is longer than that (`viewing_size`)."""
    h = max(a.shape[0], b.shape[0])
    if max_side is not None:
        h = min(h, *(viewing_size(f.shape[1], f.shape[0], max_side)[1] for f in (a, b)))
    a, b = _to_height(a, h), _to_height(b, h)
    canvas = np.zeros((h, a.shape[1] + gap + b.shape[1], 3), np.uint8)
    canvas[:, : a.shape[1]] = a
    canvas[:, a.shape[1] + gap:] = b
    _label(canvas, labels[0], 0)
    _label(canvas, labels[1], a.shape[1] + gap)
    return canvas


def _to_height(img: np.ndarray, h: int) -> np.ndarray:
    if img.shape[0] == h:
        return img
    w = max(1, int(round(img.shape[1] * h / img.shape[0])))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_LINEAR)


def _label(canvas: np.ndarray, text: str, x0: int) -> None:
    if not text:
        return
    scale = max(0.4, canvas.shape[0] / 720)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    cv2.rectangle(canvas, (x0, 0), (x0 + tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), thickness=-1)
    cv2.putText(canvas, text, (x0 + pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def fade_frames(source: np.ndarray, edited: np.ndarray, weight: float) -> np.ndarray:
    """`edited` over `source` at `weight` (0: the source, 1: the edited frame), rounded to uint8 — the blend of an
    edit's fade-in and fade-out, monotonic in `weight` for every pixel."""
    if source.shape != edited.shape:
        raise ValueError(f"fade_frames: source {source.shape} and edited {edited.shape} differ")
    w = float(min(max(weight, 0.0), 1.0))
    mixed = source.astype(np.float32) * (1.0 - w) + edited.astype(np.float32) * w
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
