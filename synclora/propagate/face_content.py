"""What the edit does to the face it covers, and what the user reads about the face guidance.

Where the edit hides what was there (a mask, dark lenses, a beard), the preview carries the edited frame's pixels
along the face's map; where it recolours (make-up, a tint), the change. `content_weight` tells the two apart per pixel
with the sync report's evidence (`face.hidden`) and names the parts of the face that fall on each side; `notices`
turns the facts of every segment's guide and these names into the sentences listed under the result.
"""

from __future__ import annotations

import numpy as np

from synclora.face import parts as fp
from synclora.propagate.face_guide import FaceGuide


def content_weight(guide: FaceGuide | None, source: np.ndarray, edited: np.ndarray,
                   touched: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """Where the edit hides what was there (0..1 per pixel of frame 0; None: nowhere) and, for the notices, which parts
    of the face it carries as content and which as colour.

    The evidence is the sync report's (`face.hidden`): how much of the source's structure the edited frame still shows,
    over a window a quarter of the face's eye span wide around each pixel. Where it hides (a mask, dark lenses, a
    beard), the preview carries the edited frame's pixels along the map, so the mouth opening or the eyes' whites
    beneath never show, and the mesh's hole strips stretch it over an opening wider than frame 0's; where it recolours
    (make-up, a tint), the change, re-applied to what each frame shows. `guide`: the faces the edit touches (their eye
    span sets the window; None or none: the frame's size does)."""
    from synclora.face.hidden import hidden_map

    faces = guide.tracks if guide is not None else []
    hidden = hidden_map(source, edited, touched, min(tr.size for tr in faces) if faces else None)
    if hidden is None:
        return None, {}
    edit = touched > 0.5
    if not faces:
        return hidden, {"content": ["edit"] if float((hidden[edit] > 0.5).mean()) > 0.5 else [], "colour": []}
    labels = np.full(edit.shape, -1, np.int8)
    for tr in faces:
        lab = fp.part_labels(edit.shape, tr.ref)
        labels = np.where(labels < 0, lab, labels)
    total = max(1, int(edit.sum()))
    content, colour = [], []
    for i, name in enumerate(fp.PART_NAMES):
        on = edit & (labels == i)
        if on.sum() >= _PART_SHARE * total:
            (content if float((hidden[on] > 0.5).mean()) >= 0.5 else colour).append(name)
    return hidden, {"content": content, "colour": colour}


_PART_SHARE = 0.08  # parts holding less of the edit than this are not named


def _names(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _content_notice(facts: list[dict]) -> list[str]:
    content = [p for p in fp.PART_NAMES if any(p in f.get("content", ()) for f in facts)]
    colour = [p for p in fp.PART_NAMES if p not in content and any(p in f.get("colour", ()) for f in facts)]
    if any("edit" in f.get("content", ()) for f in facts):
        return ["The preview carries the edit as drawn where it hides what was there, so the motion beneath it does "
                "not show through."]
    if not content:
        return []
    line = (f"The preview carries the edit over the {_names(content)} as drawn: it hides what was there, so that "
            "part's own motion does not show through.")
    if colour:
        line += f" Over the {_names(colour)} it carries the change of colour, and the source moves beneath it."
    return [line]


def notices(facts: list[dict]) -> list[str]:
    """What the user should know about face guidance over a whole propagation (all its segments)."""
    facts = [f for f in facts if f]
    extra = _content_notice(facts)
    facts = [f for f in facts if "frames" in f]
    if not facts:
        return extra
    frames = sum(f["frames"] for f in facts)
    faces = max(f["faces"] for f in facts)
    found = max(f["found"] for f in facts)
    seen = max(f["seen"] for f in facts)
    lost = sum(f["lost"] for f in facts)
    if not seen:
        return [("No face was found in the clip: the preview cannot follow a face (optical flow alone carries the "
                 "edit) and lip sync cannot be judged."), *extra]
    if not found:
        return [("No face was found in the edited frame, so the preview cannot follow the face seen elsewhere in the "
                 "clip: optical flow alone carries the edit."), *extra]
    out = []
    if faces > 1:
        out.append(f"{faces} faces are followed by their landmarks.")
    if lost:
        what = "a face" if faces > 1 else "the face"
        out.append(f"The face tracker lost {what} in {lost} of {frames} frames; optical flow alone carried the edit "
                   "there.")
    return out + extra
