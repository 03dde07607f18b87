"""What the edit hid: per cue region, does the edited frame still show what the landmarker reads there?

Sunglasses replace the eyes' structure (lids, lashes, iris) with a dark lens; the landmarker then guesses eyes that
do not blink or look around, and a perfect result would be judged out of sync on them. Lipstick or eye shadow only
change colour: the lip line and the lash line are still there and still move. So, per region (each eye with its iris
and lids, the mouth, the face as a whole for pose), from the source frame and the edited frame at the edit index:

- visible: how much of the source's local structure is still in place, at its contrast, in the edited frame.
  Lightness is compared after removing colour and local brightness and gain (SSIM's structure term on CIE L*,
  weighted by the source's own local contrast so the edges the landmarker reads count most), times the share of
  that contrast left (min(1, σ_edited / σ_source)). A recolour keeps it near 1, a dark lens, a mask, a hand or a
  beard drop it near 0. Small misalignment (generative editors move things by a pixel or two) is searched away.
  (`face.hidden`: the same evidence decides, per pixel, what the CPU preview carries as content or as colour.)
- landmark shift: the landmarker's own points for the region on the edited frame vs the source frame (after a global
  similarity fit), in eye spans — large when it reads something else there.

A region is **hidden** when its visible share is under `hidden_below` (or under `hidden_below_if_moved` while its
landmarks moved by more than `moved_over`); otherwise **recoloured** if its colour changed (mean ΔE more than
`recolour_delta_e` above the median change around the face), else **unchanged**. Hidden cues are measured and drawn
but not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synclora.face import parts as fp
from synclora.face.hidden import ANALYSIS_SPAN, HIDDEN_BELOW, global_shift, shifted, visible_maps

__all__ = ["ANALYSIS_SPAN", "EditRegions", "OcclusionThresholds", "RegionEvidence", "analyse_regions", "hidden_cues"]


@dataclass
class OcclusionThresholds:
    hidden_below: float = HIDDEN_BELOW  # visible share under this: the region is hidden
    hidden_below_if_moved: float = 0.6  # ... or under this while the landmarker moved the region's points
    moved_over: float = 0.08  # landmark shift (eye spans) that counts as "moved"
    face_hidden_below: float = 0.2  # the face (pose) is hidden only when nearly all of it is covered
    recolour_delta_e: float = 3.0  # mean ΔE (CIE76) over the region, above the face's median ΔE: recoloured


@dataclass
class RegionEvidence:
    state: str  # "hidden" | "recoloured" | "unchanged"
    visible: float  # share of the source's local structure still in place in the edited frame (0..1)
    structure: float  # contrast-weighted structure correlation alone (−1..1)
    contrast: float  # share of the source's local contrast left (0..1)
    colour_change: float  # mean ΔE (CIE76) between the frames over the region
    landmark_shift: float | None  # median shift of the region's landmarks, eye spans (None: no face in the edit)

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "visible": round(self.visible, 3),
            "structure": round(self.structure, 3),
            "contrast": round(self.contrast, 3),
            "colour_change": round(self.colour_change, 2),
            "landmark_shift": None if self.landmark_shift is None else round(self.landmark_shift, 4),
        }


@dataclass
class EditRegions:
    """Per cue region, whether the edit at `edit_index` hides it, with the evidence."""

    edit_index: int
    index_from: str  # how the edit index was known: "given", "matched" (best-matching source frame), "pair"
    regions: dict[str, RegionEvidence]
    notes: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> set[str]:
        return {name for name, r in self.regions.items() if r.state == "hidden"}

    def to_dict(self) -> dict:
        return {
            "edit_index": self.edit_index,
            "edit_index_from": self.index_from,
            "hidden": sorted(self.hidden),
            "regions": {name: r.to_dict() for name, r in self.regions.items()},
            "notes": list(self.notes),
        }


def _crop(img: np.ndarray, pts: np.ndarray, box: tuple[int, int, int, int], s: float) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    x0, y0, x1, y1 = box
    part = img[y0:y1, x0:x1]
    size = (max(8, int(round((x1 - x0) * s))), max(8, int(round((y1 - y0) * s))))
    out = cv2.resize(part, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    q = pts[:, :2].copy()
    q[:, 0] = (q[:, 0] - x0) * sx
    q[:, 1] = (q[:, 1] - y0) * sy
    return out, q


def _lab(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity mapping src points onto dst points (Umeyama, no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, sign]) @ vt
    scale = (d * [1.0, sign]).sum() / max(a.var(0).sum(), 1e-12)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


def _landmark_shift(src_pts: np.ndarray, ed_pts: np.ndarray) -> dict[str, float]:
    stable = list(fp.FACE_OVAL) + list(fp.NOSE)
    m = _similarity(ed_pts[stable, :2], src_pts[stable, :2])
    moved = ed_pts[:, :2] @ m[:, :2].T + m[:, 2]
    d = np.linalg.norm(moved - src_pts[:, :2], axis=1) / max(fp.eye_span(src_pts), 1e-6)
    rings = {"left_eye": fp.LEFT_EYE + fp.LEFT_IRIS, "right_eye": fp.RIGHT_EYE + fp.RIGHT_IRIS,
             "mouth": fp.LIPS_OUTER + fp.LIPS_INNER, "face": tuple(range(468))}
    return {name: float(np.median(d[list(idx)])) for name, idx in rings.items()}


def analyse_regions(
    source: np.ndarray,
    edited: np.ndarray,
    source_pts: np.ndarray,
    edited_pts: np.ndarray | None,
    *,
    edit_index: int,
    index_from: str = "given",
    thresholds: OcclusionThresholds | None = None,
) -> EditRegions:
    """Decide hidden / recoloured / unchanged for each cue region (see the module docstring).

    `source`, `edited`: RGB uint8 frames of the same size; `source_pts`/`edited_pts`: their (478, 3) landmarks in
    pixels (`edited_pts` None when the landmarker finds no face in the edited frame).
    """
    th = thresholds or OcclusionThresholds()
    h, w = source.shape[:2]
    span = fp.eye_span(source_pts)
    s = ANALYSIS_SPAN / max(span, 1e-6)
    x0, y0 = source_pts[:, :2].min(0) - 0.3 * span
    x1, y1 = source_pts[:, :2].max(0) + 0.3 * span
    box = (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
    a_rgb, q = _crop(source, source_pts, box, s)
    b_rgb, _ = _crop(edited, source_pts, box, s)
    a_lab, b_lab = _lab(a_rgb), _lab(b_rgb)
    a_l, b_l = np.ascontiguousarray(a_lab[..., 0]), np.ascontiguousarray(b_lab[..., 0])
    gdx, gdy = global_shift(a_l, b_l)
    masks = fp.region_masks(a_l.shape, np.concatenate([q, source_pts[:, 2:]], axis=1))
    # Per shift around the global one: structure maps; each region keeps its best-aligned shift.
    best: dict[str, tuple[float, float, float]] = {}
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            vis, sa, smap, keep = visible_maps(a_l, shifted(b_l, gdx + dx, gdy + dy))
            for name, m in masks.items():
                wgt = sa * (m > 0)
                tot = float(wgt.sum())
                if tot <= 1e-9:
                    continue
                visible = float((wgt * vis).sum() / tot)
                if name not in best or visible > best[name][0]:
                    best[name] = (visible, float((wgt * smap).sum() / tot), float((wgt * keep).sum() / tot))
    de = np.linalg.norm(a_lab - shifted(b_lab, gdx, gdy), axis=-1)
    base_de = float(np.median(de))  # a change everywhere (re-encoding, a generative editor's tone shift) is no recolour
    shifts = _landmark_shift(source_pts, edited_pts) if edited_pts is not None else None
    notes = [] if edited_pts is not None else ["no face found in the edited frame by the landmarker"]
    regions = {}
    for name in fp.REGIONS:
        m = masks[name] > 0
        if name not in best or not m.any():
            regions[name] = RegionEvidence("unchanged", 1.0, 1.0, 1.0, 0.0, None)
            notes.append(f"the {fp.REGION_LABEL[name]} is outside the frame; treated as unchanged")
            continue
        visible, structure, contrast = best[name]
        colour = float(de[m].mean())
        shift = None if shifts is None else shifts[name]
        if name == "face":
            hidden = visible < th.face_hidden_below
        else:
            moved = shift is not None and shift > th.moved_over
            hidden = visible < th.hidden_below or (moved and visible < th.hidden_below_if_moved)
        state = "hidden" if hidden else "recoloured" if colour > th.recolour_delta_e + base_de else "unchanged"
        regions[name] = RegionEvidence(state, visible, structure, contrast, colour, shift)
    return EditRegions(edit_index=edit_index, index_from=index_from, regions=regions, notes=notes)


def hidden_cues(hidden_regions: set[str]) -> set[str]:
    """Cue names that a set of hidden regions takes out of the judgement (gaze only when both eyes are hidden;
    with one eye hidden the other eye's gaze is used instead)."""
    out = {cue for cue, region in fp.CUE_REGION.items() if region in hidden_regions}
    if {"left_eye", "right_eye"} <= hidden_regions:
        out |= {"gaze_x", "gaze_y"}
    return out
