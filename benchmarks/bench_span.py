"""A short span of a long clip is fast: end-to-end propagation of a span against the whole clip, in the same run.

Run: python -m benchmarks.bench_span [--frames 600] [--size 256] [--span 2s:4s] [--repeats 2]

A drawn talking face (`synclora.testing.media.talking_face_frames`) at 25 fps, its frame at the middle of the span
edited with a red patch; `run_propagation` with the CPU flow backend, once for the whole clip (the baseline) and once
with `--span` (default fade). Both write the full-length result with audio. Printed per run: wall seconds (best of
`--repeats`) and the frames handed to the backend, which is the timing-independent figure: it only depends on the
span, not on the machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from synclora import pipeline
from synclora.config import PropagationRequest, PropagationSettings
from synclora.propagate import registry
from synclora.testing import media
from synclora.video import io, timing


def _counting(backend):
    """Wrap the backend to count the frames it is handed: segments (`propagate`) or, frame by frame (`track`), the
    anchor and every frame its walk takes."""
    seen = {"frames": 0}
    original, original_track = backend.propagate, backend.track

    def propagate(segment, progress=None):
        seen["frames"] += len(segment.frames)
        return original(segment) if progress is None else original(segment, progress)

    def track(first, edited, probes=None):
        tracker = original_track(first, edited, probes)
        if tracker is None:
            return None
        walk = tracker.maps

        def maps(frames):
            seen["frames"] += 1
            for frame in frames:
                seen["frames"] += 1
                yield frame

        tracker.maps = lambda frames: walk(maps(frames))
        return tracker

    backend.propagate, backend.track = propagate, track

    def restore():
        backend.propagate, backend.track = original, original_track

    return seen, restore


def _run(req: PropagationRequest, repeats: int) -> tuple[float, int]:
    backend = registry.get(req.settings)
    best, frames = float("inf"), 0
    for _ in range(repeats):
        seen, restore = _counting(backend)
        try:
            t0 = time.perf_counter()
            pipeline.run_propagation(req)
            best = min(best, time.perf_counter() - t0)
        finally:
            restore()
        frames = seen["frames"]
    return best, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--span", default="2s:4s")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        frames, _ = media.talking_face_frames(args.frames, size=(args.size, args.size), fps=25, seed=4)
        src = media.write_clip(d / "src.mp4", frames, 25, audio=media.tone(args.frames / 25 + 0.2))
        info = io.probe(src)
        span = timing.resolve_span(args.span, info)
        k = (span.start + span.end) // 2
        edited = io.read_frame(src, k).copy()
        h = args.size
        edited[h // 3: h // 2, h // 3: 2 * h // 3] = (255, 0, 0)
        Image.fromarray(edited).save(d / "edited.png")

        def request(**settings) -> PropagationRequest:
            return PropagationRequest(source=src, edited=d / "edited.png", out=d / "out.mp4", edit_index=k,
                                      settings=PropagationSettings(backend="flow", **settings))

        registry.get(request().settings)  # load the backend once, outside the timings
        whole_s, whole_n = _run(request(), args.repeats)
        span_s, span_n = _run(request(span=args.span), args.repeats)

    print(f"clip: {args.frames} frames at 25 fps, {args.size}×{args.size}, flow backend, edit index {k}")
    print(f"span {args.span}: {span.describe()}")
    print(f"{'run':<12} {'seconds':>8} {'frames to backend':>18}")
    print(f"{'whole clip':<12} {whole_s:>8.2f} {whole_n:>18d}   (baseline)")
    print(f"{'span':<12} {span_s:>8.2f} {span_n:>18d}")
    print(f"span / whole: {span_s / whole_s:.2f}× the time, {span_n / whole_n:.3f}× the frames "
          f"(decoding and writing all {args.frames} frames remain in both)")


if __name__ == "__main__":
    main()
