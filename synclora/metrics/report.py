"""Sync report: how well a result follows its source, cue by cue, with one sentence a person can read.

The paper claims frame-accurate sync but publishes no numbers; this is the team's own measure (not a reproduction):
per-cue Pearson r of the curves at lag 0, the lag in ±max_lag that maximises r, blinks matched as events, identity
against the edited frame, and frames without a face counted and listed.

Given the edited frame, the report also knows what the edit did (`occlusion`): cues whose region the edit hides
(sunglasses over the eyes, a mask over the mouth) are measured and drawn but left out of the verdict, the overall
score and the blink events; and how much of the edit each result frame keeps (`kept`). One implementation for the
CLI, the app and curation.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from synclora.errors import InputError
from synclora.face import parts as fp
from synclora.metrics.identity import IdentityScore
from synclora.metrics.kept import EditKept
from synclora.metrics.landmarks import CUE_NAMES, CUE_UNITS, CueTrack, ProgressFn
from synclora.metrics.occlusion import EditRegions, hidden_cues
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


HIDDEN_LABEL = "hidden by the edit — not judged"


@dataclass
class SyncReport:
    cues: dict[str, CueScore]
    blinks: BlinkScore
    identity: IdentityScore | None
    faces: FaceCoverage
    lag: int  # overall lag in frames (+ = result late), from the mean r(lag) of the judged moving cues
    corr: float | None  # mean lag-0 r over the judged moving cues
    verdict: str
    in_sync: bool | None  # None: not judged (the edit hides every moving cue)
    problems: list[str]  # sync problems, then edit problems (faded / slid off)
    thresholds: SyncThresholds
    max_lag: int
    notes: list[str] = field(default_factory=list)
    fps: float | None = None
    source_track: CueTrack | None = field(default=None, repr=False)
    result_track: CueTrack | None = field(default=None, repr=False)
    # The frames judged (first, last; inclusive, counted in the whole clip): an edited span, or all frames.
    frames: tuple[int, int] | None = None
    edit: EditRegions | None = None  # what the edit hides, per cue region (None: no edited frame given)
    kept: EditKept | None = field(default=None, repr=False)  # how much of the edit each frame keeps
    edit_problems: list[str] = field(default_factory=list)
    landmarks_video: Path | None = None  # the landmark view, when asked for

    @property
    def hidden(self) -> set[str]:
        """Cue names the edit hides (measured, not judged)."""
        return {n for n, s in self.cues.items() if s.hidden}

    def to_dict(self) -> dict:
        th = self.thresholds
        return {
            "verdict": self.verdict,
            "frames": None if self.frames is None else list(self.frames),
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
            "edit": None if self.edit is None else self.edit.to_dict(),
            "edit_kept": None if self.kept is None else self.kept.to_dict(th.min_edit_kept, th.edit_min_run),
            "thresholds": asdict(th),
            "notes": list(self.notes),
            "landmarks_video": None if self.landmarks_video is None else str(self.landmarks_video),
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
        if self.frames is not None:
            lines.append(f"judged frames: {self.frames[0]}–{self.frames[1]}")
        if self.edit is not None:
            e = self.edit
            lines.append(f"edited frame: source frame {e.edit_index}"
                         + (" (the source frame that matches it best)" if e.index_from == "matched" else ""))
            for name, r in e.regions.items():
                lines.append(f"  {fp.REGION_LABEL[name]:<12} {r.state:<10} visible {r.visible:.2f}, colour change "
                             f"ΔE {r.colour_change:.1f}")
        lines.append(f"{'cue':<10} {'r':>6} {'lag':>4} {'r@lag':>6} {'motion src':>10} {'motion res':>10}  note")
        for name, s in self.cues.items():
            note = _cue_note(s)
            lines.append(
                f"{name:<10} {_fmt(s.corr):>6} {s.lag:>+4d} {_fmt(s.corr_at_lag):>6} {s.std_source:>10.4g} "
                f"{s.std_result:>10.4g}  {note}"
            )
        b = self.blinks
        lines.append(f"blinks: {len(b.source)} in source, {len(b.result)} in result — matched {b.matched}, "
                     f"missed {b.missed}, extra {b.extra}" + ("" if b.judged else f" ({HIDDEN_LABEL})"))
        if self.kept is not None:
            k = self.kept
            th = self.thresholds
            mean = np.nanmean(k.curve) if np.isfinite(k.curve).any() else float("nan")
            lines.append(f"edit kept: mean {_fmt(mean)}, lowest {_fmt(k.worst(th.edit_min_run))} over "
                         f"{th.edit_min_run} frames (1 = all of the edit, 0 = none; below {th.min_edit_kept} = "
                         "faded)" + "".join(f"; {p}" for p in self.edit_problems))
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
        face shaded, cues the edit hides greyed and labelled, and the edit-kept curves. Needs the tracks (kept by
        `score_tracks`)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        if self.source_track is None or self.result_track is None:
            raise ValueError("this report has no cue tracks to plot")
        src, res = self.source_track, self.result_track
        names = list(self.cues) + ["blink"] + (["edit kept"] if self.kept is not None else [])
        fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.45 * len(names) + 0.8), sharex=True)
        t = np.arange(len(src))
        lost = np.zeros(len(t), bool)
        lost[self.faces.result_missing] = True
        start = self.kept.start if self.kept is not None else 0
        for ax, name in zip(axes, names):
            if name == "edit kept":
                self._plot_kept(ax, t)
                continue
            if name == "blink":
                ys = eye_openness(src.cues["left_eye"], src.cues["right_eye"])
                yr = eye_openness(res.cues["left_eye"], res.cues["right_eye"])
                hidden = not self.blinks.judged
                title = (f"blink (eye openness) — matched {self.blinks.matched}, missed {self.blinks.missed}, "
                         f"extra {self.blinks.extra}")
                title += f" — {HIDDEN_LABEL}" if hidden else ""
            else:
                ys, yr = src.cues[name], res.cues[name]
                s = self.cues[name]
                hidden = s.hidden
                title = f"{name} ({CUE_UNITS.get(name, '')}) — r {_fmt(s.corr)}, lag {s.lag:+d}"
                title += f" — {_cue_note(s)}" if _cue_note(s) else ""
            colours = ("0.45", "0.7") if hidden else ("tab:blue", "tab:red")
            ax.plot(t, zscore(ys), color=colours[0], lw=1.2, label="source")
            ax.plot(t, zscore(yr), color=colours[1], lw=1.0, alpha=0.85, label="result")
            if hidden:
                ax.set_facecolor("0.94")
            if name in ("blink", "left_eye", "right_eye") and not hidden:
                for e in self.blinks.source:
                    ax.axvline(e, color="tab:blue", lw=0.8, ls="-", alpha=0.6)
                for e in self.blinks.result:
                    ax.axvline(e, color="tab:red", lw=0.8, ls="--", alpha=0.6)
            for a, b in runs(lost):
                ax.axvspan(a - 0.5, b - 0.5, color="0.85", lw=0)
            ax.set_title(title, fontsize=8, loc="left", color="0.35" if hidden else "black")
            ax.tick_params(labelsize=7)
            ax.set_ylabel("z", fontsize=7)
        axes[0].legend(loc="upper right", fontsize=7, ncol=2)
        first = self.frames[0] if self.frames else start  # frame numbers of the clip, also when a span was judged
        axes[-1].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x + first:g}"))
        axes[-1].set_xlabel("frame", fontsize=8)
        fig.suptitle(f"Sync report: {self.verdict}", fontsize=10, x=0.01, ha="left", wrap=True)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the verdict above the panels
        from synclora.paths import atomic_output

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_output(path) as tmp:
                fig.savefig(tmp, dpi=90, format="png")
        finally:
            plt.close(fig)
        return path

    def _plot_kept(self, ax, t: np.ndarray) -> None:
        from synclora.metrics.kept import MIN_PART_SHARE

        k, th = self.kept, self.thresholds
        colours = iter(("tab:purple", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"))
        shown = {n: p for n, p in k.parts.items() if p.share >= MIN_PART_SHARE}
        for name, p in shown.items():
            ax.plot(t, p.curve, lw=1.1, color=next(colours), label=f"{name} ({p.share:.0%} of the edit)")
            low = np.isfinite(p.curve) & (p.curve < th.min_edit_kept)
            for a, b in runs(low):
                if b - a >= th.edit_min_run:
                    ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.12, lw=0)
        if len(shown) != 1:
            ax.plot(t, k.curve, lw=1.0, color="k", alpha=0.6, label="whole edit")
        ax.axhline(th.min_edit_kept, color="k", lw=0.7, ls="--")
        ax.set_ylim(-0.1, 1.3)
        ax.set_ylabel("kept", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(loc="lower left", fontsize=6, ncol=4)
        title = (f"edit kept (share of the change made at frame {k.edit_index} present at its place; "
                 f"< {th.min_edit_kept} = faded)")
        if self.edit_problems:
            title += " — " + "; ".join(self.edit_problems)
        ax.set_title(title, fontsize=8, loc="left")


def _cue_note(s: CueScore) -> str:
    if s.hidden:
        return HIDDEN_LABEL
    if s.frozen:
        return "frozen"
    return "" if s.active else "still in source (not judged)"


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
        blink_events(open_src, th.blink_ratio),
        blink_events(open_res, th.blink_ratio),
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
                out.append(f"{n} out of sync (r {_fmt(r)})")
            elif s.frozen:
                out.append(f"{n} frozen")
    if blinks.judged and blinks.missed:
        out.append(f"{blinks.missed} blink{'s' if blinks.missed != 1 else ''} missed")
    if blinks.judged and blinks.extra:
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


def _size(video) -> tuple[int, int]:
    if isinstance(video, (str, Path)):
        from synclora.video import io

        info = io.probe(video)
        return info.width, info.height
    arr = np.asarray(video)
    return arr.shape[2], arr.shape[1]


def _frame_at(video, index: int) -> np.ndarray:
    if isinstance(video, (str, Path)):
        from synclora.video import io

        return io.read_frame(video, index)
    return np.ascontiguousarray(np.asarray(video)[index])


def find_edit_index(source, edited: np.ndarray, *, thumb: int = 96, fine: int = 320, candidates: int = 5) -> int:
    """The source frame the edited frame was made from, for when nobody said which frame was edited.

    Coarse: the smallest median difference of small grey thumbnails (the median ignores the edited part). Fine, among
    the best few: the fewest pixels that differ at all at a larger size — the edit differs wherever it is, a
    neighbouring frame also at every edge that moved.
    """
    import heapq

    import cv2

    def grey(img: np.ndarray, side: int) -> np.ndarray:
        h, w = img.shape[:2]
        s = min(1.0, side / max(h, w))
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)

    ref_small = grey(edited, thumb).astype(np.int16)
    ref_fine = grey(edited, fine).astype(np.int16)
    if isinstance(source, (str, Path)):
        from synclora.video.lazy import iter_lazy_frames

        w, h = _size(source)
        k = max(1, max(w, h) // (2 * fine))
        frames = (f.reduced(k) for f in iter_lazy_frames(source))
    else:
        frames = iter(np.asarray(source))
    best: list[tuple[float, int, np.ndarray]] = []  # a heap of the `candidates` best coarse matches
    for i, f in enumerate(frames):
        g = grey(f, fine)
        if g.shape != ref_fine.shape:
            g = cv2.resize(g, ref_fine.shape[::-1], interpolation=cv2.INTER_AREA)
        small = cv2.resize(g, ref_small.shape[::-1], interpolation=cv2.INTER_AREA).astype(np.int16)
        d = float(np.median(np.abs(small - ref_small)))
        item = (-d, -i, g)
        if len(best) < candidates:
            heapq.heappush(best, item)
        elif item[:2] > best[0][:2]:
            heapq.heapreplace(best, item)
    if not best:
        raise InputError("the source has no frames")
    scored = [(float((np.abs(g.astype(np.int16) - ref_fine) > 4).mean()), -neg_i) for _, neg_i, g in best]
    return min(scored)[1]


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

    The edited frame is `edited`, or — without one — the result's own frame at `edit_index` (a pair folder without
    edit.png). Without an edit index the best-matching source frame is used (and said).
    """
    from synclora.face.mesh import FaceMeshTracker
    from synclora.metrics.kept import EditProbe
    from synclora.metrics.occlusion import analyse_regions

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
        edited = _frame_at(result, edit_index)
        index_from = "result frame"
    edited, why = _fit_edited(edited, _size(source))
    if edited is None:
        return None, None, [*notes, why]
    frame = _frame_at(source, edit_index)
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


