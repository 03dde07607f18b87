"""The sync report measured as the frames pass, so its verdict is ready as soon as the result is.

`ReportTap` is a `synclora.video.taps.FrameTap`: a propagation hands it every source frame as it decodes it and every
result frame as it encodes it, and the tap runs the face landmarker on them on two worker threads (one per video: the
tracker follows the face from frame to frame), fed through short bounded queues. When the propagation ends, the cue
curves are complete and the report is a few milliseconds of arithmetic away — no second decoding of either video.

`compare_videos` (files, arrays: the `report` CLI, the app, curation) feeds the very same per-frame work from the
decoders, so every route measures the same numbers for the same frames. What the tap keeps is numbers per frame (cues,
the edit-kept score, identity descriptors of a few frames), never frames: its memory is flat in the clip's length
apart from a few bytes per frame. The landmark view is not made here unless asked for (`landmarks_video`).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from synclora.errors import InputError
from synclora.metrics.landmarks import CueStream, CueTrack, ProgressFn
from synclora.metrics.scores import SyncThresholds
from synclora.metrics.timeline import line_up
from synclora.video.frames import Frames

# Identity compares at most this many result frames, evenly spaced, and at most one a second: dlib's ResNet descriptor
# (dlib-bin has no BLAS) costs ~85-130 CPU-ms a face, as much as ~17 frames of cue extraction, and identity drifts
# slowly (a 3 s clip gets 3 looks, not 8; 10 s and longer get 8).
IDENTITY_MAX_FRAMES = 8
IDENTITY_SPACING_S = 1.0

# The rate the landmark view of frames given without one (arrays) plays at; said in the report's notes.
VIEW_FPS = 25.0

# Frames each worker's queue holds: enough to ride out the landmarker's uneven cost (a lost face runs the detector),
# small enough that the copies stay a few dozen MB at 1080p.
QUEUE_FRAMES = 8
# What a tap holds at its peak besides the propagation: two landmarkers, the identity model and a static landmarker
# for the edited frame, plus the queued frame copies. Measured: +240 MB peak RSS at 1280×720 (the edited frame given,
# 90 frames); this is that with a margin.
BASE_BYTES = 256 * 1024**2
PIXEL_BYTES = 2 * QUEUE_FRAMES * 3 + 8


def memory_need(width: int, height: int) -> int:
    """Bytes a report tap on a width×height propagation needs at its peak (the app admits jobs by it)."""
    return BASE_BYTES + width * height * PIXEL_BYTES


class _Side:
    """One video's frames through its own landmarker, on a worker thread (`put`) or on the caller's (`process`)."""

    def __init__(self, tap: ReportTap, name: str, hook, size: tuple[int, int] | None):
        self.tap, self.name, self.hook = tap, name, hook
        self.size = size
        self.stream = CueStream(on_frame=hook)
        self.next = tap.start  # the next frame index expected (in the whole clip)
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.thread: threading.Thread | None = None
        self.done = False

    def process(self, index: int, frame) -> None:
        """Measure frame `index` (ascending, no gaps) now."""
        tap = self.tap
        if index != self.next:
            raise RuntimeError(f"the sync report expected {self.name} frame {self.next}, got frame {index}")
        self.next += 1
        self.stream.add(frame)
        i, n = index - tap.start + 1, tap.n
        if tap.progress is not None and (i % 25 == 1 or i == n):
            tap.side_progress(self.name, i / n)

    def put(self, index: int, frame) -> None:
        """Queue frame `index` for the worker (a copy: the caller may reuse its array); waits while the queue is
        full."""
        tap = self.tap
        if not tap.start <= index < tap.stop:
            return
        if tap.failed.is_set() and not tap.strict:
            return  # the report failed; the propagation goes on without it
        tap.raise_failure()
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name=f"sync-report-{self.name}", daemon=True)
            self.thread.start()
        # An array is copied (the caller may reuse it); a decoder's lazy frame owns its data and is taken as it is.
        item = (index, np.array(frame, dtype=np.uint8, copy=True) if isinstance(frame, np.ndarray) else frame)
        while True:
            try:
                self.q.put(item, timeout=0.1)
                return
            except queue.Full:
                if tap.failed.is_set() and not tap.strict:
                    return
                tap.raise_failure()

    def _work(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None or self.tap.failed.is_set():
                    break
                self.process(*item)
            self.end()
        except BaseException as exc:  # noqa: BLE001 - handed to the propagation at its next frame and at finish()
            self.tap.fail(exc)
            self.end(failed=True)
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self.q.get_nowait()
            except queue.Empty:
                return

    def end(self, failed: bool = False) -> None:
        """No more frames from this side: release the other side's pairing."""
        self.done = True
        if self.tap.paired is not None:
            self.tap.paired.finish(self.name, failed=failed)

    def close(self) -> None:
        """Let the worker finish what is queued and wait for it."""
        if self.thread is not None:
            while self.thread.is_alive():
                try:
                    self.q.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self.tap.failed.is_set():
                        self._drain()
            self.thread.join()
        elif not self.done:
            self.end()
        self.stream.close()

    def track(self, fps: float | None) -> CueTrack | None:
        return self.stream.track(fps, self.size) if len(self.stream) else None


