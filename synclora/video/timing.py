"""Exact frame bookkeeping between the source clip and a backend (pure functions, no I/O).

A backend may want another frame rate (LTX: 25 fps), frame counts of the form step*k+1 (LTX: 8k+1) and at most
`max_frames` per call. Everything that converts for those rules lives here and maps back exactly, so the result
always has the source's frame count and fps and frame i of the result belongs to frame i of the source.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synclora.errors import InputError

__all__ = [
    "TimePlan",
    "plan_time",
    "Chunk",
    "plan_chunks",
    "stitch_chunks",
    "valid_length",
    "padded_length",
    "pad_indices",
    "FrameSpan",
    "parse_span",
    "resolve_span",
    "default_fade",
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


# --- the edited span --------------------------------------------------------------------------------------------------
# Which frames of the clip carry the edit. The user's text (`--span`, see `config.SPAN_SYNTAX_HELP`) is parsed without
# the clip, so a typo is refused at once in every face, and resolved against the probed clip here, in one place.

_SPAN_END = re.compile(r"^(?:(?P<seconds>\d+(?:\.\d*)?|\.\d+)\s*s|(?P<frame>\d+))$", re.IGNORECASE)


@dataclass(frozen=True)
class SpanEnd:
    """One end of a span as the user wrote it: a frame index, or a time in seconds (exact)."""

    value: Fraction
    seconds: bool


def _malformed(text: str) -> InputError:
    return InputError(f"the span {text!r} is not START:END; use frame indices (12:40) or seconds (2s:5.5s)")


def parse_span(text: Any) -> tuple[SpanEnd | None, SpanEnd | None] | None:
    """The user's span text → (start, end), None for an open end; None for the whole clip (None, "" or ":").

    Only the form is checked here (no clip is needed): a malformed or reversed span is one sentence."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InputError(f"the span must be text like 12:40 or 2s:5.5s, got {text!r}")
    parts = text.strip().split(":")
    if parts == [""]:
        return None
    if len(parts) != 2:
        raise _malformed(text)
    ends: list[SpanEnd | None] = []
    for part in parts:
        part = part.strip()
        if not part:
            ends.append(None)
            continue
        m = _SPAN_END.match(part)
        if m is None and part.startswith("-"):
            raise InputError(f"the span {text!r} has a negative end; frames count from 0 and times from 0 s")
        if m is None:
            raise _malformed(text)
        if m["seconds"] is not None:
            ends.append(SpanEnd(Fraction(m["seconds"]), True))
        else:
            ends.append(SpanEnd(Fraction(int(m["frame"])), False))
    start, end = ends
    if start is not None and end is not None and start.seconds == end.seconds:
        if end.value < start.value:
            raise InputError(f"the span {text!r} ends before it starts; give START:END with START first")
        if start.seconds and end.value == start.value:
            raise InputError(f"the span {text!r} is empty: its end must come after its start")
    return start, end


def default_fade(fps: Fraction | float) -> int:
    """The fade used when none is given: about a third of a second, in frames."""
    return max(1, int(Fraction(fps) / 3 + Fraction(1, 2)))


@dataclass(frozen=True)
class FrameSpan:
    """Frames `start`..`end` (inclusive) of an `n_frames` clip carry the edit in full.

    The fades lie *outside* the span: the `fade_in` frames just before `start` and the `fade_out` frames just after
    `end` blend from the source to the edit and back with weights 1/(F+1), 2/(F+1), …, F/(F+1) (F = that fade's
    length), so frame `start - fade_in - 1` is still the source's own frame and frame `start` is fully edited. A fade
    is shortened where the clip ends first (a span at the clip's edge has no fade there). Frames `first`..`last` (the
    span and its fades) are all the backend has to propagate; every other frame is the source's own.
    """

    start: int
    end: int
    n_frames: int
    fps: Fraction
    fade_in: int = 0
    fade_out: int = 0
    fade: int = 0  # the fade asked for (each side), before shortening at the clip's edges
    notices: tuple[str, ...] = field(default=(), compare=False)

    @property
    def first(self) -> int:
        """The first frame that changes (start of the fade-in)."""
        return self.start - self.fade_in

    @property
    def last(self) -> int:
        """The last frame that changes (end of the fade-out)."""
        return self.end + self.fade_out

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def window(self) -> int:
        """Frames the backend propagates: the span and its fades."""
        return self.last - self.first + 1

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.n_frames - 1

    @property
    def text(self) -> str:
        """The span in frames, as `--span` takes it (what the reproduce line shows)."""
        return f"{self.start}:{self.end}"

    def weight(self, i: int) -> float:
        """How much of the propagated frame `i` shows (0: the source's own frame, 1: the edit in full)."""
        if self.start <= i <= self.end:
            return 1.0
        if self.first <= i < self.start:
            return (i - self.first + 1) / (self.fade_in + 1)
        if self.end < i <= self.last:
            return (self.last - i + 1) / (self.fade_out + 1)
        return 0.0

    def weights(self) -> np.ndarray:
        """`weight(i)` for every frame of the clip."""
        return np.array([self.weight(i) for i in range(self.n_frames)], dtype=np.float64)

    def seconds(self, frame: int) -> float:
        return float(frame / self.fps)

    def describe(self) -> str:
        """Which frames were edited, for people: 'frames 50–137 (2.000–5.520 s), fading in over 42–49 and out over
        138–145; the other frames are the source's own'."""
        if self.whole:
            return f"all {self.n_frames} frames (the whole clip)"
        frames = f"frame {self.start}" if self.length == 1 else f"frames {self.start}–{self.end}"
        text = f"{frames} ({self.seconds(self.start):.3f}–{self.seconds(self.end + 1):.3f} s)"
        fades = []
        if self.fade_in:
            fades.append(f"fading in over {_frames(self.first, self.start - 1)}")
        if self.fade_out:
            fades.append(f"{'and out' if fades else 'fading out'} over {_frames(self.end + 1, self.last)}")
        if fades:
            text += ", " + " ".join(fades)
        elif self.fade == 0:
            text += ", hard cuts"
        return text + "; the other frames are the source's own"


