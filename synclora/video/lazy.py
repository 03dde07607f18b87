"""Frames that convert only what is asked of them: decoding for analysis, not for display.

Why: the sync report looks at every frame of two videos, but its face landmarker works on frames shrunk by a whole
factor (the face stays ≥ 192 px), and the edit-kept score and the landmark view read that same small image.
Converting each decoded 720p frame to full-size RGB (then shrinking it) cost as much as decoding it. A `LazyFrame`
keeps the decoded YUV planes and makes, on demand:

- `reduced(k)`: RGB at 1/k size straight from the planes (luma shrunk by k, chroma by k/2; a 4:2:0 frame at k = 2
  needs no chroma resampling at all), with the file's own colour matrix, cached;
- `rgb()`: the full frame, exactly what `io.iter_frames` yields (same conversion), cached (identity's few frames);
  `rgb_box(box)`: the same pixels of a box alone (the CPU preview's warp touches only where the edit lands);
- `planes709()`: the decoded planes themselves when they are what the result's encoder writes (BT.709, limited range,
  4:2:0, not rotated), so every pixel an edit leaves alone reaches the result as the source's own samples, with no
  conversion to RGB and back.

`PatchedFrame` is such a frame with a box painted over (a result frame: the source outside the edit's box); `np.asarray`
gives any of them as the full RGB array.

The timeline (CFR slots, VFR repeats, rotation, seeking) is `synclora.video.decode`'s own (`iter_slots` with a
converter): `iter_lazy_frames` yields exactly the frames `io.iter_frames` yields, one per slot. `ArrayFrame` gives
arrays the same interface.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from synclora.video.colour import (
    YUV709_LIMITED,
    frame_to_rgb,
    planes420,
    rgb_to_yuv420_planes,
    yuv420_to_rgb,
    yuv_matrix,
)
from synclora.video.decode import check_range, iter_slots
from synclora.video.probe import timeline

__all__ = ["ArrayFrame", "LazyFrame", "PatchedFrame", "as_frame", "iter_lazy_frames"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive


class ArrayFrame:
    """An RGB uint8 (H, W, 3) array behind the lazy-frame interface."""

    __slots__ = ("_img", "_small")

    def __init__(self, img: np.ndarray):
        self._img = img
        self._small: dict[int, np.ndarray] = {}

    @property
    def width(self) -> int:
        return int(self._img.shape[1])

    @property
    def height(self) -> int:
        return int(self._img.shape[0])

    def rgb(self) -> np.ndarray:
        return self._img

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return _as_array(self._img, dtype, copy)

    def rgb_box(self, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = box
        return self._img[y0:y1, x0:x1]

    def planes709(self) -> None:
        return None

    def reduced(self, k: int) -> np.ndarray:
        """RGB shrunk by the whole factor k (INTER_AREA; < k edge pixels dropped so the factor is exact)."""
        if k <= 1:
            return self._img
        if k not in self._small:
            self._small[k] = _shrink(self._img, k)
        return self._small[k]

    def copy(self) -> ArrayFrame:
        return self  # frames are read-only here; a repeated slot may share one


class LazyFrame:
    """A decoded frame (8-bit 4:2:0, even size) converted on demand. Other formats go through `rgb()`."""

    __slots__ = ("_frame", "_rot", "_full", "_small", "_planes", "_m")

    def __init__(self, frame: av.VideoFrame, rot_k: int):
        self._frame = frame
        self._rot = rot_k
        self._full: np.ndarray | None = None
        self._small: dict[int, np.ndarray] = {}  # by factor: the landmarker's and the landmark view's
        self._planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._m: np.ndarray | None = None

    @staticmethod
    def supports(frame: av.VideoFrame) -> bool:
        return frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0

    @property
    def width(self) -> int:
        f = self._frame
        return f.height if self._rot % 2 else f.width

    @property
    def height(self) -> int:
        f = self._frame
        return f.width if self._rot % 2 else f.height

    def _yuv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._planes is None:
            self._planes = planes420(self._frame)
        return self._planes

    def _matrix(self) -> np.ndarray:
        if self._m is None:
            f = self._frame
            full = f.format.name == "yuvj420p" or int(f.color_range) == 2
            self._m = yuv_matrix(f.colorspace, full, f.height)
        return self._m

    def rgb(self) -> np.ndarray:
        if self._full is None:
            img = yuv420_to_rgb(*self._yuv(), self._matrix())  # `colour.frame_to_rgb`'s conversion, its planes kept
            if self._rot:
                img = np.ascontiguousarray(np.rot90(img, self._rot))
            self._full = img
        return self._full

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return _as_array(self.rgb(), dtype, copy)

    def rgb_box(self, box: Box) -> np.ndarray:
        """`rgb()[y0:y1, x0:x1]`, the same values, converting only the box (plus the chroma its edges read)."""
        x0, y0, x1, y1 = box
        if self._full is not None or self._rot:
            return self.rgb()[y0:y1, x0:x1]
        y, u, v = self._yuv()
        # one more chroma sample each side than the box covers (`yuv420_to_rgb`; at the frame's edge both replicate)
        cx0, cy0 = max(0, x0 // 2 - 1), max(0, y0 // 2 - 1)
        cx1, cy1 = min(u.shape[1], (x1 + 1) // 2 + 1), min(u.shape[0], (y1 + 1) // 2 + 1)
        img = yuv420_to_rgb(y[2 * cy0:2 * cy1, 2 * cx0:2 * cx1], u[cy0:cy1, cx0:cx1], v[cy0:cy1, cx0:cx1],
                            self._matrix())
        return img[y0 - 2 * cy0:y1 - 2 * cy0, x0 - 2 * cx0:x1 - 2 * cx0]

    def planes709(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The decoded Y, Cb, Cr planes when the result's encoder writes samples of this kind (BT.709, limited range,
        4:2:0, not rotated); None otherwise (the frame is then converted from `rgb()`)."""
        f = self._frame
        if self._rot or f.format.name != "yuv420p" or int(f.color_range) == 2:
            return None
        if not np.allclose(self._matrix(), YUV709_LIMITED):
            return None
        return self._yuv()

    def reduced(self, k: int) -> np.ndarray:
        if k <= 1:
            return self.rgb()
        if k in self._small:
            return self._small[k]
        img = _reduce_yuv(*self._yuv(), self._matrix(), k)
        if self._rot:
            img = np.ascontiguousarray(np.rot90(img, self._rot))
        self._small[k] = img
        return img

    def copy(self) -> LazyFrame:
        return self


