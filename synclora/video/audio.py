"""The source audio: decoding a span of it (sample-exact, measured from the first video frame) and the packets
`write_video` muxes back (stream copy when the audio already fits the video, else AAC trimmed to the span).

Audio is decoded and re-encoded as a stream of small chunks: memory does not grow with the clip's length, and decoding
stops at the end of the span, whatever the container claims about the rest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from synclora import limits
from synclora.errors import InputError
from synclora.video.container import open_input, short_error
from synclora.video.probe import Timeline, probe, timeline

# Audio codecs that can be copied into mp4 unchanged and that browsers play.
MP4_AUDIO_COPY = {"aac", "mp3"}
# Audio may end this much after the last video frame (an AAC packet is 21 ms at 48 kHz) and still count as fitting.
OVERRUN_S = 0.05
_BLOCK = 8192  # samples per chunk of zeros (gaps) and per frame handed to the encoder
# Layouts FFmpeg's AAC encoder takes as they are (each tried); any other is downmixed to stereo, with a notice.
AAC_LAYOUTS = ("mono", "stereo", "2.1", "3.0", "quad", "4.0", "5.0", "5.1", "5.1(side)", "6.1", "hexagonal", "7.1",
               "7.1(wide)", "octagonal")


# Samples cross into numpy only as *packed* float32 (one interleaved plane), never planar: PyAV miscounts the planes
# of a planar frame with 8 or more channels (7.1, 5.1.4, 16 channels, ...) and reads or writes past them — a native
# crash that no `except` can catch. Packed frames have one plane at any channel count; the resamplers on either side
# convert to and from whatever the codecs want.
def to_samples(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """(channels, n) float32 from a packed `flt` frame."""
    return frame.to_ndarray().reshape(-1, channels).T


def from_samples(samples: np.ndarray, layout: str, rate: int) -> av.AudioFrame:
    """A packed `flt` frame from (channels, n) float32 samples."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T, dtype=np.float32).reshape(1, -1),
                                       format="flt", layout=layout)
    frame.sample_rate = rate
    return frame


def stereo_downmix(layout: str) -> np.ndarray:
    """(2, channels) weights that fold `layout` into stereo: left-side channels to the left, right-side to the right,
    centre (and unnamed) channels to both, low-frequency effects left out. Each row sums to 1, so the result can
    never clip, however many channels add up."""
    names = [c.name for c in av.AudioLayout(layout).channels]
    m = np.zeros((2, len(names)), np.float32)
    for i, name in enumerate(names):
        if name.startswith("LFE"):
            continue
        if name.endswith("L") or name.endswith("LC"):
            m[0, i] = 1
        elif name.endswith("R") or name.endswith("RC"):
            m[1, i] = 1
        else:
            m[:, i] = 0.5
    if not m.any():
        m[:] = 1
    return m / m.sum(axis=1, keepdims=True)


def _layout(a, path: Path) -> tuple[str, int]:
    """(layout name, channels) the resamplers are given for the stream `a`: its own layout when FFmpeg can name it,
    else the plain channel count (e.g. a Matroska PCM track says "8 channels")."""
    layout = a.codec_context.layout
    channels = len(layout.channels)
    for name in (layout.name, f"{channels}c"):
        try:
            if len(av.AudioLayout(name).channels) == channels:
                return name, channels
        except (ValueError, av.FFmpegError):
            continue
    raise InputError(f"The audio of {path.name} has {channels} channels in a layout that cannot be read; "
                     "re-encode it as stereo first.")


def span_seconds(span: tuple[int, int] | None, fps: Fraction) -> tuple[float, float | None]:
    if span is None:
        return 0.0, None
    a, b = int(span[0]), int(span[1])
    if a < 0 or b < a:
        raise ValueError(f"bad frame span {span}")
    return float(a / fps), float(b / fps)


def _audio_stream(container: av.container.InputContainer, tl: Timeline, path: Path):
    if tl.audio_index is None:
        raise InputError(f"{path.name} has no audio stream.")
    return next(s for s in container.streams.audio if s.index == tl.audio_index)


