"""Two videos in, a `SyncReport` out: the report of a result that already exists (the `report` CLI, the app's
report panel, curation, evaluation).

Both videos are decoded and measured at once, one thread each, by the very per-frame work a propagation's report tap
does as its frames pass (`synclora.metrics.tap.ReportTap`): every route measures the same numbers for the same frames.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from synclora.metrics.landmarks import ProgressFn
from synclora.metrics.report import SyncReport
from synclora.metrics.scores import SyncThresholds
from synclora.metrics.tap import IDENTITY_MAX_FRAMES, ReportTap
from synclora.video.frames import Frames


def compare_videos(
    source,
    result,
    *,
    edited_frame=None,
    edit_index: int | None = None,
    frame_range: tuple[int, int] | None = None,
    max_lag: int = 5,
    progress: ProgressFn | None = None,
    thresholds: SyncThresholds | None = None,
    identity_frames: int = IDENTITY_MAX_FRAMES,
    landmarks_video: str | Path | None = None,
    source_cues=None,
) -> SyncReport:
    """Measure how well `result` follows `source` (paths, (T, H, W, 3) uint8 RGB arrays or `Frames`).

    The result is compared by time: each source frame with the result frame on screen at its time, over the time
    both cover (`metrics.timeline`); a different rate, size or length is said in the notes.
    `edited_frame` (image or path) enables the identity score and, with `edit_index` (the source frame it was made
    from; found by matching when None), what the edit hides and how much of it each frame keeps. Without an edited
    frame, `edit_index` alone takes the result's own frame there as the edit. `frame_range=(start, stop)` compares
    that span of the source's frames (and the result over the same time). `identity_frames`: how many result frames
    identity compares (0: no identity score). `landmarks_video`: write the landmark view (mp4). `source_cues`: the
    source's cues measured ahead (`synclora.metrics.source_cues.SourceCues`): the source is then read only if the
    edit-kept score needs its frames.
    """
    tap = ReportTap(source, result, edited_frame=edited_frame, edit_index=edit_index, frame_range=frame_range,
                    max_lag=max_lag, progress=progress, thresholds=thresholds, identity_frames=identity_frames,
                    landmarks_video=landmarks_video, source_cues=source_cues)
    start, stop = tap.start, tap.stop

    def measure(side: str, video: Frames) -> None:
        first, last = (start, stop) if side == "source" else tap.timeline.result_range  # the same time on both
        tap.feed(side, video.lazy(first, last), first)

    sides = [("source", tap.source), ("result", tap.result)] if tap.reads("source") else [("result", tap.result)]
    ok = False
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(measure, side, video) for side, video in sides]
            for f in futures:
                f.result()  # the first error stops the other side at its next frame (the pool's exit waits for it)
        ok = True
    finally:
        tap.finish(ok)
    return tap.report()