class PatchedFrame:
    """A result frame: `base` (a decoded source frame) with the RGB `patch` over `box`, the source's own elsewhere.
    Its planes for the encoder are the base's planes with the box (grown to whole 2×2 chroma blocks) converted alone;
    made once, whichever thread asks first (the encoder, the sync report). The full RGB is made when asked and not
    kept (the side by side, identity's few frames): queued frames stay small."""

    __slots__ = ("base", "box", "patch", "_planes", "_small", "_lock")

    def __init__(self, base: ArrayFrame | LazyFrame, box: Box, patch: np.ndarray):
        self.base, self.box, self.patch = base, box, patch
        self._planes: tuple[np.ndarray, np.ndarray, np.ndarray] | None | bool = False  # False: not made yet
        self._small: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def width(self) -> int:
        return self.base.width

    @property
    def height(self) -> int:
        return self.base.height

    def rgb(self) -> np.ndarray:
        img = np.array(self.base.rgb(), copy=True)
        x0, y0, x1, y1 = self.box
        img[y0:y1, x0:x1] = self.patch
        return img

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return _as_array(self.rgb(), dtype, copy)

    def rgb_box(self, box: Box) -> np.ndarray:
        out = np.array(self.base.rgb_box(box), copy=True)
        (x0, y0, x1, y1), (px0, py0, px1, py1) = box, self.box
        ix0, iy0, ix1, iy1 = max(x0, px0), max(y0, py0), min(x1, px1), min(y1, py1)
        if ix0 < ix1 and iy0 < iy1:
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = self.patch[iy0 - py0:iy1 - py0, ix0 - px0:ix1 - px0]
        return out

    def planes709(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        with self._lock:
            if self._planes is False:
                self._planes = self._make_planes()
            return self._planes  # type: ignore[return-value]

    def _make_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        base = self.base.planes709()
        if base is None:
            return None
        y, u, v = (np.array(p, copy=True) for p in base)
        x0, y0, x1, y1 = self.box
        x0, y0, x1, y1 = x0 & ~1, y0 & ~1, min(self.width, x1 + (x1 & 1)), min(self.height, y1 + (y1 & 1))
        if x0 < x1 and y0 < y1:
            py, pu, pv = rgb_to_yuv420_planes(self.rgb_box((x0, y0, x1, y1)))
            y[y0:y1, x0:x1] = py
            u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = pu
            v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = pv
        return y, u, v

    def reduced(self, k: int) -> np.ndarray:
        if k <= 1:
            return self.rgb()
        if k not in self._small:
            planes = self.planes709()
            self._small[k] = _shrink(self.rgb(), k) if planes is None else _reduce_yuv(*planes, YUV709_LIMITED, k)
        return self._small[k]

    def copy(self) -> PatchedFrame:
        return self


def _as_array(img: np.ndarray, dtype, copy) -> np.ndarray:
    """`np.asarray(frame)`'s answer: the frame's RGB array, a copy when one is asked for (a cached array must not be
    changed by whoever asked)."""
    if dtype is not None and np.dtype(dtype) != img.dtype:
        return img.astype(dtype)
    return img.copy() if copy else img


def _shrink(img: np.ndarray, k: int) -> np.ndarray:
    """RGB shrunk by the whole factor k (INTER_AREA; < k edge pixels dropped so the factor is exact)."""
    h, w = img.shape[0] // k, img.shape[1] // k
    return cv2.resize(img[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)


def _reduce_yuv(y: np.ndarray, u: np.ndarray, v: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """RGB at 1/k size straight from 4:2:0 planes (luma shrunk by k, chroma by k/2) with the 3x4 matrix `m`."""
    h, w = y.shape[0] // k, y.shape[1] // k
    ys = cv2.resize(y[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)
    if u.shape == (h, w):
        us, vs = u, v
    else:
        us = cv2.resize(u, (w, h), interpolation=cv2.INTER_AREA)
        vs = cv2.resize(v, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.transform(cv2.merge([ys, np.ascontiguousarray(us), np.ascontiguousarray(vs)]), m)


def as_frame(frame) -> ArrayFrame | LazyFrame | PatchedFrame:
    """Arrays become `ArrayFrame`s; lazy frames pass through."""
    if isinstance(frame, (ArrayFrame, LazyFrame, PatchedFrame)):
        return frame
    return ArrayFrame(np.asarray(frame))


def iter_lazy_frames(path: str | os.PathLike, *, start: int = 0, stop: int | None = None
                     ) -> Iterator[ArrayFrame | LazyFrame]:
    """The frames `io.iter_frames(path, start=, stop=)` yields, as lazy frames (threaded decoding, same timeline)."""
    path = Path(path)
    tl = timeline(path)
    start, stop = check_range(tl.info, start, stop)
    if start == stop:
        return

    def convert(frame: av.VideoFrame):
        if LazyFrame.supports(frame):
            return LazyFrame(frame, tl.rot_k)
        img = frame_to_rgb(frame)
        return ArrayFrame(np.ascontiguousarray(np.rot90(img, tl.rot_k)) if tl.rot_k else img)

    yield from iter_slots(path, tl, start, stop, convert)
