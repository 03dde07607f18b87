"""What the sync report costs when it rides on a propagation (`ReportTap`), against a plain re-encode of the clip.

A talking 16:9 clip (Grace Hopper, procedural) is written as mp4. Measured in the same run, on the same clip:

- re-encode: decode it and encode it again (libx264, CRF 18, preset medium) — the baseline the end-to-end target is
  stated against;
- decode alone: the frames a propagation decodes anyway;
- decode + tap: the same frames handed to a report tap as source and result (what `propagate --report` adds, less
  the real result's differences), then the report;
- decode + tap, source known: the source's cues measured ahead (`SourceCues`, as the app does while the visitor
  edits), so the tap measures the result only;
- with `--e2e`: `python -m synclora propagate` (flow backend) with and without `--report`.

Reported as wall seconds and CPU-ms per frame (all threads; other processes on a shared machine disturb wall time
more than CPU time), each repeated `--repeat` times (best of).

    python -m benchmarks.bench_report_tap [--frames 300] [--size 720] [--threads 2] [--repeat 2] [--e2e]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_metrics import _clip


def _timed(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run: all threads of this process and its children)."""
    best = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        run = (time.perf_counter() - t0, _cpu() - c0)
        best = run if best is None or run[0] < best[0] else best
    return best


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", type=int, default=720, help="frame height; width is 16:9")
    ap.add_argument("--threads", type=int, default=2, help="CPU cores allowed (affinity)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--e2e", action="store_true", help="also the CLI's propagate with and without --report")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    from synclora.metrics.source_cues import SourceCues
    from synclora.metrics.tap import ReportTap
    from synclora.video import io

    frames = _clip(args.frames, args.size)
    n, h, w = frames.shape[:3]
    with tempfile.TemporaryDirectory() as d:
        src = io.write_video(Path(d) / "src.mp4", iter(frames), 30, crf=18)
        del frames
        print(f"clip: {n} frames {w}×{h} at 30 fps, {len(os.sched_getaffinity(0))} CPU core(s)")

        def reencode():
            io.write_video(Path(d) / "reencoded.mp4", io.iter_frames(src), 30, crf=18, preset="medium")

        def decode():
            for _ in io.iter_frames(src):
                pass

        def tapped(cues=None):
            def run():
                tap = ReportTap(src, source_cues=cues)
                for i, f in enumerate(io.iter_frames(src)):
                    tap.on_source(i, f)
                    tap.on_result(i, f)
                tap.finish(True)
                tap.report()
            return run

        decode()  # warm the page cache
        tapped()()  # warm-up: model load
        t_enc, c_enc = _timed(reencode, args.repeat)
        t_dec, c_dec = _timed(decode, args.repeat)
        t_tap, c_tap = _timed(tapped(), args.repeat)
        cues = SourceCues(src, d)
        t_ahead = time.perf_counter()
        cues.wait()
        t_ahead = time.perf_counter() - t_ahead
        t_known, c_known = _timed(tapped(cues), args.repeat)
        cues.close()

        def row(label, t, c):
            print(f"{label:<34} {t:7.2f} s  {1000 * c / n:6.1f} CPU-ms/frame  {t / t_enc:5.2f}× re-encode")

        row("re-encode (CRF 18, medium)", t_enc, c_enc)
        row("decode alone", t_dec, c_dec)
        row("decode + tap (source and result)", t_tap, c_tap)
        row("decode + tap, source known", t_known, c_known)
        print(f"tap adds {1000 * (c_tap - c_dec) / n:.1f} CPU-ms per frame (source and result), "
              f"{1000 * (c_known - c_dec) / n:.1f} with the source known; wall +{t_tap - t_dec:.2f} s / "
              f"+{t_known - t_dec:.2f} s; the source ahead took {t_ahead:.2f} s")

        if args.e2e:
            edited = Path(d) / "edited.png"
            img = io.read_frame(src, 0).copy()
            img[h // 3: h // 3 + 40, w // 2 - 60: w // 2 + 60] = (200, 30, 30)
            from PIL import Image

            Image.fromarray(img).save(edited)
            base = [sys.executable, "-m", "synclora", "propagate", str(src), "--edited", str(edited), "--backend",
                    "flow", "--quiet", "--out"]

            def cli(*extra):
                return lambda: subprocess.run([*base, str(Path(d) / "out.mp4"), *extra], check=True,
                                              capture_output=True)

            t_plain, c_plain = _timed(cli(), args.repeat)
            t_rep, c_rep = _timed(cli("--report", str(Path(d) / "report.json")), args.repeat)
            row("propagate (flow)", t_plain, c_plain)
            row("propagate (flow) --report", t_rep, c_rep)
            print(f"--report adds {t_rep - t_plain:+.2f} s ({t_rep / t_plain:.2f}× the propagation alone)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes slow wall-clock numbers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
