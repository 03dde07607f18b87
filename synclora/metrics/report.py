"""Sync report: how well a result follows its source, cue by cue, with one sentence a person can read.

The paper claims frame-accurate sync but publishes no numbers; this is the team's own measure (not a reproduction):
per-cue Pearson r of the curves at lag 0, the lag in ±max_lag that maximises r, blinks matched as events, identity
against the edited frame, and frames without a face counted and listed.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synclora.errors import InputError
from synclora.metrics.identity import IdentityScore
from synclora.metrics.landmarks import CUE_NAMES, CUE_UNITS, CueTrack, ProgressFn, extract_cues
from synclora.metrics.scores import (
    CUE_GROUPS,
    BlinkScore,
    CueScore,
    SyncThresholds,
    blink_events,
    eye_openness,
    match_blinks,
    overall_lag,
    runs,
    score_cue,
    shut_frames,
    zscore,
)

# Identity compares at most this many result frames, evenly spaced: dlib's ResNet descriptor (dlib-bin has no BLAS)
# costs ~85 CPU-ms a face, as much as ~17 frames of cue extraction, and identity drifts slowly.
IDENTITY_MAX_FRAMES = 8


@dataclass
class FaceCoverage:
    n_frames: int
    source_missing: list[int]  # frames without a face in the source
    result_missing: list[int]
    lost: list[int]  # a face in the source but none in the result: the result lost the face

    def to_dict(self) -> dict:
        return {
            "n_frames": self.n_frames,
            "source_missing_count": len(self.source_missing),
            "result_missing_count": len(self.result_missing),
            "lost_count": len(self.lost),
            "source_missing": self.source_missing,
            "result_missing": self.result_missing,
            "lost": self.lost,
        }


@dataclass
class SyncReport:
    cues: dict[str, CueScore]
    blinks: BlinkScore
    identity: IdentityScore | None
    faces: FaceCoverage
    lag: int  # overall lag in frames (+ = result late), from the mean r(lag) of the active cues
    corr: float | None  # mean lag-0 r over the active cues
    verdict: str
    in_sync: bool
    problems: list[str]
    thresholds: SyncThresholds
    max_lag: int
    notes: list[str] = field(default_factory=list)
    fps: float | None = None
    source_track: CueTrack | None = field(default=None, repr=False)
    result_track: CueTrack | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        th = self.thresholds
        return {
            "verdict": self.verdict,
            "in_sync": self.in_sync,
            "problems": list(self.problems),
            "lag": self.lag,
            "corr": None if self.corr is None else round(self.corr, 4),
            "max_lag": self.max_lag,
            "fps": self.fps,
            "cues": {name: s.to_dict() for name, s in self.cues.items()},
            "blinks": self.blinks.to_dict(),
            "identity": None if self.identity is None else self.identity.to_dict(),
            "faces": self.faces.to_dict(),
            "thresholds": {k: v for k, v in th.__dict__.items()},
            "notes": list(self.notes),
        }

    def save_json(self, path: str | Path) -> Path:
        from synclora.paths import atomic_output

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def summary(self) -> str:
        """The verdict and the numbers, as plain text (CLI output)."""
        lines = [f"verdict: {self.verdict}", f"overall lag: {self.lag:+d} frames (+ = result late)"]
        lines.append(f"{'cue':<10} {'r':>6} {'lag':>4} {'r@lag':>6} {'motion src':>10} {'motion res':>10}  note")
        for name, s in self.cues.items():
            note = "frozen" if s.frozen else ("" if s.active else "still in source (not judged)")
            lines.append(
                f"{name:<10} {_fmt(s.corr):>6} {s.lag:>+4d} {_fmt(s.corr_at_lag):>6} {s.std_source:>10.4g} "
                f"{s.std_result:>10.4g}  {note}"
            )
        b = self.blinks
        lines.append(f"blinks: {len(b.source)} in source, {len(b.result)} in result — matched {b.matched}, "
                     f"missed {b.missed}, extra {b.extra}")
        if self.identity is not None:
            i = self.identity
            lines.append(f"identity: similarity mean {i.mean_similarity:.3f} (min {i.min_similarity:.3f}), "
                         f"distance mean {i.mean_distance:.3f} (max {i.max_distance:.3f}; "
                         f"< {self.thresholds.max_identity_distance} = same person), every {i.sample_every}. face "
                         f"frame, {len(i.frames)} frames")
        f = self.faces
        lines.append(f"faces: missing in {len(f.source_missing)} source and {len(f.result_missing)} result frames "
                     f"of {f.n_frames}" + (f"; lost in result at {_ranges(f.lost)}" if f.lost else ""))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """PNG: z-normalised source (blue) and result (red) curves per cue, blink events marked, frames without a
        face shaded. Needs the tracks (kept by `score_tracks`)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        if self.source_track is None or self.result_track is None:
            raise ValueError("this report has no cue tracks to plot")
        src, res = self.source_track, self.result_track
        names = list(self.cues) + ["blink"]
        fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.45 * len(names) + 0.8), sharex=True)
        t = np.arange(len(src))
        lost = np.zeros(len(t), bool)
        lost[self.faces.result_missing] = True
        for ax, name in zip(axes, names):
            if name == "blink":
                ys = eye_openness(src.cues["left_eye"], src.cues["right_eye"])
                yr = eye_openness(res.cues["left_eye"], res.cues["right_eye"])
                title = (f"blink (eye openness) — matched {self.blinks.matched}, missed {self.blinks.missed}, "
                         f"extra {self.blinks.extra}")
            else:
                ys, yr = src.cues[name], res.cues[name]
                s = self.cues[name]
                title = f"{name} ({CUE_UNITS.get(name, '')}) — r {_fmt(s.corr)}, lag {s.lag:+d}"
                title += " — frozen" if s.frozen else ("" if s.active else " — still in source, not judged")
            ax.plot(t, zscore(ys), color="tab:blue", lw=1.2, label="source")
            ax.plot(t, zscore(yr), color="tab:red", lw=1.0, alpha=0.85, label="result")
            if name in ("blink", "left_eye", "right_eye"):
                for e in self.blinks.source:
                    ax.axvline(e, color="tab:blue", lw=0.8, ls="-", alpha=0.6)
                for e in self.blinks.result:
                    ax.axvline(e, color="tab:red", lw=0.8, ls="--", alpha=0.6)
            for a, b in runs(lost):
                ax.axvspan(a - 0.5, b - 0.5, color="0.85", lw=0)
            ax.set_title(title, fontsize=8, loc="left")
            ax.tick_params(labelsize=7)
            ax.set_ylabel("z", fontsize=7)
        axes[0].legend(loc="upper right", fontsize=7, ncol=2)
        axes[-1].set_xlabel("frame", fontsize=8)
        fig.suptitle(f"Sync report: {self.verdict}", fontsize=10, x=0.01, ha="left")
        fig.tight_layout()
        from synclora.paths import atomic_output

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_output(path) as tmp:
                fig.savefig(tmp, dpi=90, format="png")
        finally:
            plt.close(fig)
        return path


