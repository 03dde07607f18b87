"""Read and write video (PyAV only; no system ffmpeg needed).

Sync is the product, so reading is built around one exact timeline per file:

- `probe` demuxes the video packets (no decoding for ordinary files) and finds the constant frame rate (CFR) the
  timestamps follow, as an exact rational (30000/1001, not 29.97). A file whose timestamps do not fit any constant
  rate one-to-one is variable-frame-rate (VFR): it is converted to CFR at its average rate (rounded to a sensible
  rational) by showing, at each CFR time t, the latest source frame whose timestamp is <= t — what a player shows.
  Every reader below yields exactly `probe(path).n_frames` frames for the whole clip; frame i is at time i / fps.
- Rotation metadata (phone videos) is applied; `width`/`height` are the display size.
- `write_video` writes H.264 yuv420p mp4 (+faststart) with time base 1/fps, so frame i sits at i/fps, and muxes the
  source audio of the same span back (stream copy when possible). The file appears at its path only when complete.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation as _Sws

from synclora.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "VideoInfo",
    "probe",
    "iter_frames",
    "read_frames",
    "read_frame",
    "write_video",
    "side_by_side",
    "audio_samples",
    "sensible_rate",
    "format_fps",
    "even_size",
    "STANDARD_RATES",
]

# Frame rates people and cameras use; a measured rate is snapped to one of these when it is within rounding error.
STANDARD_RATES: tuple[Fraction, ...] = tuple(
    Fraction(r)
    for r in (
        Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 48, 50, Fraction(60000, 1001), 60,
        Fraction(120000, 1001), 120, 90, 100, 144, 240, 5, 6, Fraction(15, 2), 8, 10, 12, Fraction(25, 2), 15, 16, 20,
    )
)
# Rates a variable-frame-rate clip's average may be pulled to when it is within 2% (phones record "30 fps" VFR).
_VFR_TARGETS = (Fraction(24), Fraction(25), Fraction(30), Fraction(50), Fraction(60), Fraction(15), Fraction(120))
# Audio codecs that can be copied into mp4 unchanged and that browsers play.
_MP4_AUDIO_COPY = {"aac", "mp3"}
# Containers whose packet count is not trusted as a frame count (packed B-frames in AVI): decode to count.
_DECODE_COUNT_FORMATS = {"avi"}
# swscale's default YUV->RGB path is fast but reads about 1-1.5 levels dark; for the pixel formats that OpenCV does
# not convert here (10-bit, 4:2:2, 4:4:4, RGB, palettes) these flags make it exact on average.
_SWS_READ = _Sws.BICUBIC | _Sws.FULL_CHR_H_INT | _Sws.ACCURATE_RND
# (Y'CbCr matrix coefficients Kr, Kb) by FFmpeg colorspace id; 2 (unspecified) is decided by frame height
_KRKB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
         9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


def _yuv_matrix(colorspace: int, full_range: bool, height: int) -> np.ndarray:
    """3x4 affine matrix Y'CbCr (0..255 codes) -> RGB (0..255), for cv2.transform."""
    kr, kb = _KRKB.get(int(colorspace), (0.2126, 0.0722) if height >= 720 else (0.299, 0.114))
    kg = 1 - kr - kb
    ys, cs, yo = (1.0, 1.0, 0.0) if full_range else (255 / 219, 255 / 224, 16.0)
    m = np.array([
        [ys, 0.0, 2 * (1 - kr) * cs],
        [ys, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs],
        [ys, 2 * (1 - kb) * cs, 0.0],
    ])
    off = -m @ np.array([yo, 128.0, 128.0])
    return np.concatenate([m, off[:, None]], axis=1).astype(np.float32)


_RGB2YUV709 = np.linalg.inv(np.vstack([_yuv_matrix(1, False, 1080), [0, 0, 0, 1]]))[:3].astype(np.float32)


