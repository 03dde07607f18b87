"""Talking-face test clips made from real photos that installed packages ship, with known motion.

Why: the sync measure must be proven on faces MediaPipe and dlib really see, with ground truth for every assertion.
Cartoon faces are often not detected, and no package ships a talking-head video, so we animate a real portrait:
the jaw is warped open on a schedule (with a dark mouth cavity painted in), eyelids are painted shut for blinks, and
the whole frame is rotated/shifted for head motion. Photos: Grace Hopper (matplotlib's sample data, always installed)
and Eileen Collins (scikit-image's `data.astronaut()`, test-only dependency). Edits people make (sunglasses, a mask
over the mouth, lipstick, eye shadow) are drawn from the landmarks, so a "right" result exists for each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# Landmark indices used to place the edits (MediaPipe face mesh topology).
_LIP_TOP, _LIP_BOTTOM, _MOUTH_L, _MOUTH_R, _CHIN = 13, 14, 61, 291, 152
_R_EYE_RING = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
_L_EYE_RING = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)


def _still(name: str) -> np.ndarray:
    import cv2

    if name == "grace_hopper":
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[..., :3])
    raise ValueError(f"unknown face {name!r}: grace_hopper or astronaut")


def _landmarks(img: np.ndarray) -> np.ndarray:
    from synclora.metrics.landmarks import FaceMeshTracker

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
    lip_y = (pts[_LIP_TOP, 1] + pts[_LIP_BOTTOM, 1]) / 2
    cx = (pts[_MOUTH_L, 0] + pts[_MOUTH_R, 0]) / 2
    half_w = abs(pts[_MOUTH_R, 0] - pts[_MOUTH_L, 0]) / 2
    chin_y = pts[_CHIN, 1]
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
    for ring in (_R_EYE_RING, _L_EYE_RING):
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
    for ring in (_R_EYE_RING, _L_EYE_RING):
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


# --------------------------------------------------------------------------------------------------------------------
# Edits people make, drawn from the landmarks: two that hide cues (sunglasses, a mask over the mouth) and two that only
# recolour them (lipstick, eye shadow). Each takes (RGB image, landmarks) and returns a new image.


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)[..., None]


def _tint(img: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int], strength: float,
          darken: float) -> np.ndarray:
    """Recolour where `alpha` > 0: chroma moves towards `colour` (Lab a, b), lightness is kept (× `darken`), so the
    texture and every edge the landmarker reads stay."""
    import cv2

    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    target = cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_RGB2LAB).astype(np.float32)[0, 0]
    out = lab.copy()
    out[..., 0] *= darken
    out[..., 1:] = lab[..., 1:] + strength * (target[1:] - lab[..., 1:])
    out = lab + alpha * (out - lab)
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def lipstick(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int] = (178, 24, 58),
             strength: float = 0.8) -> np.ndarray:
    """Red lips: the lip surface (outer lip line minus the opening) recoloured, lightness and texture kept."""
    from synclora.metrics import face_parts as fp

    shape = img.shape[:2]
    mask = fp.polygon_mask(shape, pts, fp.LIPS_OUTER)
    mask[fp.polygon_mask(shape, pts, fp.LIPS_INNER) > 0] = 0
    return _tint(img, _feather(mask, 1.0), colour, strength, 0.88)


def eye_shadow(img: np.ndarray, pts: np.ndarray, colour: tuple[int, int, int] = (128, 60, 170),
               strength: float = 0.7) -> np.ndarray:
    """Violet upper lids, from the lash line up towards the brow; the eye opening itself untouched."""
    import cv2

    from synclora.metrics import face_parts as fp

    shape = img.shape[:2]
    alpha = np.zeros((*shape, 1), np.float32)
    for eye, brow in ((fp.LEFT_EYE, fp.LEFT_BROW), (fp.RIGHT_EYE, fp.RIGHT_BROW)):
        lid = np.zeros(shape, np.uint8)
        upper = pts[list(eye[:9]), :2]  # outer corner, over the top, to the inner corner
        brow_low = pts[list(brow), :2]
        ring = np.concatenate([upper, 0.45 * upper[::-1] + 0.55 * _nearest(brow_low, upper[::-1])])
        cv2.fillPoly(lid, [np.round(ring).astype(np.int32)], 255, cv2.LINE_AA)
        lid[fp.polygon_mask(shape, pts, eye, grow=1) > 0] = 0
        alpha = np.maximum(alpha, _feather(lid, 1.5))
    return _tint(img, alpha, colour, strength, 0.9)


def _nearest(candidates: np.ndarray, points: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(points[:, None] - candidates[None], axis=-1)
    return candidates[d.argmin(1)]


def sunglasses(img: np.ndarray, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Dark round lenses over both eyes (with lids and lashes), a frame, a bridge and the start of the temples.

    `offset` moves the glasses (in eye spans), e.g. to make a result where they slide down the nose.
    """
    import cv2

    from synclora.metrics import face_parts as fp

    out = img.astype(np.float32)
    span = fp.eye_span(pts)
    axis = pts[fp.LEFT_EYE[0], :2] - pts[fp.RIGHT_EYE[0], :2]
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    down = np.array([-axis[1], axis[0]]) / max(np.linalg.norm(axis), 1e-6)
    shift = offset[0] * span * axis / max(np.linalg.norm(axis), 1e-6) + offset[1] * span * down
    ss = 4  # sub-pixel drawing
    h, w = img.shape[:2]
    lens = np.zeros((h, w), np.uint8)
    rim = np.zeros((h, w), np.uint8)
    centres = []
    for eye in (fp.LEFT_EYE, fp.RIGHT_EYE):
        c = pts[list(eye), :2].mean(0) - 0.05 * span * down + shift
        centres.append(c)
        axes = (int(0.26 * span * ss), int(0.19 * span * ss))
        cc = tuple(int(v) for v in np.round(c * ss))
        cv2.ellipse(lens, cc, axes, angle, 0, 360, 255, -1, cv2.LINE_AA, shift=2)
        cv2.ellipse(rim, cc, axes, angle, 0, 360, 255, max(1, int(0.035 * span)), cv2.LINE_AA, shift=2)
    (lc, rc) = centres
    inner = [c + 0.26 * span * (rc - lc) / np.linalg.norm(rc - lc) * s for c, s in ((lc, -1), (rc, 1))]
    cv2.line(rim, tuple(int(v) for v in np.round(inner[0] * ss - 0.08 * span * ss * down)),
             tuple(int(v) for v in np.round(inner[1] * ss - 0.08 * span * ss * down)), 255,
             max(1, int(0.03 * span)), cv2.LINE_AA, shift=2)
    for c, s in ((lc, 1), (rc, -1)):
        a = c + s * 0.26 * span * (lc - rc) / np.linalg.norm(lc - rc)
        b = a + s * 0.18 * span * (lc - rc) / np.linalg.norm(lc - rc) - 0.03 * span * down
        cv2.line(rim, tuple(int(v) for v in np.round(a * ss)), tuple(int(v) for v in np.round(b * ss)), 255,
                 max(1, int(0.03 * span)), cv2.LINE_AA, shift=2)
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    glass = np.array([22, 24, 30], np.float32) + 18 * np.clip((yy - lc[1]) / (0.2 * span), -1, 1)  # faint gradient
    a = lens[..., None].astype(np.float32) / 255 * 0.94
    out = out * (1 - a) + glass * a
    r = rim[..., None].astype(np.float32) / 255
    out = out * (1 - r) + np.array([12, 12, 14], np.float32) * r
    return np.clip(out, 0, 255).astype(np.uint8)