def _frames(a: int, b: int) -> str:
    return f"frame {a}" if a == b else f"frames {a}–{b}"


def _clip_name(info: Any) -> str:
    path = getattr(info, "path", None)
    return Path(path).name if path else "the clip"


def resolve_span(
    span: Any,
    info: Any,
    *,
    fade: int | None = None,
    edit_index: int | None = None,
) -> FrameSpan:
    """The span (text as `--span` takes it, an (start, end) pair of frames, a `FrameSpan`, or None for the whole
    clip) on a probed clip (`info` has `n_frames`, `fps` and `path`), with its fades (`fade` frames each side;
    None: about a third of a second). With `edit_index`, the edited frame must lie inside the span.

    Seconds are exact: START picks the frame on screen at that time (floor(t·fps)); END the last frame that starts
    before it (ceil(t·fps) − 1), so 2s:5s at 25 fps is frames 50–124, three seconds. Every mistake is one sentence.
    """
    n, fps, name = int(info.n_frames), Fraction(info.fps), _clip_name(info)
    duration = Fraction(n) / fps
    if isinstance(span, FrameSpan):
        span = (span.start, span.end)
    if isinstance(span, (tuple, list)):
        if len(span) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in span):
            raise InputError(f"a span must be two frame indices (start, end), got {span!r}")
        text = f"{span[0]}:{span[1]}"
        if span[0] < 0 or span[1] < 0:
            raise InputError(f"the span {text} is out of range: {name} has frames 0 to {n - 1}")
    else:
        text = "" if span is None else str(span).strip()
    ends = parse_span(text)
    start_end, end_end = ends if ends is not None else (None, None)

    def out_of_range(frame: int) -> InputError:
        return InputError(f"frame {frame} of the span {text} is out of range: {name} has frames 0 to {n - 1}")

    def too_late(which: str, t: Fraction) -> InputError:
        return InputError(f"the span {text} {which} at {float(t):g} s but {name} lasts {float(duration):.3f} s")

    if start_end is None:
        start = 0
    elif start_end.seconds:
        if start_end.value >= duration:
            raise too_late("starts", start_end.value)
        start = math.floor(start_end.value * fps)
    else:
        start = int(start_end.value)
        if start > n - 1:
            raise out_of_range(start)
    if end_end is None:
        end = n - 1
    elif end_end.seconds:
        if end_end.value > duration:
            raise too_late("ends", end_end.value)
        end = math.ceil(end_end.value * fps) - 1
    else:
        end = int(end_end.value)
        if end > n - 1:
            raise out_of_range(end)
    if end < start:
        raise InputError(f"the span {text} ends (frame {end}) before it starts (frame {start}); give START:END with "
                         "START first")
    if edit_index is not None and not start <= int(edit_index) <= end:
        raise InputError(f"the edited frame {int(edit_index)} is outside the span {text} (frames {start}–{end}); "
                         "choose a span that contains it, or edit a frame inside it")

    if fade is not None and (isinstance(fade, bool) or not isinstance(fade, (int, np.integer)) or fade < 0):
        raise InputError(f"the fade must be a whole number of frames ≥ 0, got {fade!r}")
    want = default_fade(fps) if fade is None else int(fade)
    if start == 0 and end == n - 1:
        return FrameSpan(0, n - 1, n, fps, 0, 0, want)
    fade_in, fade_out = min(want, start), min(want, n - 1 - end)
    notices = []
    for side, got, room in (("in", fade_in, start), ("out", fade_out, n - 1 - end)):
        if 0 < room < want:
            notices.append(f"The fade-{side} is {got} frame{'s' if got != 1 else ''} instead of {want}: the clip "
                           f"{'starts' if side == 'in' else 'ends'} {room} frame{'s' if room != 1 else ''} "
                           f"{'before' if side == 'in' else 'after'} the span.")
    return FrameSpan(start, end, n, fps, fade_in, fade_out, want, tuple(notices))
