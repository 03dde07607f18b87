"""A propagation as one stream: every result frame in order, holding a window of frames, never the clip.

Where the edit comes from is data: `Anchor`s (a source frame and its edited image) and the `Run`s `plan_runs` makes
of them — each run carries one anchor's edit forward or backward to its end, and every frame of the span belongs to
exactly one run (or is an anchor). Everything below reads the runs; nothing else knows how many anchors there are.

Two ways to drive a backend, by what it offers:

* **Frame by frame** (`Propagator.track`, the flow backend): backward runs are walked first, from the anchor down,
  over the source decoded again in reverse windows; only each frame's compact state (`Tracker.maps`: a low-resolution
  map back to the anchor) is kept, in a `Spill` (memory up to a budget, then a temporary file). Then one forward pass
  decodes the clip once, composes every frame at its full size (backward frames from their kept state, forward runs
  walked live) and hands it on: the result streams out as the source streams in.
* **In segments** (`Propagator.propagate`, Sync-LoRA): each run is cut into the backend's chunks (`video.timing`),
  each chunk's frames decoded at working size when it is its turn, and the stitched output kept at working size in a
  `Spill`; the forward pass then brings it back to full size (`FitPlan.unfit`). Host memory is a chunk or two.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate.base import ProgressFn, Propagator, Segment, no_progress
from synclora.propagate.face_guide import FaceGuideConfig
from synclora.video import io, keyframes, lazy, timing
from synclora.video.stream import iter_frames_reversed, prefetch, sample_frames

SPILL_BUDGET = 64 * 1024**2  # bytes of per-frame state kept in memory before the rest goes to a temporary file
# Progress counts work, not frames of a run: writing a frame (compose, encode) is 1; walking a frame with a tracker
# (the flow's maps, the face mesh) costs roughly a quarter of that, making a segment backend's frame several. Counted
# by runs alone, progress stood still while the frames before the edit were written: for a 10-minute 1080p clip
# edited in its middle, 9,151 frames and most of half an hour.
WALK_UNITS = 0.25
SEGMENT_UNITS = 4.0


@dataclass(frozen=True)
class Anchor:
    """An edited frame: source frame `index` and its edit at the source's size."""

    index: int
    image: np.ndarray


@dataclass(frozen=True)
class Run:
    """Carry `anchor`'s edit from its frame to frame `stop` (inclusive), one frame at a time in direction `step`.

    `ramp` = (lo, hi): where this run meets the run from the neighbouring anchor, the frames strictly between lo and
    hi show both, weighted by distance (`weight`); None: the run alone makes its frames."""

    anchor: Anchor
    stop: int
    step: int  # +1 forward, -1 backward
    ramp: tuple[int, int] | None = None

    @property
    def frames(self) -> range:
        """Source indices of the run, the anchor's own frame first."""
        return range(self.anchor.index, self.stop + self.step, self.step)

    def __len__(self) -> int:
        return abs(self.stop - self.anchor.index) + 1

    def weight(self, i: int) -> float:
        """This run's share of frame i (1 outside its ramp)."""
        if self.ramp is None:
            return 1.0
        later = keyframes.key_weight(i, *self.ramp)  # the later anchor's share
        return 1.0 - later if self.step > 0 else later


def plan_runs(anchors: Sequence[Anchor], first: int, last: int, meet: int | None = 0) -> list[Run]:
    """The runs that cover frames first..last from `anchors` (sorted by frame, inside the span): each anchor carries
    its edit backward and forward towards its neighbour (or the span's end). Between two anchors the runs from both
    are blended by distance (`video.keyframes.ramp`) over `meet` frames around the middle (0: they meet there, one
    frame to the next; None: over the whole way between them). Runs of one frame (the anchor alone) are left out."""
    anchors = sorted(anchors, key=lambda a: a.index)
    if not anchors or any(not first <= a.index <= last for a in anchors):
        raise ValueError(f"anchors {[a.index for a in anchors]} must lie in {first}..{last}")
    runs = [Run(anchors[0], first, -1), Run(anchors[-1], last, +1)]
    for a, b in zip(anchors, anchors[1:]):
        lo, hi = keyframes.ramp(a.index, b.index, meet)
        ramp = (lo, hi) if hi - lo > 1 else None  # no frame between: a cut
        # each run stops where its weight reaches 0 (the other anchor's run has that frame alone)
        runs += [Run(a, hi - 1, +1, ramp), Run(b, lo + 1, -1, ramp)]
    return [r for r in runs if len(r) > 1]


