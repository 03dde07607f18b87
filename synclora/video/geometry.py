"""Fit frames to a backend's working size and back, at any aspect ratio (portrait included).

The working size keeps the source's aspect as closely as multiples of `multiple` allow (a 9:16 clip works tall,
never squashed square). The small remaining difference is handled the way the user chose:

- pad: the scaled frame is padded with reflected edges; the padding is cut off again afterwards.
- crop: a centred region is used; the cropped-away border comes back from the source frames unedited, feathered
  at the seam.

Either way the result comes back at the source's size, and `notice` tells the user what was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from synclora.errors import InputError

__all__ = ["FitPlan", "plan_fit", "fit_edited_image", "ASPECT_TOLERANCE"]

# An edited image may differ from the video's aspect by this much (relative) and still be used as is (resized).
ASPECT_TOLERANCE = 0.01


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if (img.shape[1], img.shape[0]) == (w, h):
        return img
    shrink = w < img.shape[1] or h < img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


@dataclass(frozen=True)
class FitPlan:
    """Source size <-> working size. All sizes are (width, height)."""

    src_size: tuple[int, int]
    work_size: tuple[int, int]
    mode: Literal["pad", "crop"]
    scale: float  # working pixels per source pixel
    # pad mode: the scaled source occupies `inner` = (x, y, w, h) of the working frame; the rest is padding
    inner: tuple[int, int, int, int]
    # crop mode: the source region (x, y, w, h) that is scaled to the full working frame
    crop: tuple[int, int, int, int]
    feather: int  # crop mode: width in source pixels of the seam blend
    notice: str

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) padding in working pixels (pad mode)."""
        x, y, w, h = self.inner
        W, H = self.work_size
        return x, y, W - x - w, H - y - h

    def fit(self, frame: np.ndarray) -> np.ndarray:
        """A source-size frame (H, W, C) -> the working frame."""
        sw, sh = self.src_size
        if frame.shape[:2] != (sh, sw):
            raise ValueError(f"expected a {sw}×{sh} frame, got {frame.shape[1]}×{frame.shape[0]}")
        if self.mode == "crop":
            x, y, w, h = self.crop
            return np.ascontiguousarray(_resize(frame[y: y + h, x: x + w], self.work_size))
        x, y, w, h = self.inner
        small = _resize(frame, (w, h))
        left, top, right, bottom = self.padding
        if left or top or right or bottom:
            border = cv2.BORDER_REFLECT_101 if min(w, h) > max(self.padding) else cv2.BORDER_REPLICATE
            small = cv2.copyMakeBorder(small, top, bottom, left, right, border)
        return np.ascontiguousarray(small)

    def fit_frames(self, frames: np.ndarray) -> np.ndarray:
        return np.stack([self.fit(f) for f in frames])

    def unfit(self, working: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
        """A working frame -> a frame at the source size. Crop mode needs the source frame for the border."""
        W, H = self.work_size
        if working.shape[:2] != (H, W):
            raise ValueError(f"expected a {W}×{H} working frame, got {working.shape[1]}×{working.shape[0]}")
        if self.mode == "pad":
            x, y, w, h = self.inner
            return np.ascontiguousarray(_resize(working[y: y + h, x: x + w], self.src_size))
        x, y, w, h = self.crop
        sw, sh = self.src_size
        region = _resize(working, (w, h))
        if (x, y, w, h) == (0, 0, sw, sh):
            return np.ascontiguousarray(region)
        if source is None:
            raise ValueError("crop mode needs the source frame to restore the cropped border")
        if source.shape[:2] != (sh, sw):
            raise ValueError(f"expected a {sw}×{sh} source frame, got {source.shape[1]}×{source.shape[0]}")
        out = source.copy()
        alpha = self._seam_alpha()
        if working.ndim == 3:
            alpha = alpha[..., None]
        blended = region.astype(np.float32) * alpha + source[y: y + h, x: x + w].astype(np.float32) * (1 - alpha)
        if np.issubdtype(out.dtype, np.integer):
            blended = np.rint(blended)
        out[y: y + h, x: x + w] = blended.astype(out.dtype)
        return out

    def unfit_frames(self, working: np.ndarray, sources: np.ndarray | None = None) -> np.ndarray:
        if sources is None:
            return np.stack([self.unfit(f) for f in working])
        return np.stack([self.unfit(f, s) for f, s in zip(working, sources, strict=True)])

    def _seam_alpha(self) -> np.ndarray:
        """1 inside the crop region, ramping to 0 over `feather` px at edges that border the kept source."""
        x, y, w, h = self.crop
        sw, sh = self.src_size
        f = self.feather

        def ramp(n: int, lo_edge: bool, hi_edge: bool) -> np.ndarray:
            a = np.ones(n, np.float32)
            if f > 0:
                r = (np.arange(f, dtype=np.float32) + 0.5) / f
                k = min(f, n // 2)
                if lo_edge:
                    a[:k] = np.minimum(a[:k], r[:k])
                if hi_edge:
                    a[n - k:] = np.minimum(a[n - k:], r[:k][::-1])
            return a

        ax = ramp(w, x > 0, x + w < sw)
        ay = ramp(h, y > 0, y + h < sh)
        return np.outer(ay, ax)


def _round_to(v: float, m: int) -> int:
    return max(m, int(round(v / m)) * m)


def _choose_size(src_w: int, src_h: int, area: int, multiple: int, max_side: int | None) -> tuple[int, int]:
    aspect = src_w / src_h
    m = multiple
    ideal_h = math.sqrt(area / aspect)
    if max_side is not None:  # the longer side may not exceed max_side
        ideal_h = min(ideal_h, max_side / aspect if aspect >= 1 else max_side)
    best, best_cost = None, float("inf")
    h0 = int(round(ideal_h / m))
    for hk in range(max(1, h0 - 4), h0 + 5):
        h = hk * m
        for w in {_round_to(aspect * h, m), max(m, int(math.floor(aspect * h / m)) * m),
                  int(math.ceil(aspect * h / m)) * m}:
            if max_side is not None and max(w, h) > max(max_side, m):
                continue
            aspect_err = abs(math.log((w / h) / aspect))
            area_err = abs(math.log((w * h) / area)) if area > 0 else 0.0
            cost = 4.0 * aspect_err + area_err
            if cost < best_cost:
                best, best_cost = (w, h), cost
    if best is None:  # max_side smaller than any candidate: the largest multiple that fits
        side = max(m, (max_side // m) * m if max_side else m)
        if aspect >= 1:
            best = (side, max(m, _round_to(side / aspect, m)))
        else:
            best = (max(m, _round_to(side * aspect, m)), side)
    return best


def plan_fit(
    src_w: int,
    src_h: int,
    *,
    area: int,
    multiple: int = 8,
    mode: Literal["pad", "crop"] = "pad",
    max_side: int | None = None,
    allow_upscale: bool = True,
) -> FitPlan:
    """Choose the working size (multiples of `multiple`, about `area` pixels, the source's aspect) and how to get
    there. `allow_upscale=False` keeps small sources at about their own size instead of growing them to `area`."""
    if src_w < 1 or src_h < 1:
        raise InputError(f"The video size {src_w}×{src_h} is empty.")
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
    if area < multiple * multiple:
        raise ValueError(f"area {area} is smaller than one {multiple}×{multiple} block")
    if not allow_upscale:
        area = min(area, max(multiple * multiple, src_w * src_h))
    W, H = _choose_size(src_w, src_h, area, multiple, max_side)
    src = f"source {src_w}×{src_h}"
    back = f"the result is scaled back to {src_w}×{src_h}."
    if mode == "pad":
        s = min(W / src_w, H / src_h)
        w = min(W, max(1, int(round(src_w * s))))
        h = min(H, max(1, int(round(src_h * s))))
        x, y = (W - w) // 2, (H - h) // 2
        parts = [f"Working at {W}×{H} ({src}, scaled ×{s:.2f})"]
        if W - w:
            parts.append(f"padded {_split(W - w)} px left/right")
        if H - h:
            parts.append(f"padded {_split(H - h)} px top/bottom")
        parts.append(back if (W, H) != (src_w, src_h) else "the result keeps the source size.")
        notice = "; ".join(parts)
        return FitPlan((src_w, src_h), (W, H), "pad", s, (x, y, w, h), (0, 0, src_w, src_h), 0, notice)
    s = max(W / src_w, H / src_h)
    cw = min(src_w, max(1, int(round(W / s))))
    ch = min(src_h, max(1, int(round(H / s))))
    x, y = (src_w - cw) // 2, (src_h - ch) // 2
    feather = max(2, int(round(0.02 * min(cw, ch)))) if (cw, ch) != (src_w, src_h) else 0
    parts = [f"Working at {W}×{H} ({src}, scaled ×{s:.2f})"]
    if src_w - cw:
        parts.append(f"cropped {_split(src_w - cw)} source px left/right")
    if src_h - ch:
        parts.append(f"cropped {_split(src_h - ch)} source px top/bottom")
    if (cw, ch) != (src_w, src_h):
        parts.append(f"the cropped border comes back from the source unedited, feathered over {feather} px at the "
                     f"seam")
    parts.append(back if (W, H) != (src_w, src_h) else "the result keeps the source size.")
    return FitPlan((src_w, src_h), (W, H), "crop", s, (0, 0, W, H), (x, y, cw, ch), feather, "; ".join(parts))


def _split(total: int) -> str:
    a = total // 2
    return f"{a}" if total - a == a else f"{a}/{total - a}"


def fit_edited_image(
    image: np.ndarray, src_w: int, src_h: int, *, tolerance: float = ASPECT_TOLERANCE
) -> tuple[np.ndarray, str | None]:
    """Bring an edited copy of a frame to the video's size: (image at src size, notice or None).

    Same aspect within `tolerance` but another size: resized (with a notice). Another aspect: InputError, because
    stretching would distort the face and silently cropping might cut the edit.
    """
    h, w = image.shape[:2]
    if (w, h) == (src_w, src_h):
        return image, None
    a_img, a_src = w / h, src_w / src_h
    if abs(a_img / a_src - 1) > tolerance:
        raise InputError(
            f"The edited image is {w}×{h} (aspect {a_img:.3f}) but the video frame is {src_w}×{src_h} "
            f"(aspect {a_src:.3f}); crop or pad the edited image to the frame's aspect ratio and try again."
        )
    notice = f"The edited image ({w}×{h}) was resized to the video's frame size {src_w}×{src_h}."
    return np.ascontiguousarray(_resize(image, (src_w, src_h))), notice