def _fmt(v) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _ranges(idx: list[int]) -> str:
    m = np.zeros(max(idx) + 1, bool)
    m[idx] = True
    return ", ".join(f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in runs(m))


def score_tracks(
    src: CueTrack,
    res: CueTrack,
    max_lag: int = 5,
    *,
    thresholds: SyncThresholds | None = None,
    identity: IdentityScore | None = None,
) -> SyncReport:
    """Score two cue tracks of the same length. Pure numbers: no model runs here (curation calls this in bulk)."""
    th = thresholds or SyncThresholds()
    if len(src) != len(res):
        raise InputError(f"source has {len(src)} frames and result {len(res)}; sync needs the same frame count")
    if max_lag < 0:
        raise InputError(f"max_lag must be ≥ 0, got {max_lag}")
    n = len(src)
    max_lag = min(max_lag, max(0, n - th.min_frames))
    open_src = eye_openness(src.cues["left_eye"], src.cues["right_eye"])
    open_res = eye_openness(res.cues["left_eye"], res.cues["right_eye"])
    cues, curves = {}, {}
    for name in CUE_NAMES:
        a, b = src.cues[name], res.cues[name]
        if name.startswith("gaze"):
            # The iris is hidden while the eyes are shut; its landmark then says nothing about gaze.
            a = np.where(shut_frames(open_src, th.blink_ratio), np.nan, a)
            b = np.where(shut_frames(open_res, th.blink_ratio), np.nan, b)
        score, curve = score_cue(name, a, b, max_lag, th)
        cues[name] = score
        if score.active and not score.frozen:  # a still curve's r(lag) is jitter: it must not pick the lag
            curves[name] = curve
    lag, _ = overall_lag(curves, max_lag, th.lag_gain)
    active = [s for s in cues.values() if s.active and s.corr is not None and np.isfinite(s.corr)]
    corr = float(np.mean([s.corr for s in active])) if active else None

    blinks = match_blinks(
        blink_events(open_src, th.blink_ratio),
        blink_events(open_res, th.blink_ratio),
        lag,
        th.blink_tolerance,
    )
    faces = FaceCoverage(
        n_frames=n,
        source_missing=[int(i) for i in np.flatnonzero(~src.face)],
        result_missing=[int(i) for i in np.flatnonzero(~res.face)],
        lost=[int(i) for i in np.flatnonzero(src.face & ~res.face)],
    )
    problems = _problems(cues, lag, blinks, identity, faces, src, res, th)
    notes = list(src.notes) + [f"result: {x}" for x in res.notes]
    if not curves and src.face.any():
        notes.append("the source barely moves: no cue moves more than the landmarker's jitter, so sync is not judged")
    if identity is not None and identity.sample_every > 1:
        notes.append(f"identity compared on every {identity.sample_every}. face frame ({len(identity.frames)} frames)")
    in_sync = not problems
    if in_sync:
        verdict = "in sync" if corr is None else f"in sync (mean r {corr:.2f} over {len(active)} moving cues)"
    else:
        verdict = "; ".join(problems)
    return SyncReport(
        cues=cues, blinks=blinks, identity=identity, faces=faces, lag=lag, corr=corr, verdict=verdict,
        in_sync=in_sync, problems=problems, thresholds=th, max_lag=max_lag, notes=notes, fps=src.fps,
        source_track=src, result_track=res,
    )


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
        act = [n for n in names if cues[n].active]
        if act and all(cues[n].frozen for n in act):
            out.append(f"{group} frozen")
            continue
        for n in act:
            s = cues[n]
            r = s.corr_at_lag if lag != 0 else s.corr
            if not s.frozen and (r is None or not np.isfinite(r) or r < th.min_corr_for(n)):
                out.append(f"{n} out of sync (r {_fmt(r)})")
            elif s.frozen:
                out.append(f"{n} frozen")
    if blinks.missed:
        out.append(f"{blinks.missed} blink{'s' if blinks.missed != 1 else ''} missed")
    if blinks.extra:
        out.append(f"{blinks.extra} extra blink{'s' if blinks.extra != 1 else ''}")
    if identity is not None and not identity.same_person:
        out.append(f"identity drifts (face distance {identity.mean_distance:.2f} ≥ {th.max_identity_distance})")
    return out


