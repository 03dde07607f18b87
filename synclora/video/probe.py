"""Probing a clip: exact fps and frame count (VFR converted to CFR), display size, rotation, audio, as one timeline.

`probe` demuxes the video packets (no decoding for ordinary files) and finds the constant frame rate (CFR) the
timestamps follow, as an exact rational (30000/1001, not 29.97). A file whose timestamps do not fit any constant rate
one-to-one is variable-frame-rate (VFR): it is converted to CFR at its average rate (rounded to a sensible rational)
by showing, at each CFR time t, the latest source frame whose timestamp is <= t — what a player shows. The
`Timeline` kept per file is what the frame readers (`video.decode`) and the audio code (`video.audio`) follow.
"""

from __future__ import annotations

import os
import threading
from array import array
from collections import OrderedDict
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from synclora import limits
from synclora.errors import InputError, shown
from synclora.video.container import check_file, decode_error, open_input, short_error, video_stream

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
# Containers whose packet count is not trusted as a frame count (packed B-frames in AVI): decode to count.
_DECODE_COUNT_FORMATS = {"avi"}
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
            f"File:       {shown(str(self.path))}",
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
        lines += [f"Note:       {shown(n)}" for n in self.notices]
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



@dataclass(frozen=True)
class Timeline:
    """The exact timeline of one file: source frames in presentation order and the CFR slots that show them."""

    info: VideoInfo
    stream_index: int
    time_base: Fraction
    src_pts: np.ndarray  # (n_src,) int64 pts in `time_base`, sorted (presentation order)
    slot_src: np.ndarray  # (n_frames,) index into src_pts shown at CFR slot i
    rot_k: int  # np.rot90 k (counter-clockwise quarter turns) that displays a stored frame
    t0: float  # seconds of the first video frame; audio spans are measured from here
    seekable: bool  # pts of decoded frames match src_pts, so seeking can find a frame by pts
    audio_index: int | None = None  # container index of the audio stream used (None: no usable audio)
    audio_end: float | None = None  # seconds from t0 where the audio packets end (None: not known without decoding)
    audio_packet_s: float = 0.0  # the longest audio packet, in seconds (how finely a stream copy can be cut)
    # Frames a reader holds back to hand them out in presentation order: packets (of a codec whose decoder does not
    # reorder) may be stored with timestamps going backwards — valid in Matroska (`decode.iter_slots`).
    reorder: int = 0
    # Source frames (indices into src_pts) stored as keyframes, where the packets say so (None: not known): where a
    # reader going backwards can start decoding without decoding frames it does not keep.
    key_src: np.ndarray | None = None


_CACHE: OrderedDict[tuple, Timeline] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()  # the app probes from worker threads


def probe(path: str | os.PathLike) -> VideoInfo:
    """Facts about a clip: exact fps and frame count (after VFR→CFR), display size, rotation, audio.

    Fast for ordinary files (only packets are read); cached by (path, mtime, size).
    """
    return timeline(Path(path)).info


def timeline(path: Path) -> Timeline:
    path = Path(path)
    check_file(path)
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


