"""Sync-based curation: score every pair with the sync report, keep only the pairs whose motion truly matches.

The paper keeps "only the most temporally aligned" generated pairs, judged on four cues (pose, mouth, gaze, blink);
its detectors, similarity measure and thresholds are not published (docs/METHOD.md). Ours: the team's sync report
(`metrics.report`) per pair, reduced to one score per cue, then an AND of per-cue thresholds. A cue the source does
not move (below the landmarker's jitter) cannot judge sync and passes; a cue the target does not move while the
source does (frozen) and any lag always fail. Defaults and the measurements behind them: docs/TRAINING.md.

Manifest: one JSON line per pair (`name`, `keep`, `reasons`, `scores`, …); unreadable pairs get a line with `error`
and `keep: false`. Scores are stored raw, so re-running with other thresholds re-decides without re-measuring
(resumable: a pair already scored is never measured again unless `rescore`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from synclora.data.manifest import read_manifest
from synclora.data.pairs import Pair, discover_pairs
from synclora.errors import InputError
from synclora.paths import Output, atomic_output, check_outputs

SCORE_VERSION = 1  # bump when the meaning of a stored score changes: old lines are then re-measured


@dataclass
class CurationThresholds:
    """Per-cue acceptance rules (all must hold). See docs/TRAINING.md for how each default was chosen."""

    min_pose_corr: float = 0.8  # mean lag-0 r of the moving head-pose cues (yaw, pitch, roll)
    min_mouth_corr: float = 0.7  # lag-0 r of mouth opening
    min_gaze_corr: float = 0.6  # mean lag-0 r of the moving gaze cues (iris position is the noisiest cue)
    min_eyes_corr: float = 0.7  # lag-0 r of eye openness (blink timing, finer than event matching)
    min_blink_f1: float = 0.99  # blinks matched as events (2·matched / (source + target blinks)); 1 = all matched
    max_abs_lag: int = 0  # overall lag in frames; any lag is a sync failure
    min_motion_ratio: float = 0.4  # target motion / source motion of every moving cue (below: frozen)
    max_identity_distance: float = 0.6  # target face vs edit.png (dlib distance; only when edit.png exists)
    max_face_lost: float = 0.02  # fraction of the source's face frames with no face in the target
    max_lag_search: int = 5  # lags searched, in frames

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CurationThresholds:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown threshold(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        return cls(**d)


# Cue groups of the sync report → the paper's four cues.
_POSE = ("yaw", "pitch", "roll")
_GAZE = ("gaze_x", "gaze_y")
_EYES = ("left_eye", "right_eye")


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 4)


def _mean_active(report, names) -> float | None:
    vals = [report.cues[n].corr for n in names if report.cues[n].active]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        # a moving cue with no finite r (e.g. a flat target) is a failure, not an abstention
        return -1.0 if any(report.cues[n].active for n in names) else None
    return float(sum(vals) / len(vals))


def scores_from_report(report) -> dict:
    """One number per cue (None: the source does not move that cue, so it cannot judge) + lag, identity, faces."""
    moving = [n for n, s in report.cues.items() if s.active]
    ratios = {n: (report.cues[n].std_result / report.cues[n].std_source) for n in moving
              if report.cues[n].std_source and math.isfinite(report.cues[n].std_result)}
    b = report.blinks
    n_blinks = len(b.source) + len(b.result)
    identity = report.identity
    src_faces = report.faces.n_frames - len(report.faces.source_missing)
    return {
        "pose": _num(_mean_active(report, _POSE)),
        "mouth": _num(_mean_active(report, ("mouth",))),
        "gaze": _num(_mean_active(report, _GAZE)),
        "eyes": _num(_mean_active(report, _EYES)),
        "blink": _num(1.0 if n_blinks == 0 else 2.0 * b.matched / n_blinks),
        "blinks_source": len(b.source),
        "blinks_target": len(b.result),
        "lag": int(report.lag),
        "motion_ratio": _num(min(ratios.values())) if ratios else None,
        "motion_ratio_cue": min(ratios, key=ratios.get) if ratios else None,
        "identity": _num(identity.mean_distance) if identity is not None else None,
        "face_lost": _num(len(report.faces.lost) / src_faces) if src_faces else None,
        "source_faces": src_faces,
        "corr": _num(report.corr),
        "report_verdict": report.verdict,
    }


def decide(scores: dict, th: CurationThresholds) -> tuple[bool, list[str]]:
    """(keep, reasons it was rejected). A None score (cue not moving in the source) never rejects."""
    reasons = []
    if not scores.get("source_faces"):
        return False, ["no face in the source"]
    if scores.get("face_lost") is not None and scores["face_lost"] > th.max_face_lost:
        reasons.append(f"face lost in {scores['face_lost']:.0%} of frames")
    if abs(scores.get("lag", 0)) > th.max_abs_lag:
        reasons.append(f"target {'lags' if scores['lag'] > 0 else 'leads'} by {abs(scores['lag'])} frame(s)")
    if scores.get("motion_ratio") is not None and scores["motion_ratio"] < th.min_motion_ratio:
        reasons.append(f"{scores.get('motion_ratio_cue')} frozen (motion ratio {scores['motion_ratio']:.2f})")
    for key, limit in (("pose", th.min_pose_corr), ("mouth", th.min_mouth_corr), ("gaze", th.min_gaze_corr),
                       ("eyes", th.min_eyes_corr), ("blink", th.min_blink_f1)):
        v = scores.get(key)
        if v is not None and v < limit:
            reasons.append(f"{key} {v:.2f} < {limit}")
    if scores.get("identity") is not None and scores["identity"] > th.max_identity_distance:
        reasons.append(f"identity distance {scores['identity']:.2f} > {th.max_identity_distance}")
    return not reasons, reasons


def score_pair(pair: Pair, th: CurationThresholds) -> dict:
    """Run the sync report on one pair (source vs target; identity against edit.png when present)."""
    from synclora.metrics.report import compare_videos

    report = compare_videos(pair.source, pair.target, edited_frame=pair.edit, max_lag=th.max_lag_search)
    return scores_from_report(report)


@dataclass
class CurationSummary:
    manifest: Path
    plot: Path | None
    total: int
    kept: int
    rejected: int
    errors: int
    measured: int  # pairs measured in this run (the rest came from the manifest)
    reasons: dict[str, int] = field(default_factory=dict)  # first word(s) of each rejection reason → count
    notes: list[str] = field(default_factory=list)  # what was done about a damaged manifest line, etc.

    def text(self) -> str:
        lines = [f"{self.kept} of {self.total} pairs kept, {self.rejected} rejected, {self.errors} unreadable "
                 f"({self.measured} measured now, the rest from the manifest)", f"manifest: {self.manifest}"]
        if self.plot:
            lines.append(f"plot: {self.plot}")
        lines += [f"  rejected for {k}: {v}" for k, v in sorted(self.reasons.items(), key=lambda kv: -kv[1])]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _reason_key(reason: str) -> str:
    word = reason.split(" ")[0]
    return {"target": "lag"}.get(word, word)


def curate(
    pairs_root: str | Path,
    manifest: str | Path,
    thresholds: CurationThresholds | None = None,
    *,
    plot: str | Path | None = "auto",
    rescore: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    scorer: Callable[[Pair, CurationThresholds], dict] = score_pair,
) -> CurationSummary:
    """Score (or reuse the scores of) every pair under `pairs_root`, decide keep/reject, write the manifest.

    Each newly measured pair is appended to the manifest at once (an interrupted run keeps its work); at the end the
    manifest is rewritten in pair order with every decision re-made under `thresholds`.
    """
    th = thresholds or CurationThresholds()
    manifest = Path(manifest)
    pairs = discover_pairs(pairs_root, include_incomplete=True)
    if not pairs:
        raise InputError(f"no pair folders (with {Path('NAME/source.mp4')} and target.mp4) in {pairs_root}")
    plot_path = None if plot is None else manifest.with_suffix(".png") if plot == "auto" else Path(plot)
    _check_outputs(pairs, manifest, plot_path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    old = {} if rescore else read_manifest(manifest, resuming=True, notes=notes)
    records: list[dict] = []
    measured = 0
    with open(manifest, "a", encoding="utf-8") as log:
        for i, pair in enumerate(pairs):
            if progress:
                progress(i, len(pairs), pair.name)
            prev = old.get(pair.name)
            if prev and prev.get("scores") is not None and prev.get("score_version") == SCORE_VERSION:
                rec = {"name": pair.name, "scores": prev["scores"], "score_version": SCORE_VERSION}
            else:
                rec = {"name": pair.name, "score_version": SCORE_VERSION}
                try:
                    if not pair.is_complete():
                        missing = "source.mp4" if not pair.source.is_file() else "target.mp4"
                        raise InputError(f"{missing} is missing")
                    rec["scores"] = scorer(pair, th)
                    measured += 1
                except Exception as exc:  # noqa: BLE001 - an unreadable pair is reported and skipped, never ends the run
                    rec["scores"] = None
                    rec["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, InputError) else str(exc)
                log.write(json.dumps(_finish(rec, th)) + "\n")
                log.flush()
            records.append(_finish(rec, th))
        if progress:
            progress(len(pairs), len(pairs), "done")
    with atomic_output(manifest) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    if plot_path is not None:
        plot_summary(records, th, plot_path)
    reasons: dict[str, int] = {}
    for r in records:
        for reason in r.get("reasons", []):
            reasons[_reason_key(reason)] = reasons.get(_reason_key(reason), 0) + 1
    errors = sum(1 for r in records if r.get("error"))
    kept = sum(1 for r in records if r["keep"])
    return CurationSummary(manifest, plot_path, len(records), kept, len(records) - kept - errors, errors, measured,
                           reasons, notes)


def _check_outputs(pairs: list[Pair], manifest: Path, plot: Path | None) -> None:
    """The manifest and the plot are writable files of their type, and none of the pairs' files (nor each other)."""
    outputs = [Output(manifest, "the manifest (--out)", (".jsonl", ".json"), make_parents=True)]
    if plot is not None:
        outputs.append(Output(plot, "the plot (--plot)", (".png",), make_parents=True))
    inputs = [(p, f"a file of pair {pair.name}") for pair in pairs
              for p in (pair.source, pair.target, pair.root / "edit.png", pair.meta_path)]
    check_outputs(outputs, inputs)