class Spill:
    """Per-frame values kept for later, in memory up to `budget` bytes and then in an unnamed temporary file (gone
    when closed, or when the process ends however it ends). Values are arrays, dataclasses of arrays and plain
    fields, or tuples of those; `take` hands each back once."""

    def __init__(self, budget: int = SPILL_BUDGET):
        self.budget, self.held = budget, 0
        self._mem: dict[int, object] = {}
        self._disk: dict[int, object] = {}
        self._file = None

    def put(self, key: int, value) -> None:
        size = _nbytes(value)
        if self.held + size <= self.budget:
            self._mem[key] = value
            self.held += size
        else:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="synclora-")
            self._disk[key] = self._out(value)

    def take(self, key: int):
        if key in self._mem:
            value = self._mem.pop(key)
            self.held -= _nbytes(value)
            return value
        return self._in(self._disk.pop(key))

    def close(self) -> None:
        self._mem.clear()
        self._disk.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _out(self, v):
        if isinstance(v, np.ndarray):
            self._file.seek(0, os.SEEK_END)
            at = self._file.tell()
            self._file.write(np.ascontiguousarray(v).tobytes())
            return _Stored(at, v.dtype.str, v.shape)
        if isinstance(v, tuple):
            return tuple(self._out(x) for x in v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclasses.replace(v, **{f.name: self._out(getattr(v, f.name)) for f in dataclasses.fields(v)})
        return v

    def _in(self, v):
        if isinstance(v, _Stored):
            a = np.empty(v.shape, np.dtype(v.dtype))
            self._file.seek(v.at)
            self._file.readinto(memoryview(a).cast("B"))
            return a
        if isinstance(v, tuple):
            return tuple(self._in(x) for x in v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclasses.replace(v, **{f.name: self._in(getattr(v, f.name)) for f in dataclasses.fields(v)})
        return v


@dataclass(frozen=True)
class _Stored:
    at: int
    dtype: str
    shape: tuple[int, ...]


def _nbytes(v) -> int:
    if isinstance(v, np.ndarray):
        return v.nbytes
    if isinstance(v, tuple):
        return sum(_nbytes(x) for x in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return 64 + sum(_nbytes(getattr(v, f.name)) for f in dataclasses.fields(v))
    return 0


@dataclass
class StreamJob:
    """One propagation's stream: the source, the span's anchors and runs, the backend and how to fit frames to it."""

    source: Path
    info: io.VideoInfo
    anchors: list[Anchor]
    runs: list[Run]  # plan_runs(anchors, ...)
    backend: Propagator
    settings: PropagationSettings
    plan: object  # geometry.FitPlan: the working size of a segment backend
    facts: list[dict] = dataclasses.field(default_factory=list)
    notices: list[str] = dataclasses.field(default_factory=list)


def stream(job: StreamJob, progress: ProgressFn = no_progress, reverse_window: int = 32
           ) -> Iterator[tuple[int, object, object]]:
    """(i, source frame i, its carried edit at full size or None outside every run) for i = 0..n-1 in order. Frames
    are decoded ones (`video.lazy`: `np.asarray(frame)` is the RGB array) or arrays (an anchor's edited image)."""
    anchors = {a.index: a for a in job.anchors}
    kept = Spill()
    # frame -> [(how to make it from its kept state, the state's key, its weight)]: two where two runs blend
    owner: dict[int, list[tuple[Callable[[np.ndarray, object], np.ndarray], tuple[int, int], float]]] = {}
    live = [r for r in job.runs if r.step > 0]
    backend = job.backend
    probe_track = can_track(backend)
    n_frames = job.info.n_frames
    unit = WALK_UNITS if probe_track else SEGMENT_UNITS
    total = unit * sum(len(r) for r in job.runs) + n_frames or 1
    done = 0.0
    src = None

    def sub(run: Run, label: str) -> ProgressFn:
        lo, share = done / total, unit * len(run) / total
        return lambda f, text: progress(0.9 * (lo + share * f), f"{label}: {text}")

    def wrote(i: int, label: str | None = None, walked: bool = False) -> None:
        nonlocal done
        done += 1 + (unit if walked else 0)
        progress(0.9 * min(1.0, done / total), label or f"writing: frame {i + 1}/{n_frames}")

    try:
        if probe_track:
            for n, run in enumerate(job.runs):
                if run.step < 0:
                    _walk_backward(job, run, n, kept, owner, sub(run, "backward"), reverse_window)
                    done += unit * len(run)
        else:
            for n, run in enumerate(job.runs):
                _segments(job, run, n, kept, owner, sub(run, "backward" if run.step < 0 else "forward"))
                done += unit * len(run)
            live = []
        # decoded frames convert to RGB only where asked: wholly where a tracker walks them or a segment backend's
        # result is put back at full size (on the decoder's thread, ahead), elsewhere just the box an edit lands in;
        # the rest reaches the encoder as the source's own samples
        whole = [range(min(r.frames), max(r.frames) + 1) for r in (live if probe_track else job.runs)]
        src = prefetch(_warmed(lazy.iter_lazy_frames(job.source), whole))
        i = 0

        def direct(i: int, frame: np.ndarray, *more: tuple[np.ndarray, float]) -> np.ndarray | None:
            if i in anchors:
                for _, key, _ in owner.pop(i, []):
                    kept.take(key)
                return anchors[i].image
            parts = [(make(frame, kept.take(key)), w) for make, key, w in owner.pop(i, [])] + list(more)
            return _mix(parts)

        for run in sorted(live, key=lambda r: r.anchor.index):
            while i <= run.anchor.index:
                frame = next(src)
                yield i, frame, direct(i, frame)
                if i == run.anchor.index:
                    first = frame
                wrote(i)
                i += 1
            first = np.asarray(first)
            track = backend.track(first, run.anchor.image, _probes(job, run, first))
            walk = track.maps(islice(src, len(run) - 1))
            try:
                for t, (frame, state) in enumerate(walk, start=1):
                    w = run.weight(i)  # below 1 where the next anchor's backward run blends in
                    carried = track.compose(frame, state) if w > 0 else None
                    yield i, frame, (carried if w >= 1 and i not in owner else
                                     direct(i, frame, *([(carried, w)] if carried is not None else [])))
                    wrote(i, f"forward: frame {t + 1}/{len(run)}", walked=True)
                    i += 1
            finally:
                walk.close()
                track.close()
                job.facts.append(track.facts())
        for frame in src:
            yield i, frame, direct(i, frame)
            wrote(i)
            i += 1
        if i != job.info.n_frames:
            raise InputError(f"{job.source.name}: decoded {i} frames but the container reports {job.info.n_frames}")
        for m in backend.notices(job.facts):
            if m not in job.notices:
                job.notices.append(m)
    finally:
        if src is not None:
            src.close()  # stops the decoder thread now, not when the generator is collected
        kept.close()


def _mix(parts: list[tuple[np.ndarray, float]]) -> np.ndarray | None:
    """The weighted sum of a frame made by two runs (one: itself), rounded to uint8."""
    parts = [(f, w) for f, w in parts if w > 0]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0][0]
    total = sum(w for _, w in parts)
    mix = sum(np.asarray(f).astype(np.float32) * (w / total) for f, w in parts)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def _warmed(frames: Iterator, whole: list[range]) -> Iterator:
    """`frames` (decoded, lazy), each one in `whole` converted to RGB as it passes (on the decoder's thread)."""
    for i, frame in enumerate(frames):
        if any(i in r for r in whole):
            frame.rgb()
        yield frame


def _keep(owner: dict, kept: Spill, run: Run, n: int, i: int, make, state) -> None:
    """Keep run `n`'s state of frame i (unless its weight there is 0) and how to make the frame from it."""
    w = run.weight(i)
    if w <= 0:
        return
    kept.put((i, n), state)
    owner.setdefault(i, []).append((make, (i, n), w))


def can_track(backend: Propagator) -> bool:
    """Does `backend` offer the frame-by-frame form (`Propagator.track`)?"""
    return type(backend).track is not Propagator.track


def _probes(job: StreamJob, run: Run, first: np.ndarray) -> np.ndarray | None:
    """A few frames spread over the run (its anchor's own first), on which a tracker counts faces."""
    from synclora.propagate.flow import probe_indices

    config = getattr(job.backend, "config", None)
    picks = probe_indices(len(run), config.face.probes if hasattr(config, "face") else FaceGuideConfig().probes)
    return np.stack([first, *sample_frames(job.source, [run.frames[p] for p in picks if p])])


def _walk_backward(job: StreamJob, run: Run, n: int, kept: Spill, owner: dict, report: ProgressFn,
                   window: int) -> None:
    """Walk a backward run over the source decoded in reverse windows, keeping each frame's state."""
    frames = prefetch(iter_frames_reversed(job.source, run.anchor.index, run.stop, window), depth=window + 2)
    try:
        first = next(frames)
        track = job.backend.track(first, run.anchor.image, _probes(job, run, first))
        walk = track.maps(frames)
        try:
            for t, (_, state) in enumerate(walk, start=1):
                _keep(owner, kept, run, n, run.anchor.index - t, track.compose, state)
                report(t / (len(run) - 1), f"frame {t + 1}/{len(run)}")
        finally:
            walk.close()
            track.close()
            job.facts.append(track.facts())
    finally:
        frames.close()


def _segments(job: StreamJob, run: Run, n_run: int, kept: Spill, owner: dict, report: ProgressFn) -> None:
    """A run through a segment backend in its chunks (see `propagate.schedule`), each chunk's frames decoded when it
    is its turn; the stitched output is kept at working size and unfitted when its frame is written."""
    backend, spec, settings, plan = job.backend, job.backend.spec, job.settings, job.plan
    fps = float(job.info.fps)
    n = len(run)
    tplan = timing.plan_time(n, fps, spec.native_fps, 1, settings.time_mode)
    to_source = tplan.backend_to_source[: tplan.n_backend]  # backend frame -> index into the run
    try:
        chunks = timing.plan_chunks(len(to_source), spec.max_frames, spec.frame_step, max(1, settings.chunk_overlap))
    except ValueError:  # the overlap fills a whole chunk of this backend
        raise InputError(
            f"a chunk overlap of {settings.chunk_overlap} frames leaves no new frames in {backend.name}'s chunks of "
            f"at most {spec.max_frames} frames; choose a smaller chunk overlap"
        ) from None
    edited = plan.fit(run.anchor.image)

    def unfit(frame, work: np.ndarray) -> np.ndarray:
        return plan.unfit(work, np.asarray(frame))

    out = Spill()  # stitched output per backend frame
    prev: tuple[timing.Chunk, np.ndarray] | None = None
    try:
        for ci, chunk in enumerate(chunks):
            chunk_edited = edited if prev is None else prev[1][chunk.start - prev[0].start]
            frames = _read_run(job, run, to_source[chunk.indices()])
            segment = Segment(frames, chunk_edited, tplan.backend_fps, settings)

            def sub(f: float, label: str, ci=ci) -> None:
                report((ci + f) / len(chunks), f"chunk {ci + 1}/{len(chunks)} {label}" if len(chunks) > 1 else label)

            res = backend.propagate(segment, sub)
            job.facts.append(segment.facts)
            if res.shape != frames.shape or res.dtype != np.uint8:
                raise RuntimeError(f"{backend.name} returned {res.shape} {res.dtype}, expected {frames.shape} uint8")
            res = res[: chunk.length].copy()
            res[0] = chunk_edited
            k = chunk.overlap
            for j in range(k, chunk.length):
                out.put(chunk.start + j, res[j])
            if k > 1:  # cross-fade the shared frames from the previous chunk to this one (timing.stitch_chunks)
                for j in range(1, k):
                    w = j / k
                    old = out.take(chunk.start + j).astype(np.float64)
                    out.put(chunk.start + j, np.rint(old * (1 - w) + res[j].astype(np.float64) * w).astype(np.uint8))
            prev = (chunk, res)
        del prev
        # every frame of the run (but the anchor) from its backend frame; a frame used twice (fps conversion) is kept
        # twice, so each can be taken once
        back = tplan.source_to_backend
        last_use = {int(b): j for j, b in enumerate(back)}
        for j in range(1, n):
            b = int(back[j])
            v = out.take(b)
            if last_use[b] != j:
                out.put(b, v)
            _keep(owner, kept, run, n_run, run.frames[j], unfit, v)
        notices = [tplan.notice] if tplan.notice else []
        if len(chunks) > 1:
            notices.append(
                f"{n} frames were propagated in {len(chunks)} overlapping chunks of at most {spec.max_frames} frames, "
                f"cross-faded over {chunks[1].overlap} frames at each seam.")
        for m in notices:
            if m not in job.notices:
                job.notices.append(m)
    finally:
        out.close()


def _read_run(job: StreamJob, run: Run, picks: np.ndarray) -> np.ndarray:
    """Frames `run.frames[p]` for p in `picks` (one chunk's), at working size: the source range they span is decoded
    once, forward."""
    idx = np.array([run.frames[int(p)] for p in picks])
    lo, hi = int(idx.min()), int(idx.max())
    W, H = job.plan.work_size
    window = np.empty((hi - lo + 1, H, W, 3), np.uint8)
    n = 0
    for n, f in enumerate(io.iter_frames(job.source, start=lo, stop=hi + 1), start=1):
        window[n - 1] = job.plan.fit(f)
    if n != len(window):
        raise InputError(f"{job.source.name}: decoded {n} frames of {lo}–{hi} but the container reports {len(window)}")
    return window[idx - lo]
