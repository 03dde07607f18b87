"""Talking-face test clips made from real photos that installed packages ship, with known motion.

Why: the sync measure must be proven on faces MediaPipe and dlib really see, with ground truth for every assertion.
Cartoon faces are often not detected, and no package ships a talking-head video, so we animate a real portrait:
the jaw is warped open on a schedule (with a dark mouth cavity painted in), eyelids are painted shut for blinks, and
the whole frame is rotated/shifted for head motion. Photos: Grace Hopper (matplotlib's sample data, always installed)
and Eileen Collins (scikit-image's `data.astronaut()`, shipped here as `data/astronaut.webp`, lossless, so only
runtime dependencies are needed). Edits people make (sunglasses, a mask
over the mouth, lipstick, eye shadow) are drawn from the landmarks, so a "right" result exists for each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from synclora.face import parts as fp

# Landmark indices used to place the edits (MediaPipe face mesh topology).
_LIP_TOP, _LIP_BOTTOM, _MOUTH_L, _MOUTH_R, _CHIN = 13, 14, 61, 291, 152


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


# --------------------------------------------------------------------------------------------------------------------
# Edits people make, drawn from the landmarks: two that hide cues (sunglasses, a mask over the mouth) and two that only
# recolour them (lipstick, eye shadow: painted over a mask, here the part's mask from the landmarks). `EDITS` holds
# each as a function of (RGB image, landmarks) that returns a new image.


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 1) float32 0..1 from a boolean or 0/255 mask, its edge softened by a Gaussian of `sigma` px."""
    import cv2

    alpha = mask.astype(np.float32) * (1.0 if mask.dtype == bool else 1 / 255)
    return cv2.GaussianBlur(alpha, (0, 0), sigma)[..., None]


def _tint(img: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int], strength: float,
          darken: float) -> np.ndarray:
    """Recolour where `alpha` > 0: chroma moves towards `colour` (Lab a, b), lightness is kept (× `darken`), so the
    texture and every edge the landmarker reads stay. Blended in RGB, so pixels with alpha 0 stay exactly as they
    were (a Lab round trip alone moves them by a level)."""
    import cv2

    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    target = cv2.cvtColor(np.uint8([[colour]]), cv2.COLOR_RGB2LAB).astype(np.float32)[0, 0]
    lab[..., 0] *= darken
    lab[..., 1:] += strength * (target[1:] - lab[..., 1:])
    tinted = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)
    return np.clip(img + alpha * (tinted - img) + 0.5, 0, 255).astype(np.uint8)


def lips_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """uint8 mask (0/255) of the lip surface: the outer lip line minus the opening."""
    mask = fp.polygon_mask(shape, pts, fp.LIPS_OUTER)
    mask[fp.polygon_mask(shape, pts, fp.LIPS_INNER) > 0] = 0
    return mask


def lids_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """uint8 mask (0/255) of both upper lids, from the lash line up towards the brow; the eye openings excluded."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    for eye, brow in ((fp.LEFT_EYE, fp.LEFT_BROW), (fp.RIGHT_EYE, fp.RIGHT_BROW)):
        lid = np.zeros(shape, np.uint8)
        upper = pts[list(fp.sides(eye)[0]), :2]  # outer corner, over the top, to the inner corner
        brow_low = pts[list(brow), :2]
        ring = np.concatenate([upper, 0.45 * upper[::-1] + 0.55 * _nearest(brow_low, upper[::-1])])
        cv2.fillPoly(lid, [np.round(ring).astype(np.int32)], 255, cv2.LINE_AA)
        lid[fp.polygon_mask(shape, pts, eye, grow=1) > 0] = 0
        np.maximum(mask, lid, out=mask)
    return mask


def lipstick(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (178, 24, 58),
             strength: float = 0.8, soft: float = 0.7) -> np.ndarray:
    """Red lips: `mask` (boolean or 0/255: `lips_mask`, or an `ExpressiveClip` part) recoloured with an edge `soft`
    px wide (Gaussian sigma), lightness and texture kept."""
    return _tint(img, _feather(mask, soft), colour, strength, 0.88)


def eye_shadow(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (128, 60, 170),
               strength: float = 0.7, soft: float = 0.7) -> np.ndarray:
    """Violet shadow over `mask` (boolean or 0/255: `lids_mask`, or an `ExpressiveClip` part), edge `soft` px wide,
    lightness and texture kept."""
    return _tint(img, _feather(mask, soft), colour, strength, 0.9)


def _nearest(candidates: np.ndarray, points: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(points[:, None] - candidates[None], axis=-1)
    return candidates[d.argmin(1)]


def sunglasses(img: np.ndarray, pts: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Dark round lenses over both eyes (with lids and lashes), a frame, a bridge and the start of the temples.

    `offset` moves the glasses (in eye spans), e.g. to make a result where they slide down the nose.
    """
    import cv2

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