def compare_videos(
    source,
    result,
    *,
    edited_frame=None,
    edit_index: int | None = None,
    frame_range: tuple[int, int] | None = None,
    max_lag: int = 5,
    progress: ProgressFn | None = None,
    thresholds: SyncThresholds | None = None,
    identity_frames: int = IDENTITY_MAX_FRAMES,
    landmarks_video: str | Path | None = None,
    source_cues=None,
) -> SyncReport:
    """Measure how well `result` follows `source` (paths or (T, H, W, 3) uint8 RGB arrays).

    The result is compared by time: each source frame with the result frame on screen at its time, over the time
    both cover (`metrics.timeline`); a different rate, size or length is said in the notes.
    `edited_frame` (image or path) enables the identity score and, with `edit_index` (the source frame it was made
    from; found by matching when None), what the edit hides and how much of it each frame keeps. Without an edited
    frame, `edit_index` alone takes the result's own frame there as the edit. `frame_range=(start, stop)` compares
    that span of the source's frames (and the result over the same time). `identity_frames`: how many result frames
    identity compares (0: no identity score). `landmarks_video`: write the landmark view (mp4). `source_cues`: the
    source's cues measured ahead (`synclora.metrics.source_cues.SourceCues`): the source is then read only if the
    edit-kept score needs its frames.
    Both videos are decoded and measured at once on two threads, by the same per-frame work a propagation's
    `synclora.metrics.tap.ReportTap` does as the frames pass.
    """
    from synclora.metrics.tap import ReportTap

    tap = ReportTap(source, result, edited_frame=edited_frame, edit_index=edit_index, frame_range=frame_range,
                    max_lag=max_lag, progress=progress, thresholds=thresholds, identity_frames=identity_frames,
                    landmarks_video=landmarks_video, source_cues=source_cues)
    start, stop = tap.start, tap.stop

    def measure(side: str, video) -> None:
        first, last = (start, stop) if side == "source" else tap.timeline.result_range  # the same time on both
        tap.feed(side, _frames(video, first, last), first)

    sides = [("source", source), ("result", result)] if tap.reads("source") else [("result", result)]
    ok = False
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(measure, side, video) for side, video in sides]
            for f in futures:
                f.result()  # the first error stops the other side at its next frame (the pool's exit waits for it)
        ok = True
    finally:
        tap.finish(ok)
    return tap.report()


def _frames(video, start: int, stop: int):
    """Frames start..stop-1 of a path (lazy frames on `io`'s exact timeline, decoded on this thread) or array."""
    if isinstance(video, (str, Path)):
        from synclora.video.lazy import iter_lazy_frames

        return iter_lazy_frames(video, start=start, stop=stop)
    return np.asarray(video)[start:stop]


def _fps(video) -> float:
    if isinstance(video, (str, Path)):
        from synclora.video import io

        return float(io.probe(video).fps)
    return 25.0
