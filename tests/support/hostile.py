"""Hostile files for the hardening tests, each a few KB and made on the fly: containers whose numbers lie, video and
image decompression bombs, odd streams, and a runner that executes a command under a memory limit.

Lying containers are made the way an attacker makes them: write a tiny honest clip with PyAV, then patch the numbers
in its mp4 boxes (`mdhd` time scale, `stts` sample durations, `stsz` sample count, the edit list) or its Matroska
elements (audio rate and channels). Every reader must refuse these in milliseconds and megabytes.
"""

from __future__ import annotations

import os
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from synclora.testing import media

# ISO-BMFF boxes that hold other boxes (the ones on the way to the sample tables).
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex"}


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None, path: tuple = ()):
    """(path of box types, offset, header size, box size) for every box, depth first."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i: i + 8])
        hdr = 8
        if size == 1:
            size, hdr = struct.unpack(">Q", data[i + 8: i + 16])[0], 16
        elif size == 0:
            size = end - i
        if size < hdr:
            return
        yield path + (kind,), i, hdr, size
        if kind in _CONTAINERS:
            yield from mp4_boxes(data, i + hdr, i + size, path + (kind,))
        i += size


def _box(data: bytearray, kind: bytes) -> tuple[int, int, int]:
    for path, i, hdr, size in mp4_boxes(data):
        if path[-1] == kind:
            return i, hdr, size
    raise KeyError(kind)


def patch_mp4(src: Path, dst: Path, *, stts: list[tuple[int, int]] | None = None, timescale: int | None = None,
              sample_count: int | None = None, keep_edit_list: bool = False) -> Path:
    """A copy of the single-track mp4 `src` with forged numbers: `stts` entries (count, delta), the media `timescale`,
    a constant-size `stsz` claiming `sample_count` samples. The edit list (which would clip the lie) is dropped
    unless `keep_edit_list`. Box sizes up the tree are fixed; the media data stays where it is (moov comes last)."""
    data = bytearray(Path(src).read_bytes())
    if not keep_edit_list:
        i, _, _ = _box(data, b"edts")
        data[i + 4: i + 8] = b"free"
    if timescale is not None:
        i, hdr, _ = _box(data, b"mdhd")
        struct.pack_into(">I", data, i + hdr + 12, timescale)  # version 0: flags, ctime, mtime, timescale
    if sample_count is not None:
        i, hdr, _ = _box(data, b"stsz")
        struct.pack_into(">II", data, i + hdr + 4, 1, sample_count)  # constant size 1, count
        i, hdr, _ = _box(data, b"stsc")
        struct.pack_into(">I", data, i + hdr + 12, sample_count)  # samples per chunk
    if stts is not None:
        i, hdr, size = _box(data, b"stts")
        body = struct.pack(">II", 0, len(stts)) + b"".join(struct.pack(">II", c, d) for c, d in stts)
        new = struct.pack(">I4s", 8 + len(body), b"stts") + body
        delta = len(new) - size
        parents = [j for p, j, _, s in mp4_boxes(data) if j < i < j + s and p[-1] in _CONTAINERS]
        data[i: i + size] = new
        for j in parents:
            (old,) = struct.unpack(">I", data[j: j + 4])
            struct.pack_into(">I", data, j, old + delta)
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


def _honest(folder: Path, n: int = 10, name: str = "honest.mp4") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return media.write_clip(folder / name, media.indexed_frames(n, size=(64, 48)), 25)


def lying_duration(folder: Path) -> Path:
    """10 frames whose timestamps say each is shown for 2^31 s (time scale 1): ~680 years in a few KB. A reader
    that believes it allocates one slot per frame time: 80 GiB."""
    return patch_mp4(_honest(folder), folder / "lying-duration.mp4", stts=[(10, 2**31 - 1)], timescale=1)


def lying_long(folder: Path) -> Path:
    """Timestamps 512 s apart (time scale 1): 85 minutes, under every reading ceiling (so `info` shows it) but over
    the propagation's duration limit."""
    return patch_mp4(_honest(folder), folder / "lying-long.mp4", stts=[(10, 512)], timescale=1)


def lying_rate(folder: Path) -> Path:
    """Frames a nanosecond apart: two billion frames per second."""
    return patch_mp4(_honest(folder), folder / "lying-rate.mp4", stts=[(10, 1)], timescale=10**9)


def lying_last_frame(folder: Path) -> Path:
    """Ordinary frames, then a gap of 2^31 ticks before the last one: a VFR clip whose conversion to CFR would
    repeat a frame for hours."""
    return patch_mp4(_honest(folder, 20), folder / "lying-gap.mp4", stts=[(18, 512), (1, 2**31 - 1), (1, 512)])


