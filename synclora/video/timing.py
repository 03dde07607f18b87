"""Exact frame bookkeeping between the source clip and a backend (pure functions, no I/O).

A backend may want another frame rate (LTX: 25 fps), frame counts of the form step*k+1 (LTX: 8k+1) and at most
`max_frames` per call. Everything that converts for those rules lives here and maps back exactly, so the result
always has the source's frame count and fps and frame i of the result belongs to frame i of the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

__all__ = [
    "TimePlan",
    "plan_time",
    "Chunk",
    "plan_chunks",
    "stitch_chunks",
    "valid_length",
    "padded_length",
    "pad_indices",
]


def valid_length(n: int, step: int) -> bool:
    """True when n frames is a count the backend accepts (step*k + 1; any n >= 1 when step == 1)."""
    return n >= 1 and (step <= 1 or (n - 1) % step == 0)


def padded_length(n: int, step: int) -> int:
    """The smallest step*k + 1 >= n."""
    if n < 1:
        raise ValueError(f"need at least one frame, got {n}")
    if step <= 1:
        return n
    return n + (-(n - 1)) % step


def pad_indices(n: int, total: int) -> np.ndarray:
    """Indices 0..n-1 followed by `total - n` reflected ones (n-2, n-3, ...), so padded frames continue the motion
    smoothly instead of freezing; a single frame is repeated."""
    if total < n:
        raise ValueError("total must be >= n")
    idx = np.arange(total, dtype=np.int64)
    if n == 1:
        return np.zeros(total, np.int64)
    period = 2 * (n - 1)
    m = idx % period
    return np.where(m < n, m, period - m).astype(np.int64)


def _fps_str(fps: float | Fraction) -> str:
    f = float(fps)
    return f"{f:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class TimePlan:
    """How a clip of `n_src` source frames becomes `n_padded` backend frames and back.

    - `backend_to_source[j]`: the source frame the backend sees as its frame j (len n_padded; the last `pad` are
      padding, reflected from the end and dropped after).
    - `source_to_backend[i]`: the backend frame whose output becomes result frame i (len n_src, values < n_backend).
    """

    mode: Literal["exact", "resample"]
    n_src: int
    src_fps: Fraction
    n_backend: int  # meaningful backend frames (before padding)
    n_padded: int  # frames the backend is called with (step*k + 1)
    backend_fps: float  # the frame rate the backend is told
    backend_to_source: np.ndarray
    source_to_backend: np.ndarray
    notice: str

    @property
    def pad(self) -> int:
        return self.n_padded - self.n_backend

    def to_backend(self, frames: np.ndarray) -> np.ndarray:
        """Source frames (n_src, ...) -> the frames the backend is called with (n_padded, ...)."""
        if len(frames) != self.n_src:
            raise ValueError(f"expected {self.n_src} source frames, got {len(frames)}")
        return frames[self.backend_to_source]

    def to_source(self, frames: np.ndarray) -> np.ndarray:
        """Backend output (n_padded or n_backend, ...) -> one frame per source frame (n_src, ...)."""
        if len(frames) not in (self.n_padded, self.n_backend):
            raise ValueError(f"expected {self.n_padded} backend frames, got {len(frames)}")
        return frames[self.source_to_backend]


def plan_time(
    n_src: int,
    src_fps: Fraction | float,
    native_fps: float | None,
    frame_step: int = 1,
    mode: Literal["exact", "resample"] = "exact",
) -> TimePlan:
    """Map `n_src` source frames at `src_fps` to a backend with `native_fps` and counts of frame_step*k + 1.

    exact: backend frame i is source frame i (nothing dropped or repeated); the backend is told its native fps, so
        it sees the motion slightly faster or slower than real time.
    resample: backend frames sample the source at native fps (by nearest time) and each source frame takes the
        backend frame nearest its time; frames repeat or drop inside the backend, never in the output.
    Either way the frame count is padded to frame_step*k + 1 with reflected frames that are dropped afterwards.
    """
    if n_src < 1:
        raise ValueError(f"need at least one source frame, got {n_src}")
    src_fps = Fraction(src_fps).limit_denominator(1_000_000) if not isinstance(src_fps, Fraction) else src_fps
    if src_fps <= 0:
        raise ValueError("src_fps must be positive")
    if mode not in ("exact", "resample"):
        raise ValueError(f"mode must be 'exact' or 'resample', got {mode!r}")
    native = float(native_fps) if native_fps else float(src_fps)
    same_rate = math.isclose(native, float(src_fps), rel_tol=1e-6)
    parts: list[str] = []

    if mode == "exact" or same_rate:
        n_b = n_src
        b2s = np.arange(n_b, dtype=np.int64)
        s2b = np.arange(n_src, dtype=np.int64)
        if same_rate:
            parts.append(f"The backend runs at the clip's own {_fps_str(src_fps)} fps; frame i stays frame i.")
        else:
            ratio = float(src_fps) / native
            parts.append(
                f"Exact timing: source frame i is model frame i (nothing dropped or repeated); the model treats the "
                f"{_fps_str(src_fps)} fps clip as {_fps_str(native)} fps, so it sees the motion "
                f"{ratio:.2f}× {'slower' if ratio > 1 else 'faster'} than real time."
            )
        mode_used: Literal["exact", "resample"] = "exact" if mode == "exact" else "resample"
    else:
        # enough model frames that the last source frame's time has a model frame within half a model frame
        n_b = int(math.floor((n_src - 1) * native / float(src_fps) + 0.5)) + 1
        # nearest source frame to each backend time, and nearest backend frame to each source time
        b2s = np.clip(np.floor(np.arange(n_b) * float(src_fps) / native + 0.5), 0, n_src - 1).astype(np.int64)
        s2b = np.clip(np.floor(np.arange(n_src) * native / float(src_fps) + 0.5), 0, n_b - 1).astype(np.int64)
        verb = "drop" if native < float(src_fps) else "repeat"
        parts.append(
            f"Resampled timing: the model sees the {_fps_str(src_fps)} fps clip at its native {_fps_str(native)} fps "
            f"({n_src} source frames → {n_b} model frames, so frames {verb} inside the model); each of the "
            f"{n_src} output frames takes the model frame nearest its time, so the output keeps every source frame's "
            f"count and timing."
        )
        mode_used = "resample"

    n_pad = padded_length(n_b, frame_step)
    b2s = b2s[pad_indices(n_b, n_pad)]
    if n_pad > n_b:
        parts.append(f"{n_pad - n_b} reflected frame{'s' if n_pad - n_b > 1 else ''} pad the model input to {n_pad} "
                     f"frames ({frame_step}k+1) and are dropped afterwards.")
    return TimePlan(
        mode=mode_used,
        n_src=n_src,
        src_fps=src_fps,
        n_backend=n_b,
        n_padded=n_pad,
        backend_fps=native if mode_used == "resample" or not same_rate else float(src_fps),
        backend_to_source=b2s,
        source_to_backend=s2b,
        notice=" ".join(parts),
    )


@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of a sequence, processed in one backend call.

    `start` is the chunk's edited frame: for every chunk after the first, it is the first of the `overlap` frames
    shared with the previous chunk, whose result the previous chunk already produced. `pad` reflected frames are
    appended so that stop - start + pad is a valid length (step*k + 1).
    """

    start: int
    stop: int
    pad: int = 0
    overlap: int = 0  # frames [start, start + overlap) are shared with the previous chunk

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def padded_length(self) -> int:
        return self.length + self.pad

    def indices(self) -> np.ndarray:
        """Sequence indices of the padded chunk (len padded_length)."""
        return self.start + pad_indices(self.length, self.padded_length)