class _KnownSource:
    """The source's side when its cues were measured ahead (`SourceCues`): no landmarker runs; only the edit-kept
    score still samples each source frame where the known landmarks put the edit (a small patch, on the caller's
    thread; nothing of the frame is kept)."""

    def __init__(self, tap: ReportTap, cues, hook):
        from synclora.video.lazy import as_frame

        self.tap, self.cues, self.hook, self._frame = tap, cues, hook, as_frame
        self.name, self.next, self.done = "source", tap.start, False

    def put(self, index: int, frame) -> None:
        tap = self.tap
        if not tap.start <= index < tap.stop or self.hook is None or tap.failed.is_set():
            if tap.failed.is_set() and tap.strict:
                tap.raise_failure()
            return
        try:
            if index != self.next:
                raise RuntimeError(f"the sync report expected source frame {self.next}, got frame {index}")
            self.next += 1
            pts, k = self.cues.landmarks(index)
            self.hook(index - tap.start, self._frame(frame), pts, k)
        except BaseException as exc:
            tap.fail(exc)
            if tap.strict:
                raise

    def process(self, index: int, frame) -> None:
        self.put(index, frame)

    def end(self, failed: bool = False) -> None:
        self.done = True
        if self.tap.paired is not None:
            self.tap.paired.finish("source", failed=failed)

    def close(self) -> None:
        if not self.done:
            self.end()

    def track(self, fps: float | None) -> CueTrack | None:
        return self.cues.track.slice(self.tap.start, self.tap.stop)


