"""Synthetic test media with known ground truth.

- `talking_face_frames`: a drawn face whose mouth opening, blinks and head motion follow a known schedule (returned
  as `truth`), over a textured background so optical flow has something to track.
- `indexed_frames` / `stamp_index` / `read_index`: frames that carry their own index as a visible bit pattern, so a
  test catches any dropped, repeated or reordered frame after encoding, resizing, rotation or VFR conversion.
- `tone`, `noise`: audio arrays; `write_clip` writes any container (mp4/mov/mkv/webm/avi/gif) with optional audio,
  rotation metadata and per-frame timestamps (VFR); `vfr_times`, `write_audio_file`, `write_bad_files` help with the
  awkward cases.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from synclora.testing.stamps import read_index, stamp_index

__all__ = [
    "talking_face_frames",
    "indexed_frames",
    "stamp_index",
    "read_index",
    "textured_background",
    "tone",
    "noise",
    "write_clip",
    "write_audio_file",
    "vfr_times",
    "write_vfr_clip",
    "write_bad_files",
    "psnr",
    "CONTAINER_DEFAULTS",
]

# extension -> (video codec, pixel format, audio codec or None when the container holds no audio)
CONTAINER_DEFAULTS: dict[str, tuple[str, str, str | None]] = {
    ".mp4": ("libx264", "yuv420p", "aac"),
    ".m4v": ("libx264", "yuv420p", "aac"),
    ".mov": ("libx264", "yuv420p", "aac"),
    ".mkv": ("libx264", "yuv420p", "flac"),
    ".webm": ("libvpx-vp9", "yuv420p", "libopus"),
    ".avi": ("mpeg4", "yuv420p", "pcm_s16le"),
    ".gif": ("gif", "rgb8", None),
}


# --------------------------------------------------------------------------------------------------------------------
# Frames


def textured_background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A static, detailed RGB background (smooth colour blobs, fine noise, a faint grid): good optical-flow texture."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 200, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, size=(h, w, 3)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    step = max(8, min(w, h) // 12)
    img[::step, :, :] *= 0.8
    img[:, ::step, :] *= 0.8
    return np.clip(img, 0, 255).astype(np.uint8)


def noise_texture(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8 multi-scale noise: detail at every scale, so optical flow locks on everywhere."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    for step, amp in ((2, 40), (6, 50), (16, 60), (40, 50)):
        grid = rng.standard_normal((size // step + 2, size // step + 2, 3)).astype(np.float32)
        img += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def _default_mouth(n: int, fps: float, seed: int) -> np.ndarray:
    """Speech-like opening in [0, 1]: syllables at ~4 Hz with varying amplitude and short pauses."""
    rng = np.random.default_rng(seed + 101)
    t = np.arange(n) / fps
    syll = 0.5 - 0.5 * np.cos(2 * np.pi * 4.0 * t + rng.uniform(0, np.pi))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 0.37 * t + rng.uniform(0, 2 * np.pi))
    pause = (np.sin(2 * np.pi * 0.21 * t + rng.uniform(0, 2 * np.pi)) > 0.85).astype(float)
    return np.clip(syll * env * (1 - pause), 0, 1)


def _blink_curve(n: int, starts: Iterable[int], length: int) -> np.ndarray:
    """Eyelid closure in [0, 1] per frame; each blink closes and reopens over `length` frames."""
    closure = np.zeros(n)
    shape = np.sin(np.linspace(0, np.pi, length + 2)[1:-1])  # 0 < ... 1 ... > 0
    shape = shape / shape.max()
    for s in starts:
        for k, v in enumerate(shape):
            if 0 <= s + k < n:
                closure[s + k] = max(closure[s + k], v)
    return closure


def talking_face_frames(
    n: int,
    *,
    size: tuple[int, int] = (256, 256),
    fps: float = 25,
    seed: int = 0,
    mouth: Sequence[float] | np.ndarray | None = None,
    blinks: Sequence[int] | None = None,
    blink_length: int = 5,
    head: str | np.ndarray = "sway",
    face_color: tuple[int, int, int] = (224, 182, 150),
) -> tuple[np.ndarray, dict]:
    """A synthetic talking face: (frames (n, H, W, 3) uint8 RGB, truth).

    - `mouth`: opening per frame in [0, 1] (default: a speech-like 4 Hz syllable pattern).
    - `blinks`: frames where a blink starts (default: about one every 2.5 s); each lasts `blink_length` frames.
    - `head`: "sway" (slight translation and rotation), "still", or an (n, 3) array of (dx px, dy px, degrees).

    truth: mouth (n,) opening in [0, 1]; mouth_px (n,) inner mouth height in pixels; eye_closure (n,) in [0, 1];
    blink_frames (frames with closure >= 0.5); blink_starts; head (n, 3) (dx, dy, degrees); face_center,
    mouth_center, left_eye, right_eye (n, 2) pixel positions in the frame (x, y); fps.
    """
    w, h = int(size[0]), int(size[1])
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = np.random.default_rng(seed)
    s = min(w, h)
    if mouth is None:
        mouth_open = _default_mouth(n, float(fps), seed)
    else:
        mouth_open = np.clip(np.asarray(mouth, dtype=float), 0, 1)
        if mouth_open.shape != (n,):
            raise ValueError(f"mouth must have {n} values, got {mouth_open.shape}")
    if blinks is None:
        period = max(blink_length + 2, int(round(2.5 * fps)))
        first = int(round(0.8 * fps))
        blinks = list(range(first, max(first, n - blink_length + 1), period)) if n > first else []
    blink_starts = [int(b) for b in blinks]
    closure = _blink_curve(n, blink_starts, blink_length)
    if isinstance(head, str):
        if head == "still":
            motion = np.zeros((n, 3))
        elif head == "sway":
            t = np.arange(n) / float(fps)
            ph = rng.uniform(0, 2 * np.pi, 3)
            motion = np.stack([
                0.04 * s * np.sin(2 * np.pi * 0.31 * t + ph[0]),
                0.025 * s * np.sin(2 * np.pi * 0.23 * t + ph[1]),
                3.0 * np.sin(2 * np.pi * 0.17 * t + ph[2]),
            ], axis=1)
        else:
            raise ValueError(f"head must be 'sway', 'still' or an (n, 3) array, got {head!r}")
    else:
        motion = np.asarray(head, dtype=float)
        if motion.shape != (n, 3):
            raise ValueError(f"head must be (n, 3), got {motion.shape}")

    bg = textured_background((w, h), seed)
    # Face geometry in a canonical frame centred at (cx, cy); drawn at 2x then reduced for smooth edges.
    ss = 2
    cx, cy = w / 2, h / 2 + 0.03 * s
    fa, fb = 0.27 * s, 0.36 * s  # face half axes
    eye_dx, eye_y = 0.11 * s, cy - 0.07 * s
    eye_a, eye_b = 0.055 * s, 0.03 * s
    mouth_y, mouth_a, mouth_maxb = cy + 0.17 * s, 0.085 * s, 0.06 * s
    freckles = [(cx + rng.uniform(-0.6, 0.6) * fa, cy + rng.uniform(-0.1, 0.5) * fb) for _ in range(14)]
    skin = tuple(int(c) for c in face_color)
    skin_dark = tuple(int(c * 0.8) for c in face_color)
    hair = (60, 40, 25)
    iris = (70, 110, 160)

    def P(x: float, y: float) -> tuple[int, int]:
        return int(round(x * ss)), int(round(y * ss))

    def A(a: float, b: float) -> tuple[int, int]:
        return max(1, int(round(a * ss))), max(1, int(round(b * ss)))

    frames = np.empty((n, h, w, 3), np.uint8)
    truth_pts = {k: np.zeros((n, 2)) for k in ("face_center", "mouth_center", "left_eye", "right_eye")}
    mouth_px = mouth_open * 2 * mouth_maxb
    # the static part of the face (hair, skin, freckles, nose), drawn once
    base = np.zeros((h * ss, w * ss, 3), np.uint8)
    base_mask = np.zeros((h * ss, w * ss), np.uint8)
    cv2.ellipse(base, P(cx, cy - 0.12 * s), A(fa * 1.08, fb * 0.95), 0, 0, 360, hair, -1, cv2.LINE_AA)
    cv2.ellipse(base_mask, P(cx, cy - 0.12 * s), A(fa * 1.08, fb * 0.95), 0, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(base, P(cx, cy), A(fa, fb), 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(base_mask, P(cx, cy), A(fa, fb), 0, 0, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(base, P(cx, cy - 0.30 * s), A(fa * 0.95, 0.12 * s), 0, 180, 360, hair, -1, cv2.LINE_AA)
    for fx, fy in freckles:
        cv2.circle(base, P(fx, fy), max(1, int(0.006 * s * ss)), skin_dark, -1, cv2.LINE_AA)
    cv2.line(base, P(cx, cy - 0.02 * s), P(cx - 0.025 * s, cy + 0.08 * s), skin_dark, max(1, int(0.01 * s * ss)),
             cv2.LINE_AA)
    mask_small = cv2.resize(base_mask, (w, h), interpolation=cv2.INTER_AREA)
    bg_f = bg.astype(np.float32)
    for i in range(n):
        layer = base.copy()
        # eyes: white, iris, pupil, then an eyelid that closes from the top
        for sx in (-1, 1):
            ex = cx + sx * eye_dx
            cv2.ellipse(layer, P(ex, eye_y), A(eye_a, eye_b), 0, 0, 360, (245, 245, 240), -1, cv2.LINE_AA)
            cv2.circle(layer, P(ex, eye_y), int(eye_b * 0.95 * ss), iris, -1, cv2.LINE_AA)
            cv2.circle(layer, P(ex, eye_y), int(eye_b * 0.45 * ss), (15, 15, 15), -1, cv2.LINE_AA)
            c = closure[i]
            if c > 0:
                lid_h = 2 * eye_b * c
                top = eye_y - eye_b
                x0, x1 = ex - eye_a * 1.05, ex + eye_a * 1.05
                cv2.rectangle(layer, P(x0, top - 0.2 * eye_b), P(x1, top + lid_h), skin, -1)
                cv2.line(layer, P(x0, top + lid_h), P(x1, top + lid_h), (90, 60, 50), max(1, ss), cv2.LINE_AA)
            # brow
            cv2.line(layer, P(ex - eye_a, eye_y - 2.0 * eye_b), P(ex + eye_a, eye_y - 2.3 * eye_b), hair,
                     max(1, int(0.012 * s * ss)), cv2.LINE_AA)
        # mouth: lips, then the dark opening whose height follows the schedule
        mb = mouth_open[i] * mouth_maxb
        cv2.ellipse(layer, P(cx, mouth_y), A(mouth_a * 1.1, mb + 0.018 * s), 0, 0, 360, (170, 70, 80), -1,
                    cv2.LINE_AA)
        if mb > 0.5 / ss:
            cv2.ellipse(layer, P(cx, mouth_y), A(mouth_a * 0.9, mb), 0, 0, 360, (60, 15, 25), -1, cv2.LINE_AA)
            if mb > 0.02 * s:  # teeth
                cv2.ellipse(layer, P(cx, mouth_y - mb * 0.6), A(mouth_a * 0.6, mb * 0.3), 0, 0, 360,
                            (235, 235, 225), -1, cv2.LINE_AA)
        else:
            cv2.line(layer, P(cx - mouth_a * 0.9, mouth_y), P(cx + mouth_a * 0.9, mouth_y), (90, 30, 40),
                     max(1, ss), cv2.LINE_AA)
        layer = cv2.resize(layer, (w, h), interpolation=cv2.INTER_AREA)
        dx, dy, ang = motion[i]
        M = cv2.getRotationMatrix2D((cx, cy), float(ang), 1.0)
        M[:, 2] += (dx, dy)
        layer = cv2.warpAffine(layer, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        mask = cv2.warpAffine(mask_small, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = mask[..., None].astype(np.float32) * (1 / 255.0)
        frames[i] = np.clip(bg_f + (layer - bg_f) * alpha + 0.5, 0, 255).astype(np.uint8)
        for key, (x, y) in (("face_center", (cx, cy)), ("mouth_center", (cx, mouth_y)),
                            ("left_eye", (cx - eye_dx, eye_y)), ("right_eye", (cx + eye_dx, eye_y))):
            truth_pts[key][i] = M @ np.array([x, y, 1.0])
    truth = {
        "fps": fps,
        "mouth": mouth_open,
        "mouth_px": mouth_px,
        "eye_closure": closure,
        "blink_starts": blink_starts,
        "blink_frames": [int(i) for i in np.flatnonzero(closure >= 0.5)],
        "head": motion,
        **truth_pts,
    }
    return frames, truth


def indexed_frames(n: int, *, size: tuple[int, int] = (96, 64), seed: int = 0, bits: int = 12) -> np.ndarray:
    """(n, H, W, 3) uint8 frames: a moving textured scene with each frame's index stamped in (see `stamp_index`)."""
    w, h = int(size[0]), int(size[1])
    big = textured_background((w * 2, h * 2), seed)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        ox = int(round((w / 2) * (0.5 + 0.5 * math.sin(i * 0.21))))
        oy = int(round((h / 2) * (0.5 + 0.5 * math.cos(i * 0.17))))
        out[i] = big[oy: oy + h, ox: ox + w]
        cv2.circle(out[i], (int((i * 3) % w), h // 3), max(2, min(w, h) // 10), (255, 64, 0), -1, cv2.LINE_AA)
        stamp_index(out[i], i % (2**bits), bits=bits)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------------------------------------------------
# Audio


def tone(duration_s: float, sample_rate: int = 48000, freq: float = 440, channels: int = 2,
         amplitude: float = 0.5) -> np.ndarray:
    """(channels, n) float32 sine; channel c is at freq * (1 + c/2) so channels can be told apart."""
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    return np.stack([amplitude * np.sin(2 * np.pi * freq * (1 + c / 2) * t) for c in range(channels)]).astype(
        np.float32)


def noise(duration_s: float, sample_rate: int = 48000, channels: int = 2, seed: int = 0,
          amplitude: float = 0.3) -> np.ndarray:
    """(channels, n) float32 band-limited noise (about 100 Hz - 4 kHz): every instant looks different, so a
    cross-correlation finds any time offset unambiguously and AAC keeps it well."""
    n = int(round(duration_s * sample_rate))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(channels, n))
    spec = np.fft.rfft(x, axis=1)
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    spec[:, (f < 100) | (f > 4000)] = 0
    y = np.fft.irfft(spec, n=n, axis=1)
    y = y / (np.abs(y).max() + 1e-9) * amplitude
    return y.astype(np.float32)


def _audio_stream(container: av.container.OutputContainer, codec: str, sample_rate: int, channels: int,
                  layout: str | None = None):
    """An audio stream for `channels` channels: mono or stereo, or any FFmpeg `layout` with that many (e.g. "7.1",
    "5.1.4", "hexadecagonal") for the many-channel clips the hardening tests need."""
    layout = layout or {1: "mono", 2: "stereo"}.get(channels)
    if layout is None or len(av.AudioLayout(layout).channels) != channels:
        raise ValueError(f"test audio of {channels} channels needs a layout with as many, got {layout}")
    stream = container.add_stream(codec, rate=sample_rate, layout=layout)
    return stream, layout


def _encode_audio(container, stream, layout: str, audio: np.ndarray, sample_rate: int) -> None:
    """Samples go in as packed float frames, which the encoder converts: a planar frame of 8 or more channels is one
    PyAV cannot build (see `video.audio.from_samples`)."""
    from synclora.video.audio import from_samples

    audio = np.asarray(audio, dtype=np.float32)
    step = 4096
    for i in range(0, audio.shape[1], step):
        fr = from_samples(audio[:, i: i + step], layout, sample_rate)
        fr.pts = i
        fr.time_base = Fraction(1, sample_rate)
        for p in stream.encode(fr):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


# --------------------------------------------------------------------------------------------------------------------
# Files


def write_clip(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: Fraction | int = 25,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 48000,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    pix_fmt: str | None = None,
    rotation: int = 0,
    pts: Sequence[float] | None = None,
    crf: int = 12,
    gop: int | None = None,
    audio_layout: str | None = None,
) -> Path:
    """Write a test clip in the container named by the extension (mp4, mov, m4v, mkv, webm, avi, gif).

    - `audio`: (channels, n) float32 in [-1, 1], encoded with the container's default codec (AAC in mp4/mov);
      `audio_layout` names the layout of more than two channels ("5.1", "7.1", "hexadecagonal", ...).
    - `rotation`: clockwise degrees a player must turn the stored frames (the phone 'rotate' convention), written as
      a display matrix. Pass frames as *stored*, e.g. `np.rot90(display, k=rotation // 90)`.
    - `pts`: per-frame presentation times in seconds (variable frame rate); default i / fps.
    - `gop`: keyframe interval (small values make seeking tests meaningful).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in CONTAINER_DEFAULTS:
        raise ValueError(f"unsupported test container {ext}")
    vcodec, vpix, acodec = CONTAINER_DEFAULTS[ext]
    vcodec = video_codec or vcodec
    vpix = pix_fmt or vpix
    acodec = audio_codec or acodec
    if audio is not None and acodec is None:
        raise ValueError(f"{ext} cannot hold audio")
    fps = Fraction(fps)
    if pts is not None:
        frames = list(frames)
    it = iter(frames)  # a generator is written as it comes (a long clip never sits in memory)
    first = next(it)
    frames = itertools.chain([first], it)
    h, w = first.shape[:2]
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height = w, h
        vs.pix_fmt = vpix
        if pts is None:
            tb = 1 / fps
        else:
            if len(pts) != len(pts_frames := list(frames)):
                raise ValueError("pts needs one time per frame")
            frames = iter(pts_frames)
            tb = Fraction(1, 1000) if ext in (".mkv", ".webm", ".gif") else Fraction(1, 90000)
        if ext == ".gif":
            tb = Fraction(1, 100)
        vs.codec_context.time_base = tb
        vs.time_base = tb
        if vcodec == "libx264":
            vs.options = {"crf": str(crf), "preset": "veryfast"}
        elif vcodec.startswith("libvpx"):
            vs.options = {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif vcodec == "mpeg4":
            vs.options = {"qscale": "2"}
            vs.codec_context.qscale = 2 if hasattr(vs.codec_context, "qscale") else None
            vs.bit_rate = 4_000_000
        if gop is not None:
            vs.codec_context.gop_size = int(gop)
        if rotation % 360:
            vs.set_display_rotation(-(rotation % 360))  # PyAV takes counter-clockwise degrees
        aus = None
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim == 1:
                audio = audio[None]
            aus, layout = _audio_stream(out, acodec, sample_rate, audio.shape[0], audio_layout)
        for i, img in enumerate(frames):
            if img.shape[:2] != (h, w):
                raise ValueError("all frames must have the same size")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            t = (i / fps) if pts is None else Fraction(pts[i]).limit_denominator(10**6)
            vf.pts = int(round(Fraction(t) / tb))
            vf.time_base = tb
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if aus is not None:
            _encode_audio(out, aus, layout, audio, sample_rate)
    return path


def write_audio_file(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 48000) -> Path:
    """An audio-only file (.m4a: AAC, .wav: PCM, .mp4: AAC in mp4 without video)."""
    path = Path(path)
    codec = {".wav": "pcm_s16le", ".flac": "flac", ".ogg": "libopus"}.get(path.suffix.lower(), "aac")
    fmt = "mp4" if path.suffix.lower() in (".m4a", ".mp4") else None
    audio = np.asarray(audio, dtype=np.float32)
    with av.open(str(path), mode="w", format=fmt) as out:
        stream, layout = _audio_stream(out, codec, sample_rate, audio.shape[0])
        _encode_audio(out, stream, layout, audio, sample_rate)
    return path


def vfr_times(n: int, fps: float = 30, *, seed: int = 0, jitter: float = 0.3, gaps: int = 3) -> list[float]:
    """n increasing timestamps around `fps`, with jitter (fraction of a frame) and `gaps` held frames (2-3x longer
    intervals), as phone cameras produce. The first is 0."""
    rng = np.random.default_rng(seed)
    d = np.full(n - 1, 1.0 / fps) * (1 + rng.uniform(-jitter, jitter, n - 1))
    if gaps and n > 3:
        idx = rng.choice(np.arange(1, n - 1), size=min(gaps, n - 2), replace=False)
        d[idx] *= rng.uniform(2.2, 3.0, len(idx))
    t = np.concatenate([[0.0], np.cumsum(d)])
    return [round(float(x), 4) for x in t]


def write_vfr_clip(path: str | os.PathLike, frames: np.ndarray, fps: float = 30, *, seed: int = 0,
                   **kwargs) -> tuple[Path, list[float]]:
    """A variable-frame-rate clip (see `vfr_times`); returns (path, per-frame times in seconds)."""
    times = vfr_times(len(frames), fps, seed=seed)
    return write_clip(path, frames, Fraction(fps).limit_denominator(1001), pts=times, **kwargs), times


def write_bad_files(folder: str | os.PathLike, *, seed: int = 0) -> dict[str, Path]:
    """Files that are not usable videos: empty, text renamed .mp4, a truncated mp4 (index at the end, cut in half),
    audio-only mp4, and a random-bytes .mov. Returns {kind: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    (p := folder / "empty.mp4").write_bytes(b"")
    out["empty"] = p
    (p := folder / "text.mp4").write_text("This is not a video, just some text renamed to .mp4.\n" * 20)
    out["text"] = p
    full = write_clip(folder / "full.mp4", indexed_frames(30, seed=seed), 25)
    data = full.read_bytes()
    (p := folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out["truncated"] = p
    full.unlink()
    out["audio_only"] = write_audio_file(folder / "audio_only.mp4", tone(0.5))
    (p := folder / "random.mov").write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, np.uint8).tobytes())
    out["random"] = p
    return out