def plan_chunks(n: int, max_frames: int | None, frame_step: int = 1, overlap: int = 1) -> list[Chunk]:
    """Split n frames into backend calls of valid length (step*k + 1, at most max_frames).

    Consecutive chunks share `overlap` >= 1 frames; the next chunk starts at the first shared frame (its edited
    frame, taken from the previous chunk's result).
    Only the last chunk is padded. `stitch_chunks` puts the outputs back together, one frame per input frame.
    """
    if n < 1:
        raise ValueError(f"need at least one frame, got {n}")
    if overlap < 1:
        raise ValueError("chunks must share at least one frame (the next chunk's edited frame)")
    if max_frames is None or padded_length(n, frame_step) <= max_frames:
        return [Chunk(0, n, padded_length(n, frame_step) - n, 0)]
    lmax = max_frames - ((max_frames - 1) % max(1, frame_step)) if frame_step > 1 else max_frames
    if lmax <= overlap:
        raise ValueError(f"max_frames={max_frames} leaves no room for new frames with overlap={overlap} "
                         f"(longest valid chunk is {lmax} frames)")
    chunks: list[Chunk] = []
    start, shared = 0, 0
    while True:
        remaining = n - start
        if remaining <= lmax:
            chunks.append(Chunk(start, n, padded_length(remaining, frame_step) - remaining, shared))
            return chunks
        chunks.append(Chunk(start, start + lmax, 0, shared))
        start, shared = start + lmax - overlap, overlap


def stitch_chunks(chunks: list[Chunk], outputs: list[np.ndarray]) -> np.ndarray:
    """Join per-chunk outputs (each padded_length or length frames) into one frame per sequence frame.

    The shared frame a chunk starts from keeps the previous chunk's result; the other shared frames cross-fade
    linearly from the previous chunk to the next, so no seam shows.
    """
    if len(chunks) != len(outputs) or not chunks:
        raise ValueError("need one output per chunk")
    n = chunks[-1].stop
    first = np.asarray(outputs[0])
    result = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    for c, out in zip(chunks, outputs):
        out = np.asarray(out)
        if len(out) not in (c.length, c.padded_length):
            raise ValueError(f"chunk [{c.start}, {c.stop}) needs {c.padded_length} output frames, got {len(out)}")
        out = out[: c.length]
        k = c.overlap
        if k > 1:
            w = (np.arange(1, k) / k).reshape(-1, *([1] * (out.ndim - 1)))  # weight of the new chunk
            prev = result[c.start + 1: c.start + k].astype(np.float64)
            blend = prev * (1 - w) + out[1:k].astype(np.float64) * w
            if np.issubdtype(result.dtype, np.integer):
                blend = np.rint(blend)
            result[c.start + 1: c.start + k] = blend.astype(result.dtype)
        result[c.start + k: c.stop] = out[k:]
    return result
