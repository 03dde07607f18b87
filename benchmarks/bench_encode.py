"""The result's encoder on 720p frames: its RGB → Y'CbCr conversion and x264's threading, each against a baseline
measured in the same run.

Run: python -m benchmarks.bench_encode [--frames 90] [--size 720] [--repeats 2]

The frames: a real face (Grace Hopper, `synclora.testing.faces.talking_clip`) widened to 16:9, as bench_e2e's clip.
- conversion: `video.colour.rgb_to_yuv420_frame` (luma as one channel, chroma of the frame averaged to half size)
  against converting every pixel to Y'CbCr and then averaging the chroma (the conversion it replaced); CPU ms per
  frame and the largest difference in any plane (levels);
- threading: `io.write_video` (x264 CRF 18 preset medium) with x264's frame threads (as the ffmpeg command line uses
  them; ours) against slice threads (PyAV's default); wall and CPU seconds, the file size;
- the side-by-side video (source | result, twice the width): x264 CRF 18 at `io.VIEWING_PRESET` (ours) against
  medium (the result's preset); CPU ms per frame and the file size.
Timings on a shared machine are noisy: compare the ratios, and repeat.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def frames_720(n: int, height: int) -> list[np.ndarray]:
    import cv2

    from synclora.testing.faces import talking_clip

    plain = talking_clip("grace_hopper", n, size=height, seed=1).frames
    width = int(round(height * 16 / 9)) // 2 * 2
    pad = (width - height) // 2
    return [cv2.copyMakeBorder(f, 0, 0, pad, width - height - pad, cv2.BORDER_REPLICATE) for f in plain]


def convert_every_pixel(img: np.ndarray) -> np.ndarray:
    """The baseline: every pixel to Y'CbCr, then the chroma averaged over each 2x2 block (yuv420p planes)."""
    import cv2

    from synclora.video.colour import _RGB2YUV709

    h, w = img.shape[:2]
    yuv = cv2.transform(img, _RGB2YUV709)
    uv = cv2.resize(yuv[..., 1:], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return np.concatenate([yuv[..., 0].reshape(-1), np.ascontiguousarray(uv[..., 0]).reshape(-1),
                           np.ascontiguousarray(uv[..., 1]).reshape(-1)]).reshape(h * 3 // 2, w)


def encode(frames: list[np.ndarray], path: Path, threads: str,
           preset: str = "medium") -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of `io.write_video` with x264's `threads` ("FRAME" or "SLICE") threads."""
    from synclora.video import io

    c0, t0 = cpu_s(), time.perf_counter()
    io.write_video(path, frames, 30, preset=preset, threads=threads)
    return time.perf_counter() - t0, cpu_s() - c0, path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--size", type=int, default=720, help="frame height (16:9)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from synclora.video.colour import rgb_to_yuv420_frame

    frames = frames_720(args.frames, args.size)
    h, w = frames[0].shape[:2]
    print(f"{os.cpu_count()} CPU cores, {len(frames)} frames of {w}×{h}, load average {os.getloadavg()[0]:.1f}")
    diff = max(int(np.abs(rgb_to_yuv420_frame(f).to_ndarray().astype(int) - convert_every_pixel(f)).max())
               for f in frames[:: max(1, len(frames) // 10)])
    for r in range(args.repeats):
        c0 = cpu_s()
        for f in frames:
            rgb_to_yuv420_frame(f)
        ours = (cpu_s() - c0) / len(frames) * 1e3
        c0 = cpu_s()
        for f in frames:
            convert_every_pixel(f)
        base = (cpu_s() - c0) / len(frames) * 1e3
        print(f"run {r + 1}: RGB→Y'CbCr {ours:.1f} CPU-ms/frame; every pixel converted {base:.1f} "
              f"(×{base / ours:.1f}); largest difference {diff} level(s)")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            fw, fc, fb = encode(frames, Path(tmp) / "frame.mp4", "FRAME")
            sw, sc, sb = encode(frames, Path(tmp) / "slice.mp4", "SLICE")
            print(f"run {r + 1}: x264 frame threads {fw:.2f} s ({fc:.2f} CPU-s, {fb / 1024:.0f} KiB); slice threads "
                  f"{sw:.2f} s ({sc:.2f} CPU-s, {sb / 1024:.0f} KiB) → ×{fw / sw:.2f} the wall time, ×{fc / sc:.2f} "
                  f"the CPU; load average {os.getloadavg()[0]:.1f}")
        from synclora.video import io

        # The source beside a result that differs from it (mirrored), as the app and `--side-by-side` write it.
        pairs = [io.side_by_side_frame(f, np.ascontiguousarray(f[:, ::-1])) for f in frames]
        ph, pw = pairs[0].shape[:2]
        for r in range(args.repeats):
            _, vc, vb = encode(pairs, Path(tmp) / "viewing.mp4", io.VIEWING_THREADS, io.VIEWING_PRESET)
            _, mc, mb = encode(pairs, Path(tmp) / "medium.mp4", io.VIEWING_THREADS, "medium")
            n = len(pairs)
            print(f"run {r + 1}: side by side {pw}×{ph}, {io.VIEWING_PRESET} {vc / n * 1e3:.1f} CPU-ms/frame "
                  f"({vb / 1024:.0f} KiB); medium {mc / n * 1e3:.1f} ({mb / 1024:.0f} KiB) → ×{mc / vc:.1f} less CPU; "
                  f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
