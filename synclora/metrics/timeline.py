"""How a sync report lines the result up with the source: by time, never by frame index.

A result at another frame rate (the same motion at 50 fps against 25), another size or another length must not
read "in sync" by accident — frame i of a 50 fps clip is at half the time of frame i at 25 fps. So each source frame
is compared with the result frame on screen at its time, over the time both clips cover, and every difference of
rate, size or length is said in a note of the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from synclora.errors import InputError

_EPS = 1e-6  # a frame time computed in floating point that lands on a boundary belongs to the later frame


@dataclass(frozen=True)
class Timeline:
    """Source frames [start, stop) and, for each, the result frame on screen at its time (`result_index`)."""

    start: int
    stop: int
    result_index: np.ndarray  # (stop - start,) absolute result frame indices, non-decreasing
    notes: list[str] = field(default_factory=list)

    @property
    def result_range(self) -> tuple[int, int]:
        """The result frames to read: from the first to the last one any source frame is compared with."""
        return int(self.result_index[0]), int(self.result_index[-1]) + 1

    @property
    def by_index(self) -> bool:
        """True when source frame i is result frame i (same rate and start): no resampling needed."""
        return bool(np.array_equal(self.result_index, np.arange(self.start, self.stop)))

    def sources_of(self, j: int) -> range:
        """The source frames (absolute) that are compared with result frame `j` (none, one or several)."""
        lo = int(np.searchsorted(self.result_index, j, side="left"))
        hi = int(np.searchsorted(self.result_index, j, side="right"))
        return range(self.start + lo, self.start + hi)


def _fmt(fps: float) -> str:
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def line_up(n_src: int, n_res: int, fps_src: float | None, fps_res: float | None, size_src: tuple[int, int],
            size_res: tuple[int, int], frame_range: tuple[int, int] | None = None) -> Timeline:
    """The `Timeline` of a comparison; `frame_range` is in source frames (default: all the time both clips cover).
    Differences of rate, size and length are said in its notes. Frames from memory have no rate (None): such a
    video goes frame by frame with the other one, and lengths are said in frames."""
    timed = fps_src is not None or fps_res is not None
    fps_src = fps_src or fps_res or 1.0
    fps_res = fps_res or fps_src
    if not (fps_src > 0 and fps_res > 0):
        raise InputError("the frame rates of the videos could not be read")
    ratio = fps_res / fps_src
    covered = min(n_src, math.ceil(n_res / ratio - _EPS))  # source frames whose time has a result frame
    notes = []
    if abs(fps_res - fps_src) > 1e-3 * fps_src:
        notes.append(f"the result runs at {_fmt(fps_res)} fps and the source at {_fmt(fps_src)} fps: each source "
                     "frame is compared with the result frame on screen at its time")
    if tuple(size_res) != tuple(size_src):
        notes.append(f"the result is {size_res[0]}×{size_res[1]} and the source {size_src[0]}×{size_src[1]}: the "
                     "face cues are measured relative to each face, so they compare")
    if frame_range is None:
        start, stop = 0, covered
        d_src, d_res = n_src / fps_src, n_res / fps_res
        if not timed and n_src != n_res:
            notes.append(f"the result has {n_res} frames and the source {n_src}: judged over the {covered} frames "
                         "both have")
        elif abs(d_src - d_res) >= 0.5 / min(fps_src, fps_res):
            notes.append(f"the result lasts {d_res:.2f} s ({n_res} frames) and the source {d_src:.2f} s ({n_src} "
                         f"frames): judged over the {covered / fps_src:.2f} s both cover")
    else:
        start, stop = (int(v) for v in frame_range)
        if not (0 <= start < stop <= n_src):
            raise InputError(f"frame range {start}–{stop} does not fit the source ({n_src} frames)")
        if stop > covered:
            raise InputError(f"frame range {start}–{stop} runs past the result, which covers the source's frames "
                             f"0–{covered - 1} ({n_res} frames at {_fmt(fps_res)} fps)")
    if stop - start < 2:
        raise InputError("a sync report needs at least 2 frames the two videos both cover")
    index = np.floor(np.arange(start, stop) * ratio + _EPS).astype(np.int64)
    return Timeline(start, stop, np.minimum(index, n_res - 1), notes)