def _frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> RGB uint8. 8-bit 4:2:0 (nearly every camera and web file) is converted with OpenCV: exact on
    average and ~5x faster than swscale's accurate mode; anything else goes through swscale's accurate mode."""
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0:
        h, w = frame.height, frame.width
        a = frame.to_ndarray().reshape(-1)  # Y plane, then U and V planes, packed (h * 3/2 rows of w)
        c = (h // 2) * (w // 2)  # chroma plane size; h/4 rows of w only when h is a multiple of 4
        y = a[: h * w].reshape(h, w)
        u = a[h * w: h * w + c].reshape(h // 2, w // 2)
        v = a[h * w + c: h * w + 2 * c].reshape(h // 2, w // 2)
        u = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR)
        v = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
        full = name == "yuvj420p" or int(frame.color_range) == 2
        return cv2.transform(cv2.merge([y, u, v]), _yuv_matrix(frame.colorspace, full, h))
    return frame.to_ndarray(format="rgb24", interpolation=_SWS_READ)


def _rgb_to_yuv420_frame(img: np.ndarray) -> av.VideoFrame:
    """RGB uint8 (even size) -> a BT.709 limited-range yuv420p frame (chroma averaged over each 2x2 block)."""
    h, w = img.shape[:2]
    yuv = cv2.transform(img, _RGB2YUV709)
    y = yuv[..., 0]
    uv = cv2.resize(yuv[..., 1:], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    planes = np.concatenate([y.reshape(-1), np.ascontiguousarray(uv[..., 0]).reshape(-1),
                             np.ascontiguousarray(uv[..., 1]).reshape(-1)]).reshape(h * 3 // 2, w)
    vf = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    vf.colorspace = 1
    vf.color_range = 1
    return vf


# A CFR rate "fits" the timestamps when every frame is within this fraction of a frame of its slot.
_CFR_TOLERANCE = 0.4


@dataclass(frozen=True)
class VideoInfo:
    """Facts about one clip, after rotation and VFR→CFR conversion (what every reader here yields)."""

    path: Path
    fps: Fraction  # exact constant frame rate of the frames the readers yield
    n_frames: int  # exact count of frames the readers yield
    duration: float  # n_frames / fps, seconds
    width: int  # display size, after rotation
    height: int
    rotation: int  # degrees turned clockwise to display the stored frames (0, 90, 180, 270)
    has_audio: bool
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    codec: str
    container: str
    vfr: bool  # True when the source timing was converted (some frames repeated or dropped)
    notices: tuple[str, ...] = ()  # sentences for the user: VFR converted, rotation applied, alpha dropped, ...

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def summary(self) -> str:
        lines = [
            f"File:       {self.path}",
            f"Container:  {self.container} (video codec {self.codec})",
            f"Size:       {self.width}×{self.height}"
            + (f" (rotation {self.rotation}° applied)" if self.rotation else ""),
            f"Frame rate: {format_fps(self.fps)} fps" + (" (converted from variable frame rate)" if self.vfr else ""),
            f"Frames:     {self.n_frames}",
            f"Duration:   {self.duration:.3f} s",
        ]
        if self.has_audio:
            lines.append(f"Audio:      {self.audio_codec}, {self.sample_rate} Hz, {self.channels} channel(s)")
        else:
            lines.append("Audio:      none")
        lines += [f"Note:       {n}" for n in self.notices]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["fps_float"] = float(self.fps)
        d["notices"] = list(self.notices)
        return d


def format_fps(fps: Fraction) -> str:
    """'30000/1001 (29.970)' for NTSC-style rates, '25' for whole numbers."""
    fps = Fraction(fps)
    if fps.denominator == 1:
        return str(fps.numerator)
    return f"{fps.numerator}/{fps.denominator} ({float(fps):.3f})"


def sensible_rate(rate: float, *, vfr: bool = False) -> Fraction:
    """Round a measured frame rate to a rational people would recognise (30000/1001, 25, 12.5, ...)."""
    if not rate > 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    best = min(STANDARD_RATES, key=lambda s: abs(float(s) - rate))
    if abs(float(best) - rate) / rate < 3e-4:
        return best
    if vfr:  # an average of irregular timestamps: a round number is as true as any and easier to read
        target = min(_VFR_TARGETS, key=lambda s: abs(float(s) - rate))
        if abs(float(target) - rate) / rate < 0.02:
            return target
        return Fraction(max(1, round(rate * 2)), 2)
    whole = round(rate)
    if whole > 0 and abs(whole - rate) / rate < 1e-3:
        return Fraction(whole)
    return Fraction(round(rate * 100), 100)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size `write_video` encodes a width×height frame at (yuv420p needs even sizes)."""
    return width + (width & 1), height + (height & 1)