def _build_timeline(path: Path) -> Timeline:
    notices: list[str] = []
    with open_input(path) as container:
        vs = video_stream(container, path)
        tb = vs.time_base or Fraction(1, 90000)
        fmt = container.format.name
        decode_count = any(f in _DECODE_COUNT_FORMATS for f in fmt.split(","))
        aud = _audio_stream(container, path, notices)

        # One pass over the packets: the video timestamps (bounded: a container may claim any number of frames) and
        # where the audio ends (so the result can be trimmed to the video). Packets are counted, never kept.
        pts_list = array("q")
        durs = array("q")
        key_pts = array("q")
        n_discard = 0
        demux_error: str | None = None
        audio_end: float | None = None
        audio_packet_s = 0.0
        need_pts = not decode_count
        try:
            for pkt in container.demux(*([vs, aud] if aud is not None else [vs])) if need_pts or aud else ():
                if pkt.size == 0:  # flush packet
                    continue
                if pkt.stream_index != vs.index:
                    t = pkt.pts if pkt.pts is not None else pkt.dts
                    if t is not None and pkt.time_base:
                        dur = float(max(0, pkt.duration or 0) * pkt.time_base)
                        end = float(t * pkt.time_base) + dur
                        audio_end = end if audio_end is None else max(audio_end, end)
                        audio_packet_s = max(audio_packet_s, dur)
                    continue
                if not need_pts:
                    continue
                if pkt.is_discard:  # before the start of an edit list: decoded as a reference, never shown
                    n_discard += 1
                    continue
                t = pkt.pts if pkt.pts is not None else pkt.dts
                if t is None:
                    decode_count, need_pts = True, False
                    continue
                pts_list.append(int(t))
                durs.append(max(0, int(pkt.duration or 0)))
                if pkt.is_keyframe:
                    key_pts.append(int(t))
                if len(pts_list) > limits.MAX_TIMELINE_FRAMES:
                    raise _too_long(path, frames=len(pts_list))
        except av.FFmpegError as e:
            demux_error = short_error(e)
            audio_end = None  # the audio's extent is not known either
        if not decode_count:
            if demux_error is None and len(set(pts_list)) != len(pts_list):
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
                if len(decoded_pts) > limits.MAX_TIMELINE_FRAMES:
                    raise _too_long(path, frames=len(decoded_pts))
        except av.FFmpegError as e:
            raise decode_error(path, e, f" after frame {len(decoded_pts)}" if decoded_pts else "") from e
        if first is None:
            raise InputError(f"{path.name} contains no decodable video frames.")

        if decode_count:
            seekable = all(p is not None for p in decoded_pts) and len(set(decoded_pts)) == len(decoded_pts)
            if seekable:
                pts_list = array("q", [int(p) for p in decoded_pts])  # type: ignore[arg-type]
            else:  # no usable timestamps: frames are consecutive at the stream's nominal rate
                rates = [vs.average_rate, vs.guessed_rate, vs.base_rate]
                rate = next((Fraction(r) for r in rates if r and 0 < float(r) <= limits.MAX_FPS), Fraction(25))
                step = 1 / (rate * tb)
                pts_list = array("q", [int(round(i * step)) for i in range(len(decoded_pts))])
            durs = array("q", [0] * len(pts_list))
        else:
            seekable = True
        if len(pts_list) == 0:
            raise InputError(f"{path.name} contains no video frames.")
        span = Fraction(max(pts_list) - min(pts_list)) * Fraction(tb)  # exact: no int64 overflow
        if span > limits.MAX_TIMELINE_S:
            raise _too_long(path, seconds=float(span))

        src_pts = np.sort(np.frombuffer(pts_list, dtype=np.int64))
        order = np.argsort(np.frombuffer(pts_list, dtype=np.int64), kind="stable")
        # Frames the decoder hands out in stored order (it does not reorder: no B-frame delay) must be put in
        # presentation order by the reader: how far they stray bounds what it holds back.
        reorder = 0 if vs.codec_context.has_b_frames else _reorder_depth(order)
        if reorder > limits.MAX_REORDER_FRAMES:
            raise InputError(f"{path.name} stores its frames up to {reorder} places out of presentation order; up to "
                             f"{limits.MAX_REORDER_FRAMES} are read — re-encode it first.")
        src_durs = np.frombuffer(durs, dtype=np.int64)[order] if len(durs) else np.zeros(0, np.int64)

        container_rates = [vs.average_rate, vs.base_rate, vs.guessed_rate, vs.codec_context.framerate]
        fps, slot_src, vfr = _fit_rate(src_pts, src_durs, Fraction(tb), container_rates, path)
        if fps > limits.MAX_FPS:
            raise InputError(f"{path.name}'s timestamps give {float(fps):.0f} frames per second; frame rates of at "
                             f"most {limits.MAX_FPS} fps are read (the file's timing is broken).")
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
        return Timeline(info, vs.index, Fraction(tb), src_pts, slot_src, ccw, t0, seekable,
                        audio_index=aud.index if aud is not None else None,
                        audio_end=None if audio_end is None or aud is None else audio_end - t0,
                        audio_packet_s=audio_packet_s, reorder=reorder,
                        key_src=None if decode_count or not key_pts else
                        np.searchsorted(src_pts, np.sort(np.frombuffer(key_pts, dtype=np.int64))))


