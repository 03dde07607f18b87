"""Named parts of MediaPipe's 478-point face mesh: ordered outlines, the cue each part carries, masks in pixels.

One table for everything that needs to know "where on the face": the edit analysis (which cue regions an edit hides),
the edit-kept score (which part an edit sits on), the landmark view (what to grey out), the preview's face guidance
(the mesh's openings and outline) and the test media (where to draw sunglasses or lipstick). left/right are the
subject's own, as in `metrics.landmarks.CUE_NAMES`.
"""

from __future__ import annotations

import numpy as np

# Closed outlines, in order around each part.
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
RIGHT_IRIS = (469, 470, 471, 472)
LEFT_IRIS = (474, 475, 476, 477)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64)
NOSE_TIP, NOSE_BRIDGE, FOREHEAD, CHIN = 1, 168, 10, 152
MOUTH_CORNERS = (61, 291)  # the subject's right corner, then the left
LIP_TOP, LIP_BOTTOM = 13, 14  # the middle of the upper and the lower lip's inner edge
# How open each opening (the mouth, the right eye, the left eye) is: (upper, lower) landmark pairs whose mean distance
# says it.
OPENINGS = (((13, 14), (82, 87), (312, 317)), ((159, 145), (158, 153), (160, 144)),
            ((386, 374), (385, 380), (387, 373)))


def tessellation() -> set[tuple[int, int]]:
    """The mesh's edges (MediaPipe's tessellation), each as (lower index, higher index)."""
    from synclora.face.mesh import mediapipe

    mediapipe()  # the package first, without what it need not load
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return {tuple(sorted(e)) for e in FACEMESH_TESSELATION}


def sides(ring: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """An opening's outline (`LIPS_INNER`, `RIGHT_EYE`, `LEFT_EYE`: from one corner over the top to the other corner,
    half-way round, then back underneath) split into its upper and lower sides, each from the first corner to the
    other."""
    corner = len(ring) // 2
    return ring[: corner + 1], (ring[0], *ring[:corner:-1], ring[corner])

# Cue regions: what the landmarker reads for each cue (the eye with its iris and lids, the lips, the face for pose).
REGIONS: tuple[str, ...] = ("left_eye", "right_eye", "mouth", "face")
CUE_REGION: dict[str, str] = {
    "yaw": "face",
    "pitch": "face",
    "roll": "face",
    "mouth": "mouth",
    "left_eye": "left_eye",
    "right_eye": "right_eye",
    "gaze_x": "eyes",  # both eyes' irises, averaged; one hidden eye leaves the other's gaze
    "gaze_y": "eyes",
}
REGION_LABEL = {"left_eye": "left eye", "right_eye": "right eye", "mouth": "mouth", "face": "face (pose)"}


def eye_span(pts: np.ndarray) -> float:
    """Outer-eye-corner distance in the image plane: the face's own length unit."""
    return float(np.linalg.norm(pts[RIGHT_EYE[0], :2] - pts[LEFT_EYE[0], :2]))


def polygon_mask(shape: tuple[int, int], pts: np.ndarray, ring, *, grow: float = 0.0) -> np.ndarray:
    """uint8 mask (0/255) of the outline `ring` of `pts` (pixels), grown by `grow` pixels (negative shrinks)."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    poly = np.round(pts[list(ring), :2] * 4).astype(np.int32)  # 2 fractional bits: sub-pixel outlines
    cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, shift=2)
    r = int(round(abs(grow)))
    if r:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = cv2.dilate(mask, k) if grow > 0 else cv2.erode(mask, k)
    return mask


def region_masks(shape: tuple[int, int], pts: np.ndarray) -> dict[str, np.ndarray]:
    """Masks (0/255) of the cue regions in an image of `shape` whose face has landmarks `pts`.

    An eye region is the eye opening grown by a quarter of the eye span's eye width upwards and sideways (the lids
    and lashes the landmarker reads for blinks) — not the brows; the mouth is the outer lip line grown a little; the
    face is the face oval.
    """
    span = eye_span(pts)
    out = {}
    for name, ring in (("left_eye", LEFT_EYE), ("right_eye", RIGHT_EYE)):
        out[name] = polygon_mask(shape, pts, ring, grow=0.08 * span)
    out["mouth"] = polygon_mask(shape, pts, LIPS_OUTER, grow=0.05 * span)
    out["face"] = polygon_mask(shape, pts, FACE_OVAL)
    return out


# Parts an edit can sit on, for naming what faded ("the edit on the lips faded on frames 61–74").
PART_NAMES: tuple[str, ...] = ("lips", "eyes", "nose", "forehead", "cheeks", "chin", "hair and surroundings")


def part_labels(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """(H, W) int8 map: index into PART_NAMES for every pixel (painted from the landmarks)."""
    import cv2

    h, w = shape
    span = eye_span(pts)
    lab = np.full(shape, PART_NAMES.index("hair and surroundings"), np.int8)
    oval = polygon_mask(shape, pts, FACE_OVAL) > 0
    yy = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    # Inside the face: above the brows is forehead, below the mouth corners is chin, the rest cheeks ...
    brow_y = float(np.mean(pts[list(RIGHT_BROW + LEFT_BROW), 1]))
    mouth_y = float(np.mean(pts[list(MOUTH_CORNERS), 1]))
    face = np.where(yy < brow_y, PART_NAMES.index("forehead"),
                    np.where(yy > mouth_y + 0.1 * span, PART_NAMES.index("chin"), PART_NAMES.index("cheeks")))
    lab[oval] = face[oval].astype(np.int8)
    # ... then the features on top: nose, eyes with lids and brows, lips.
    nose = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(pts[list(NOSE), :2]).astype(np.int32))
    cv2.fillConvexPoly(nose, hull, 255)
    lab[nose > 0] = PART_NAMES.index("nose")
    for eye, brow in ((LEFT_EYE, LEFT_BROW), (RIGHT_EYE, RIGHT_BROW)):
        m = np.zeros(shape, np.uint8)
        hull = cv2.convexHull(np.round(pts[list(eye + brow), :2]).astype(np.int32))
        cv2.fillConvexPoly(m, hull, 255)
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(0.1 * span) + 1,) * 2))
        lab[m > 0] = PART_NAMES.index("eyes")
    lab[polygon_mask(shape, pts, LIPS_OUTER, grow=0.06 * span) > 0] = PART_NAMES.index("lips")
    return lab
