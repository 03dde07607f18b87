"""Writing H.264 yuv420p mp4 that browsers play, with time base 1/fps (frame i at exactly i / fps), atomically,
with the source audio of the same span muxed back."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from synclora.paths import temp_path
from synclora.video.audio import AudioSource
from synclora.video.colour import rgb_to_yuv420_planes, yuv420_frame
from synclora.video.probe import probe, sensible_rate

log = logging.getLogger(__name__)

# x264's frame threads, as the ffmpeg command line uses them, not PyAV's slice threads: with slices, x264's lookahead
# runs in the calling thread and each frame waits for it. Once the pipeline around the encoder had become cheap, that
# wait was on its path: 150 frames of 720p encode in 0.87-0.96x the wall time at the same CPU time
# (`benchmarks/bench_encode.py`), and 10 s of 720p end to end take ~6 % less (`benchmarks/bench_e2e.py --report`).
THREADS = "FRAME"
# Videos made to be looked at beside the result, not kept as it (source | result side by side, the evaluation grid):
# x264's veryfast at the same CRF. They are two or more frames wide, so at medium they cost twice the result itself:
# 134 CPU-ms a 2564×720 frame against 51 with veryfast, and a smaller file (`benchmarks/bench_encode.py`). The result
# keeps medium.
VIEWING_PRESET = "veryfast"
# ... and slice threads (`write_video(threads=)`, passed by their writers): written beside the result, a second encoder
# with frame threads of its own oversubscribed the 2 cores. 1920×1080 with the side by side and the report, each
# against slices for both, alternating: both on frame threads 41.4 / 38.5 s against 38.5 / 36.5 s; this split
# 41.2 / 38.3 s against 41.4 / 43.1 s.
VIEWING_THREADS = "SLICE"


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size `write_video` encodes a width×height frame at (yuv420p needs even sizes)."""
    return width + (width & 1), height + (height & 1)



def _to_rate(fps) -> Fraction:
    if isinstance(fps, Fraction):
        r = fps
    elif isinstance(fps, int):
        r = Fraction(fps)
    elif isinstance(fps, float):
        r = sensible_rate(fps)
        if abs(float(r) - fps) > 1e-6 * fps:
            r = Fraction(fps).limit_denominator(1001)
    else:
        r = Fraction(fps)
    if r <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return r



def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: Fraction | int | float,
    *,
    audio_from: str | os.PathLike | None = None,
    audio_span: tuple[int, int] | None = None,
    crf: int = 18,
    preset: str = "medium",
    threads: str = THREADS,
    notices: list[str] | None = None,
) -> Path:
    """Write RGB uint8 frames as H.264 yuv420p mp4 that browsers play; frame i is at exactly i / fps.

    A frame may also be a decoded one (`synclora.video.lazy`): its own planes are written when they are of the kind
    written here (`planes709`), so what a propagation leaves alone is the source's samples, not a round trip via RGB.

    - `audio_from`: a clip whose first audio stream is muxed in; `audio_span=(start, stop)` are its frames (at this
      `fps`) whose audio to take. The whole clip's AAC/MP3 audio is copied unchanged; anything else is re-encoded to
      AAC, trimmed to the span sample-exactly.
    - Odd widths/heights are padded by one replicated edge pixel (yuv420p needs even sizes); a sentence saying so is
      appended to `notices` (as is any audio re-encoding), so the caller can tell the user.
    - Atomic: frames are written to a hidden temp file next to `path` that replaces `path` only when complete; on any
      exception (KeyboardInterrupt and the stop signals of `synclora.signals` included) the temp file is removed and
      `path` is untouched.
    """
    path = Path(path)
    rate = _to_rate(fps)
    notes: list[str] = notices if notices is not None else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if audio_from is not None:
        audio_from = Path(audio_from)
        if not probe(audio_from).has_audio:
            audio_from = None
    tmp = temp_path(path)
    out = None
    audio: AudioSource | None = None
    try:
        out = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        it = iter(frames)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("write_video needs at least one frame") from None
        first = _check_frame(first, None, 0)
        h, w = (first.height, first.width) if not isinstance(first, np.ndarray) else first.shape[:2]
        W, H = even_size(w, h)
        if (W, H) != (w, h):
            notes.append(f"The frame size {w}×{h} is odd; H.264 (yuv420p) needs even sizes, so the video is "
                         f"{W}×{H} with the last {'column' if W != w else 'row'}"
                         f"{' and row' if W != w and H != h else ''} repeated.")
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height = W, H
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = 1 / rate
        vs.time_base = 1 / rate
        vs.options = {"crf": str(int(crf)), "preset": preset}
        cc = vs.codec_context
        cc.thread_type = threads
        cc.color_range = 1  # limited ("tv") range, what browsers expect
        cc.colorspace = 1  # BT.709
        cc.color_primaries = 1
        cc.color_trc = 1
        if audio_from is not None:
            audio = AudioSource(out, audio_from, audio_span, rate, notes)

        def encode(img, i: int) -> None:
            planes = img.planes709() if not isinstance(img, np.ndarray) else None
            if planes is None:
                img = np.asarray(img)
                if (W, H) != (w, h):
                    img = np.pad(img, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
                planes = rgb_to_yuv420_planes(img)
            vf = yuv420_frame(planes)  # every frame passes here, whichever way it came
            vf.pts = i
            vf.time_base = vs.codec_context.time_base
            for pkt in vs.encode(vf):
                out.mux(pkt)
            if audio is not None:
                audio.mux_until(out, (i + 1) / float(rate) + 0.5)

        encode(first, 0)
        i = 0
        for i, img in enumerate(it, start=1):
            encode(_check_frame(img, (h, w), i), i)
        for pkt in vs.encode(None):
            out.mux(pkt)
        if audio is not None:
            audio.mux_until(out, None)
            audio.close()
            audio = None
        out.close()
        out = None
        os.replace(tmp, path)
    except BaseException:
        if audio is not None:
            try:
                audio.close()
            except Exception:  # noqa: BLE001 - cleanup must not hide the original error
                pass
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    for n in notes if notices is None else ():
        log.info(n)
    return path


def _check_frame(img, hw: tuple[int, int] | None, i: int):
    if not isinstance(img, np.ndarray) and hasattr(img, "planes709"):  # a decoded frame: uint8 RGB by its type
        if hw is not None and (img.height, img.width) != hw:
            raise ValueError(f"frame {i}: size {img.width}×{img.height} differs from frame 0 ({hw[1]}×{hw[0]})")
        return img
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"frame {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    if hw is not None and img.shape[:2] != hw:
        raise ValueError(f"frame {i}: size {img.shape[1]}×{img.shape[0]} differs from frame 0 ({hw[1]}×{hw[0]})")
    return np.ascontiguousarray(img)

