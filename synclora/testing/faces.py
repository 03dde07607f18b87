"""Talking-face test clips made from real photos that installed packages ship, with known motion.

Why: the sync measure must be proven on faces MediaPipe and dlib really see, with ground truth for every assertion.
Cartoon faces are often not detected, and no package ships a talking-head video, so we animate a real portrait:
the jaw is warped open on a schedule (with a dark mouth cavity painted in), eyelids are painted shut for blinks, and
the whole frame is rotated/shifted for head motion. Photos: Grace Hopper (matplotlib's sample data, always installed)
and Eileen Collins (scikit-image's `data.astronaut()`, shipped here as `data/astronaut.webp`, lossless, so only
runtime dependencies are needed). The edits a clip may carry are drawn in `face_edits`; a clip with per-pixel
ground truth of every part is `expressive`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from synclora.face import parts as fp
from synclora.testing.face_edits import EDITS


def _still(name: str) -> np.ndarray:
    import cv2

    if name == "grace_hopper":
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    if name == "astronaut":
        path = os.path.join(os.path.dirname(__file__), "data", "astronaut.webp")
        return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    raise ValueError(f"unknown face {name!r}: grace_hopper or astronaut")


def _landmarks(img: np.ndarray) -> np.ndarray:
    from synclora.face.mesh import FaceMeshTracker

    with FaceMeshTracker(static=True, search_side=100_000) as t:
        pts = t.landmarks(img)
    if pts is None:
        raise RuntimeError("no face found in the test portrait")
    return pts


@lru_cache(maxsize=4)
def portrait(name: str = "grace_hopper", size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A square crop around the face, (size, size, 3) uint8, and its (478, 3) landmarks in that crop's pixels."""
    import cv2

    img = _still(name)
    pts = _landmarks(img)
    x0, y0 = pts[:, :2].min(0)
    x1, y1 = pts[:, :2].max(0)
    side = 1.7 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * side
    m = np.array([[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]])
    crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    crop_pts = _landmarks(crop)
    crop.setflags(write=False)
    return crop, crop_pts


@dataclass
class FaceClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    mouth: np.ndarray  # (T,) opening in pixels of jaw drop
    eyes_closed: np.ndarray  # (T,) 0 open … 1 shut
    roll: np.ndarray  # (T,) degrees, + clockwise in the image
    shift: np.ndarray  # (T, 2) pixels
    gaze: np.ndarray  # (T,) sideways shift of the eye content, × eye width
    blinks: list[int] = field(default_factory=list)  # frames where a blink is fully shut
    transforms: np.ndarray | None = None  # (T, 2, 3) where the portrait's landmarks are in each frame (`moved`)