def _reorder_depth(order: np.ndarray) -> int:
    """At most how many frames arrive ahead of one still to come, when frames come in stored order and `order` sorts
    them into presentation order (0: already in order). An upper bound, computed without a loop."""
    if len(order) == 0:
        return 0
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(len(order))
    return int(np.max(np.maximum.accumulate(ranks) - np.arange(len(order))))


def _too_long(path: Path, *, frames: int | None = None, seconds: float | None = None) -> InputError:
    claim = f"{frames} frames" if frames is not None else f"{seconds / 3600:,.0f} hours"
    return InputError(f"{path.name} claims {claim}; files of at most {limits.MAX_TIMELINE_FRAMES} frames and "
                      f"{limits.MAX_TIMELINE_S // 3600} hours are read (its timestamps may be broken).")


def _audio_stream(container: av.container.InputContainer, path: Path, notices: list[str]):
    """The first audio stream when it can be decoded (None with a notice when not); implausible claims are refused."""
    if not container.streams.audio:
        return None
    a = container.streams.audio[0]
    cc = a.codec_context
    if cc is None:
        notices.append("The audio stream's codec cannot be decoded here; the audio is ignored.")
        return None
    rate, channels = int(cc.sample_rate or 0), int(cc.channels or 0)
    if rate > limits.MAX_AUDIO_RATE or channels > limits.MAX_AUDIO_CHANNELS:
        raise InputError(f"{path.name}'s audio claims {rate} Hz and {channels} channels; audio of at most "
                         f"{limits.MAX_AUDIO_RATE} Hz and {limits.MAX_AUDIO_CHANNELS} channels is read.")
    if rate <= 0 or channels <= 0:
        notices.append("The audio stream's format could not be read; the audio is ignored.")
        return None
    return a


def _has_transparency(frame: av.VideoFrame) -> bool:
    fmt = frame.format
    if not (fmt.has_palette or fmt.name.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))):
        return False
    try:
        return bool(frame.to_ndarray(format="rgba")[..., 3].min() < 255)
    except (ValueError, av.FFmpegError):
        return False


def _fit_rate(
    pts: np.ndarray, durs: np.ndarray, tb: Fraction, container_rates: list, path: Path | None = None
) -> tuple[Fraction, np.ndarray, bool]:
    """Find the CFR rate that maps the sorted timestamps one-to-one, or convert VFR to CFR.

    Returns (fps, slot_src, vfr): slot i of the CFR clip shows source frame slot_src[i]. The CFR frame count is
    checked against `limits.MAX_TIMELINE_FRAMES` before any array of that length exists.
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
    longest = float(diffs.max()) if np.any(diffs > 0) else 0.04
    last = float(durs[-1] * tb) if len(durs) and durs[-1] > 0 else float(np.median(diffs[diffs > 0])) if np.any(
        diffs > 0) else 0.04
    last = min(last, longest)  # a last frame "shown for hours" is a forged duration, not a hold
    total = rel[-1] + last
    fps = sensible_rate(n / total, vfr=True)
    n_out = max(1, int(round(total * float(fps))))
    if n_out > limits.MAX_TIMELINE_FRAMES:
        raise _too_long(path or Path("the video"), frames=n_out)
    t = np.arange(n_out, dtype=np.float64) / float(fps)
    # latest source frame whose time <= t (a microsecond of slack absorbs float rounding of exact timestamps)
    slot_src = np.searchsorted(rel, t + 1e-6, side="right") - 1
    slot_src = np.clip(slot_src, 0, n - 1).astype(np.int64)
    return fps, slot_src, True