# --------------------------------------------------------------------------------------------------------------------
# Opening and probing


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"Video file not found: {path}.")
    if not path.is_file():
        raise InputError(f"{path} is not a file.")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")


def _open(path: Path) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise InputError(f"{path.name} could not be opened as a video ({_short(e)}).") from e
    except (UnicodeDecodeError, ValueError) as e:  # PyAV raises these for a few malformed headers
        raise InputError(f"{path.name} could not be opened as a video ({e}).") from e


def _short(e: BaseException) -> str:
    msg = str(e).strip().rstrip(".")
    if msg.startswith("[Errno"):
        msg = msg.split("]", 1)[-1].strip()
        msg = msg[:1].lower() + msg[1:]
    if ": '" in msg:  # PyAV appends the file name; the user knows it already
        msg = msg.split(": '")[0]
    return msg or type(e).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    streams = [
        s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    if not streams:
        if container.streams.audio:
            raise InputError(f"{path.name} has no video stream (it looks like an audio-only file).")
        raise InputError(f"{path.name} has no video stream.")
    return streams[0]


@dataclass(frozen=True)
class _Timeline:
    """The exact timeline of one file: source frames in presentation order and the CFR slots that show them."""

    info: VideoInfo
    stream_index: int
    time_base: Fraction
    src_pts: np.ndarray  # (n_src,) int64 pts in `time_base`, sorted (presentation order)
    slot_src: np.ndarray  # (n_frames,) index into src_pts shown at CFR slot i
    rot_k: int  # np.rot90 k (counter-clockwise quarter turns) that displays a stored frame
    t0: float  # seconds of the first video frame; audio spans are measured from here
    seekable: bool  # pts of decoded frames match src_pts, so seeking can find a frame by pts


_CACHE: OrderedDict[tuple, _Timeline] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()  # the app probes from worker threads


def probe(path: str | os.PathLike) -> VideoInfo:
    """Facts about a clip: exact fps and frame count (after VFR→CFR), display size, rotation, audio.

    Fast for ordinary files (only packets are read); cached by (path, mtime, size).
    """
    return _timeline(Path(path)).info


def _timeline(path: Path) -> _Timeline:
    path = Path(path)
    _check_file(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _CACHE_LOCK:
        tl = _CACHE.get(key)
        if tl is not None:
            _CACHE.move_to_end(key)
            return tl
    tl = _build_timeline(path)
    with _CACHE_LOCK:
        _CACHE[key] = tl
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return tl


def _build_timeline(path: Path) -> _Timeline:
    notices: list[str] = []
    with _open(path) as container:
        vs = _video_stream(container, path)
        tb = vs.time_base or Fraction(1, 90000)
        fmt = container.format.name
        decode_count = any(f in _DECODE_COUNT_FORMATS for f in fmt.split(","))

        pts_list: list[int] = []
        durs: list[int] = []
        n_discard = 0
        demux_error: str | None = None
        if not decode_count:
            try:
                for pkt in container.demux(vs):
                    if pkt.size == 0:  # flush packet
                        continue
                    if pkt.is_discard:  # before the start of an edit list: decoded as a reference, never shown
                        n_discard += 1
                        continue
                    t = pkt.pts if pkt.pts is not None else pkt.dts
                    if t is None:
                        decode_count = True
                        break
                    pts_list.append(int(t))
                    durs.append(int(pkt.duration or 0))
            except av.FFmpegError as e:
                demux_error = _short(e)
            if demux_error is None and not decode_count and len(set(pts_list)) != len(pts_list):
                decode_count = True  # duplicate timestamps: only decoding tells how many frames there are
            if demux_error is not None:
                raise InputError(f"{path.name} is damaged: reading stopped after {len(pts_list)} frames "
                                 f"({demux_error}).")
            index_frames = vs.frames or 0
            if not decode_count and index_frames and fmt.startswith("mov") and len(pts_list) + n_discard < index_frames:
                raise InputError(f"{path.name} is truncated or damaged: its index lists {index_frames} frames but "
                                 f"only {len(pts_list)} could be read.")

        # Decode the first frame(s): rotation, pixel format, and proof that the stream decodes at all.
        first = None
        decoded_pts: list[int | None] = []
        try:
            container.seek(0)
        except av.FFmpegError:
            pass
        try:
            for frame in container.decode(vs):
                if first is None:
                    first = frame
                    if not decode_count:
                        break
                decoded_pts.append(frame.pts)
        except av.FFmpegError as e:
            where = f" after frame {len(decoded_pts)}" if decoded_pts else ""
            raise InputError(f"{path.name} could not be decoded{where} ({_short(e)}).") from e
        if first is None:
            raise InputError(f"{path.name} contains no decodable video frames.")

        if decode_count:
            seekable = all(p is not None for p in decoded_pts) and len(set(decoded_pts)) == len(decoded_pts)
            if seekable:
                pts_list = [int(p) for p in decoded_pts]  # type: ignore[arg-type]
            else:  # no usable timestamps: frames are consecutive at the stream's nominal rate
                rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
                step = 1 / (Fraction(rate) * tb)
                pts_list = [int(round(i * step)) for i in range(len(decoded_pts))]
            durs = [0] * len(pts_list)
        else:
            seekable = True

        src_pts = np.asarray(sorted(pts_list), dtype=np.int64)
        order = np.argsort(np.asarray(pts_list, dtype=np.int64), kind="stable")
        src_durs = np.asarray(durs, dtype=np.int64)[order] if durs else np.zeros(0, np.int64)
        if len(src_pts) == 0:
            raise InputError(f"{path.name} contains no video frames.")

        container_rates = [vs.average_rate, vs.base_rate, vs.guessed_rate, vs.codec_context.framerate]
        fps, slot_src, vfr = _fit_rate(src_pts, src_durs, Fraction(tb), container_rates)
        if vfr:
            n_src = len(src_pts)
            used = len(np.unique(slot_src))
            repeated = len(slot_src) - used
            dropped = n_src - used
            notices.append(
                f"Variable frame rate converted to a constant {format_fps(fps)} fps: {n_src} source frames became "
                f"{len(slot_src)} frames ({repeated} repeated, {dropped} dropped) so that every frame keeps its time."
            )

        ccw = int(round(first.rotation / 90.0)) % 4 if first.rotation else 0
        rotation = (-ccw * 90) % 360  # clockwise degrees, like the 'rotate' tag phones write
        w, h = first.width, first.height
        if ccw % 2:
            w, h = h, w
        if rotation:
            notices.append(f"Rotation metadata applied: frames are turned {rotation}° clockwise to {w}×{h}.")
        # VP9/WebM alpha lives in a side stream the decoder drops; only the stream's alpha_mode tag tells of it.
        if _has_transparency(first) or str(vs.metadata.get("alpha_mode", "")) == "1":
            notices.append("The video has transparent areas; transparency is ignored (frames are read as opaque "
                           "RGB).")

        aud = container.streams.audio[0] if container.streams.audio else None
        t0 = float(src_pts[0] * tb)
        n = len(slot_src)
        info = VideoInfo(
            path=path,
            fps=fps,
            n_frames=n,
            duration=float(n / fps),
            width=w,
            height=h,
            rotation=rotation,
            has_audio=aud is not None,
            audio_codec=aud.codec_context.name if aud is not None else None,
            sample_rate=int(aud.codec_context.sample_rate) if aud is not None else None,
            channels=int(aud.codec_context.channels) if aud is not None else None,
            codec=vs.codec_context.name,
            container=fmt,
            vfr=vfr,
            notices=tuple(notices),
        )
        return _Timeline(info, vs.index, Fraction(tb), src_pts, slot_src, ccw, t0, seekable)


def _has_transparency(frame: av.VideoFrame) -> bool:
    fmt = frame.format
    if not (fmt.has_palette or fmt.name.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))):
        return False
    try:
        return bool(frame.to_ndarray(format="rgba")[..., 3].min() < 255)
    except (ValueError, av.FFmpegError):
        return False


