"""The verdict: two cue tracks of the same frames in, a `SyncReport` out — pure numbers, no model runs here.

Curation calls `score_tracks` in bulk on cached tracks; the report tap calls it once its tracks are complete. The
rules (which cues count, what is out of sync, frozen, lost or faded) are the thresholds of `metrics.scores`.
"""

from __future__ import annotations

import numpy as np

from synclora.errors import InputError
from synclora.face import parts as fp
from synclora.metrics.identity import IdentityScore
from synclora.metrics.kept import EditKept
from synclora.metrics.landmarks import CUE_NAMES, CueTrack
from synclora.metrics.occlusion import EditRegions, hidden_cues
from synclora.metrics.report import FaceCoverage, SyncReport
from synclora.metrics.scores import (
    CUE_GROUPS,
    SyncThresholds,
    blink_events,
    eye_openness,
    fmt,
    match_blinks,
    overall_lag,
    score_cue,
    shut_frames,
)


def score_tracks(
    src: CueTrack,
    res: CueTrack,
    max_lag: int = 5,
    *,
    thresholds: SyncThresholds | None = None,
    identity: IdentityScore | None = None,
    edit: EditRegions | None = None,
    kept: EditKept | None = None,
) -> SyncReport:
    """Score two cue tracks of the same length. Pure numbers: no model runs here (curation calls this in bulk).

    `edit` says which cue regions the edit hides: those cues are scored and kept in the report but left out of the
    verdict, the overall lag and score, and the blink events (one hidden eye: blinks and gaze from the other).
    `kept` adds the edit-kept problems (faded / slid off) to the verdict.
    """
    th = thresholds or SyncThresholds()
    if len(src) != len(res):
        raise InputError(f"source has {len(src)} frames and result {len(res)}; sync needs the same frame count")
    if max_lag < 0:
        raise InputError(f"max_lag must be ≥ 0, got {max_lag}")
    n = len(src)
    max_lag = min(max_lag, max(0, n - th.min_frames))
    hidden_regions = edit.hidden if edit is not None else set()
    hidden = hidden_cues(hidden_regions)
    eyes_hidden = {"left_eye", "right_eye"} & hidden_regions
    blink_eyes = [e for e in ("left_eye", "right_eye") if e not in eyes_hidden] or ["left_eye", "right_eye"]

    def openness(track: CueTrack) -> np.ndarray:
        nan = np.full(len(track), np.nan)
        return eye_openness(*(track.cues[e] if e in blink_eyes else nan for e in ("left_eye", "right_eye")))

    open_src, open_res = openness(src), openness(res)
    cues, curves = {}, {}
    for name in CUE_NAMES:
        a, b = src.cues[name], res.cues[name]
        if name.startswith("gaze"):
            if len(eyes_hidden) == 1:
                # One eye hidden: the other eye's own gaze, where the tracks have it.
                seen = "left" if "right_eye" in eyes_hidden else "right"
                key = f"{seen}_{name}"
                if key in src.cues and key in res.cues:
                    a, b = src.cues[key], res.cues[key]
            # The iris is hidden while the eyes are shut; its landmark then says nothing about gaze.
            a = np.where(shut_frames(open_src, th.blink_ratio), np.nan, a)
            b = np.where(shut_frames(open_res, th.blink_ratio), np.nan, b)
        score, curve = score_cue(name, a, b, max_lag, th)
        score.hidden = name in hidden
        cues[name] = score
        if score.active and not score.frozen and not score.hidden:  # a still curve's r(lag) is jitter
            curves[name] = curve
    lag, _ = overall_lag(curves, max_lag, th.lag_gain)
    active = [s for s in cues.values() if s.active and not s.hidden and s.corr is not None and np.isfinite(s.corr)]
    corr = float(np.mean([s.corr for s in active])) if active else None

    blinks = match_blinks(
        blink_events(open_src, th.blink_ratio, th.blink_tolerance),  # closer than the matching can tell apart
        blink_events(open_res, th.blink_ratio, th.blink_tolerance),
        lag,
        th.blink_tolerance,
    )
    blinks.judged = len(eyes_hidden) < 2
    faces = FaceCoverage(
        n_frames=n,
        source_missing=[int(i) for i in np.flatnonzero(~src.face)],
        result_missing=[int(i) for i in np.flatnonzero(~res.face)],
        lost=[int(i) for i in np.flatnonzero(src.face & ~res.face)],
    )
    problems = _problems(cues, lag, blinks, identity, faces, src, res, th)
    notes = list(src.notes) + [f"result: {x}" for x in res.notes]
    if edit is not None:
        notes += [f"edited frame: {x}" for x in edit.notes]
    if kept is not None:
        notes += list(kept.notes)
    moving = [nm for nm, s in cues.items() if s.active]
    judged = [nm for nm in moving if not cues[nm].hidden]
    if not moving and src.face.any():
        notes.append("the source barely moves: no cue moves more than the landmarker's jitter, so sync is not judged")
    if identity is not None and identity.sample_every > 1:
        notes.append(f"identity compared on every {identity.sample_every}. face frame ({len(identity.frames)} frames)")
    edit_problems = kept.problems(th.min_edit_kept, th.edit_min_run) if kept is not None else []
    hidden_text = _hidden_text(hidden_regions)
    if moving and not judged and src.face.any() and res.face.any():
        # Every moving cue is behind the edit: say so instead of passing or failing.
        in_sync = None
        sync = f"sync not judged: the edit hides everything that moves ({hidden_text})"
        verdict = "; ".join([sync] + problems + edit_problems)
    else:
        in_sync = not problems
        if problems:
            verdict = "; ".join(problems + edit_problems)
        else:
            detail = [] if corr is None else [f"mean r {corr:.2f} over {len(active)} moving cues"]
            if hidden_text:
                verb = "are" if " and " in hidden_text or "both" in hidden_text else "is"
                detail.append(f"{hidden_text} {verb} hidden by the edit, not judged")
            verdict = "in sync" + (f" ({'; '.join(detail)})" if detail else "")
            if edit_problems:
                verdict += ", but " + "; ".join(edit_problems)
    return SyncReport(
        cues=cues, blinks=blinks, identity=identity, faces=faces, lag=lag, corr=corr, verdict=verdict,
        in_sync=in_sync, problems=problems + edit_problems, thresholds=th, max_lag=max_lag, notes=notes,
        fps=src.fps, source_track=src, result_track=res, edit=edit, kept=kept, edit_problems=edit_problems,
    )


