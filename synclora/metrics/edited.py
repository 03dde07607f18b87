"""The edited frame against its source: which frame it was made from, lined back up, and what it hides.

A visitor's edited frame comes from an image editor: it may be resized, shifted as a whole, or come without the
index of the frame it was made from. Before the report can say what the edit hides (`occlusion`) and how much of it
each result frame keeps (`kept`), the frame is found (`find_edit_index`), brought to the video's size and shifted
back onto its source frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synclora.errors import InputError
from synclora.video.frames import Frames


def load_reference(edited_frame) -> np.ndarray:
    """The edited frame from a path or an (H, W, 3) uint8 array."""
    if isinstance(edited_frame, (str, Path)):
        from synclora.edit.image import load_image

        return load_image(edited_frame)[0]
    arr = np.asarray(edited_frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"the edited frame must be an (H, W, 3) uint8 image, got shape {arr.shape}, dtype {arr.dtype}")
    return arr


def find_edit_index(source, edited: np.ndarray, *, thumb: int = 96, fine: int = 320, candidates: int = 5) -> int:
    """The source frame the edited frame was made from, for when nobody said which frame was edited
    (`edit.match.EditMatch` over every frame)."""
    from synclora.edit.match import EditMatch

    match = EditMatch(edited, thumb=thumb, fine=fine, candidates=candidates)
    source = Frames.of(source)
    if source.path is not None:
        k = match.scale(source.size)
        frames = (f.reduced(k) for f in source.lazy())
    else:
        frames = source.lazy()
    for i, f in enumerate(frames):
        match.add(i, f)
    best = match.best()
    if best is None:
        raise InputError("the source has no frames")
    return best


def _fit_edited(edited: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The edited frame at the video's frame size (resized when only the scale differs), or None and why not."""
    import cv2

    h, w = edited.shape[:2]
    if (w, h) == size:
        return edited, ""
    if abs(w / h - size[0] / size[1]) > 0.02 * size[0] / size[1]:
        return None, (f"the edited frame is {w}×{h} but the video's frames are {size[0]}×{size[1]}; what the edit "
                      "hides and keeps is not measured")
    return cv2.resize(edited, size, interpolation=cv2.INTER_AREA if w > size[0] else cv2.INTER_CUBIC), ""


def _register(source: np.ndarray, edited: np.ndarray, side: int = 512) -> tuple[np.ndarray, float]:
    """The edited frame shifted back onto the source frame when an image editor moved it as a whole (phase
    correlation of the two frames: the unchanged majority of the picture decides, the edit itself does not), and the
    shift in px. Without this a 2-px shift reads as an edit all along every edge. Pixels shifted in from outside are
    the source's. Rotation or rescaling by an editor is not undone."""
    import cv2

    h, w = source.shape[:2]
    s = min(1.0, side / max(h, w))
    size = (max(8, round(w * s)), max(8, round(h * s)))
    a, b = (cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)
            for x in (source, edited))
    (dx, dy), response = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(size, cv2.CV_32F))
    dx, dy = dx / s, dy / s
    off = float(np.hypot(dx, dy))
    if response < 0.1 or off < 0.5 or off > 0.05 * max(h, w):
        return edited, 0.0 if response < 0.1 or off > 0.05 * max(h, w) else off
    out = source.copy()
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    cv2.warpAffine(edited, m, (w, h), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    return out, off


def analyse_edit(source, result, edited: np.ndarray | None, edit_index: int | None, n_source: int):
    """(EditRegions or None, EditProbe or None, notes): what the edit at the edit index hides, and where it is.

    `source`, `result`: paths, arrays or `Frames` (`result` None while it is being made). The edited frame is
    `edited`, or — without one — the result's own frame at `edit_index` (a pair folder without edit.png). Without an
    edit index the best-matching source frame is used (and said).
    """
    from synclora.face.mesh import FaceMeshTracker
    from synclora.metrics.kept import EditProbe
    from synclora.metrics.occlusion import analyse_regions

    source = Frames.of(source)
    notes: list[str] = []
    index_from = "given"
    if edit_index is None:
        if edited is None:
            return None, None, notes
        edit_index, index_from = find_edit_index(source, edited), "matched"
        notes.append(f"the edit index was not given; source frame {edit_index} matches the edited frame best")
    edit_index = int(edit_index)
    if not 0 <= edit_index < n_source:
        raise InputError(f"the edit index {edit_index} is outside the source (frames 0 to {n_source - 1})")
    if edited is None:
        edited = Frames.of(result).frame(edit_index)
        index_from = "result frame"
    edited, why = _fit_edited(edited, source.size)
    if edited is None:
        return None, None, [*notes, why]
    frame = source.frame(edit_index)
    with FaceMeshTracker(static=True) as tracker:
        pts = tracker.landmarks(frame)
        pts_edited = tracker.landmarks(edited) if pts is not None else None
    if pts is None:
        return None, None, [*notes, f"no face in source frame {edit_index} (the edit index): what the edit hides "
                                    "and keeps is not measured"]
    edited, off = _register(frame, edited)
    if off >= 1.0:
        notes.append(f"the edited frame is shifted {off:.1f} px against the source frame (an image editor moved "
                     "it); it was shifted back before comparing")
    regions = analyse_regions(frame, edited, pts, pts_edited, edit_index=edit_index, index_from=index_from)
    probe = EditProbe(frame, edited, pts, edit_index)
    if not probe.ok:
        notes.append(probe.note)
        probe = None
    return regions, probe, notes
