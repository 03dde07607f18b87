"""A real user's clip end to end: the CLI's propagation against a plain ffmpeg re-encode of the same clip, same run.

Run: python -m benchmarks.bench_e2e [--size 720 1080] [--seconds 10 60] [--repeats 2] [--edit-index mid]
                                    [--side-by-side] [--report] [--looped] [--no-baseline]

The clip: a real face (Grace Hopper, `synclora.testing.faces.talking_clip`: talking mouth, blinks, head roll and
drift) at 16:9, 30 fps, `--seconds` long (a 3 s cycle played forward and back, so motion never jumps), with a stereo
tone, written as H.264 (CRF 12, keyframe every 2 s, like a phone). The edit: lipstick on frame `--edit-index` (default
the middle, so the edit travels both ways), made the way a person would (painted on that frame as decoded).
`--looped`: a clip longer than 10 s is the 10 s clip played again and again (its video stream copied, whole GOPs, so
each repeat decodes to the same frames; a tone as long as the clip), which makes a 10-minute clip in seconds instead
of encoding 18,000 frames; the motion then jumps back every 10 s.

Measured per clip and repeat, one after the other on the same machine:
- baseline: `ffmpeg -i clip -c:v libx264 -crf 18 -preset medium -c:a copy` (imageio-ffmpeg's binary);
- ours: `python -m synclora propagate clip --edited png --out mp4 --backend flow` (face guidance on, as default).
Printed: wall seconds, CPU seconds (user + system of all threads), frames per second, peak RSS of the whole child
process tree (sampled every 20 ms), the ratios of our wall and CPU time to the baseline's, and the 1-minute load
average before and after our run (other work on the machine). Timings on a shared
machine are noisy: compare the ratios (on a busy machine the CPU ratio is the steadier one), and repeat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FPS = 30
CYCLE = 90  # frames of motion, played forward then backward
LOOP_S = 10  # --looped: the clip that repeats


def make_clip(folder: Path, height: int, seconds: int, edit_index: int | None,
              looped: bool = False) -> tuple[Path, Path, int]:
    """(clip, edited frame PNG, edit index), each made once per size, length and edit."""
    from synclora.video import io

    k = seconds * FPS // 2 if edit_index is None else edit_index
    clip = _looped_clip(folder, height, seconds) if looped and seconds > LOOP_S else _clip(folder, height, seconds)
    png = clip.with_name(f"edited_{clip.stem}_{k}.png")
    if not png.exists():
        _paint(io.read_frame(clip, k), png)  # on the frame as decoded (what the app hands a person to edit)
    return clip, png, k


def _clip(folder: Path, height: int, seconds: int) -> Path:
    import cv2

    from synclora.testing import media
    from synclora.testing.faces import talking_clip

    clip = folder / f"clip_{height}p_{seconds}s.mp4"
    if clip.exists():
        return clip
    plain = talking_clip("grace_hopper", CYCLE, size=height, seed=1).frames
    width = int(round(height * 16 / 9)) // 2 * 2
    pad = (width - height) // 2

    def wide(f: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(f, 0, 0, pad, width - height - pad, cv2.BORDER_REPLICATE)

    def at(i: int) -> int:  # ping-pong through the cycle
        j = i % (2 * CYCLE - 2)
        return j if j < CYCLE else 2 * CYCLE - 2 - j

    frames = (wide(plain[at(i)]) for i in range(seconds * FPS))
    media.write_clip(clip, frames, FPS, audio=media.tone(seconds + 0.05), gop=2 * FPS)
    return clip


def _looped_clip(folder: Path, height: int, seconds: int) -> Path:
    import imageio_ffmpeg

    clip = folder / f"clip_{height}p_{seconds}s_looped.mp4"
    if clip.exists():
        return clip
    base = _clip(folder, height, LOOP_S)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    video = folder / f".video_{height}p_{seconds}s.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", str(seconds // LOOP_S - 1), "-i", str(base),
                    "-an", "-c:v", "copy", str(video)], check=True)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-f", "lavfi", "-i",
                    f"sine=frequency=330:sample_rate=48000:duration={seconds}", "-map", "0:v", "-map", "1:a",
                    "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-shortest", str(clip)], check=True)
    video.unlink()
    return clip


def _paint(frame: np.ndarray, png: Path) -> None:
    """Lipstick on the frame as decoded, saved as the edited frame."""
    from PIL import Image

    from synclora.face.mesh import FaceMeshTracker
    from synclora.testing import face_edits as E

    with FaceMeshTracker(static=True, search_side=100_000) as mesh:
        pts = mesh.landmarks(frame)
    Image.fromarray(E.lipstick(frame, E.lips_mask(frame.shape[:2], pts))).save(png)


def run_tree(cmd: list[str]) -> tuple[float, float, float, int, str]:
    """(wall seconds, CPU seconds (user + system, all threads), peak RSS of the process tree in MiB, exit code,
    stderr tail)."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(p.pid)
    peak = 0
    err = b""
    while p.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
            peak = max(peak, sum(q.memory_info().rss for q in procs if q.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    err = p.stderr.read() if p.stderr else err
    return wall, cpu, peak / 1024**2, p.returncode, err.decode(errors="replace")[-600:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs="+", default=[720, 1080], help="frame heights (16:9)")
    ap.add_argument("--seconds", type=int, nargs="+", default=[10, 60])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--edit-index", default="mid", help="the edited frame: a number, or 'mid'")
    ap.add_argument("--side-by-side", action="store_true", help="also write the side by side")
    ap.add_argument("--report", action="store_true", help="also write the sync report (--report)")
    ap.add_argument("--keep", help="folder for the clips (kept between runs); default a temporary one")
    ap.add_argument("--looped", action="store_true", help="clips over 10 s: the 10 s clip repeated (made in seconds)")
    ap.add_argument("--no-baseline", action="store_true", help="ours only (a 10-minute 1080p re-encode takes long)")
    args = ap.parse_args()
    if args.edit_index != "mid" and not args.edit_index.isdigit():
        ap.error(f"--edit-index takes a frame number or 'mid', not {args.edit_index!r}")
    if args.looped and any(s > LOOP_S and s % LOOP_S for s in args.seconds):
        ap.error(f"--looped repeats a {LOOP_S} s clip whole: give --seconds as multiples of {LOOP_S}")
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    k = None if args.edit_index == "mid" else int(args.edit_index)
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    folder = Path(args.keep or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPU cores; ours: flow backend, face guidance on, CRF 18 preset medium; "
          f"baseline: ffmpeg libx264 CRF 18 preset medium, audio copied")
    rows = []
    for height in args.size:
        for seconds in args.seconds:
            clip, png, idx = make_clip(folder, height, seconds, k, args.looped)
            n = seconds * FPS
            for r in range(args.repeats):
                base_out, our_out = folder / "baseline.mp4", folder / "ours.mp4"
                nan = float("nan")
                tb, cb, mb, rc, err = (nan, nan, nan, 0, "") if args.no_baseline else run_tree(
                    [ffmpeg, "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-crf", "18", "-preset", "medium",
                     "-pix_fmt", "yuv420p", "-c:a", "copy", str(base_out)])
                if rc:
                    print(f"ffmpeg failed: {err}")
                    return 1
                cmd = [sys.executable, "-m", "synclora", "propagate", str(clip), "--edited", str(png), "--out",
                       str(our_out), "--edit-index", str(idx), "--backend", "flow", "--quiet"]
                if args.side_by_side:
                    cmd += ["--side-by-side", str(folder / "sbs.mp4")]
                if args.report:
                    cmd += ["--report", str(folder / "report.json")]
                load0 = os.getloadavg()[0]
                to, co, mo, rc, err = run_tree(cmd)
                load = f"{load0:.1f}–{os.getloadavg()[0]:.1f}"  # 1-minute load average before and after our run
                if rc:
                    print(f"propagate failed ({rc}): {err}")
                    return 1
                from synclora.video import io

                info = io.probe(our_out)
                assert info.n_frames == n and info.has_audio, (info.n_frames, n)
                w = int(round(height * 16 / 9)) // 2 * 2
                base = "—" if args.no_baseline else f"{tb:.1f} s ({cb:.0f} CPU-s)"
                ratio = "—" if args.no_baseline else f"{to / tb:.2f}× ({co / cb:.2f}×)"
                row = (f"| {w}×{height} | {seconds} s ({n} frames) | {to:.1f} s ({co:.0f} CPU-s) | {n / to:.1f} | "
                       f"{mo / 1024:.2f} GiB | {base} | {ratio} | {load} |")
                rows.append(row)
                peak = "" if args.no_baseline else f", peak {mb:.0f} MiB"
                print(f"{w}×{height} {seconds:>3d} s, run {r + 1}: ours {to:6.1f} s, {co:6.1f} CPU-s ({n / to:5.1f} "
                      f"frames/s, peak RSS {mo:6.0f} MiB); ffmpeg {base}{peak}; ratio wall (CPU) {ratio}; "
                      f"load average {load}", flush=True)
    print("\n| clip | length | ours (wall) | frames/s | peak RSS | ffmpeg re-encode | ratio wall (CPU) | load |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
