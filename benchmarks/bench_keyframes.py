"""Two keyframes against one on a long clip: end-to-end propagation, both in the same run.

Run: python -m benchmarks.bench_keyframes [--frames 900] [--size 96] [--keys 40 700] [--repeats 1]

A drawn talking face (`synclora.testing.media.talking_face_frames`) at 30 fps, a red patch drawn on the frames
`--keys` (the same look at each); `run_propagation` with the CPU flow backend, once from the first keyframe alone (the
baseline) and once from all of them. Both write the full-length result with audio. Printed per run: wall seconds
(best of `--repeats`), the frames the backend carried (timing-independent: with two keyframes the frames between
them are carried from both and blended by distance) and the share of frames that show the edit.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from synclora import pipeline
from synclora.config import Keyframe, PropagationRequest, PropagationSettings
from synclora.propagate import registry
from synclora.testing import media
from synclora.video import io


def _counting(backend):
    """Wrap the backend's frame-by-frame tracker to count the frames it carries."""
    seen = {"frames": 0}
    original = backend.track

    def track(first, edited, probes=None):
        t = original(first, edited, probes)
        maps = t.maps

        def counted(frames):
            for item in maps(frames):
                seen["frames"] += 1
                yield item

        t.maps = counted
        return t

    backend.track = track
    return seen, lambda: setattr(backend, "track", original)


def _run(req: PropagationRequest, repeats: int) -> tuple[float, int, float]:
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
    return best, frames, _shown(req)


def _shown(req: PropagationRequest) -> float:
    """Share of frames showing the edit: at least half as many pixels made redder (R − G up by 80) as the first
    keyframe shows (the patch moves with the head, so it is counted anywhere in the frame)."""
    counts = []
    for out, src in zip(io.iter_frames(req.out), io.iter_frames(req.source)):
        o, s = out.astype(int), src.astype(int)
        counts.append(int((((o[..., 0] - o[..., 1]) - (s[..., 0] - s[..., 1])) > 80).sum()))
    counts = np.array(counts)
    return float((counts >= counts[req.keyframes[0].index] / 2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--keys", type=int, nargs="+", default=[40, 700])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    h = args.size
    patch = (slice(5 * h // 8, 5 * h // 8 + h // 10), slice(h // 8, h // 3))  # on the cheek
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        frames, _ = media.talking_face_frames(args.frames, size=(h, h), fps=30, seed=4)
        src = media.write_clip(d / "src.mp4", frames, 30, audio=media.tone(args.frames / 30 + 0.2))
        keys = []
        for k in args.keys:
            edited = io.read_frame(src, k).copy()
            edited[patch] = (255, 0, 0)
            Image.fromarray(edited).save(d / f"k{k}.png")
            keys.append(Keyframe(k, d / f"k{k}.png"))

        def request(keyframes) -> PropagationRequest:
            return PropagationRequest(source=src, edited=None, out=d / "out.mp4", keyframes=tuple(keyframes),
                                      settings=PropagationSettings(backend="flow"))

        registry.get(request(keys[:1]).settings)  # load the backend once, outside the timings
        one_s, one_n, one_kept = _run(request(keys[:1]), args.repeats)
        all_s, all_n, all_kept = _run(request(keys), args.repeats)

    print(f"clip: {args.frames} frames at 30 fps, {h}×{h}, flow backend, keyframes {args.keys}")
    print(f"{'run':<16} {'seconds':>8} {'frames carried':>15} {'edit shown':>11}")
    print(f"{'one keyframe':<16} {one_s:>8.2f} {one_n:>15d} {one_kept:>10.1%}   (baseline, frame {args.keys[0]})")
    print(f"{f'{len(keys)} keyframes':<16} {all_s:>8.2f} {all_n:>15d} {all_kept:>10.1%}")
    print(f"{len(keys)} keyframes / one: {all_s / one_s:.2f}× the time, "
          f"{all_n / max(1, one_n):.2f}× the frames carried")


if __name__ == "__main__":
    main()