def _hidden_text(regions: set[str]) -> str:
    """"both eyes", "the mouth", "both eyes and the mouth", ... ('' when nothing is hidden)."""
    parts = []
    if {"left_eye", "right_eye"} <= regions:
        parts.append("both eyes")
    else:
        parts += [f"the {fp.REGION_LABEL[e]}" for e in ("left_eye", "right_eye") if e in regions]
    if "mouth" in regions:
        parts.append("the mouth")
    if "face" in regions:
        parts.append("the face (head pose)")
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _problems(cues, lag, blinks, identity, faces, src, res, th) -> list[str]:
    if not src.face.any():
        return ["no face found in the source"]
    if not res.face.any():
        return ["no face found in the result"]
    both = int((src.face & res.face).sum())
    if both < th.min_frames:
        return [f"too few frames to judge: {both} with a face in both videos (need {th.min_frames})"]
    out = []
    src_faces = int(src.face.sum())
    if len(faces.lost) > th.max_missing_face * src_faces:
        out.append(f"face lost in {len(faces.lost)} of {src_faces} frames")
    if lag > 0:
        out.append(f"lags by {lag} frame{'s' if lag != 1 else ''}")
    elif lag < 0:
        out.append(f"leads by {-lag} frame{'s' if lag != -1 else ''}")
    for group, names in CUE_GROUPS.items():
        act = [n for n in names if cues[n].active and not cues[n].hidden]
        if act and all(cues[n].frozen for n in act):
            out.append(f"{group} frozen")
            continue
        for n in act:
            s = cues[n]
            r = s.corr_at_lag if lag != 0 else s.corr
            if not s.frozen and (r is None or not np.isfinite(r) or r < th.min_corr_for(n)):
                out.append(f"{n} out of sync (r {fmt(r)})")
            elif s.frozen:
                out.append(f"{n} frozen")
    if blinks.judged and blinks.missed:
        out.append(f"{blinks.missed} blink{'s' if blinks.missed != 1 else ''} missed")
    if blinks.judged and blinks.extra:
        out.append(f"{blinks.extra} extra blink{'s' if blinks.extra != 1 else ''}")
    if identity is not None and not identity.same_person:
        out.append(f"identity drifts (face distance {identity.mean_distance:.2f} ≥ {th.max_identity_distance})")
    return out