def audio_chunks(path: Path, t_start: float, t_stop: float | None) -> tuple[int, str, int, Iterator[np.ndarray]]:
    """The samples in [t_start, t_stop) s from the first video frame, as (rate, layout, channels, chunks): chunks are
    (channels, k) float32 arrays that together hold exactly that span (zeros where the audio does not reach).
    t_stop None: until the audio ends. Decoding stops at t_stop; memory is one chunk at a time."""
    tl = timeline(path)
    container = open_input(path)
    try:
        a = _audio_stream(container, tl, path)
        rate = int(a.codec_context.sample_rate)
        layout, channels = _layout(a, path)  # what the resampler hands out, whatever frames claim
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    except BaseException:
        container.close()
        raise
    a_idx = int(round(t_start * rate))
    b_idx = None if t_stop is None else int(round(t_stop * rate))

    def zeros(n: int) -> Iterator[np.ndarray]:
        for i in range(0, n, _BLOCK):
            yield np.zeros((channels, min(_BLOCK, n - i)), np.float32)

    def chunks() -> Iterator[np.ndarray]:
        pos = a_idx  # the next sample index (from the first video frame) to hand out
        offset: int | None = None  # sample index of the next decoded sample

        def place(data: np.ndarray) -> Iterator[np.ndarray]:
            nonlocal pos, offset
            first, offset = offset, offset + data.shape[1]
            end = offset if b_idx is None else min(offset, b_idx)
            if first > pos:  # a gap before this audio (or the audio starts after the first video frame)
                stop = first if b_idx is None else min(first, b_idx)
                yield from zeros(stop - pos)
                pos = max(pos, stop)
            if end > pos:
                yield np.ascontiguousarray(data[:, pos - first: end - first], dtype=np.float32)
                pos = end

        with container:
            try:
                for frame in container.decode(a):
                    if offset is None:
                        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else tl.t0
                        offset = int(round((t - tl.t0) * rate))
                    for rf in resampler.resample(frame):
                        yield from place(to_samples(rf, channels))
                    if b_idx is not None and pos >= b_idx:
                        return  # the span is complete: the rest of the stream is never decoded
                if offset is not None:
                    for rf in resampler.resample(None):
                        yield from place(to_samples(rf, channels))
            except (av.FFmpegError, ValueError) as e:  # ValueError: frames that change format midway
                raise InputError(f"The audio of {path.name} could not be decoded ({short_error(e)}).") from e
            if b_idx is not None and pos < b_idx:
                yield from zeros(b_idx - pos)

    return rate, layout, channels, chunks()


def decode_audio(path: Path, t_start: float, t_stop: float | None) -> tuple[np.ndarray, int, str]:
    """Decoded samples in [t_start, t_stop) s from the first video frame: ((channels, n) float32, rate, layout).

    One array, so its size is checked: at most `limits.MAX_WORKING_BYTES` (before decoding when the span is known)."""
    rate, layout, channels, chunks = audio_chunks(path, t_start, t_stop)
    budget = limits.MAX_WORKING_BYTES // (4 * max(1, channels))

    def too_long() -> InputError:
        return InputError(f"The audio of {path.name} is too long to read at once (over {budget / rate / 3600:.1f} "
                          "hours at its rate and channels); read a shorter span.")

    if t_stop is not None and (t_stop - t_start) * rate > budget:
        chunks.close()
        raise too_long()
    parts, n = [], 0
    for c in chunks:
        n += c.shape[1]
        if n > budget:
            chunks.close()
            raise too_long()
        parts.append(c)
    data = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.float32)
    return data, rate, layout