def lying_sample_count(folder: Path) -> Path:
    """An index claiming 100 million samples of one byte each."""
    return patch_mp4(_honest(folder), folder / "lying-count.mp4", sample_count=100_000_000, stts=[(100_000_000, 512)])


def _png(w: int, h: int, level: int = 1) -> bytes:
    """A greyscale PNG of zeros, compressed as it is built (the decoded image is never in memory here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(level)
    row = bytes(1 + w)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def png_video(path: Path, sizes: list[tuple[int, int]], header: tuple[int, int] | None = None) -> Path:
    """A PNG-codec .mov whose frames have the given sizes (packets muxed as they are, nothing encoded): a frame of
    16000×16000 is a 1 MB packet that decodes to 256 MB — a video decompression bomb — and mixed sizes make a
    stream that changes size midway. `header`: the size the container declares (default: the first frame's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cache: dict[tuple[int, int], bytes] = {}
    with av.open(str(path), "w") as out:
        s = out.add_stream("png", rate=25)
        s.width, s.height = header or sizes[0]
        s.pix_fmt = "gray"
        s.time_base = Fraction(1, 25)
        for i, size in enumerate(sizes):
            if size not in cache:
                cache[size] = _png(*size)
            p = av.Packet(cache[size])
            p.stream = s
            p.pts = p.dts = i
            p.time_base = Fraction(1, 25)
            out.mux(p)
    return path


def many_streams(path: Path, n: int = 100) -> Path:
    """A Matroska file with one video stream and `n` tiny audio streams."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        auds = [out.add_stream("pcm_s16le", rate=8000, layout="mono") for _ in range(n)]
        for _ in range(2):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        for a in auds:
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 64), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, 0
            for p in a.encode(frame):
                out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    return path


def audio_claims(folder: Path, rate: float, channels: int, name: str = "audio-claims.mkv") -> Path:
    """A Matroska clip with PCM audio whose header claims `rate` Hz and `channels` channels."""
    src = media.write_clip(Path(folder) / f"honest-{name}", media.indexed_frames(10, size=(64, 48)), 25,
                           audio=media.tone(0.4), audio_codec="pcm_s16le")
    data = bytearray(src.read_bytes())
    i = data.index(b"\xb5\x88" + struct.pack(">d", 48000.0))  # SamplingFrequency, an 8-byte float
    j = data.index(b"\x9f\x81\x02")  # Channels, one byte
    struct.pack_into(">d", data, i + 2, float(rate))
    data[j + 2] = channels & 0xFF
    out = Path(folder) / name
    out.write_bytes(bytes(data))
    return out


def png_bomb(path: Path, side: int = 30000) -> Path:
    """A 1-bit PNG of side×side (30000²: 900 megapixels) in about 110 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return Path(path)


def jpeg_header_bomb(path: Path, side: int = 65000) -> Path:
    """A small JPEG whose frame header (SOF0) claims side×side."""
    path = Path(path)
    Image.new("RGB", (16, 16), (200, 40, 40)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, side, side)
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------------------------------------------------
# Running a command under a memory limit


@dataclass
class Bounded:
    rc: int  # exit code (negative: killed by that signal)
    out: str
    err: str
    peak_mb: float  # the child's peak resident memory above what it had right after the fork
    seconds: float


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _bounded_child(main: Callable[[list[str]], int], argv: list[str], limit_mb: int, file_limit: int | None,
                   mem: str) -> None:
    """The child's side of `run_bounded`: set the limits, run, write the peak memory it added to `mem`, and exit
    with the run's code (it never returns)."""
    rc = 70
    start = _vm("VmRSS")
    try:
        limit = _vm("VmSize") + limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if file_limit is not None:
            import signal

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported through stderr, as a real process would
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        Path(mem).write_text(str(_vm("VmHWM") - start))
        os._exit(rc)


def _peak_mb(mem: Path) -> float:
    text = mem.read_text() if mem.exists() else ""
    return max(0.0, int(text) / 1024**2) if text.strip().lstrip("-").isdigit() else float("nan")


def run_bounded(main: Callable[[list[str]], int], argv: list[str], limit_mb: int = 1024,
                timeout: float = 120.0, file_limit: int | None = None) -> Bounded:
    """Run `main(argv)` (the CLI's `synclora.cli.main`) in a child process whose address space may grow by at most
    `limit_mb` (so a hostile file cannot take the machine down if a bound is missing: the allocation fails instead),
    and report its exit code, output and peak memory (above what the child had before the run).
    `file_limit` (bytes) caps every file the child writes (RLIMIT_FSIZE): a disk that fills up mid-write.

    The child is never a fork of the test runner (MediaPipe's and OpenCV's native state does not survive a fork once
    the parent has used them — the child aborts in malloc) but of a process that only imported the libraries
    (`support.zygote`), so the limits count what the run itself adds."""
    if "<locals>" in main.__qualname__:
        return _run_forked(main, argv, limit_mb, timeout, file_limit)
    from support import zygote

    with tempfile.TemporaryDirectory() as d:
        out, err = Path(d) / "out", Path(d) / "err"
        out.touch()
        err.touch()
        spec = {"main": f"{main.__module__}:{main.__name__}", "argv": [str(a) for a in argv], "limit_mb": limit_mb,
                "file_limit": file_limit, "mem": str(Path(d) / "mem")}
        child = zygote.context().Process(target=zygote.run, args=(spec, dict(os.environ), os.getcwd(), str(out),
                                                                   str(err)), daemon=True)
        t0 = time.perf_counter()
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            rc = -9
        else:
            rc = child.exitcode
        seconds = time.perf_counter() - t0
        peak = _peak_mb(Path(spec["mem"]))
        texts = [p.read_bytes().decode(errors="replace") for p in (out, err)]
    return Bounded(rc, texts[0], texts[1], peak, seconds)


def _run_forked(main: Callable[[list[str]], int], argv: list[str], limit_mb: int, timeout: float,
                file_limit: int | None) -> Bounded:
    """`run_bounded` for a function a fresh interpreter cannot import (one defined inside a test): a forked child, which
    must not use MediaPipe (see `run_bounded`)."""
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    with tempfile.TemporaryDirectory() as d:
        mem = Path(d) / "mem"
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test runner
            os.dup2(out_f.fileno(), 1)
            os.dup2(err_f.fileno(), 2)
            sys.stdout = os.fdopen(1, "w", closefd=False)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            _bounded_child(main, argv, limit_mb, file_limit, str(mem))
        deadline = time.monotonic() + timeout
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                done, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - t0
        peak = _peak_mb(mem)
    texts = []
    for f in (out_f, err_f):
        f.seek(0)
        texts.append(f.read().decode(errors="replace"))
        f.close()
    return Bounded(os.waitstatus_to_exitcode(status), texts[0], texts[1], peak, seconds)


def many_channels(folder: Path, layout: str, codec: str, ext: str, frames: np.ndarray | None = None,
                  fps: int = 25) -> Path:
    """A clip whose audio has every channel of `layout` (e.g. "7.1": 8, "5.1.4": 10, "hexadecagonal": 16), in
    `codec` (PCM is packed; AAC and Opus decode to planar frames), channel c a tone of its own (`media.tone`) so a
    swapped or lost channel shows. The frames default to a small indexed clip."""
    frames = media.indexed_frames(12, size=(64, 48)) if frames is None else frames
    channels = len(av.AudioLayout(layout).channels)
    name = f"{layout.replace('.', '_')}-{codec}{ext}"
    return media.write_clip(Path(folder) / name, frames, fps, audio=media.tone(len(frames) / fps, channels=channels),
                            audio_codec=codec, audio_layout=layout)


def reordered(path: Path, order: list[int], codec: str = "mjpeg", size: tuple[int, int] = (64, 48),
              fps: int = 25, frames: np.ndarray | None = None) -> Path:
    """A clip whose packets are stored in `order` (a permutation of frame indices), each with its true presentation
    time: an intra-only codec whose decoder hands frames out in packet order, so timestamps go backwards in
    packet order (valid in Matroska). Frame k carries `media.stamp_index(k)`, so what a reader returns shows which
    frame it is (`frames`: the pictures to stamp, default a moving texture)."""
    path = Path(path)
    if frames is None:
        frames = media.indexed_frames(len(order), size=size)
    else:
        frames = np.stack([media.stamp_index(np.array(f, np.uint8), k) for k, f in enumerate(frames)])
        size = (frames.shape[2], frames.shape[1])
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height = size
        s.pix_fmt = {"mjpeg": "yuvj420p", "png": "rgb24"}.get(codec, "yuv420p")
        s.time_base = Fraction(1, fps)
        if codec == "mjpeg":
            s.codec_context.qmin, s.codec_context.qmax = 1, 2
        else:  # every frame a key frame, no B-frames: packets decode alone, in any order
            s.codec_context.gop_size = 1
            s.codec_context.max_b_frames = 0
            s.options = {"qscale": "2"}
        packets = {}
        for k, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = k
            vf.time_base = Fraction(1, fps)
            for p in s.encode(vf):
                packets[int(p.pts)] = p
        for p in s.encode(None):
            packets[int(p.pts)] = p
        lead = max(pos - k for pos, k in enumerate(order))  # decode times rise with the packets, never after pts
        for pos, k in enumerate(order):
            p = packets[k]
            p.dts = pos - lead
            out.mux(p)
    return path
