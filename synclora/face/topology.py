"""The face mesh as a surface of triangles, and the geometry the preview's face guidance draws with it.

MediaPipe's tessellation gives edges; the triangles are recovered from them, oriented consistently, and the mesh's
three holes (the mouth's opening and the eyes') get strips of triangles of their own, so a change inside an opening
travels apart from the skin around it. Here too: the triangles drawn as an id per pixel (nearer over farther, those
facing away left out), one affine map per triangle (the piecewise-affine map between two sets of landmarks) and soft
masks of polygons drawn from landmarks. The tracking and the steering of the flow are `propagate.face_guide`'s.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from synclora.face import parts as fp

# Holes of the mesh, the mouth's opening and the eyes', as (upper, lower) sides from one corner to the other, and
# their outlines in order.
HOLES = tuple(fp.sides(ring) for ring in (fp.LIPS_INNER, fp.RIGHT_EYE, fp.LEFT_EYE))
HOLE_RINGS = tuple(np.array(ring) for ring in (fp.LIPS_INNER, fp.RIGHT_EYE, fp.LEFT_EYE))
OUTLINE = np.array(fp.FACE_OVAL)  # the mesh's outline, in order

SURFACE, HOLE = 0, 1


@dataclass(frozen=True)
class Topology:
    tris: np.ndarray  # (K, 3) vertex indices, consistently oriented over the surface
    kind: np.ndarray  # (K,) SURFACE or HOLE
    ring: np.ndarray  # (K, K) bool: triangles sharing a vertex
    near: np.ndarray  # (K, K) bool: triangles within two vertex-rings of each other (visibility test)
    near_surface: np.ndarray  # (K, K) bool: near, and every hole triangle's row True (holes are not judged)


@lru_cache(maxsize=1)
def topology() -> Topology:
    """The mesh triangles (from MediaPipe's tessellation edges) plus triangle strips over the three holes."""
    edges = fp.tessellation()
    nb: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        nb[a].add(b)
        nb[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in nb[a] & nb[b]}
    use: dict[tuple[int, int], int] = defaultdict(int)
    for t in cliques:
        for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])):
            use[e] += 1
    # A 3-cycle whose every edge borders three "triangles" encloses other triangles: it is not a face of the mesh.
    faces = [t for t in cliques if not all(use[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    faces = _orient(sorted(faces))
    holes = []
    for up, lo in HOLES:
        for i in range(len(up) - 1):
            for tri in ((up[i], up[i + 1], lo[i + 1]), (up[i], lo[i + 1], lo[i])):
                if len(set(tri)) == 3:
                    holes.append(tri)
    tris = np.array(faces + holes, np.int32)
    kind = np.array([SURFACE] * len(faces) + [HOLE] * len(holes), np.int8)
    inc = np.zeros((len(tris), 478), np.float32)
    inc[np.repeat(np.arange(len(tris)), 3), tris.ravel()] = 1
    ring = (inc @ inc.T) > 0  # share a vertex
    near = (ring.astype(np.float32) @ ring.astype(np.float32)) > 0
    near_surface = near | (kind != SURFACE)[:, None]  # hole triangles are never "hidden" (the holes carry their own)
    return Topology(tris=tris, kind=kind, ring=ring, near=near, near_surface=near_surface)


def _orient(faces: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Order each triangle's vertices so neighbours run their shared edge in opposite directions."""
    by_edge: dict[frozenset, list[int]] = defaultdict(list)
    for i, t in enumerate(faces):
        for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge[frozenset(e)].append(i)
    out: list[tuple[int, int, int] | None] = [None] * len(faces)
    for seed in range(len(faces)):
        if out[seed] is not None:
            continue
        out[seed] = faces[seed]
        stack = [seed]
        while stack:
            i = stack.pop()
            a, b, c = out[i]
            for u, v in ((a, b), (b, c), (c, a)):
                for j in by_edge[frozenset((u, v))]:
                    if out[j] is not None:
                        continue
                    w = next(x for x in faces[j] if x not in (u, v))
                    out[j] = (v, u, w)  # the shared edge runs v -> u in the neighbour
                    stack.append(j)
    return out  # type: ignore[return-value]


def triangle_affines(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(K, 2, 3) affine maps taking each triangle `src[k]` (3, 2) onto `dst[k]`; degenerate ones get identity."""
    e1, e2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    f1, f2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-6
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # linear part [f1 f2] @ inverse([e1 e2]), written out
    aff = np.empty((len(src), 2, 3), np.float64)
    aff[:, :, 0] = (f1 * e2[:, 1:2] - f2 * e1[:, 1:2]) * inv[:, None]
    aff[:, :, 1] = (f2 * e1[:, 0:1] - f1 * e2[:, 0:1]) * inv[:, None]
    aff[:, :, 2] = dst[:, 0] - np.einsum("kij,kj->ki", aff[:, :, :2], src[:, 0])
    aff[~ok] = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
    return aff.astype(np.float32)


def fill_polygons(polys: list[np.ndarray], box: tuple[int, int, int, int], grow: int = 0) -> np.ndarray | None:
    """Anti-aliased union of polygons over `box` (x0, y0, x1, y1), grown (shrunk if < 0) by `grow` px, as float32
    0..1, or None when empty."""
    x0, y0, x1, y1 = box
    if not polys:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    q = [np.round((p - (x0, y0)) * 16).astype(np.int32) for p in polys]
    cv2.fillPoly(mask, q, 255, cv2.LINE_AA, 4)
    if not mask.any():
        return None
    if grow:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1, 2 * abs(grow) + 1))
        mask = cv2.dilate(mask, disk) if grow > 0 else cv2.erode(mask, disk)
    return mask.astype(np.float32) * (1 / 255.0)


def visible(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(triangle ids to draw, in far-to-near order; all triangles' 2-D corners; all triangles' depths) for
    landmarks `p` (pixels)."""
    top = topology()
    corners = p[top.tris, :2]  # (K, 3, 2)
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    surf = top.kind == SURFACE
    front = np.sign(area[surf].sum()) or 1.0
    draw = np.where(surf, area * front > 1e-3, np.abs(area) > 1e-3)
    ids = np.flatnonzero(draw)
    depth = p[:, 2][top.tris].mean(1)
    return ids[np.argsort(-depth[ids], kind="stable")], corners, depth  # MediaPipe's z grows away from the camera


def raster(p: np.ndarray, size: tuple[int, int],
           active: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Triangle id per pixel of a `size` = (w, h) image over the box of the (active) triangles of landmarks `p`, and
    the box's offset; -1 off the face and on triangles that are not active. Each active triangle is one drawing call,
    nearer over farther; the inactive ones nearer than the active ones' median depth are then one call over them, so
    they still hide what they hide (a nose over a cheek) at the cost of a wrong pixel where they merely touch."""
    fw, fh = size
    order, corners, depth = visible(p)
    on = order if active is None else order[active[order]]
    span = corners[on].reshape(-1, 2) if len(on) else p[:, :2]
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in span.min(0))
    x1, y1 = min(fw, int(np.ceil(span[:, 0].max())) + 2), min(fh, int(np.ceil(span[:, 1].max())) + 2)
    ids = np.full((max(0, y1 - y0), max(0, x1 - x0)), -1, np.int32)
    if not ids.size or not len(on):
        return ids, (x0, y0)
    q = np.round((corners - (x0, y0)) * 16).astype(np.int32)
    for k, poly in zip(on.tolist(), q[on]):
        cv2.fillConvexPoly(ids, poly, k, cv2.LINE_8, 4)
    if active is not None:
        off = order[~active[order]]  # drawn (facing the camera) and not active
        near = off[depth[off] < np.median(depth[on])]
        lo, hi = q[near].min(1), q[near].max(1)  # only those that reach into the box
        near = near[(hi >= 0).all(1) & (lo[:, 0] < 16 * ids.shape[1]) & (lo[:, 1] < 16 * ids.shape[0])]
        if len(near):
            cv2.fillPoly(ids, list(q[near]), -1, cv2.LINE_8, 4)
    return ids, (x0, y0)