def _fit_rate(
    pts: np.ndarray, durs: np.ndarray, tb: Fraction, container_rates: list
) -> tuple[Fraction, np.ndarray, bool]:
    """Find the CFR rate that maps the sorted timestamps one-to-one, or convert VFR to CFR.

    Returns (fps, slot_src, vfr): slot i of the CFR clip shows source frame slot_src[i].
    """
    n = len(pts)
    rel = (pts - pts[0]).astype(np.float64) * float(tb)  # seconds from the first frame
    clean = [Fraction(r) for r in container_rates if r and 0 < float(r) <= 1000]
    if n == 1:
        fps = next((r for r in clean if r in STANDARD_RATES), clean[0] if clean else Fraction(25))
        if fps not in STANDARD_RATES:
            fps = sensible_rate(float(fps))
        return fps, np.zeros(1, np.int64), False

    def fits(r: Fraction) -> bool:
        return bool(np.max(np.abs(rel * float(r) - np.arange(n))) < _CFR_TOLERANCE)

    measured = (n - 1) / rel[-1] if rel[-1] > 0 else 0.0
    candidates: list[Fraction] = [r for r in clean if r in STANDARD_RATES]
    if measured > 0:
        candidates += sorted(STANDARD_RATES, key=lambda s: abs(float(s) - measured))
        candidates.append(sensible_rate(measured))
    candidates += [r for r in clean if r.denominator <= 1001]
    for r in candidates:
        if fits(r):
            return r, np.arange(n, dtype=np.int64), False

    # Variable frame rate: average rate over the whole span including the last frame's display time.
    diffs = np.diff(rel)
    last = float(durs[-1] * tb) if len(durs) and durs[-1] > 0 else float(np.median(diffs[diffs > 0])) if np.any(
        diffs > 0) else 0.04
    total = rel[-1] + last
    fps = sensible_rate(n / total, vfr=True)
    n_out = max(1, int(round(total * float(fps))))
    t = np.arange(n_out, dtype=np.float64) / float(fps)
    # latest source frame whose time <= t (a microsecond of slack absorbs float rounding of exact timestamps)
    slot_src = np.searchsorted(rel, t + 1e-6, side="right") - 1
    slot_src = np.clip(slot_src, 0, n - 1).astype(np.int64)
    return fps, slot_src, True