def _load_reference(edited_frame) -> np.ndarray:
    if isinstance(edited_frame, (str, Path)):
        from synclora.edit.image import load_image

        return load_image(edited_frame)[0]
    arr = np.asarray(edited_frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"the edited frame must be an (H, W, 3) uint8 image, got shape {arr.shape}, dtype {arr.dtype}")
    return arr


def _count(video) -> int:
    if isinstance(video, (str, Path)):
        from synclora import limits
        from synclora.video import io

        info = io.probe(video)
        limits.check_clip(info)  # the clips a propagation takes: a report never runs for hours on a forged length
        return info.n_frames
    arr = np.asarray(video)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got shape {arr.shape} and dtype {arr.dtype}")
    return arr.shape[0]


def compare_videos(
    source,
    result,
    *,
    edited_frame=None,
    frame_range: tuple[int, int] | None = None,
    max_lag: int = 5,
    progress: ProgressFn | None = None,
    thresholds: SyncThresholds | None = None,
    identity_frames: int = IDENTITY_MAX_FRAMES,
) -> SyncReport:
    """Measure how well `result` follows `source` (paths or (T, H, W, 3) uint8 RGB arrays, same frame count).

    `edited_frame` (image or path) enables the identity score; `frame_range=(start, stop)` compares that span of
    both videos (needed when their lengths differ). Both videos are analysed at once on two threads.
    """
    th = thresholds or SyncThresholds()
    n_src, n_res = _count(source), _count(result)
    if frame_range is None:
        if n_src != n_res:
            raise InputError(
                f"the source has {n_src} frames and the result {n_res}; give a frame range to compare a part of both"
            )
        frame_range = (0, n_src)
    start, stop = (int(v) for v in frame_range)
    if not (0 <= start < stop <= min(n_src, n_res)):
        raise InputError(f"frame range {start}–{stop} does not fit the videos ({n_src} and {n_res} frames)")
    if stop - start < 2:
        raise InputError("a sync report needs at least 2 frames")
    ref = _load_reference(edited_frame) if edited_frame is not None else None
    every = max(1, int(np.ceil((stop - start) / max(1, identity_frames)))) if ref is not None else 0

    done = {"source": 0.0, "result": 0.0}
    stopping = threading.Event()  # set when the caller unwinds (an error, a stop signal): the workers end too

    def part(key: str):
        def cb(frac: float, _msg: str) -> None:
            if stopping.is_set():
                raise InputError("stopped")
            if progress is None:
                return
            done[key] = frac
            progress(0.9 * (done["source"] + done["result"]) / 2, "measuring face cues")

        return cb

    with ThreadPoolExecutor(max_workers=2) as pool:
        fs = pool.submit(extract_cues, source, part("source"), frame_range=(start, stop))
        fr = pool.submit(extract_cues, result, part("result"), frame_range=(start, stop), keep_every=every)
        try:
            src, res = fs.result(), fr.result()
        except BaseException:
            stopping.set()  # the pool's exit waits for the workers: they stop at their next progress report
            raise
    if len(src) != len(res):
        raise InputError(f"read {len(src)} source and {len(res)} result frames; the videos do not line up")

    identity = None
    notes = []
    if ref is not None:
        if progress is not None:
            progress(0.92, "comparing identity")
        identity, note = _identity(ref, res, th, every)
        if note:
            notes.append(note)
    report = score_tracks(src, res, max_lag, thresholds=th, identity=identity)
    report.notes += notes
    for tr in (src, res):
        tr.kept = {}  # frames were only needed for identity
    if progress is not None:
        progress(1.0, "sync report ready")
    return report


def _identity(ref: np.ndarray, res: CueTrack, th: SyncThresholds, every: int) -> tuple[IdentityScore | None, str]:
    from synclora.metrics.identity import descriptor, score_identity
    from synclora.metrics.landmarks import FaceMeshTracker

    with FaceMeshTracker(static=True) as tracker:
        pts = tracker.landmarks(ref)
    if pts is None:
        return None, "no face found in the edited frame: identity not scored"
    ref_desc = descriptor(ref, (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
    frames = {i: f for i, f in res.kept.items() if res.face[i]}
    if not frames:
        return None, "no face in the sampled result frames: identity not scored"
    return score_identity(ref_desc, frames, res.boxes, every, th.max_identity_distance), ""