def audio_samples(path: str | os.PathLike, span: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Decoded audio as ((channels, n) float32, sample_rate).

    `span=(start, stop)` are video frames of this clip: the audio from start/fps to stop/fps after the first video
    frame (zeros where the audio stream does not reach). None: the whole audio stream, from the first video frame.
    """
    path = Path(path)
    info = probe(path)
    if not info.has_audio:
        raise InputError(f"{path.name} has no audio stream.")
    t0, t1 = span_seconds(span, info.fps)
    data, rate, _ = decode_audio(path, t0, t1)
    return data, rate



class AudioSource:
    """Audio packets for the output, produced lazily so they can be interleaved with video.

    The output never plays longer than its video: the audio is cut at the span's (or the whole clip's) last video
    frame. The whole clip's AAC/MP3 is copied packet for packet (sample-identical), leaving out packets that start
    after the last frame, when that ends it within a video frame or `OVERRUN_S`; otherwise it is re-encoded and
    trimmed exactly."""

    def __init__(self, out: av.container.OutputContainer, src: Path, span: tuple[int, int] | None, fps: Fraction,
                 notices: list[str]):
        self.src = src
        tl = timeline(src)
        self.t0 = tl.t0
        self.container = open_input(src)
        try:
            a = _audio_stream(self.container, tl, src)
        except BaseException:
            self.container.close()
            raise
        self.in_stream = a
        name = a.codec_context.name
        whole = span is None or (int(span[0]) == 0 and int(span[1]) >= tl.info.n_frames and fps == tl.info.fps)
        if span is None:
            span = (0, tl.info.n_frames)
            fps = tl.info.fps
        self.t_start, self.t_stop = span_seconds(span, fps)
        # Ending within a video frame (or 50 ms) of the last frame counts as ending there: not audible, not visible.
        overrun = None if tl.audio_end is None else tl.audio_end - self.t_stop
        slack = max(1 / float(tl.info.fps), OVERRUN_S)
        fits = overrun is not None and (overrun <= slack or tl.audio_packet_s <= slack)
        self.copy = whole and fits and name in MP4_AUDIO_COPY
        self.downmix: np.ndarray | None = None  # (2, channels) when a layout AAC cannot carry is folded to stereo
        if self.copy and overrun is not None and overrun > slack:
            notices.append(f"Audio trimmed to the video's length (it ran {overrun:.2f} s past the last frame).")
        if self.copy:
            self.stream = out.add_stream_from_template(a)
            self.packets = self._copy_packets()
        else:
            rate = int(a.codec_context.sample_rate)
            if rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000):
                rate = 48000
            layout, channels = _layout(a, src)
            if layout not in AAC_LAYOUTS:  # an unnamed 6 or 8 channels is taken as 5.1 or 7.1
                default = av.AudioLayout(f"{min(channels, 8)}c").name
                if default in AAC_LAYOUTS and len(av.AudioLayout(default).channels) == channels:
                    layout = default
                else:
                    notices.append(f"Audio downmixed from {channels} channels ({layout}) to stereo: AAC in mp4 "
                                   "carries at most 7.1.")
                    self.downmix = stereo_downmix(layout)
                    layout = "stereo"
            self.stream = out.add_stream("aac", rate=rate, layout=layout)
            self.stream.bit_rate = 192_000 if channels <= 2 else 384_000
            self.packets = self._encode_packets(rate, layout)
            if name not in MP4_AUDIO_COPY:
                why = f"re-encoded to AAC (the {name} codec cannot go into mp4 unchanged)"
            elif not whole:
                why = "re-encoded to AAC (trimmed to the edited span)"
            else:
                why = "re-encoded to AAC and trimmed to the video's length" + (
                    f" (it ran {overrun:.2f} s past the last frame)" if overrun is not None else "")
            notices.append(f"Audio {why}.")
        self.pending: av.Packet | None = None
        self.done = False

    def _copy_packets(self) -> Iterator[av.Packet]:
        a = self.in_stream
        shift = int(round(self.t0 / float(a.time_base))) if a.time_base else 0
        for p in self.container.demux(a):
            if p.size == 0 or p.dts is None:
                continue
            start = p.pts if p.pts is not None else p.dts
            if a.time_base and self.t_stop is not None and float((start - shift) * a.time_base) >= self.t_stop:
                continue  # starts after the last video frame: left out, so the result is no longer than its video
            if p.pts is not None:
                p.pts -= shift
            p.dts -= shift
            p.stream = self.stream
            yield p

    def _encode_packets(self, rate: int, layout: str) -> Iterator[av.Packet]:
        src_rate, src_layout, channels, chunks = audio_chunks(self.src, self.t_start, self.t_stop)
        # Always through a resampler: it takes the packed samples and hands the encoder its planar frames.
        res = av.AudioResampler(format=self.stream.codec_context.format.name, layout=layout, rate=rate)
        n = 0

        def encode(frame: av.AudioFrame) -> Iterator[av.Packet]:
            nonlocal n
            frame.pts = n
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            n += frame.samples
            yield from self.stream.encode(frame)

        try:
            for chunk in chunks:
                if self.downmix is not None:
                    frame = from_samples(self.downmix @ chunk, "stereo", src_rate)
                else:
                    frame = from_samples(chunk, src_layout, src_rate)
                frame.pts = None
                for rf in res.resample(frame):
                    yield from encode(rf)
            for rf in res.resample(None):
                yield from encode(rf)
            yield from self.stream.encode(None)
        finally:
            chunks.close()

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
        self.packets.close()
        self.container.close()