class ReportTap:
    """The sync report of a result against its source, fed frame by frame (see the module's docstring).

    `source`: the source video (path or (T, H, W, 3) array) — what the edit hides and keeps is measured on its frame
    at the edit index before any frame passes. `result`: the result when it already exists (`compare_videos`), or
    None while a propagation is making it (the same frame count and size as the source unless `result_size` says
    otherwise). The other arguments are `compare_videos`'s. Call `on_source` / `on_result` (or `compare_videos`'s
    feeders), then `finish(ok)`, then `report()`. `strict=False`: a failure of the report (not of the propagation)
    never fails the propagation; `report()` raises it instead. `source_cues`: the source's cues measured ahead
    (`synclora.metrics.source_cues.SourceCues`; used when complete and the comparison starts at frame 0): then only
    the result is measured.
    """

    def __init__(self, source, result=None, *, edited_frame=None, edit_index: int | None = None,
                 frame_range: tuple[int, int] | None = None, max_lag: int = 5, progress: ProgressFn | None = None,
                 thresholds: SyncThresholds | None = None, identity_frames: int | None = None,
                 landmarks_video: str | Path | None = None, result_size: tuple[int, int] | None = None,
                 fps: float | None = None, strict: bool = True, source_cues=None):
        from synclora.metrics.edited import analyse_edit, load_reference

        th = self.thresholds = thresholds or SyncThresholds()
        identity_frames = IDENTITY_MAX_FRAMES if identity_frames is None else identity_frames
        # A file is checked against the clips a propagation takes: a report never runs for hours on a forged length.
        self.source = Frames.of(source).check_length()
        self.result = Frames.of(result).check_length() if result is not None else None
        n_src = self.source.n_frames
        src_size = self.source.size
        res_size = self.result.size if self.result is not None else (result_size or src_size)
        # By time, not frame index (`metrics.timeline`): a result of another rate, size or length is said and each
        # source frame is compared with the result frame on screen at its time. A result still being made has the
        # source's frames; frames from memory have no rate of their own and go frame by frame with the other video.
        if self.result is not None:
            self.timeline = line_up(n_src, self.result.n_frames, self.source.fps, self.result.fps, src_size, res_size,
                                    frame_range)
        else:
            self.timeline = line_up(n_src, n_src, None, None, src_size, res_size, frame_range)
        start, stop = self.timeline.start, self.timeline.stop
        self.start, self.stop, self.n = start, stop, stop - start
        self.max_lag, self.progress = max_lag, progress
        self.fps = fps if fps is not None else self.source.fps or (self.result.fps if self.result is not None else None)
        self.strict = strict
        self.failed = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = {"source": 0.0, "result": 0.0}
        self._finished = False
        self._report = None

        ref = load_reference(edited_frame) if edited_frame is not None else None
        self.every = 0
        if ref is not None and identity_frames > 0:
            spacing = round((self.fps or VIEW_FPS) * IDENTITY_SPACING_S)
            self.every = max(1, int(np.ceil(self.n / identity_frames)), spacing)
        if progress is not None and (ref is not None or edit_index is not None):
            progress(0.0, "looking at the edited frame")
        if result is None and ref is None:
            edit_index = None  # the edit is the result's own frame there, and the result is not made yet
        self.edit, probe, self.notes = analyse_edit(self.source, self.result, ref, edit_index, n_src)
        self.ref_desc, self.identity_note = (None, "")
        if ref is not None and self.every:
            self.ref_desc, self.identity_note = _reference_descriptor(ref)
        self.descs: dict[int, np.ndarray] = {}

        self.paired = None
        if probe is not None or landmarks_video is not None:
            from synclora.metrics.paired import AHEAD, PairedPass
            from synclora.metrics.view import LandmarkVideo

            view = None
            if landmarks_video is not None:
                audio = self.source.path
                if self.fps is None:
                    self.notes.append(f"the frames came without a frame rate: the landmark view plays them at "
                                      f"{VIEW_FPS:g} fps")
                view = LandmarkVideo(landmarks_video, self.fps or VIEW_FPS, src_size, res_size,
                                     self.edit.hidden if self.edit is not None else set(), start=start,
                                     audio_from=audio, audio_span=(start, stop) if audio else None)
            # A propagation may decode the source far ahead of its result: the source's side never waits then.
            self.paired = PairedPass(self.n, src_size, res_size, probe=probe, view=view, start=start,
                                     low=th.min_edit_kept, ahead=None if result is None else AHEAD)
        hook = self.paired.source_frame if self.paired else None
        # Measured from frame 0: a span starting later is measured afresh, as the result is (the tracker's history
        # shapes its landmarks, so both videos start it on the same frame).
        if source_cues is not None and source_cues.ready() and source_cues.n == n_src and start == 0:
            self._source = _KnownSource(self, source_cues, hook)
        else:
            self._source = _Side(self, "source", hook, src_size)
        self._result = _Side(self, "result", self._result_hook, res_size)
        self._when_ready = None
        self._early: threading.Thread | None = None

    # -- the FrameTap contract
    def on_source(self, index: int, frame: np.ndarray) -> None:
        self._source.put(index, frame)

    def on_result(self, index: int, frame: np.ndarray) -> None:
        self._result.put(index, frame)

    def when_ready(self, fn) -> None:
        """Call `fn(report)` as soon as every frame is measured (`frames_done`), on a thread of its own, while the
        propagation still finishes its outputs; `finish` waits for it. A report that fails is not handed over (`report`
        raises it), nor is a failure of `fn` kept (the caller can still do the work itself)."""
        self._when_ready = fn

    def frames_done(self) -> None:
        """`video.taps`: every frame has been handed over; the outputs are still being finished."""
        if self._when_ready is None or self._finished or self._early is not None or self.failed.is_set():
            return
        self._early = threading.Thread(target=self._finish_early, name="sync-report-early", daemon=True)
        self._early.start()

    def _finish_early(self) -> None:
        try:
            self.finish(True)
            report = self.report()
        except BaseException as exc:  # noqa: BLE001 - kept by the tap: finish and report() raise it to the caller
            if not self.failed.is_set():
                self.fail(exc)
            return
        try:
            self._when_ready(report)
        except BaseException:  # noqa: BLE001 - the caller does the work itself then
            pass

    def finish(self, ok: bool) -> None:
        """Wait for the workers (ok) or stop them (not ok); raises what a worker hit."""
        early = self._early
        if early is not None and early is not threading.current_thread():
            early.join()  # finished on its own thread with every frame measured; the run's outcome is the caller's
            if self.strict:
                self.raise_failure()
            return
        if self._finished:
            return
        self._finished = True
        if not ok:
            self.fail(InputError("stopped"))
        try:
            for side in (self._source, self._result):
                side.close()
        finally:
            view = self.paired.view if self.paired is not None else None
            view_path = view.close(ok and not self.failed.is_set()) if view is not None else None
        if not ok:
            return
        try:
            self.raise_failure()
            self._report = self._build(view_path)
        except Exception as exc:
            if self.strict:
                raise
            self.fail(exc)

    def report(self):
        """The `SyncReport` (after `finish(True)`); raises what stopped it."""
        self.raise_failure()
        if self._report is None:
            raise RuntimeError("the sync report is not finished")
        return self._report

    def reads(self, side: str) -> bool:
        """Whether the tap needs this side's frames (not the source's when its cues are known and unpaired)."""
        return side == "result" or not (isinstance(self._source, _KnownSource) and self._source.hook is None)

    # -- feeding from the caller's own threads (compare_videos: each decoder runs its side's work itself)
    def feed(self, side: str, frames, start: int) -> None:
        """Measure `frames` (arrays or lazy frames, frame `start` first) on this thread, as side `side`. The result's
        frames are its own (`timeline.result_range`): each is measured once for every source frame it is on screen
        at (`Timeline.sources_of`: once at the same rate; twice, or not at all, at half or twice the rate)."""
        s = self._source if side == "source" else self._result
        on_timeline = side == "source" or self.timeline.by_index
        try:
            for j, frame in enumerate(frames, start):
                self.raise_failure()
                for i in ((j,) if on_timeline else self.timeline.sources_of(j)):
                    s.process(i, frame)
        except BaseException as exc:
            self.fail(exc)
            s.end(failed=True)
            raise
        s.end()

    # -- internals
    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self.failed.set()
        if self.paired is not None:  # a side waiting for its pair is released
            self.paired.finish("source", failed=True)
            self.paired.finish("result", failed=True)

    def raise_failure(self) -> None:
        if self.failed.is_set():
            raise self._error if self._error is not None else InputError("stopped")

    def side_progress(self, side: str, frac: float) -> None:
        with self._lock:
            self._done[side] = frac
            total = 0.9 * (self._done["source"] + self._done["result"]) / 2
        self.progress(total, "measuring face cues")

    def _result_hook(self, i: int, frame, pts, k: int) -> None:
        if self.paired is not None:
            self.paired.result_frame(i, frame, pts, k)
        if self.ref_desc is not None and pts is not None and i % self.every == 0:
            from synclora.metrics.identity import descriptor

            box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
            self.descs[i] = descriptor(frame.rgb(), box)  # a few frames; nothing of them is kept

    def _build(self, view_path):
        from synclora.metrics.identity import score_descriptors
        from synclora.metrics.verdict import score_tracks

        src, res = self._source.track(self.fps), self._result.track(self.fps)
        n_src, n_res = (0 if t is None else len(t) for t in (src, res))
        if n_src != n_res or n_src != self.n:
            raise InputError(f"read {n_src} source and {n_res} result frames of the {self.n} compared; the videos do "
                             "not line up")
        notes = list(self.notes)
        identity = None
        if self.every:
            if self.identity_note:
                notes.append(self.identity_note)
            elif not self.descs:
                notes.append("no face in the sampled result frames: identity not scored")
            else:
                identity = score_descriptors(self.ref_desc, self.descs, self.every,
                                             self.thresholds.max_identity_distance)
        kept = self.paired.edit_kept() if self.paired is not None else None
        report = score_tracks(src, res, self.max_lag, thresholds=self.thresholds, identity=identity, edit=self.edit,
                              kept=kept)
        report.notes += self.timeline.notes + notes
        report.frames = (self.start, self.stop - 1)
        report.landmarks_video = view_path
        if self.progress is not None:
            self.progress(1.0, "sync report ready")
        return report


