"""Soak: many edits in a row in one process must not grow its memory (a hosted app runs for days).

Runs `run_propagation` N times (tiny talking-face clip, CPU flow backend, a different edited frame and seed each
time) and prints the process RSS before, after the first (warm-up) request, at the end and at its peak, plus the
growth per request after warm-up. Not a test: run it by hand.

    python -m benchmarks.bench_soak [--n 100] [--size 96x128] [--frames 24]
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_mb()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--size", default="96x128", help="clip width x height")
    p.add_argument("--frames", type=int, default=24)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    from PIL import Image

    from synclora.config import PropagationRequest, PropagationSettings
    from synclora.pipeline import run_propagation
    from synclora.testing import media
    from synclora.video import io

    tmp = Path(tempfile.mkdtemp(prefix="synclora-soak-"))
    frames, _ = media.talking_face_frames(args.frames, size=(w, h), seed=0)
    src = media.write_clip(tmp / "src.mp4", frames, 25, audio=media.tone(args.frames / 25 + 0.1))
    edits = []
    for k in range(0, args.frames, max(1, args.frames // 4)):
        img = io.read_frame(src, k).copy()
        img[h // 3: h // 2, w // 3: w // 2] = (255, 0, 0)
        Image.fromarray(img).save(tmp / f"edit{k}.png")
        edits.append((k, tmp / f"edit{k}.png"))

    gc.collect()
    start = rss_mb()
    rss, times = [], []
    for i in range(args.n):
        k, ed = edits[i % len(edits)]
        t0 = time.perf_counter()
        res = run_propagation(PropagationRequest(src, ed, tmp / "out.mp4", edit_index=k, side_by_side=tmp / "sbs.mp4",
                                                 settings=PropagationSettings(backend="flow", seed=i)))
        times.append(time.perf_counter() - t0)
        assert res.source_info.n_frames == args.frames
        gc.collect()
        rss.append(rss_mb())
        if (i + 1) % 10 == 0:
            print(f"request {i + 1:4d}: rss {rss[-1]:7.1f} MB, {times[-1] * 1000:6.0f} ms")
    warm = rss[0]
    tail = rss[len(rss) // 2:]
    slope = (tail[-1] - tail[0]) / max(1, len(tail) - 1)
    print(f"\n{args.n} requests, clip {w}x{h}, {args.frames} frames, flow backend (with side-by-side)")
    print(f"RSS start {start:.1f} MB | after request 1 {warm:.1f} MB | end {rss[-1]:.1f} MB | peak {peak_mb():.1f} MB")
    print(f"growth after warm-up: {rss[-1] - warm:+.1f} MB total, {slope * 1000:+.1f} KB/request over the second half")
    print(f"time per request: median {sorted(times)[len(times) // 2] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
