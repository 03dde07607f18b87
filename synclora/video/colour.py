"""Colour conversion between decoded Y'CbCr frames and RGB: exact on average, and fast for the common 8-bit 4:2:0."""

from __future__ import annotations

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation as _Sws

# swscale's default YUV->RGB path is fast but reads about 1-1.5 levels dark; for the pixel formats that OpenCV does
# not convert here (10-bit, 4:2:2, 4:4:4, RGB, palettes) these flags make it exact on average.
_SWS_READ = _Sws.BICUBIC | _Sws.FULL_CHR_H_INT | _Sws.ACCURATE_RND
# (Y'CbCr matrix coefficients Kr, Kb) by FFmpeg colorspace id; 2 (unspecified) is decided by frame height
_KRKB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
         9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}



def yuv_matrix(colorspace: int, full_range: bool, height: int) -> np.ndarray:
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


# What the result's encoder writes: BT.709, limited range.
YUV709_LIMITED = yuv_matrix(1, False, 1080)
_RGB2YUV709 = np.linalg.inv(np.vstack([YUV709_LIMITED, [0, 0, 0, 1]]))[:3].astype(np.float32)


def planes420(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, Cb, Cr planes of an 8-bit 4:2:0 frame of even size, as views of its own buffers (no copy)."""
    w, h = frame.width, frame.height
    return tuple(np.frombuffer(p, np.uint8).reshape(ph, p.line_size)[:, :pw]  # type: ignore[return-value]
                 for p, (pw, ph) in zip(frame.planes, ((w, h), (w // 2, h // 2), (w // 2, h // 2))))


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> RGB uint8. 8-bit 4:2:0 (nearly every camera and web file) is converted with OpenCV straight
    from its planes: exact on average and ~5x faster than swscale's accurate mode; anything else goes through
    swscale's accurate mode."""
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0:
        full = name == "yuvj420p" or int(frame.color_range) == 2
        return yuv420_to_rgb(*planes420(frame), yuv_matrix(frame.colorspace, full, frame.height))
    return frame.to_ndarray(format="rgb24", interpolation=_SWS_READ)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, m: np.ndarray) -> np.ndarray:
    """RGB of 4:2:0 planes (`y` twice `u`'s and `v`'s size) with the 3x4 matrix `m`: chroma doubled bilinearly, so a
    pixel reads the chroma samples either side of it (a crop with one more sample each side gives its inner pixels
    exactly as the whole frame does)."""
    size = (2 * u.shape[1], 2 * u.shape[0])
    u = cv2.resize(u, size, interpolation=cv2.INTER_LINEAR)
    v = cv2.resize(v, size, interpolation=cv2.INTER_LINEAR)
    return cv2.transform(cv2.merge([y, u, v]), m)


def rgb_to_yuv420_planes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 (even size) -> BT.709 limited-range Y, Cb, Cr planes (4:2:0: chroma of each 2x2 block's mean colour).

    The matrix is linear, so chroma is taken from the frame averaged down to half size first, and luma is a
    single-channel transform: within one level of converting every pixel and then averaging the chroma, for a third
    of its CPU at 720p (`benchmarks/bench_encode.py`)."""
    h, w = img.shape[:2]
    y = cv2.transform(img, _RGB2YUV709[:1])
    uv = cv2.transform(cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA), _RGB2YUV709[1:])
    return y, uv[..., 0], uv[..., 1]


def yuv420_frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> av.VideoFrame:
    """A BT.709 limited-range yuv420p frame of these planes (even size)."""
    y, u, v = planes
    h, w = y.shape
    packed = np.concatenate([np.ascontiguousarray(p).reshape(-1) for p in (y, u, v)]).reshape(h * 3 // 2, w)
    vf = av.VideoFrame.from_ndarray(packed, format="yuv420p")
    vf.colorspace = 1
    vf.color_range = 1
    return vf


def rgb_to_yuv420_frame(img: np.ndarray) -> av.VideoFrame:
    """RGB uint8 (even size) -> a BT.709 limited-range yuv420p frame (`rgb_to_yuv420_planes`)."""
    return yuv420_frame(rgb_to_yuv420_planes(img))
