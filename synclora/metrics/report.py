"""Sync report: how well a result follows its source, cue by cue, with one sentence a person can read.

The paper claims frame-accurate sync but publishes no numbers; this is the team's own measure (not a reproduction):
per-cue Pearson r of the curves at lag 0, the lag in ±max_lag that maximises r, blinks matched as events, identity
against the edited frame, and frames without a face counted and listed.

Given the edited frame, the report also knows what the edit did (`occlusion`): cues whose region the edit hides
(sunglasses over the eyes, a mask over the mouth) are measured and drawn but left out of the verdict, the overall
score and the blink events; and how much of the edit each result frame keeps (`kept`). One implementation for the
CLI, the app and curation, in one module per step: `compare` measures two videos (through `tap`), `edited` finds
and lines up the edited frame, `verdict` turns two cue tracks into a `SyncReport` (this module: the result and its
text), and `plot` draws it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from synclora.face import parts as fp
from synclora.metrics.identity import IdentityScore
from synclora.metrics.kept import EditKept
from synclora.metrics.landmarks import CueTrack
from synclora.metrics.occlusion import EditRegions
from synclora.metrics.scores import HIDDEN_LABEL, BlinkScore, CueScore, SyncThresholds, fmt, runs


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
            note = s.note
            lines.append(
                f"{name:<10} {fmt(s.corr):>6} {s.lag:>+4d} {fmt(s.corr_at_lag):>6} {s.std_source:>10.4g} "
                f"{s.std_result:>10.4g}  {note}"
            )
        b = self.blinks
        lines.append(f"blinks: {len(b.source)} in source, {len(b.result)} in result — matched {b.matched}, "
                     f"missed {b.missed}, extra {b.extra}" + ("" if b.judged else f" ({HIDDEN_LABEL})"))
        if self.kept is not None:
            k = self.kept
            th = self.thresholds
            mean = np.nanmean(k.curve) if np.isfinite(k.curve).any() else float("nan")
            lines.append(f"edit kept: mean {fmt(mean)}, lowest {fmt(k.worst(th.edit_min_run))} over "
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
        """PNG of the curves, the blinks, the faceless frames and the edit kept (`synclora.metrics.plot`)."""
        from synclora.metrics.plot import plot_report

        return plot_report(self, path)


def _ranges(idx: list[int]) -> str:
    m = np.zeros(max(idx) + 1, bool)
    m[idx] = True
    return ", ".join(f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in runs(m))
