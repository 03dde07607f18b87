"""Does an edit hide what was there, or only recolour it? The evidence, per pixel, shared by the sync report and the
CPU preview.

Sunglasses, a mask or a beard replace the structure beneath them (lids and lashes, a mouth, a chin's shading) with
their own; lipstick, eye shadow or a tint keep it (the lip line is still there, at its contrast). Lightness is compared
after removing colour and local brightness and gain: SSIM's structure term on CIE L*, times the share of the source's
local contrast left (min(1, σ_edited / σ_source)), weighted by the source's own local contrast so the edges that move
count most. A recolour keeps this *visible share* near 1; a lens, a mask, a hand or a beard drop it near 0.

`metrics.occlusion` sums it over each cue region (is the mouth hidden from the landmarker?); the preview
(`propagate.face_content.content_weight`) over a window around each pixel of the edit, and carries the edited frame's
content where the edit hides and its change of colour where it recolours, with a soft boundary between the two.
"""

from __future__ import annotations

import numpy as np

ANALYSIS_SPAN = 80.0  # px between the outer eye corners at which both frames are compared (resolution-independent)
HIDDEN_BELOW = 0.4  # a visible share under this: what was there is hidden (the report's region threshold)


def lightness(img: np.ndarray) -> np.ndarray:
    """CIE L* (0..100, float32) of an RGB uint8 image."""
    import cv2

    return np.ascontiguousarray(cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0])


def structure_maps(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(structure s, source local contrast σa, edited local contrast σb) per pixel, on lightness images."""
    import cv2

    def blur(x):
        return cv2.GaussianBlur(x, (0, 0), sigma)

    ma, mb = blur(a), blur(b)
    va = np.maximum(blur(a * a) - ma * ma, 0)
    vb = np.maximum(blur(b * b) - mb * mb, 0)
    cov = blur(a * b) - ma * mb
    sa, sb = np.sqrt(va), np.sqrt(vb)
    c = 0.5 * (0.03 * 100) ** 2  # SSIM's C2/2 for L* in 0..100
    return (cov + c) / (sa * sb + c), sa, sb


def visible_maps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(visible share per pixel, its weight: the source's local contrast, the structure and the contrast share alone)
    for lightness images `a` (source) and `b` (edited) of the same size; see the module docstring."""
    smap, sa, sb = structure_maps(a, b)
    keep = np.minimum(1.0, sb / np.maximum(sa, 1e-6))
    return np.clip(smap, 0, 1) * keep, sa, smap, keep


def global_shift(a: np.ndarray, b: np.ndarray, limit: int = 4) -> tuple[int, int]:
    """Whole-pixel shift of b against a (phase correlation), within ±limit; 0 when unsure."""
    import cv2

    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), resp = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32), win)
    if resp < 0.05 or abs(dx) > limit or abs(dy) > limit:
        return 0, 0
    return int(round(dx)), int(round(dy))


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """x moved so that x_out[y, x] = x[y + dy, x + dx] (edges replicated)."""
    import cv2

    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    return cv2.warpAffine(x, m, (x.shape[1], x.shape[0]), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def hidden_map(source: np.ndarray, edited: np.ndarray, edit: np.ndarray, span: float | None, *,
               window: float = 0.4, soft: float = 0.1, flat: float = 0.5) -> np.ndarray | None:
    """0..1 per pixel of the full frame: how surely the edit hides what was there (1) rather than recolours it (0).

    `edit`: (H, W) float 0..1, where the edit changed the frame (the share outside it is 0). The visible share is
    averaged over a Gaussian window `window` eye spans wide (`span`: the face's eye span in px; None, no face: the
    frame is analysed at a long side of 4 x ANALYSIS_SPAN) around each pixel, over the edit only, and judged against
    HIDDEN_BELOW: hidden in full `2 * soft` below it, not at all from it up (what the report calls visible is never
    carried as content). Structure the edit adds where the source had little (hair over a smooth
    chin) counts as not visible. Where neither has structure to speak of (less than `flat` L* of local contrast under
    the whole window), nothing can show through and the change is called a recolour.
    A small misalignment of the edited frame (a generative editor's pixel or two) is searched away, per pixel, over
    ±1 px around the best global shift. None where nothing is hidden.
    """
    import cv2

    h, w = edit.shape
    ys, xs = np.nonzero(edit > 0)
    if not len(ys):
        return None
    unit = span if span and span > 4 else max(h, w) / 4.0  # px per ANALYSIS_SPAN analysis px
    s = min(1.0, ANALYSIS_SPAN / unit)
    grow = int(np.ceil(window * unit)) + 2
    x0, y0 = max(0, int(xs.min()) - grow), max(0, int(ys.min()) - grow)
    x1, y1 = min(w, int(xs.max()) + 1 + grow), min(h, int(ys.max()) + 1 + grow)
    size = (max(8, round((x1 - x0) * s)), max(8, round((y1 - y0) * s)))

    def small(img: np.ndarray) -> np.ndarray:
        return cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA)

    a, b = lightness(small(source)), lightness(small(edited))
    e = small(edit.astype(np.float32))
    sig = window * ANALYSIS_SPAN / 2

    def avg(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sig)

    gdx, gdy = global_shift(a, b)
    best = den = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            bs = shifted(b, gdx + dx, gdy + dy)
            vis, sa, _, _ = visible_maps(a, bs)
            if den is None:
                # structure the edit brought where the source had little (a beard's hair, a mask's pleats on a smooth
                # chin) counts as hiding it too: weighted by the edited frame's contrast, visible only in proportion
                # (inside the edit: its own outline is an edge any recolour adds)
                sb = structure_maps(bs, bs)[1]
                added = np.maximum(sb - sa, 0) * cv2.erode(e, np.ones((7, 7), np.uint8))
                den = avg(sa * e + added)
            num = avg(sa * e * vis)
            best = num if best is None else np.maximum(best, num)
    prior = flat * avg(e)  # flat skin counts as visible structure: a recolour
    visible = (best + prior) / np.maximum(den + prior, 1e-6)
    hid = np.clip((HIDDEN_BELOW - visible) / (2 * soft), 0.0, 1.0)
    if not (hid > 0.01).any():
        return None
    out = np.zeros((h, w), np.float32)
    out[y0:y1, x0:x1] = cv2.resize(hid, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out
