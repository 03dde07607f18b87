"""Edits people make, drawn from a face's landmarks, so a "right" result exists for each: two that hide cues
(sunglasses, a mask over the mouth; a beard beside them) and two that only recolour them (lipstick, eye shadow:
painted over a part's mask, here the one the landmarks give). `EDITS` holds the four as functions of (RGB image,
landmarks) that return a new image; `faces.talking_clip(edit=...)` puts them on a talking clip.
"""

from __future__ import annotations

import numpy as np

from synclora.face import parts as fp


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
    under = lips[lips[:, 1] > pts[list(fp.MOUTH_CORNERS), 1].mean()]
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
