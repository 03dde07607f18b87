"""The source audio: decoding a span of it (sample-exact, measured from the first video frame) and the packets
`write_video` muxes back (stream copy when possible, else AAC trimmed to the span)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from synclora.errors import InputError
from synclora.video.container import open_input, short_error
from synclora.video.probe import probe, timeline

# Audio codecs that can be copied into mp4 unchanged and that browsers play.
MP4_AUDIO_COPY = {"aac", "mp3"}


def span_seconds(span: tuple[int, int] | None, fps: Fraction) -> tuple[float, float | None]:
    if span is None:
        return 0.0, None
    a, b = int(span[0]), int(span[1])
    if a < 0 or b < a:
        raise ValueError(f"bad frame span {span}")
    return float(a / fps), float(b / fps)


def decode_audio(path: Path, t_start: float, t_stop: float | None) -> tuple[np.ndarray, int, str]:
    """Decoded samples in [t_start, t_stop) s from the first video frame: ((channels, n) float32, rate, layout)."""
    tl = timeline(path)
    with open_input(path) as container:
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
            raise InputError(f"The audio of {path.name} could not be decoded ({short_error(e)}).") from e
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
    t0, t1 = span_seconds(span, info.fps)
    data, rate, _ = decode_audio(path, t0, t1)
    return data, rate



class AudioSource:
    """Audio packets for the output, produced lazily so they can be interleaved with video."""

    def __init__(self, out: av.container.OutputContainer, src: Path, span: tuple[int, int] | None, fps: Fraction,
                 notices: list[str]):
        self.src = src
        tl = timeline(src)
        self.t0 = tl.t0
        self.container = open_input(src)
        a = self.container.streams.audio[0]
        self.in_stream = a
        name = a.codec_context.name
        whole = span is None or (int(span[0]) == 0 and int(span[1]) >= tl.info.n_frames and fps == tl.info.fps)
        self.copy = whole and name in MP4_AUDIO_COPY
        self.t_start, self.t_stop = span_seconds(span, fps)
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
                                         MP4_AUDIO_COPY else " (trimmed to the edited span)")
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
        data, src_rate, _ = decode_audio(self.src, self.t_start, self.t_stop)
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