def mouth_mask(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """A light-blue surgical mask from the middle of the nose to under the chin, cheek to cheek, with pleats."""
    import cv2

    from synclora.metrics import face_parts as fp

    h, w = img.shape[:2]
    oval = list(fp.FACE_OVAL)
    lower = oval[oval.index(323): oval.index(93) + 1]  # right cheek → chin → left cheek (image order)
    outline = pts[lower + [195], :2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    span = fp.eye_span(pts)
    cloth = np.empty((h, w, 3), np.float32)
    cloth[:] = (160, 192, 222)
    top = pts[195, :2]
    down = pts[fp.CHIN, :2] - top
    down /= max(np.linalg.norm(down), 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = (xx - top[0]) * down[0] + (yy - top[1]) * down[1]
    pleats = 0.5 + 0.5 * np.cos(2 * np.pi * along / (0.22 * span))
    cloth *= (0.86 + 0.14 * pleats)[..., None]
    a = mask[..., None].astype(np.float32) / 255
    out = img.astype(np.float32) * (1 - a) + cloth * a
    return np.clip(out, 0, 255).astype(np.uint8)


# name -> ("look": made on the still portrait and animated, "overlay": drawn on each finished frame, function)
EDITS = {
    "lipstick": ("look", lipstick),
    "eye_shadow": ("look", eye_shadow),
    "sunglasses": ("overlay", sunglasses),
    "mouth_mask": ("overlay", mouth_mask),
}


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
    half_w = abs(pts[_MOUTH_R, 0] - pts[_MOUTH_L, 0]) / 2
    cx = (pts[_MOUTH_L, 0] + pts[_MOUTH_R, 0]) / 2
    y0 = pts[_LIP_TOP, 1] - 0.6 * half_w
    y1 = pts[_CHIN, 1] + 0.1 * half_w
    return int(cx - 1.6 * half_w), int(y0), int(np.ceil(cx + 1.6 * half_w)), int(np.ceil(y1))
