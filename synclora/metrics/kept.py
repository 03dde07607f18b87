"""Edit kept: per frame, how much of the change made at the edited frame the result shows at the same place on the face.

The paper's baselines fail in one of two ways: "out of sync" or "failed to apply the edit". The sync cues measure
the first; this measures the second. At the edit index k the edit is the difference D = edited − source[k]. The face
carries it: a mesh of the source's own landmarks at k (Delaunay triangles over the 468 points, plus a few anchor
points moved with the head's similarity transform, for hair or a hat) maps every pixel of the edit to frame t, where
the source's landmarks are. There we sample a small patch of the source S_t and of the result R_t, on a grid of
`KEPT_SPAN` pixels per eye span (from the shrunk image the landmarker already made, so nothing is converted at full
size and nothing aliases), and ask how much of D the result adds to the source:

    kept_t = Σ ⟨R_t − S_t, D⟩ / Σ ⟨D, D⟩      (over the pixels the edit changed, per face part)

1 means the whole edit is there, 0 means the result looks like the source there (the edit faded), in between a partial
fade. A result that moves a little differently is forgiven by searching ±2 px; when the edit is missing at its place
but found further off (up to `SLIDE_SPANS` eye spans), it "slid off".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synclora.metrics import face_parts as fp
from synclora.metrics.scores import runs

KEPT_SPAN = 48.0  # patch pixels per eye span
CHANGE_DE = 10.0  # ΔE (CIE76, after a light blur) that counts as changed by the edit
TOLERANCE_PX = 2  # misalignment forgiven, in patch pixels
SLIDE_SPANS = 0.3  # how far off a slid edit is still found, in eye spans
SLID_KEPT = 0.6  # found off its place at least this strongly: "slid off", not "faded"
MIN_PART_SHARE = 0.08  # parts with less of the edit's change than this are not named on their own
_STABLE = list(fp.FACE_OVAL) + list(fp.NOSE)


def _blur(x: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(x, (0, 0), 1.0)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    from synclora.metrics.occlusion import _similarity as sim

    return sim(src, dst)


@dataclass
class PartKept:
    name: str
    share: float  # this part's share of the edit's change (Σ|D|²)
    curve: np.ndarray  # (T,) kept per frame, NaN where the source has no face
    slid: np.ndarray  # (T,) bool: low at its place, found further off


@dataclass
class EditKept:
    """The edit-kept curves of one result (frame t of the compared range ↔ `start + t` in the videos)."""

    edit_index: int
    start: int
    curve: np.ndarray  # (T,) the whole edit
    parts: dict[str, PartKept]
    notes: list[str] = field(default_factory=list)

    def worst(self, run: int) -> float | None:
        """The lowest level the edit stays under for `run` frames in a row, over the named parts (curation's score)."""
        vals = []
        for p in self._judged().values():
            c = np.where(np.isfinite(p.curve), p.curve, np.inf)
            if len(c) >= run:
                win = np.lib.stride_tricks.sliding_window_view(c, run).max(axis=1)
                if np.isfinite(win).any():
                    vals.append(float(win[np.isfinite(win)].min()))
        return min(vals) if vals else None

    def _judged(self) -> dict[str, PartKept]:
        named = {n: p for n, p in self.parts.items() if p.share >= MIN_PART_SHARE}
        if not named:  # an edit spread thin over many parts: judge it whole
            named = {"edit": PartKept("edit", 1.0, self.curve, np.zeros(len(self.curve), bool))}
        return named

    def problems(self, min_kept: float, min_run: int) -> list[str]:
        """Sentences for the verdict: where each part of the edit faded or slid off (frames as in the videos)."""
        out = []
        for name, p in self._judged().items():
            where = "the edit" if name == "edit" else f"the edit {_on(name)}"
            ok = np.isfinite(p.curve)
            low = ok & (p.curve < min_kept)
            if ok.sum() and low.sum() >= 0.9 * ok.sum():
                out.append(f"{where} is missing from the result (kept {np.nanmean(p.curve):.2f} on average)")
                continue
            spans = [(a, b) for a, b in runs(low) if b - a >= min_run]
            slid = [(a, b) for a, b in spans if p.slid[a:b].mean() > 0.5]
            faded = [s for s in spans if s not in slid]
            if faded:
                out.append(f"{where} faded on frames {_ranges(faded, self.start)}")
            if slid:
                out.append(f"{where} slid off on frames {_ranges(slid, self.start)}")
        return out

    def to_dict(self, min_kept: float, min_run: int) -> dict:
        def curve(c):
            return [None if not np.isfinite(v) else round(float(v), 3) for v in c]

        return {
            "edit_index": self.edit_index,
            "start": self.start,
            "mean": _num(np.nanmean(self.curve)) if np.isfinite(self.curve).any() else None,
            "worst": _num(self.worst(min_run)),
            "problems": self.problems(min_kept, min_run),
            "curve": curve(self.curve),
            "parts": {n: {"share": round(p.share, 3), "judged": p.share >= MIN_PART_SHARE,
                          "mean": _num(np.nanmean(p.curve)) if np.isfinite(p.curve).any() else None,
                          "curve": curve(p.curve), "slid_frames": [int(i) + self.start for i in np.flatnonzero(p.slid)]}
                      for n, p in self.parts.items()},
            "notes": list(self.notes),
        }


def _num(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def _on(part: str) -> str:
    return {"eyes": "over the eyes", "hair and surroundings": "around the face"}.get(part, f"on the {part}")


def _ranges(spans: list[tuple[int, int]], start: int) -> str:
    return ", ".join(f"{a + start}" if b - a == 1 else f"{a + start}–{b - 1 + start}" for a, b in spans)


def _reduce_factor(span: float) -> int:
    """Whole factor to shrink a frame by before sampling a patch from it (anti-aliasing; the landmarker's own
    factor keeps the face ≥ 192 px, which lands in the same range)."""
    return max(1, int(span // (1.8 * KEPT_SPAN)))


def sample_at(frame, mx: np.ndarray, my: np.ndarray, k: int) -> np.ndarray:
    """`frame` (array or lazy frame) at full-resolution positions, read from its 1/k image."""
    import cv2

    from synclora.video.lazy import as_frame

    img = as_frame(frame).reduced(k)
    if k > 1:
        mx, my = (mx + 0.5) / k - 0.5, (my + 0.5) / k - 0.5
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _triangles(verts: np.ndarray) -> np.ndarray:
    """(M, 3) vertex indices of the Delaunay triangulation of `verts` (OpenCV's Subdiv2D)."""
    import cv2

    lo, hi = verts.min(0) - 2, verts.max(0) + 2
    sub = cv2.Subdiv2D((int(np.floor(lo[0])), int(np.floor(lo[1])), int(np.ceil(hi[0] - lo[0])) + 1,
                        int(np.ceil(hi[1] - lo[1])) + 1))
    sub.insert([(float(x), float(y)) for x, y in verts])
    tri = sub.getTriangleList().reshape(-1, 3, 2)
    d = np.linalg.norm(tri[:, :, None, :] - verts[None, None].astype(np.float32), axis=-1)  # (M, 3, N)
    idx = d.argmin(-1)
    ok = (d.min(-1) < 1e-3).all(1)  # drop triangles on Subdiv2D's virtual outer vertices
    return idx[ok]


def _coarse(n: int, step: int = 4) -> np.ndarray:
    """Every `step`-th index of 0..n-1, and the last."""
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _linear(knots: np.ndarray, n: int) -> np.ndarray:
    """(n, len(knots)) float32 matrix that interpolates values at `knots` linearly onto 0..n-1."""
    m = np.zeros((n, len(knots)), np.float32)
    for j in range(len(knots) - 1):
        a, b = knots[j], knots[j + 1]
        t = (np.arange(a, b + 1) - a) / max(b - a, 1)
        m[a: b + 1, j] = 1 - t
        m[a: b + 1, j + 1] = t
    return m


class EditProbe:
    """Where the edit is, on the source's face at the edit index; samples and scores the same place in any frame."""

    def __init__(self, source: np.ndarray, edited: np.ndarray, pts: np.ndarray, edit_index: int):
        import cv2

        self.edit_index = edit_index
        self.ok = False
        self.note = ""
        h, w = source.shape[:2]
        span = fp.eye_span(pts)
        k0 = _reduce_factor(span)
        self.scale = KEPT_SPAN / max(span, 1e-6)
        self.margin = int(np.ceil(SLIDE_SPANS * KEPT_SPAN))
        # Where to look: the face and half an eye span around it (hair, a hat, glasses' temples).
        lo = pts[:, :2].min(0) - 0.5 * span
        hi = pts[:, :2].max(0) + 0.5 * span
        lo, hi = np.maximum(lo, 0), np.minimum(hi, [w - 1, h - 1])
        gw, gh = (np.ceil((hi - lo) * self.scale)).astype(int) + 1
        gx, gy = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))
        qx, qy = lo[0] + gx / self.scale, lo[1] + gy / self.scale
        lab = [cv2.cvtColor(_blur(sample_at(x, qx, qy, k0).astype(np.float32) / 255), cv2.COLOR_RGB2LAB)
               for x in (source, edited)]
        de = np.linalg.norm(lab[0] - lab[1], axis=-1)
        changed = (de > max(CHANGE_DE, float(np.median(de)) + 6.0)).astype(np.uint8)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, comp, stats, _ = cv2.connectedComponentsWithStats(changed)
        keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= max(6, 0.002 * gw * gh)]
        mask = np.isin(comp, keep)
        if not mask.any():
            self.note = "the edit changes nothing on or around the face, so whether it is kept is not measured"
            return
        ys, xs = np.nonzero(mask)
        m = self.margin
        x0, x1 = xs.min() - m, xs.max() + m + 1
        y0, y1 = ys.min() - m, ys.max() + m + 1
        # Patch grid (with the margin) in frame-k pixels; the edit's mask and change inside it.
        px, py = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        q = np.stack([lo[0] + px / self.scale, lo[1] + py / self.scale], -1)  # (Hp, Wp, 2)
        self.shape = q.shape[:2]
        inner = (slice(m, -m), slice(m, -m))
        mask_p = np.zeros(self.shape, bool)
        mask_p[max(0, y0) - y0: min(gh, y1) - y0, max(0, x0) - x0: min(gw, x1) - x0] = \
            mask[max(0, y0): min(gh, y1), max(0, x0): min(gw, x1)]
        self.mask = mask_p[inner]
        # The source's face mesh at k, triangulated, plus anchors on a box around everything that move with the
        # head (a similarity fit), so that hair, a hat or glasses' temples are carried too.
        flat = q.reshape(-1, 2)
        box_lo = np.minimum(flat.min(0), pts[:, :2].min(0)) - span
        box_hi = np.maximum(flat.max(0), pts[:, :2].max(0)) + span
        t = np.linspace(0, 1, 5)[:-1]
        edges = [np.stack([box_lo[0] + (box_hi[0] - box_lo[0]) * t, np.full_like(t, box_lo[1])], 1),
                 np.stack([np.full_like(t, box_hi[0]), box_lo[1] + (box_hi[1] - box_lo[1]) * t], 1),
                 np.stack([box_hi[0] - (box_hi[0] - box_lo[0]) * t, np.full_like(t, box_hi[1])], 1),
                 np.stack([np.full_like(t, box_lo[0]), box_hi[1] - (box_hi[1] - box_lo[1]) * t], 1)]
        self.anchors = np.concatenate(edges)
        self.pts_k = pts[:468, :2].astype(np.float64)
        verts = np.concatenate([self.pts_k, self.anchors])
        tris = _triangles(verts)
        # Each patch pixel: its triangle (painted in patch coordinates) and barycentric weights.
        grid_v = (verts - lo) * self.scale - [x0, y0]
        owner = np.full(self.shape, -1, np.int32)
        for i, tr in enumerate(tris):
            cv2.fillConvexPoly(owner, np.round(grid_v[tr] * 16).astype(np.int32), i, cv2.LINE_8, shift=4)
        if (owner < 0).any():  # a pixel on an edge no triangle claimed: its neighbour's triangle fits it
            _, nearest = cv2.distanceTransformWithLabels((owner < 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                         labelType=cv2.DIST_LABEL_PIXEL)
            claimed = owner[owner >= 0]
            lut = np.zeros(nearest.max() + 1, np.int32)
            lut[nearest[owner >= 0]] = claimed
            owner = np.where(owner >= 0, owner, lut[nearest])
        tri_idx = tris[owner.reshape(-1)]  # (n, 3)
        a, b, c = (verts[tri_idx[:, j]] for j in range(3))
        v0, v1, v2 = b - a, c - a, flat - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-12, 1e-12, den)
        l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        # Mapped exactly on every 4th row and column, linearly in between (two small matrix products): the map is
        # piecewise linear at the scale of the mesh's triangles, which are several grid steps wide.
        rows, cols = _coarse(self.shape[0]), _coarse(self.shape[1])
        on_grid = (rows[:, None] * self.shape[1] + cols[None, :]).reshape(-1)
        self.bary = [np.ascontiguousarray(x[on_grid], dtype=np.float32)[:, None] for x in (1 - l1 - l2, l1, l2)]
        self.tri_idx = [np.ascontiguousarray(tri_idx[on_grid, j]) for j in range(3)]
        self.interp_rows, self.interp_cols = _linear(rows, self.shape[0]), _linear(cols, self.shape[1])
        self.coarse_shape = (len(rows), len(cols))
        # The edit's change and the face part each changed pixel belongs to.
        s_k, e_k = self.sample(source, pts), self.sample(edited, pts)
        self.delta = (_blur(e_k.astype(np.float32)) - _blur(s_k.astype(np.float32)))[inner]
        # Face parts painted at the patch's own scale (a full-size label image would cost more than everything else).
        ls = (int(np.ceil(h * self.scale)) + 1, int(np.ceil(w * self.scale)) + 1)
        pts_s = pts.copy()
        pts_s[:, :2] *= self.scale
        labels = fp.part_labels(ls, pts_s)
        li = labels[np.clip(np.round(q[..., 1] * self.scale).astype(int), 0, ls[0] - 1),
                    np.clip(np.round(q[..., 0] * self.scale).astype(int), 0, ls[1] - 1)][inner]
        energy = (self.delta ** 2).sum(-1) * self.mask
        total = float(energy.sum())
        self.templates: dict[str, tuple[np.ndarray, float]] = {}
        self.shares: dict[str, float] = {}
        for i, name in enumerate(fp.PART_NAMES):
            e = float(energy[li == i].sum())
            if e > 0:
                sel = (li == i) & self.mask
                self.templates[name] = (np.ascontiguousarray(self.delta * sel[..., None]), e)
                self.shares[name] = e / total
        self.ok = total > 0

    def positions(self, pts: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y): where the patch's pixels are in a frame whose face has landmarks `pts`, × `scale` (for a
        result of another size than the source)."""
        m = _similarity(self.pts_k[_STABLE], pts[_STABLE, :2])
        anchors = self.anchors @ m[:, :2].T + m[:, 2]
        verts = np.concatenate([pts[:468, :2], anchors]).astype(np.float32)
        xy = sum(b * verts[i] for b, i in zip(self.bary, self.tri_idx))  # barycentric, on the coarse grid
        out = []
        for d in (0, 1):
            c = xy[:, d].reshape(self.coarse_shape) * np.float32(scale[d])
            out.append(np.ascontiguousarray(self.interp_rows @ c @ self.interp_cols.T))
        return out[0], out[1]

    def sample(self, frame, pts: np.ndarray, k: int | None = None, positions=None) -> np.ndarray:
        """The patch of `frame` (an array or lazy frame) where the edit sits when its face has landmarks `pts`, read
        from the frame shrunk by k (default: by the face's size)."""
        mx, my = self.positions(pts) if positions is None else positions
        return sample_at(frame, mx, my, _reduce_factor(fp.eye_span(pts)) if k is None else k)

    def score(self, source_patch: np.ndarray, result_patch: np.ndarray,
              low: float = 0.5) -> tuple[float, dict[str, tuple[float, bool]]]:
        """(kept of the whole edit, {part: (kept, slid off)}) for one frame's patches; the search for a slid edit
        runs only where a part is kept less than `low`."""
        import cv2

        diff = _blur(result_patch.astype(np.float32)) - _blur(source_patch.astype(np.float32))
        m, tol = self.margin, TOLERANCE_PX
        near_diff = diff[m - tol: diff.shape[0] - m + tol, m - tol: diff.shape[1] - m + tol]

        parts, sums, total = {}, 0.0, 0.0
        for name, (template, energy) in self.templates.items():
            # Σ⟨diff shifted, D⟩ at every shift within the tolerance (matchTemplate's plain correlation, channels
            # summed), / Σ|D|²: the share of this part's change that is there.
            num = cv2.matchTemplate(near_diff, template, cv2.TM_CCORR)
            sums, total = sums + num, total + energy
            near = float(num.max()) / energy
            slid = False
            if near < low and self.shares[name] >= MIN_PART_SHARE:
                far = float(cv2.matchTemplate(diff, template, cv2.TM_CCORR).max()) / energy
                slid = far >= SLID_KEPT and far > near + 0.25
            parts[name] = (near, slid)
        return float(np.max(sums)) / total, parts