# --------------------------------------------------------------------------------------------------------------------
# Reading frames


def _check_range(info: VideoInfo, start: int, stop: int | None) -> tuple[int, int]:
    n = info.n_frames
    stop = n if stop is None else stop
    if not (0 <= start <= n) or not (start <= stop <= n):
        raise InputError(f"Frame range [{start}, {stop}) is outside {info.path.name}, which has frames 0 to {n - 1}.")
    return start, stop


def iter_frames(
    path: str | os.PathLike,
    *,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames start..stop-1 of the CFR clip, rotation applied.

    `size=(w, h)` resizes each frame on the fly (cv2.INTER_AREA) so long clips at working size fit in memory.
    """
    path = Path(path)
    tl = _timeline(path)
    start, stop = _check_range(tl.info, start, stop)
    if start == stop:
        return
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"size must be positive, got {size}")
    yield from _iter_slots(path, tl, start, stop, size)


def _iter_slots(path: Path, tl: _Timeline, start: int, stop: int, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    slots = tl.slot_src
    first_src = int(slots[start])

    def convert(frame: av.VideoFrame) -> np.ndarray:
        img = _frame_to_rgb(frame)
        if tl.rot_k:
            img = np.rot90(img, tl.rot_k)
        if size is not None and (img.shape[1], img.shape[0]) != size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    with _open(path) as container:
        vs = container.streams.video[[s.index for s in container.streams.video].index(tl.stream_index)]
        vs.thread_type = "AUTO"
        counter = 0
        if first_src > 0 and tl.seekable:
            try:
                container.seek(int(tl.src_pts[first_src]), stream=vs, backward=True, any_frame=False)
                counter = -1  # unknown until a frame with a known pts arrives
            except av.FFmpegError:
                container.seek(0)
        j = start
        prev: av.VideoFrame | None = None
        prev_img: np.ndarray | None = None
        prev_k = -1
        try:
            for frame in container.decode(vs):
                if tl.seekable and frame.pts is not None:
                    i = int(np.searchsorted(tl.src_pts, frame.pts))
                    if i >= len(tl.src_pts) or tl.src_pts[i] != frame.pts:
                        continue  # not on the timeline (e.g. cut by an edit list)
                    k = i
                elif counter < 0:
                    # after a seek, a frame without a timestamp cannot be placed: decode from the start instead
                    yield from _iter_slots_sequential(path, tl, start, stop, convert)
                    return
                else:
                    k = counter
                counter = k + 1
                if k <= prev_k:
                    continue  # a duplicate presentation time; the timeline counted it once
                if prev_k < 0 and k > first_src:
                    # the seek landed after the target (broken index): fall back to plain decoding
                    yield from _iter_slots_sequential(path, tl, start, stop, convert)
                    return
                # slots that show a frame before k show the previous frame
                while j < stop and slots[j] < k:
                    if prev is None:
                        raise InputError(f"{path.name}: frame {j} could not be decoded.")
                    yield (prev_img := convert(prev)) if prev_img is None else prev_img.copy()
                    j += 1
                prev, prev_img, prev_k = frame, None, k
                while j < stop and slots[j] == k:
                    yield (prev_img := convert(frame)) if prev_img is None else prev_img.copy()
                    j += 1
                if j >= stop:
                    return
        except av.FFmpegError as e:
            raise InputError(f"{path.name} could not be decoded after frame {j} ({_short(e)}).") from e
        while j < stop and prev is not None and slots[j] <= prev_k:
            yield (prev_img := convert(prev)) if prev_img is None else prev_img.copy()
            j += 1
        if j < stop:
            raise InputError(f"{path.name} is damaged: only {j} of its {tl.info.n_frames} frames could be decoded.")


def _iter_slots_sequential(path: Path, tl: _Timeline, start: int, stop: int, convert) -> Iterator[np.ndarray]:
    """Decode from the first frame counting frames in presentation order (no seeking, no pts lookups)."""
    slots = tl.slot_src
    j = start
    with _open(path) as container:
        vs = container.streams.video[[s.index for s in container.streams.video].index(tl.stream_index)]
        vs.thread_type = "AUTO"
        for k, frame in enumerate(container.decode(vs)):
            img = None
            while j < stop and slots[j] <= k:
                yield (img := convert(frame)) if img is None else img.copy()
                j += 1
            if j >= stop:
                return
    if j < stop:
        raise InputError(f"{path.name} is damaged: only {j} of its {tl.info.n_frames} frames could be decoded.")


def read_frames(
    path: str | os.PathLike, *, start: int = 0, stop: int | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """All frames start..stop-1 as one (T, H, W, 3) uint8 array (see `iter_frames`)."""
    info = probe(path)
    start, stop = _check_range(info, start, stop)
    w, h = size if size is not None else (info.width, info.height)
    out = np.empty((stop - start, h, w, 3), dtype=np.uint8)
    i = 0
    for i, img in enumerate(iter_frames(path, start=start, stop=stop, size=size)):
        out[i] = img
    return out


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame `index` of the CFR clip (seeks to the nearest keyframe before it)."""
    info = probe(path)
    if not 0 <= index < info.n_frames:
        raise InputError(f"Frame {index} does not exist: {info.path.name} has frames 0 to {info.n_frames - 1}.")
    return next(iter_frames(path, start=index, stop=index + 1))


# --------------------------------------------------------------------------------------------------------------------
# Audio


def _span_seconds(span: tuple[int, int] | None, fps: Fraction) -> tuple[float, float | None]:
    if span is None:
        return 0.0, None
    a, b = int(span[0]), int(span[1])
    if a < 0 or b < a:
        raise ValueError(f"bad frame span {span}")
    return float(a / fps), float(b / fps)


def _decode_audio(path: Path, t_start: float, t_stop: float | None) -> tuple[np.ndarray, int, str]:
    """Decoded samples in [t_start, t_stop) s from the first video frame: ((channels, n) float32, rate, layout)."""
    tl = _timeline(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path.name} has no audio stream.")
        a = container.streams.audio[0]
        rate = int(a.codec_context.sample_rate)
        layout = a.codec_context.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        try:
            for frame in container.decode(a):
                if first_time is None:
                    first_time = float(frame.pts * frame.time_base) if frame.pts is not None else tl.t0
                for rf in resampler.resample(frame):
                    chunks.append(rf.to_ndarray())
            for rf in resampler.resample(None):
                chunks.append(rf.to_ndarray())
        except av.FFmpegError as e:
            raise InputError(f"The audio of {path.name} could not be decoded ({_short(e)}).") from e
    channels = a.codec_context.channels
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    first_time = tl.t0 if first_time is None else first_time
    offset = int(round((first_time - tl.t0) * rate))  # sample index (from the first video frame) of data[:, 0]
    a_idx = int(round(t_start * rate))
    b_idx = data.shape[1] + offset if t_stop is None else int(round(t_stop * rate))
    out = np.zeros((data.shape[0], max(0, b_idx - a_idx)), np.float32)
    lo, hi = max(a_idx, offset), min(b_idx, offset + data.shape[1])
    if hi > lo:
        out[:, lo - a_idx: hi - a_idx] = data[:, lo - offset: hi - offset]
    return out, rate, layout


def audio_samples(path: str | os.PathLike, span: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Decoded audio as ((channels, n) float32, sample_rate).

    `span=(start, stop)` are video frames of this clip: the audio from start/fps to stop/fps after the first video
    frame (zeros where the audio stream does not reach). None: the whole audio stream, from the first video frame.
    """
    path = Path(path)
    info = probe(path)
    if not info.has_audio:
        raise InputError(f"{path.name} has no audio stream.")
    t0, t1 = _span_seconds(span, info.fps)
    data, rate, _ = _decode_audio(path, t0, t1)
    return data, rate


# --------------------------------------------------------------------------------------------------------------------
# Writing


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


class _AudioSource:
    """Audio packets for the output, produced lazily so they can be interleaved with video."""

    def __init__(self, out: av.container.OutputContainer, src: Path, span: tuple[int, int] | None, fps: Fraction,
                 notices: list[str]):
        self.src = src
        tl = _timeline(src)
        self.t0 = tl.t0
        self.container = _open(src)
        a = self.container.streams.audio[0]
        self.in_stream = a
        name = a.codec_context.name
        whole = span is None or (int(span[0]) == 0 and int(span[1]) >= tl.info.n_frames and fps == tl.info.fps)
        self.copy = whole and name in _MP4_AUDIO_COPY
        self.t_start, self.t_stop = _span_seconds(span, fps)
        if self.copy:
            self.stream = out.add_stream_from_template(a)
            self.packets = self._copy_packets()
        else:
            rate = int(a.codec_context.sample_rate)
            if rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000):
                rate = 48000
            layout = a.codec_context.layout.name
            if a.codec_context.channels > 2 and layout not in ("5.1", "5.1(side)", "7.1", "quad", "2.1", "3.0"):
                layout = "stereo"
            self.stream = out.add_stream("aac", rate=rate, layout=layout)
            self.stream.bit_rate = 192_000 if a.codec_context.channels <= 2 else 384_000
            self.packets = self._encode_packets(rate, layout)
            why = "re-encoded to AAC" + (f" (the {name} codec cannot go into mp4 unchanged)" if name not in
                                         _MP4_AUDIO_COPY else " (trimmed to the edited span)")
            notices.append(f"Audio {why}.")
        self.pending: av.Packet | None = None
        self.done = False

    def _copy_packets(self) -> Iterator[av.Packet]:
        a = self.in_stream
        shift = int(round(self.t0 / float(a.time_base))) if a.time_base else 0
        for p in self.container.demux(a):
            if p.size == 0 or p.dts is None:
                continue
            if p.pts is not None:
                p.pts -= shift
            p.dts -= shift
            p.stream = self.stream
            yield p

    def _encode_packets(self, rate: int, layout: str) -> Iterator[av.Packet]:
        data, src_rate, _ = _decode_audio(self.src, self.t_start, self.t_stop)
        if src_rate != rate or data.shape[0] != self.stream.codec_context.channels:
            data = self._resample(data, src_rate, layout, rate)
        n = data.shape[1]
        step = 1024 * 8
        for i in range(0, n, step):
            chunk = np.ascontiguousarray(data[:, i: i + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = i
            frame.time_base = Fraction(1, rate)
            yield from self.stream.encode(frame)
        yield from self.stream.encode(None)

    @staticmethod
    def _resample(data: np.ndarray, src_rate: int, layout: str, rate: int) -> np.ndarray:
        in_layout = {1: "mono", 2: "stereo"}.get(data.shape[0], f"{data.shape[0]}c")
        res = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=in_layout)
        frame.sample_rate = src_rate
        frame.pts = 0
        out = [f.to_ndarray() for f in res.resample(frame)] + [f.to_ndarray() for f in res.resample(None)]
        return np.concatenate(out, axis=1) if out else np.zeros((len(res.layout.channels), 0), np.float32)

    def mux_until(self, out: av.container.OutputContainer, t: float | None) -> None:
        """Mux audio packets whose time is before t seconds (all remaining when t is None)."""
        while not self.done:
            if self.pending is None:
                try:
                    self.pending = next(self.packets)
                except StopIteration:
                    self.done = True
                    return
            p = self.pending
            ts = p.dts if p.dts is not None else p.pts
            if t is not None and ts is not None and p.time_base and float(ts * p.time_base) > t:
                return
            out.mux(p)
            self.pending = None

    def close(self) -> None:
        self.container.close()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: Fraction | int | float,
    *,
    audio_from: str | os.PathLike | None = None,
    audio_span: tuple[int, int] | None = None,
    crf: int = 18,
    preset: str = "medium",
    notices: list[str] | None = None,
) -> Path:
    """Write RGB uint8 frames as H.264 yuv420p mp4 that browsers play; frame i is at exactly i / fps.

    - `audio_from`: a clip whose first audio stream is muxed in; `audio_span=(start, stop)` are its frames (at this
      `fps`) whose audio to take. The whole clip's AAC/MP3 audio is copied unchanged; anything else is re-encoded to
      AAC, trimmed to the span sample-exactly.
    - Odd widths/heights are padded by one replicated edge pixel (yuv420p needs even sizes); a sentence saying so is
      appended to `notices` (as is any audio re-encoding), so the caller can tell the user.
    - Atomic: frames are written to a hidden temp file next to `path` that replaces `path` only when complete; on any
      exception (KeyboardInterrupt included) the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    rate = _to_rate(fps)
    notes: list[str] = notices if notices is not None else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if audio_from is not None:
        audio_from = Path(audio_from)
        if not probe(audio_from).has_audio:
            audio_from = None
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.part"
    out = None
    audio: _AudioSource | None = None
    try:
        out = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        it = iter(frames)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("write_video needs at least one frame") from None
        first = _check_frame(first, None, 0)
        h, w = first.shape[:2]
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
        cc.color_range = 1  # limited ("tv") range, what browsers expect
        cc.colorspace = 1  # BT.709
        cc.color_primaries = 1
        cc.color_trc = 1
        if audio_from is not None:
            audio = _AudioSource(out, audio_from, audio_span, rate, notes)

        def encode(img: np.ndarray, i: int) -> None:
            if (W, H) != (w, h):
                img = np.pad(img, ((0, H - h), (0, W - w), (0, 0)), mode="edge")
            vf = _rgb_to_yuv420_frame(img)
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


def _check_frame(img: np.ndarray, hw: tuple[int, int] | None, i: int) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"frame {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    if hw is not None and img.shape[:2] != hw:
        raise ValueError(f"frame {i}: size {img.shape[1]}×{img.shape[0]} differs from frame 0 ({hw[1]}×{hw[0]})")
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------------------------------------------------
# Side by side


def side_by_side(
    left: Iterable[np.ndarray],
    right: Iterable[np.ndarray],
    labels: tuple[str, str] = ("source", "result"),
    *,
    gap: int = 4,
) -> Iterator[np.ndarray]:
    """Frames with `left` and `right` next to each other at the same height, each with a small label."""
    li, ri = iter(left), iter(right)
    i = 0
    while True:
        a = next(li, None)
        b = next(ri, None)
        if a is None and b is None:
            return
        if a is None or b is None:
            raise ValueError(f"side_by_side: the {'left' if a is None else 'right'} clip ended at frame {i}")
        h = max(a.shape[0], b.shape[0])
        a, b = _to_height(a, h), _to_height(b, h)
        canvas = np.zeros((h, a.shape[1] + gap + b.shape[1], 3), np.uint8)
        canvas[:, : a.shape[1]] = a
        canvas[:, a.shape[1] + gap:] = b
        _label(canvas, labels[0], 0)
        _label(canvas, labels[1], a.shape[1] + gap)
        yield canvas
        i += 1


def _to_height(img: np.ndarray, h: int) -> np.ndarray:
    if img.shape[0] == h:
        return img
    w = max(1, int(round(img.shape[1] * h / img.shape[0])))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if h < img.shape[0] else cv2.INTER_LINEAR)


def _label(canvas: np.ndarray, text: str, x0: int) -> None:
    if not text:
        return
    scale = max(0.4, canvas.shape[0] / 720)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, th // 3)
    cv2.rectangle(canvas, (x0, 0), (x0 + tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), thickness=-1)
    cv2.putText(canvas, text, (x0 + pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
