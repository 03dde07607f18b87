"""Speed of the sync report's face-cue extraction, against a naive baseline measured in the same run.

Baseline: MediaPipe face mesh (iris refinement on) in static-image mode on every full-resolution frame — what a
straightforward per-frame loop does. Ours: tracking mode (detector only when the face is lost) on frames downscaled
by a whole factor so the face stays ≥ 192 px. Reported as frames/s per video on this machine (wall clock and
CPU-ms per frame, which other processes on a shared machine disturb less), plus the whole report (two videos on two
threads, scoring), with identity (8 sampled frames) and from mp4 files.

From mp4 files the baseline is the previous decoding path (every frame converted to full-size RGB by
`io.iter_frames`, then shrunk for the landmarker); ours decodes to lazy frames (`synclora.video.lazy`: the landmarker's
image is made straight from the YUV planes at its size). Then the report as the app runs it: with the edited frame
(what the edit hides, the edit-kept score) and the landmark view video.

    python -m benchmarks.bench_metrics [--frames 150] [--size 720] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _clip(n: int, height: int, edit: str | None = None) -> np.ndarray:
    """A talking Grace Hopper clip at 16:9, `height` px high (face ≈ 60 % of the height, like a portrait video)."""
    import cv2

    from synclora.testing.faces import talking_clip

    c = talking_clip("grace_hopper", n, size=height, edit=edit)
    width = int(round(height * 16 / 9)) // 2 * 2
    pad = (width - height) // 2
    return np.stack([cv2.copyMakeBorder(f, 0, 0, pad, width - height - pad, cv2.BORDER_REPLICATE) for f in c.frames])


def _timed(fn, *a, **kw):
    """(result, wall seconds, CPU seconds of the whole process: all threads, MediaPipe's own included)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", type=int, default=720, help="frame height; width is 16:9")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads allowed (taskset-like limit via affinity)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, cpus)
    from synclora.metrics.compare import compare_videos
    from synclora.metrics.landmarks import extract_cues
    from synclora.testing.faces import delay
    from synclora.video.io import write_video

    frames = _clip(args.frames, args.size)
    n, h, w = frames.shape[:3]
    print(f"clip: {n} frames {w}×{h}, {len(os.sched_getaffinity(0))} CPU core(s)")

    extract_cues(frames[:10])  # warm-up: model load, XNNPACK init
    base, t_base, c_base = _timed(extract_cues, frames, static=True, search_side=100_000, face_px=100_000)
    ours, t_ours, c_ours = _timed(extract_cues, frames)
    fps_base, fps_ours = n / t_base, n / t_ours
    print(f"baseline  static full-res face mesh : {fps_base:7.1f} frames/s  ({1000 * c_base / n:.2f} CPU-ms/frame; "
          f"faces {base.face.sum()}/{n})")
    print(f"ours      tracking + whole-factor ↓ : {fps_ours:7.1f} frames/s  ({1000 * c_ours / n:.2f} CPU-ms/frame; "
          f"faces {ours.face.sum()}/{n})  ×{fps_ours / fps_base:.1f} wall, ×{c_base / c_ours:.1f} CPU")
    diffs = {k: float(np.nanmedian(np.abs(ours.cues[k] - base.cues[k]))) for k in ours.cues}
    print("median |ours − baseline| per cue: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))

    result = delay(frames, 2)
    rep, t_pair, c_pair = _timed(compare_videos, frames, result)
    print(f"report    2 videos (arrays)         : {n / t_pair:7.1f} frames/s per video  ({t_pair:.2f} s, "
          f"{1000 * c_pair / (2 * n):.2f} CPU-ms/frame; verdict: {rep.verdict})")
    rep, t_id, c_id = _timed(compare_videos, frames, result, edited_frame=frames[0])
    print(f"  + identity on {len(rep.identity.frames)} frames         : {n / t_id:7.1f} frames/s per video  "
          f"(+{c_id - c_pair:.2f} CPU-s)")
    from synclora.video.frames import Frames

    with tempfile.TemporaryDirectory() as d:
        src, res = Path(d) / "src.mp4", Path(d) / "res.mp4"
        write_video(src, frames, 25)
        write_video(res, result, 25)
        lazy_frames = Frames.lazy
        Frames.lazy = Frames.rgb  # the previous decoding path, for the baseline: every frame converted to full RGB
        try:
            rep, t_old, c_old = _timed(compare_videos, src, res)
        finally:
            Frames.lazy = lazy_frames
        print(f"report    mp4, full-RGB decode (old): {n / t_old:7.1f} frames/s per video  ({t_old:.2f} s, "
              f"{1000 * c_old / (2 * n):.2f} CPU-ms/frame)")
        rep, t_file, c_file = _timed(compare_videos, src, res)
        print(f"report    mp4, lazy decode (ours)   : {n / t_file:7.1f} frames/s per video  ({t_file:.2f} s, "
              f"{1000 * c_file / (2 * n):.2f} CPU-ms/frame)  ×{t_old / t_file:.2f} wall, ×{c_old / c_file:.2f} CPU; "
              f"verdict: {rep.verdict}")
        # The app's report: a sunglasses edit, its edited frame and edit index, then also the landmark view.
        glasses = _clip(args.frames, args.size, edit="sunglasses")
        k = n // 3
        write_video(res, glasses, 25)
        _, t_first, c_first = _timed(compare_videos, src, res, edited_frame=glasses[k], edit_index=k,
                                     identity_frames=0)  # pays the one-off start-up (static landmarker, tables)
        rep, t_edit, c_edit = _timed(compare_videos, src, res, edited_frame=glasses[k], edit_index=k,
                                     identity_frames=0)
        print(f"  + edit analysis and edit kept    : {n / t_edit:7.1f} frames/s per video  ({t_edit:.2f} s, "
              f"{1000 * c_edit / (2 * n):.2f} CPU-ms/frame; first call +{c_first - c_edit:.2f} CPU-s; "
              f"verdict: {rep.verdict})")
        rep, t_view, c_view = _timed(compare_videos, src, res, edited_frame=glasses[k], edit_index=k,
                                     identity_frames=0, landmarks_video=Path(d) / "view.mp4")
        print(f"  + landmark view video            : {n / t_view:7.1f} frames/s per video  ({t_view:.2f} s, "
              f"{1000 * c_view / (2 * n):.2f} CPU-ms/frame)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes slow wall-clock numbers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
