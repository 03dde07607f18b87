"""An expressive test clip with per-pixel ground truth, and the scores of an edit carried through it.

The mouth opens wide (teeth, tongue, dark cavity), lips stretch, lids close over the eyes, and the head moves, rolls
and turns; every pixel of every frame is labelled with its part (`PART_*`). The motion is a smooth warp of the photo
(not the face mesh's own piecewise-affine map), so a propagation guided by mesh landmarks is not graded by its own
model. `part_scores` says, frame by frame, whether an edit painted on some parts of frame 0 stayed on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from synclora.face import parts as fp
from synclora.testing.faces import portrait

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
    ml, mr = pts[fp.MOUTH_CORNERS[0], :2], pts[fp.MOUTH_CORNERS[1], :2]
    cx, hw = (ml[0] + mr[0]) / 2, abs(mr[0] - ml[0]) / 2
    chin = pts[fp.CHIN, 1]

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
    cx = (pts[fp.MOUTH_CORNERS[0], 0] + pts[fp.MOUTH_CORNERS[1], 0]) / 2
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


def in_frame(clip: ExpressiveClip, width: int, height: int) -> ExpressiveClip:
    """`clip` centred in larger (width, height) frames, its edges continued outwards: a phone's 16:9 frame (1280x720)
    with the face as large as a talking head in it, where the flow's fixed-size grey frames give the face fewer
    pixels than a square frame of the same height does. Labels outside the square are `PART_OTHER`."""
    n, h, w = clip.frames.shape[:3]
    if width < w or height < h:
        raise ValueError(f"a {width}x{height} frame cannot hold the clip's {w}x{h} frames")
    left, top = (width - w) // 2, (height - h) // 2
    pad = ((0, 0), (top, height - h - top), (left, width - w - left))
    return replace(clip, frames=np.pad(clip.frames, (*pad, (0, 0)), mode="edge"),
                   labels=np.pad(clip.labels, pad, constant_values=PART_OTHER))


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