def open_mouth(img: np.ndarray, pts: np.ndarray, amount: float) -> np.ndarray:
    """Drop the jaw by `amount` pixels below the lip line and paint the cavity between the lips."""
    import cv2

    if amount <= 0:
        return img.copy()
    h, w = img.shape[:2]
    lip_y = (pts[fp.LIP_TOP, 1] + pts[fp.LIP_BOTTOM, 1]) / 2
    cx = (pts[fp.MOUTH_CORNERS[0], 0] + pts[fp.MOUTH_CORNERS[1], 0]) / 2
    half_w = abs(pts[fp.MOUTH_CORNERS[1], 0] - pts[fp.MOUTH_CORNERS[0], 0]) / 2
    chin_y = pts[fp.CHIN, 1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Weight 1 on the jaw under the mouth, fading sideways past the mouth corners and below the chin.
    side = np.clip(1.5 - np.abs(xx - cx) / (1.6 * half_w), 0, 1)
    below = np.clip((yy - lip_y) / 3.0, 0, 1) * np.clip(1 - (yy - chin_y) / (0.4 * (chin_y - lip_y) + 1), 0, 1)
    wgt = side * below
    map_y = yy - amount * wgt
    out = cv2.remap(img, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cavity = np.zeros((h, w), np.uint8)
    cv2.ellipse(cavity, (int(round(cx)), int(round(lip_y + amount / 2))), (int(half_w * 0.8), max(1, int(amount / 2))),
                0, 0, 360, 255, -1, cv2.LINE_AA)
    a = (cavity.astype(np.float32) / 255.0)[..., None]
    dark = np.array([60, 20, 25], np.float32)
    return (out * (1 - a) + dark * a).astype(np.uint8)


def close_eyes(img: np.ndarray, pts: np.ndarray, amount: float) -> np.ndarray:
    """Paint both upper eyelids down over `amount` (0…1) of each eye opening, with a lash line at the lid edge."""
    import cv2

    if amount <= 0:
        return img.copy()
    out = img.copy()
    for ring in (fp.RIGHT_EYE, fp.LEFT_EYE):
        poly = pts[list(ring), :2]
        x0, y0 = poly.min(0)
        x1, y1 = poly.max(0)
        eh = y1 - y0
        pad = max(2, int(0.35 * eh))
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        lid = y0 - pad + amount * (eh + 2 * pad)
        mask[int(np.ceil(lid)):, :] = 0
        skin_box = img[int(y1 + pad): int(y1 + 3 * pad), int(x0): int(x1)]
        skin = np.median(skin_box.reshape(-1, 3), axis=0) if skin_box.size else np.array([180, 140, 120])
        out[mask > 0] = skin.astype(np.uint8)
        if amount > 0.2:
            ys = int(round(min(lid, y1 + pad)))
            cv2.line(out, (int(x0), ys), (int(x1), ys), (40, 30, 30), 1, cv2.LINE_AA)
    return out


def shift_gaze(img: np.ndarray, pts: np.ndarray, amount: float) -> np.ndarray:
    """Move what is inside both eye openings sideways by `amount` × the eye's width (iris looks left/right)."""
    import cv2

    if amount == 0:
        return img.copy()
    out = img.copy()
    for ring in (fp.RIGHT_EYE, fp.LEFT_EYE):
        poly = pts[list(ring), :2]
        width = poly[:, 0].max() - poly[:, 0].min()
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
        m = np.float32([[1, 0, amount * width], [0, 1, 0]])
        moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        out[mask > 0] = moved[mask > 0]
    return out


def talking_clip(
    name: str = "grace_hopper",
    n: int = 72,
    *,
    size: int = 256,
    seed: int = 0,
    mouth_px: float | None = None,
    blinks: tuple[int, ...] = (12, 40, 61),
    roll_deg: float = 4.0,
    shift_px: float = 4.0,
    gaze: float = 0.16,
    edit: str | tuple[str, ...] | None = None,
) -> FaceClip:
    """A clip of `n` frames: irregular talking mouth, blinks at the given frames, gaze swings, slow roll and drift.

    `edit` (a key of `EDITS`, or several) gives the same clip with that edit on every frame, as a perfect propagation
    would: a recolouring edit is made on the still portrait and animated with it (lipstick opens with the jaw), an
    occluding one is drawn on each finished frame where the face is then (sunglasses stay over the eyes in blinks).
    """
    import cv2

    base, pts = portrait(name, size)
    edits = [EDITS[e] for e in ((edit,) if isinstance(edit, str) else edit or ())]
    for kind, fn in edits:
        if kind == "look":
            base = fn(base, pts)
    overlays = [fn for kind, fn in edits if kind == "overlay"]
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    mouth_px = 0.09 * size if mouth_px is None else mouth_px
    # Syllable-like opening: random rates so the curve is not periodic (a periodic one makes the lag ambiguous).
    env = np.clip(np.convolve(rng.uniform(-0.6, 1.0, n + 6), np.ones(4) / 4, mode="same")[3:n + 3], 0, 1)
    mouth = mouth_px * env
    closed = np.zeros(n)
    for b in blinks:
        for off, v in ((-1, 0.5), (0, 1.0), (1, 0.5)):
            if 0 <= b + off < n:
                closed[b + off] = max(closed[b + off], v)
    phase = rng.uniform(0, 2 * np.pi, 4)
    look = gaze * np.sin(2 * np.pi * t / (0.45 * n) + phase[3])
    roll = roll_deg * np.sin(2 * np.pi * t / (0.9 * n) + phase[0])
    shift = shift_px * np.stack(
        [np.sin(2 * np.pi * t / (0.7 * n) + phase[1]), np.sin(2 * np.pi * t / (1.3 * n) + phase[2])], 1
    )
    frames = np.empty((n, size, size, 3), np.uint8)
    transforms = np.empty((n, 2, 3))
    for i in range(n):
        f = open_mouth(base, pts, float(mouth[i]))
        f = shift_gaze(f, pts, float(look[i]))
        f = close_eyes(f, pts, float(closed[i]))
        m = cv2.getRotationMatrix2D((size / 2, size / 2), -float(roll[i]), 1.0)
        m[:, 2] += shift[i]
        transforms[i] = m
        frames[i] = cv2.warpAffine(f, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for fn in overlays:
            frames[i] = fn(frames[i], moved(pts, m))
    return FaceClip(frames=frames, mouth=mouth, eyes_closed=closed, roll=roll, shift=shift, gaze=look,
                    blinks=list(blinks), transforms=transforms)


def moved(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Landmarks (N, 2+) moved by a 2×3 affine matrix (x, y only; z kept)."""
    out = np.array(pts, dtype=np.float64, copy=True)
    out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
    return out


def delay(frames: np.ndarray, k: int) -> np.ndarray:
    """The same clip `k` frames late (k > 0): frame t shows source frame t - k; the first k repeat frame 0."""
    idx = np.clip(np.arange(len(frames)) - k, 0, len(frames) - 1)
    return frames[idx]


def freeze_region(frames: np.ndarray, box: tuple[int, int, int, int], ref: int = 0) -> np.ndarray:
    """Paste `box` (x0, y0, x1, y1) of frame `ref` into every frame — e.g. a frozen mouth."""
    out = frames.copy()
    x0, y0, x1, y1 = box
    out[:, y0:y1, x0:x1] = frames[ref, y0:y1, x0:x1]
    return out


def mouth_box(name: str = "grace_hopper", size: int = 256) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the mouth and jaw of `portrait(name, size)`: what `freeze_region` pastes."""
    _, pts = portrait(name, size)
    half_w = abs(pts[fp.MOUTH_CORNERS[1], 0] - pts[fp.MOUTH_CORNERS[0], 0]) / 2
    cx = (pts[fp.MOUTH_CORNERS[0], 0] + pts[fp.MOUTH_CORNERS[1], 0]) / 2
    y0 = pts[fp.LIP_TOP, 1] - 0.6 * half_w
    y1 = pts[fp.CHIN, 1] + 0.1 * half_w
    return int(cx - 1.6 * half_w), int(y0), int(np.ceil(cx + 1.6 * half_w)), int(np.ceil(y1))
