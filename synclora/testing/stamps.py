"""Frames that carry their own index as a visible bit pattern, so a test can read back which source frame any output
frame shows (after resizing, lossy coding or rotation) and catch a dropped, repeated or shifted frame."""

from __future__ import annotations

import numpy as np


def stamp_index(frame: np.ndarray, index: int, *, bits: int = 12) -> np.ndarray:
    """Write `index` into the bottom eighth of `frame` as `bits` black/white cells spanning the full width.

    Cells are placed relative to the frame size, so the index survives resizing, lossy codecs and rotation back to
    the display orientation. Returns the same array (modified in place).
    """
    h, w = frame.shape[:2]
    if not 0 <= index < 2**bits:
        raise ValueError(f"index {index} does not fit in {bits} bits")
    y0 = h - max(2, h // 8)
    for k in range(bits):
        x0, x1 = int(round(k * w / bits)), int(round((k + 1) * w / bits))
        frame[y0:, x0:x1] = 255 if (index >> (bits - 1 - k)) & 1 else 0
    return frame


def read_index(frame: np.ndarray, *, bits: int = 12) -> int:
    """Read back the index written by `stamp_index` (samples the centre of each cell)."""
    h, w = frame.shape[:2]
    band = max(2, h // 8)
    y0, y1 = h - band + band // 4, h - band // 4
    val = 0
    for k in range(bits):
        x0, x1 = k * w / bits, (k + 1) * w / bits
        a, b = int(x0 + (x1 - x0) * 0.3), max(int(x0 + (x1 - x0) * 0.3) + 1, int(x1 - (x1 - x0) * 0.3))
        bit = frame[y0:max(y1, y0 + 1), a:b].mean() > 127
        val = (val << 1) | int(bit)
    return val
