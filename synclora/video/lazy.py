"""Frames that convert only what is asked of them: decoding for analysis, not for display.

Why: the sync report looks at every frame of two videos, but its face landmarker works on frames shrunk by a whole
factor (the face stays ≥ 192 px), and the edit-kept score and the landmark view read that same small image.
Converting each decoded 720p frame to full-size RGB (then shrinking it) cost as much as decoding it. A `LazyFrame`
keeps the decoded YUV planes and makes, on demand:

- `reduced(k)`: RGB at 1/k size straight from the planes (luma shrunk by k, chroma by k/2; a 4:2:0 frame at k = 2
  needs no chroma resampling at all), with the file's own colour matrix, cached;
- `rgb()`: the full frame, exactly what `io.iter_frames` yields (same conversion), cached (identity's few frames).

The timeline (CFR slots, VFR repeats, rotation, seeking) is `synclora.video.decode`'s own (`iter_slots` with a
converter): `iter_lazy_frames` yields exactly the frames `io.iter_frames` yields, one per slot. `ArrayFrame` gives
arrays the same interface.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from synclora.video.colour import frame_to_rgb, yuv_matrix
from synclora.video.decode import check_range, iter_slots
from synclora.video.probe import timeline

__all__ = ["ArrayFrame", "LazyFrame", "as_frame", "iter_lazy_frames"]


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

    def reduced(self, k: int) -> np.ndarray:
        """RGB shrunk by the whole factor k (INTER_AREA; < k edge pixels dropped so the factor is exact)."""
        if k <= 1:
            return self._img
        if k not in self._small:
            h, w = self.height // k, self.width // k
            self._small[k] = cv2.resize(self._img[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)
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
            f = self._frame
            out = []
            for plane, (w, h) in zip(f.planes, ((f.width, f.height), (f.width // 2, f.height // 2),
                                                (f.width // 2, f.height // 2))):
                a = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)
                out.append(a[:, :w])
            self._planes = tuple(out)  # type: ignore[assignment]
        return self._planes  # type: ignore[return-value]

    def _matrix(self) -> np.ndarray:
        if self._m is None:
            f = self._frame
            full = f.format.name == "yuvj420p" or int(f.color_range) == 2
            self._m = yuv_matrix(f.colorspace, full, f.height)
        return self._m

    def rgb(self) -> np.ndarray:
        if self._full is None:
            img = frame_to_rgb(self._frame)
            if self._rot:
                img = np.ascontiguousarray(np.rot90(img, self._rot))
            self._full = img
        return self._full

    def reduced(self, k: int) -> np.ndarray:
        if k <= 1:
            return self.rgb()
        if k in self._small:
            return self._small[k]
        y, u, v = self._yuv()
        h, w = y.shape[0] // k, y.shape[1] // k
        ys = cv2.resize(y[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA)
        if u.shape == (h, w):
            us, vs = u, v
        else:
            us = cv2.resize(u, (w, h), interpolation=cv2.INTER_AREA)
            vs = cv2.resize(v, (w, h), interpolation=cv2.INTER_AREA)
        img = cv2.transform(cv2.merge([ys, np.ascontiguousarray(us), np.ascontiguousarray(vs)]), self._matrix())
        if self._rot:
            img = np.ascontiguousarray(np.rot90(img, self._rot))
        self._small[k] = img
        return img

    def copy(self) -> LazyFrame:
        return self


def as_frame(frame) -> ArrayFrame | LazyFrame:
    """Arrays become `ArrayFrame`s; lazy frames pass through."""
    if isinstance(frame, (ArrayFrame, LazyFrame)):
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
