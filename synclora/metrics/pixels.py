"""Two pixel measures of a result against its source, standard in video-editing papers and blind to faces.

- **flicker**: the mean warp error between consecutive result frames along the *source's* optical flow (result
  frame t-1 moved the way the source moved, against result frame t; pixels the flow cannot follow — occlusions, found
  by a forward-backward check — are left out). A result that moves like its source scores near the source's own
  warp error (`source_flicker`, the floor set by lighting, blur and compression); shimmer and noise add to it.
- **preservation**: PSNR of the result against the source over the pixels the edit left alone (where the edited
  frame equals its source frame, shrunk by a margin so motion does not carry the edit into them). A backend that
  repaints the background loses here even when the face is perfect.

Both are measured at a reduced size (`MEASURE_SIDE` on the longer side): flicker is a property of the whole picture,
and at full size the optical flow would cost more than the sync report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from synclora.errors import InputError
from synclora.video.frames import Frames

# The longer side (px) both measures work at; the flow (DIS) costs a few ms a frame at this size.
MEASURE_SIDE = 320
# A pixel of the edited frame that differs from its source frame by more than this (0–255, any channel, after a
# light blur that absorbs compression noise) belongs to the edit.
CHANGE_LEVEL = 12.0
# The edit's region grows by this share of the longer side before preservation is measured: a moving face carries
# its edit a little way over the frames.
EDIT_MARGIN = 0.06
# PSNR of identical pixels is infinite; a JSON table needs a number, and above this no viewer sees a difference.
MAX_PSNR = 100.0
# Forward-backward consistency (Sundaram et al. 2010): a pixel is occluded when the two flows do not cancel.
_FB_ALPHA, _FB_BETA = 0.01, 0.5


@dataclass
class PixelScores:
    flicker: float  # mean warp error of the result along the source's flow, in 0–255 levels
    source_flicker: float  # the same measure on the source itself: what a perfect result would score
    preservation_psnr: float | None  # dB over the pixels the edit left alone; None without an edited frame
    preserved_share: float | None  # share of the picture those pixels are
    frames: int
    notes: list[str]

    def to_dict(self) -> dict:
        def num(v):
            return None if v is None or not np.isfinite(v) else round(float(v), 4)

        return {"flicker": num(self.flicker), "source_flicker": num(self.source_flicker),
                "preservation_psnr": num(self.preservation_psnr), "preserved_share": num(self.preserved_share),
                "frames": self.frames, "notes": list(self.notes)}


def measure_size(width: int, height: int, side: int = MEASURE_SIDE) -> tuple[int, int]:
    s = min(1.0, side / max(width, height))
    return max(8, round(width * s)), max(8, round(height * s))


def _small(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == size:
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _flow_fn() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Dense flow from grey frame a to grey frame b (pixel (x, y) of a is at (x, y) + flow in b): DIS at its 'fast'
    preset, about 9× cheaper than Farnebäck at this size. One instance per call: it keeps
    state and is not shared across threads."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    return lambda a, b: dis.calc(a, b, None)


def _warp(img: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    m = grid + flow
    return cv2.remap(img, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def edit_region(source_frame: np.ndarray, edited: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask at `size`: the pixels the edit changed, grown by `EDIT_MARGIN`."""
    a = cv2.GaussianBlur(_small(source_frame, size).astype(np.float32), (5, 5), 1.0)
    b = cv2.GaussianBlur(_small(edited, size).astype(np.float32), (5, 5), 1.0)
    changed = (np.abs(a - b).max(axis=2) > CHANGE_LEVEL).astype(np.uint8)
    r = max(1, round(EDIT_MARGIN * max(size)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(changed, kernel) > 0


def pixel_scores(
    source,
    result,
    *,
    edited: np.ndarray | None = None,
    edit_index: int | None = None,
    frame_range: tuple[int, int] | None = None,
    progress: Callable[[float, str], None] | None = None,
    side: int = MEASURE_SIDE,
) -> PixelScores:
    """Flicker and preservation of `result` against `source` (paths or (T, H, W, 3) uint8 arrays) over
    `frame_range=(start, stop)` of both (default: all frames; the counts must then agree).

    A result of another frame size is resized to the source's (said in the notes); another aspect ratio is refused,
    because no pixel would then line up. `edited` (with `edit_index`, the source frame it was made from) enables
    preservation.
    """
    source, result = Frames.of(source), Frames.of(result)
    n_src, (sw, sh) = source.n_frames, source.size
    n_res, (rw, rh) = result.n_frames, result.size
    notes: list[str] = []
    if abs(rw / rh - sw / sh) > 0.02 * sw / sh:
        raise InputError(f"the result is {rw}×{rh} and the source {sw}×{sh}: another aspect ratio, so no pixel lines "
                         "up for flicker and preservation")
    if (rw, rh) != (sw, sh):
        notes.append(f"the result ({rw}×{rh}) was resized to the source's {sw}×{sh} for flicker and preservation")
    if frame_range is None:
        if n_src != n_res:
            raise InputError(f"the source has {n_src} frames and the result {n_res}; give a frame range")
        frame_range = (0, n_src)
    start, stop = (int(v) for v in frame_range)
    if not (0 <= start < stop <= min(n_src, n_res)) or stop - start < 2:
        raise InputError(f"frame range {start}–{stop} does not fit the videos ({n_src} and {n_res} frames)")
    size = measure_size(sw, sh, side)
    keep = None
    if edited is not None:
        if edit_index is None or not 0 <= int(edit_index) < n_src:
            raise InputError(f"preservation needs the edit index of the edited frame (0 to {n_src - 1})")
        eh, ew = edited.shape[:2]
        if abs(ew / eh - sw / sh) > 0.02 * sw / sh:
            notes.append(f"the edited frame is {ew}×{eh}, another aspect than the source's: preservation not measured")
        else:
            src_frame = source.frame(int(edit_index))
            keep = ~edit_region(src_frame, edited, size)
            if keep.mean() < 0.02:
                notes.append("the edit changed nearly the whole picture: preservation not measured")
                keep = None

    W, H = size
    grid = np.stack(np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32)), -1)
    keep3 = None if keep is None else np.repeat(keep[..., None], 3, axis=2)
    flow = _flow_fn()
    err_res, err_src = [], []
    sq_sum, sq_n = 0.0, 0
    prev = None
    total = stop - start
    i = -1
    for i, (s, r) in enumerate(zip(source.rgb(start, stop), result.rgb(start, stop))):
        s = _small(s, size)
        r = _small(r, size)
        g = cv2.cvtColor(s, cv2.COLOR_RGB2GRAY)
        if keep3 is not None:
            d = s[keep3].astype(np.float32) - r[keep3].astype(np.float32)
            sq_sum += float(np.dot(d, d))
            sq_n += d.size
        if prev is not None:
            ps, pr, pg = prev
            back = flow(g, pg)  # where each pixel of frame t was in frame t-1
            fwd = flow(pg, g)
            fwd_at = _warp(fwd, back, grid)
            round_trip = back + fwd_at
            bound = _FB_ALPHA * ((back**2).sum(-1) + (fwd_at**2).sum(-1)) + _FB_BETA
            valid = (round_trip**2).sum(-1) < bound
            if valid.mean() > 0.05:
                err_res.append(_masked_error(r, _warp(pr, back, grid), valid))
                err_src.append(_masked_error(s, _warp(ps, back, grid), valid))
        prev = (s, r, g)
        if progress is not None and (i % 16 == 0 or i == total - 1):
            progress((i + 1) / total, "measuring flicker and preservation")
    n = i + 1
    if n != total:
        raise InputError(f"read {n} of the {total} frames to compare; the videos do not line up")
    psnr = share = None
    if keep is not None:
        mse = sq_sum / max(sq_n, 1)
        psnr = MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10.0 * np.log10(255.0**2 / mse))
        share = float(keep.mean())
    if not err_res:
        notes.append("the source's motion could not be followed between any two frames: flicker not measured")
    flick = float(np.mean(err_res)) if err_res else float("nan")
    src_flick = float(np.mean(err_src)) if err_src else float("nan")
    return PixelScores(flick, src_flick, psnr, share, total, notes)


def _masked_error(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
    return float(d[valid].mean())
