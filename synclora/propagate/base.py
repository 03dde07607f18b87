"""The backend interface: what every propagation backend receives and must return.

A backend never sees the user's clip directly. `propagate.schedule` hands it one *segment*: frames already at the
backend's working size, frame count and frame rate, and `edited`, the edited version of frame 0 (the user's edited
frame, or for a later chunk the previous chunk's output at that frame). The backend returns one output frame per
input frame. All conversions (fps, 8k+1, sizes, time reversal, chunking) live in `video.timing`, `video.geometry` and
`propagate.schedule`, never here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from synclora.config import BACKENDS, PropagationSettings
from synclora.progress import ProgressFn, no_progress

# What each backend is and is good for, in one line each (from its record in `config.BACKENDS`).
LABELS = {b.name: b.label for b in BACKENDS}

@dataclass(frozen=True)
class BackendSpec:
    """Constraints a backend puts on its input; `schedule` honours them and maps back exactly."""

    max_frames: int | None = None  # most frames per call (None: any)
    frame_step: int = 1  # frame counts must be frame_step * k + 1 (8 for LTX, 1 for any count)
    size_multiple: int = 8  # working height and width are multiples of this
    native_fps: float | None = None  # the fps the model was trained at (None: any)
    max_side: int | None = None  # cap on the working size's longer side
    # True: work at the source's own size (capped by max_side); False: at about settings.resolution**2 pixels.
    native_size: bool = False
    min_side: int = 1  # the working size's shorter side must be at least this (checked against the user's clip)


@dataclass
class Segment:
    """One backend call: carry the edit of `frames[0]` (that is, `edited`) through `frames`."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB source frames at working size
    # (H, W, 3) uint8 RGB: the edited version of frames[0] — the user's edited frame, or for a later chunk the
    # previous chunk's output at its first shared frame
    edited: np.ndarray
    fps: float  # the frame rate the backend should assume for these frames
    settings: PropagationSettings
    # What the backend learned while propagating this segment (counts, flags), for `Propagator.notices`: a backend
    # sees one segment at a time, so what the user is told is summed over all of them once the clip is done.
    facts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"segment frames must be (T,H,W,3) uint8, got {self.frames.shape} {self.frames.dtype}")
        if self.edited.shape != self.frames.shape[1:] or self.edited.dtype != np.uint8:
            raise ValueError(f"edited frame {self.edited.shape} does not match frames {self.frames.shape[1:]}")


class Propagator(abc.ABC):
    """A way to carry the edit of frame 0 through a segment, frame for frame."""

    name: str  # short id used on the CLI (--backend NAME)
    label: str  # one line for people: what it is and what it is good for
    spec: BackendSpec

    @abc.abstractmethod
    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        """Return (T, H, W, 3) uint8 frames; frame i follows the motion of `segment.frames[i]`."""

    @classmethod
    def availability(cls, settings: PropagationSettings) -> tuple[bool, str]:
        """Whether it can run here with `settings`, and if not, one sentence why (without building it)."""
        return True, ""

    @classmethod
    def spec_for(cls, settings: PropagationSettings) -> BackendSpec:
        """Its input constraints for `settings`, without building it."""
        return cls.spec

    def notices(self, facts: list[dict]) -> list[str]:
        """Sentences for the user about a whole clip, from the `Segment.facts` of every segment it was split into."""
        return []

    def track(self, first: np.ndarray, edited: np.ndarray, probes: np.ndarray | None = None) -> Tracker | None:
        """The incremental form, for a backend that can carry the edit one frame at a time at any frame size (a
        streaming propagation then holds a few frames, not a segment); None: segments only (`propagate`)."""
        return None


class Tracker(abc.ABC):
    """One direction of a propagation, frame by frame: built on frame 0 (`first`) and its edit; `maps` walks frames
    1, 2, ... in order and yields each with a compact state (whatever `compose` needs, small enough to keep for every
    frame of a clip's backward half); `compose(frame, state)` is that frame's result, at the frame's own size."""

    @abc.abstractmethod
    def maps(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, object]]: ...

    @abc.abstractmethod
    def compose(self, frame: np.ndarray, state: object) -> np.ndarray: ...

    def facts(self) -> dict:
        """Like `Segment.facts`, for `Propagator.notices` (complete once `maps` is exhausted or closed)."""
        return {}

    def close(self) -> None:
        """Free what the walk holds (threads, trackers); `compose` still works."""
        return None


class PropagatorFactory(Protocol):
    def __call__(self, settings: PropagationSettings) -> Propagator: ...