def _reference_descriptor(ref: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The edited frame's face descriptor, or None and why not."""
    from synclora.face.mesh import FaceMeshTracker
    from synclora.metrics.identity import descriptor

    with FaceMeshTracker(static=True) as tracker:
        pts = tracker.landmarks(ref)
    if pts is None:
        return None, "no face found in the edited frame: identity not scored"
    return descriptor(ref, (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())), ""


def tap_for(req, *, strict: bool = False, source_cues=None, background: bool = False):
    """The report tap for a propagation request (`config.PropagationRequest`): the edited frame and its index from
    the request, judging its span (without the fades) as `report --span` does. None when the span is one frame: no
    motion to judge. `background`: built on a thread while the propagation starts (`video.taps.BuiltLater`)."""
    from synclora.video import io, timing

    frame_range = None
    if req.settings.span:
        judged = timing.resolve_span(req.settings.span, io.probe(req.source))
        if judged.length < 2:
            return None
        frame_range = None if judged.whole else (judged.start, judged.end + 1)
    def build() -> ReportTap:
        return ReportTap(Path(req.source), edited_frame=Path(req.edited), edit_index=int(req.edit_index),
                         frame_range=frame_range, strict=strict, source_cues=source_cues)

    if background:
        from synclora.video.taps import BuiltLater

        return BuiltLater(build)
    return build()