def beard(img: np.ndarray, pts: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dark-brown full beard along the jaw from cheek to cheek, under the lower lip and over the chin: streaky hair
    texture that replaces the skin's own shading."""
    import cv2

    h, w = img.shape[:2]
    oval = list(fp.FACE_OVAL)
    jaw = pts[oval[oval.index(361): oval.index(132) + 1], :2]  # right cheek -> chin -> left cheek (image order)
    span = fp.eye_span(pts)
    lips = pts[list(fp.LIPS_OUTER), :2]
    under = lips[lips[:, 1] > pts[[_MOUTH_L, _MOUTH_R], 1].mean()]
    under = under[np.argsort(under[:, 0])] + (0, 0.08 * span)  # a little below the lower lip, left to right
    if jaw[0, 0] < jaw[-1, 0]:
        under = under[::-1]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(np.concatenate([jaw, under]) * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(0.6, span / 120))
    noise = cv2.resize(cv2.resize(noise, (w, h // 3 + 1)), (w, h))  # longer vertically: streaks of hair
    hair = np.array([70, 48, 34], np.float32) * (1 + 0.35 * noise / max(float(noise.std()), 1e-6))[..., None]
    a = _feather(mask, 0.8)
    return np.clip(img * (1 - a) + hair * a, 0, 255).astype(np.uint8)


# name -> ("look": made on the still portrait and animated, "overlay": drawn on each finished frame, function)
EDITS = {
    "lipstick": ("look", lambda img, pts: lipstick(img, lips_mask(img.shape[:2], pts), soft=1.0)),
    "eye_shadow": ("look", lambda img, pts: eye_shadow(img, lids_mask(img.shape[:2], pts), soft=1.5)),
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


# --------------------------------------------------------------------------------------------------------------------
# An expressive clip with per-pixel ground truth: the mouth opens wide (teeth, tongue, dark cavity), lips stretch, lids
# close over the eyes, and the head moves, rolls and turns. The motion is a smooth warp of the photo (not the face
# mesh's own piecewise-affine map), so a propagation guided by mesh landmarks is not graded by its own model.

# Part labels of `ExpressiveClip.labels`.
PART_OTHER, PART_LIPS, PART_MOUTH, PART_TEETH, PART_EYEBALL, PART_LID, PART_SKIN = range(7)
PART_NAMES = ("other", "lips", "mouth", "teeth", "eyeball", "lid", "skin")



def _eye(ring: tuple[int, ...], brow: tuple[int, ...]):
    """(outer, inner) corners, the upper and lower sides between them, and the ring under the brow that bounds the
    lid."""
    up, lo = fp.sides(ring)
    return (up[0], up[-1]), up[1:-1], lo[1:-1], brow


_EYES = (_eye(fp.RIGHT_EYE, (113, 225, 224, 223, 222, 221, 189)),
         _eye(fp.LEFT_EYE, (342, 445, 444, 443, 442, 441, 413)))
_LIP_IN_UP, _LIP_IN_LO = fp.sides(fp.LIPS_INNER)


@dataclass
class ExpressiveClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    labels: np.ndarray  # (T, H, W) uint8 part per pixel (PART_*), exact for every frame
    mouth: np.ndarray  # (T,) jaw drop in pixels (before head motion)
    stretch: np.ndarray  # (T,) relative widening of the mouth
    eyes_closed: np.ndarray  # (T,) 0 open … 1 shut
    turn: np.ndarray  # (T,) degrees of head turn (about the vertical axis)
    roll: np.ndarray  # (T,) degrees
    blinks: list[int] = field(default_factory=list)

    def part(self, t: int, *parts: int) -> np.ndarray:
        """Boolean mask of frame t covering the given parts."""
        return np.isin(self.labels[t], parts)


def _curve(pts: np.ndarray, idx: tuple[int, ...], xs: np.ndarray) -> np.ndarray:
    """y of the polyline through landmarks `idx`, sampled at xs (clamped at the ends)."""
    p = pts[list(idx), :2]
    order = np.argsort(p[:, 0])
    return np.interp(xs, p[order, 0], p[order, 1])


def _base_labels(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    import cv2

    lab = np.zeros(shape, np.uint8)

    def fill(poly, value):
        cv2.fillPoly(lab, [np.round(np.asarray(poly)[:, :2] * 16).astype(np.int32)], int(value), cv2.LINE_8, 4)

    fill(pts[list(fp.FACE_OVAL)], PART_SKIN)
    for corners, up, lo, brow in _EYES:
        fill(np.concatenate([pts[[corners[0]]], pts[list(brow)], pts[[corners[1]]], pts[list(up[::-1])]]), PART_LID)
        fill(np.concatenate([pts[[corners[0]]], pts[list(up)], pts[[corners[1]]], pts[list(lo[::-1])]]), PART_EYEBALL)
    fill(pts[list(fp.LIPS_OUTER)], PART_LIPS)
    inner = np.concatenate([pts[list(_LIP_IN_UP)], pts[list(_LIP_IN_LO[::-1])]])
    fill(inner, PART_TEETH)  # what shows between the lips at rest (teeth in a smile; nothing when closed)
    return lab


def _expression_maps(base: np.ndarray, pts: np.ndarray, jaw: float, stretch: float, closed: float):
    """Backward map (H, W, 2) of the expression frame into the photo, and the mouth cavity's mask in the expression
    frame. The jaw and lower lip drop by `jaw` px (tearing the lips apart between the corners), the mouth widens by
    `stretch`, and both upper lids slide down over `closed` of the eye opening."""
    h, w = base.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xx.copy(), yy.copy()
    cavity = np.zeros((h, w), bool)
    # ---- mouth
    ml, mr = pts[_MOUTH_L, :2], pts[_MOUTH_R, :2]
    cx, hw = (ml[0] + mr[0]) / 2, abs(mr[0] - ml[0]) / 2
    chin = pts[_CHIN, 1]

    def part_line(x):  # lower inner lip: pixels below it move with the jaw (clamped beyond the corners)
        return _curve(pts, _LIP_IN_LO, np.clip(x, cx - hw, cx + hw))

    lip_lo = float(_curve(pts, _LIP_IN_LO, np.array([cx]))[0])
    thick = max(2.0, float(pts[17, 1] - pts[14, 1]))  # lower lip thickness
    fade = 1.6 * jaw + 0.3 * (chin - lip_lo) + 1  # below the chin the drop fades out (slope < 1: no fold)
    if jaw > 0 or stretch != 0:
        def disp(x, y, lower):
            f = np.clip(1 - ((x - cx) / hw) ** 2, 0, 1) ** 0.6
            jawp = np.clip(1.3 - np.abs(x - cx) / (2.2 * hw), 0, 1)
            line = part_line(x)
            g = np.where(y > chin, np.clip(1 - (y - chin) / fade, 0, 1), 1.0)
            if lower:
                r = np.clip((y - line) / (1.5 * thick), 0, 1)
                dy = jaw * (f + (jawp - f) * r) * g
            else:
                dy = -0.15 * jaw * f * np.clip(1 - (line - y) / (2.5 * thick), 0, 1)
            gx = np.exp(-(((x - cx) / (1.6 * hw)) ** 2) - ((y - lip_lo) / (1.1 * hw)) ** 2)
            return stretch * (x - cx) * gx, dy

        y0, y1 = int(max(0, lip_lo - 2.5 * hw)), int(min(h, chin + fade + jaw + 2))
        x0, x1 = int(max(0, cx - 3.5 * hw)), int(min(w, cx + 3.5 * hw))
        px, py = xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
        found = []
        for lower in (False, True):
            qx, qy = px.copy(), py.copy()
            for _ in range(6):  # invert q + d(q) = p by fixed-point iteration (d is smooth and small)
                dx, dy = disp(qx, qy, lower)
                qx, qy = px - dx, py - dy
            below = qy > part_line(qx)
            found.append((qx, qy, below if lower else ~below))
        (ux, uy, uok), (lx, ly, lok) = found
        sel_x = np.where(uok, ux, lx)
        sel_y = np.where(uok, uy, ly)
        map_x[y0:y1, x0:x1] = sel_x
        map_y[y0:y1, x0:x1] = sel_y
        cavity[y0:y1, x0:x1] = ~uok & ~lok
    # ---- lids
    if closed > 0:
        for corners, up, lo, brow in _EYES:
            xa, xb = sorted((pts[corners[0], 0], pts[corners[1], 0]))
            c0, c1 = int(np.floor(xa)), int(np.ceil(xb)) + 1
            xs = np.arange(c0, c1, dtype=np.float32)
            ring_up = np.concatenate([pts[[corners[0]]], pts[list(up)], pts[[corners[1]]]])
            ring_lo = np.concatenate([pts[[corners[0]]], pts[list(lo)], pts[[corners[1]]]])
            o_up, o_lo = np.argsort(ring_up[:, 0]), np.argsort(ring_lo[:, 0])
            u = np.interp(xs, ring_up[o_up, 0], ring_up[o_up, 1])
            lo_y = np.interp(xs, ring_lo[o_lo, 0], ring_lo[o_lo, 1])
            lo_y = np.maximum(lo_y, u)
            top = np.minimum(_curve(pts, brow, xs), u - 2)
            inside = (xs > xa) & (xs < xb)
            edge = u + closed * (lo_y - u) * inside
            r0, r1 = int(max(0, np.floor(top.min()))), int(min(h, np.ceil(lo_y.max()) + 2))
            yy_e = yy[r0:r1, c0:c1]
            lid = (yy_e >= top) & (yy_e <= edge)
            src = top + (yy_e - top) * (u - top) / np.maximum(edge - top, 1e-3)
            map_y[r0:r1, c0:c1] = np.where(lid, src, map_y[r0:r1, c0:c1])
    return np.dstack([map_x, map_y]), cavity


def _paint_mouth(img: np.ndarray, lab: np.ndarray, cavity: np.ndarray, jaw: float, cx: float) -> None:
    """Fill the opened mouth: upper teeth under the upper lip, a tongue low in the dark throat (the lower teeth stay
    behind the lower lip, as in most speech)."""
    if not cavity.any():
        return
    h, w = cavity.shape
    depth = np.cumsum(cavity, axis=0)  # rows into the cavity, per column
    from_bottom = depth[-1:] - depth
    xx = np.mgrid[0:h, 0:w][1]
    shade = np.clip(1 - np.abs(xx - cx) / (np.count_nonzero(cavity.any(0)) / 2 + 1), 0.3, 1)
    throat = np.array([70, 18, 28], np.float32)[None] * (1.1 - 0.5 * shade[cavity])[:, None]
    img[cavity] = throat.astype(np.uint8)
    lab[cavity] = PART_MOUTH
    teeth_h = max(1.0, 0.28 * jaw)
    upper = cavity & (depth <= teeth_h)
    tooth = (np.abs(((xx - cx) / max(2.0, 0.12 * jaw + 2)) % 1.0 - 0.5) < 0.45)
    img[upper] = np.where(tooth[upper][:, None], np.array([232, 228, 214]), np.array([190, 180, 165])).astype(np.uint8)
    lab[upper] = PART_TEETH
    # the tongue: a shaded red lobe (lipstick-like: a hard case) low in the middle of the cavity, behind the lower
    # teeth, so a shadow separates it from the lower lip
    half = 0.3 * np.count_nonzero(cavity.any(0)) + 1
    tongue = cavity & ~upper & (from_bottom >= 0.1 * jaw) & (from_bottom < 0.4 * jaw) & (np.abs(xx - cx) < half)
    tone = (1.0 - 0.35 * (np.abs(xx - cx) / half))[tongue][:, None]
    img[tongue] = (np.array([160, 62, 72], np.float32) * tone).astype(np.uint8)
    lab[tongue] = PART_MOUTH


def expressive_clip(
    name: str = "astronaut",
    n: int = 60,
    *,
    size: int = 256,
    seed: int = 0,
    mouth_px: float | None = None,
    stretch: float = 0.15,
    blinks: tuple[int, ...] = (14, 37),
    turn_deg: float = 14.0,
    roll_deg: float = 6.0,
    shift_px: float | None = None,
) -> ExpressiveClip:
    """A talking, blinking, moving and turning face made from a real photo, with exact part labels per frame.

    The jaw opens wide (up to `mouth_px`, default 0.12 x size) showing teeth, tongue and a dark throat; the lips stretch
    by up to `stretch`; each blink slides the upper lids fully shut over 5 frames; the head rolls, shifts, zooms and
    turns (a homography of the photo's plane about a vertical axis). Frame 0 is the neutral face (mouth as photographed,
    eyes open), so an edit painted on it must follow every change.
    """
    import cv2

    base, pts = portrait(name, size)
    labels0 = _base_labels(base.shape[:2], pts)
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    mouth_px = 0.12 * size if mouth_px is None else mouth_px
    shift_px = 0.05 * size if shift_px is None else shift_px
    # syllables: openings of random height and length, some wide
    env = np.zeros(n)
    i = 2
    while i < n:
        ln = int(rng.integers(3, 8))
        amp = rng.choice([0.35, 0.6, 1.0, 1.0])
        env[i:i + ln] = (amp * np.sin(np.linspace(0, np.pi, ln + 2)[1:-1]))[: n - i]
        i += ln + int(rng.integers(0, 3))
    env[0] = 0.0
    jaw = mouth_px * env
    widen = stretch * np.clip(np.sin(2 * np.pi * t / (0.37 * n) + rng.uniform(0, 6)), -0.5, 1) * (t > 0)
    closed = np.zeros(n)
    for b in blinks:
        for off, v in ((-2, 0.3), (-1, 0.75), (0, 1.0), (1, 0.75), (2, 0.3)):
            if 0 < b + off < n:
                closed[b + off] = max(closed[b + off], v)
    u = t / max(1, n - 1)
    rate = rng.uniform(0.7, 1.3, 5)
    sign = rng.choice([-1.0, 1.0], 5)
    turn = sign[0] * turn_deg * np.sin(2 * np.pi * rate[0] * u)
    roll = sign[1] * roll_deg * np.sin(2 * np.pi * 0.8 * rate[1] * u)
    shift = shift_px * np.stack([sign[2] * np.sin(2 * np.pi * 0.6 * rate[2] * u),
                                 sign[3] * np.sin(2 * np.pi * 0.9 * rate[3] * u)], 1)
    zoom = 1 + 0.05 * sign[4] * np.sin(2 * np.pi * 0.5 * rate[4] * u)
    frames = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty((n, size, size), np.uint8)
    face_c = pts[:, :2].mean(0)
    cx = (pts[_MOUTH_L, 0] + pts[_MOUTH_R, 0]) / 2
    for i in range(n):
        emap, cavity = _expression_maps(base, pts, float(jaw[i]), float(widen[i]), float(closed[i]))
        img = cv2.remap(base, emap, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lab = cv2.remap(labels0, emap, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        _paint_mouth(img, lab, cavity, float(jaw[i]), cx)
        hom = _head_motion(face_c, size, turn[i], roll[i], zoom[i], shift[i])
        frames[i] = cv2.warpPerspective(img, hom, (size, size), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT)
        labels[i] = cv2.warpPerspective(lab, hom, (size, size), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=PART_OTHER)
    return ExpressiveClip(frames=frames, labels=labels, mouth=jaw, stretch=widen, eyes_closed=closed, turn=turn,
                          roll=roll, blinks=list(blinks))


def _head_motion(c: np.ndarray, size: int, turn: float, roll: float, zoom: float, shift: np.ndarray) -> np.ndarray:
    """3x3 homography: the photo's plane turned by `turn` degrees about the vertical axis through `c` (seen by a
    camera 1.5 sizes away), then rolled, zoomed and shifted in the image."""
    import cv2

    f = 1.5 * size
    a = np.radians(turn)
    src = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
    rel = src - c
    z = f - rel[:, 0] * np.sin(a)  # depth of each corner after the turn
    dst = c + f * np.stack([rel[:, 0] * np.cos(a), rel[:, 1]], 1) / z[:, None]
    hom = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    sim = np.vstack([cv2.getRotationMatrix2D((float(c[0]), float(c[1])), -float(roll), float(zoom)), [0, 0, 1]])
    sim[:2, 2] += shift
    return sim @ hom


@dataclass
class PartScores:
    """How an edit painted on some parts of frame 0 came out in every frame of a propagated `ExpressiveClip`."""

    coverage: np.ndarray  # (T,) fraction of the part (inner pixels) the edit covers
    landed: np.ndarray  # (T,) fraction of the forbidden parts' inner pixels the edit landed on
    spill: np.ndarray  # (T,) changed pixels off the part (beyond a small margin), relative to the part's area
    on_part: np.ndarray  # (T,) bool: the frame keeps the edit on its part (see `part_scores`)

    @property
    def kept(self) -> float:
        """Fraction of frames (after frame 0) whose edit stays on its part."""
        return float(self.on_part[1:].mean())


def part_scores(out: np.ndarray, clip: ExpressiveClip, parts: tuple[int, ...], forbidden: tuple[int, ...], *,
                thr: float = 16.0, min_coverage: float = 0.75, max_landed: float = 0.02,
                max_spill: float = 0.25, others: tuple[int, ...] = ()) -> PartScores:
    """Per frame: the edit covers >= `min_coverage` of the part's inner pixels, lands on <= `max_landed` of the
    forbidden parts' inner pixels (teeth, eyeballs) and spills <= `max_spill` (of the part's area) elsewhere.

    "Changed" is any channel differing from the source by more than `thr`; inner pixels are 1 px (per 256 px of frame)
    inside a part, so a soft or anti-aliased border is not counted; `others` are parts edited too (not spill). A
    forbidden area smaller than a (4 px per 256)² square (teeth showing as a sliver) counts as that square, so two
    stray pixels on it are not "10 %".
    """
    import cv2

    n, h = len(out), out.shape[1]
    r = max(1, round(h / 256))
    ker = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    cov, land, spill = np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(n):
        changed = np.abs(out[t].astype(np.int16) - clip.frames[t].astype(np.int16)).max(axis=2) > thr
        part = clip.part(t, *parts).astype(np.uint8)
        inner = cv2.erode(part, ker) > 0
        cov[t] = changed[inner].mean() if inner.any() else 1.0
        bad = cv2.erode(clip.part(t, *forbidden).astype(np.uint8), ker) > 0
        land[t] = (changed & bad).sum() / max(int(bad.sum()), (4 * r) ** 2)
        near = cv2.dilate(clip.part(t, *parts, *others).astype(np.uint8), np.ones((4 * r + 1,) * 2, np.uint8)) > 0
        spill[t] = (changed & ~near & ~bad).sum() / max(1, part.sum())
    on = (cov >= min_coverage) & (land <= max_landed) & (spill <= max_spill)
    return PartScores(coverage=cov, landed=land, spill=spill, on_part=on)