def _finish(rec: dict, th: CurationThresholds) -> dict:
    out = dict(rec)
    if out.get("scores") is None:
        out["keep"], out["reasons"] = False, [out.get("error", "not scored")]
    else:
        out.pop("error", None)
        out["keep"], out["reasons"] = decide(out["scores"], th)
    out["thresholds"] = th.to_dict()
    keys = ("name", "keep", "reasons", "scores", "error", "score_version", "thresholds")
    return {k: out[k] for k in keys if k in out}


# Panels of the summary plot: (score key, threshold attribute, "min" keeps values above / "max" below).
_PANELS = (
    ("pose", "min_pose_corr", "min"),
    ("mouth", "min_mouth_corr", "min"),
    ("gaze", "min_gaze_corr", "min"),
    ("eyes", "min_eyes_corr", "min"),
    ("blink", "min_blink_f1", "min"),
    ("lag", "max_abs_lag", "abs"),
    ("motion_ratio", "min_motion_ratio", "min"),
    ("identity", "max_identity_distance", "max"),
)


def plot_summary(records: list[dict], th: CurationThresholds, path: str | Path) -> Path:
    """One histogram per score (kept pairs green, rejected red) with the threshold drawn: where the cut falls."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    scored = [r for r in records if r.get("scores")]
    for ax, (key, attr, kind) in zip(axes.flat, _PANELS):
        kept = [r["scores"][key] for r in scored if r["keep"] and r["scores"].get(key) is not None]
        rej = [r["scores"][key] for r in scored if not r["keep"] and r["scores"].get(key) is not None]
        values = kept + rej
        if values:
            lo, hi = min(values + [getattr(th, attr)]), max(values + [getattr(th, attr)])
            if kind == "abs":
                lo, hi = min(lo, -th.max_abs_lag - 1), max(hi, th.max_abs_lag + 1)
            bins = np.linspace(lo - 1e-6, hi + 1e-6, 21) if kind != "abs" else np.arange(lo - 0.5, hi + 1.5)
            ax.hist([kept, rej], bins=bins, stacked=True, color=["#2a9d5c", "#d1495b"], label=["kept", "rejected"])
        limit = getattr(th, attr)
        for x in ((-limit, limit) if kind == "abs" else (limit,)):
            ax.axvline(x, color="k", linestyle="--", linewidth=1)
        missing = sum(1 for r in scored if r["scores"].get(key) is None)
        ax.set_title(f"{key}  ({'|x| ≤' if kind == 'abs' else '≥' if kind == 'min' else '≤'} {limit})"
                     + (f", {missing} not judged" if missing else ""), fontsize=10)
    axes.flat[0].legend(fontsize=8)
    n_keep = sum(1 for r in records if r["keep"])
    n_err = sum(1 for r in records if r.get("error"))
    fig.suptitle(f"curation: {n_keep} of {len(records)} pairs kept ({n_err} unreadable)")
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(fig)
    return path
