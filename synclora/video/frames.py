"""A video to measure, from a file or from memory, behind one interface.

The sync report, the cue extractor and the edit-kept score take either a path or a (T, H, W, 3) uint8 RGB array. What
they need from it — length, size, frame rate, one frame, a run of frames — is answered here once, so no reader
guesses: a file's frame rate is its own exact rate, and an array's is what the caller says it is, or None (unknown;
never a made-up 25 fps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from synclora.errors import InputError

__all__ = ["Frames"]


class Frames:
    """A file (probed once; frames decoded on demand on `io`'s exact timeline) or an array of RGB frames."""

    def __init__(self, video, fps: float | None = None):
        if isinstance(video, (str, os.PathLike)):
            from synclora.video import io

            self.path: Path | None = Path(video)
            self.array: np.ndarray | None = None
            self.info = io.probe(self.path)
            self.n_frames, self.width, self.height = self.info.n_frames, self.info.width, self.info.height
            self.fps: float | None = float(self.info.fps)
            return
        arr = np.asarray(video)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got shape {arr.shape} and dtype {arr.dtype}")
        self.path, self.array, self.info = None, arr, None
        self.n_frames, self.height, self.width = arr.shape[0], arr.shape[1], arr.shape[2]
        self.fps = None if fps is None else float(fps)

    @classmethod
    def of(cls, video, fps: float | None = None) -> Frames:
        """`video` as `Frames` (passed through when it already is)."""
        return video if isinstance(video, Frames) else cls(video, fps)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def check_length(self) -> Frames:
        """Refuse a file longer or larger than a propagation takes (a forged length never runs for hours)."""
        if self.info is not None:
            from synclora import limits

            limits.check_clip(self.info)
        return self

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as a full-size RGB array."""
        if self.path is not None:
            from synclora.video import io

            return io.read_frame(self.path, index)
        return np.ascontiguousarray(self.array[index])

    def lazy(self, start: int = 0, stop: int | None = None) -> Iterator:
        """Frames start..stop-1 for analysis: a file's as lazy frames (converted only as far as asked, decoded on the
        caller's thread), an array's as arrays."""
        if self.path is not None:
            from synclora.video.lazy import iter_lazy_frames

            return iter_lazy_frames(self.path, start=start, stop=stop)
        return iter(self.array[start:stop])

    def rgb(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop-1 as full-size RGB arrays."""
        if self.path is not None:
            from synclora.video import io

            return io.iter_frames(self.path, start=start, stop=stop)
        return iter(self.array[start:stop])
