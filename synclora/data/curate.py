"""Sync-based curation: score every pair with the sync report, keep only the pairs whose motion truly matches.

The paper keeps "only the most temporally aligned" generated pairs, judged on four cues (pose, mouth, gaze, blink);
its detectors, similarity measure and thresholds are not published (docs/METHOD.md). Ours: the team's sync report
(`metrics.report`) per pair, reduced to one score per cue, then an AND of per-cue thresholds. A cue the source does
not move (below the landmarker's jitter) cannot judge sync and passes; a cue the target does not move while the
source does (frozen) and any lag always fail. Defaults and the measurements behind them: docs/TRAINING.md.

The report knows what the edit hid (edit.png at meta.json's edit index; without edit.png, the target's frame 0 against
the source's): cues behind sunglasses, a mask or a beard cannot judge sync and are left out like still ones — else
every pair whose edit covers the eyes or the mouth would be dropped, biasing a trained LoRA against those edits. A
pair whose edit hides every moving cue cannot be checked and is rejected; so is one whose target loses the edit
(edit kept below `min_edit_kept` for two frames in a row).

Manifest: one JSON line per pair (`name`, `keep`, `reasons`, `scores`, …); unreadable pairs get a line with `error`
and `keep: false`. Scores are stored raw, so re-running with other thresholds re-decides without re-measuring
(resumable: a pair already scored is never measured again unless `rescore`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from synclora.data.cluster import Ranks
from synclora.data.manifest import read_manifest
from synclora.data.pairs import Pair, discover_pairs
from synclora.errors import InputError
from synclora.metrics.scores import CUE_GROUPS, MAX_FACE_LOST, MAX_IDENTITY_DISTANCE, MIN_EDIT_KEPT
from synclora.paths import Output, atomic_output, check_outputs, save_figure

SCORE_VERSION = 2  # bump when the meaning of a stored score changes: old lines are then re-measured


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
    max_identity_distance: float = MAX_IDENTITY_DISTANCE  # target face vs edit.png (dlib; only with edit.png)
    max_face_lost: float = MAX_FACE_LOST  # fraction of the source's face frames with no face in the target
    min_edit_kept: float = MIN_EDIT_KEPT  # share of the edit's change kept in place, worst 2-frame stretch
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
_POSE, _GAZE, _EYES = CUE_GROUPS["head"], CUE_GROUPS["gaze"], CUE_GROUPS["eyes"]  # the report's own cue groups


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 4)


def _judged(report, name: str) -> bool:
    """The source moves this cue and the edit does not hide it."""
    s = report.cues[name]
    return s.active and not s.hidden


def _mean_active(report, names) -> float | None:
    vals = [report.cues[n].corr for n in names if _judged(report, n)]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        # a moving cue with no finite r (e.g. a flat target) is a failure, not an abstention
        return -1.0 if any(_judged(report, n) for n in names) else None
    return float(sum(vals) / len(vals))


def scores_from_report(report) -> dict:
    """One number per cue (None: the source does not move that cue or the edit hides it, so it cannot judge) + lag,
    identity, faces, what the edit hid and how much of it the target keeps."""
    moving = [n for n in report.cues if _judged(report, n)]
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
        "blink": _num(1.0 if n_blinks == 0 else 2.0 * b.matched / n_blinks) if b.judged else None,
        "blinks_source": len(b.source),
        "blinks_target": len(b.result),
        "lag": int(report.lag),
        "motion_ratio": _num(min(ratios.values())) if ratios else None,
        "motion_ratio_cue": min(ratios, key=ratios.get) if ratios else None,
        "identity": _num(identity.mean_distance) if identity is not None else None,
        "face_lost": _num(len(report.faces.lost) / src_faces) if src_faces else None,
        "source_faces": src_faces,
        "corr": _num(report.corr),
        "judged": report.in_sync is not None,
        "hidden": sorted(report.edit.hidden) if report.edit is not None else [],
        "edit_index": report.edit.edit_index if report.edit is not None else None,
        "edit_kept": _num(report.kept.worst(report.thresholds.edit_min_run)) if report.kept is not None else None,
        "edit_problems": list(report.edit_problems),
        "report_verdict": report.verdict,
    }


def decide(scores: dict, th: CurationThresholds) -> tuple[bool, list[str]]:
    """(keep, reasons it was rejected). A None score (cue not moving in the source) never rejects."""
    reasons = []
    if not scores.get("source_faces"):
        return False, ["no face in the source"]
    if scores.get("judged") is False:
        reasons.append(f"sync not judged: the edit hides every moving cue ({', '.join(scores.get('hidden', []))})")
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
    if scores.get("edit_kept") is not None and scores["edit_kept"] < th.min_edit_kept:
        why = scores.get("edit_problems") or []
        reasons.append(f"edit kept {scores['edit_kept']:.2f} < {th.min_edit_kept}" + (f" ({why[0]})" if why else ""))
    return not reasons, reasons


def edit_index_of(pair: Pair) -> int | None:
    """The frame edit.png was made from (meta.json's "edit_index", or "frame" in pair folders written before the
    rename); without edit.png the target's frame 0 is the edit. None: edit.png without a usable index in meta.json
    (the report then finds the best-matching source frame)."""
    if pair.edit is None:
        return 0
    for key in ("edit_index", "frame"):
        k = pair.meta.get(key)
        if isinstance(k, int) and not isinstance(k, bool) and k >= 0:
            return k
    return None


def score_pair(pair: Pair, th: CurationThresholds) -> dict:
    """Run the sync report on one pair (source vs target; identity against edit.png when present; what the edit
    hides and keeps from edit.png at its frame, or from the target's frame 0)."""
    from synclora.metrics.compare import compare_videos

    report = compare_videos(pair.source, pair.target, edited_frame=pair.edit, edit_index=edit_index_of(pair),
                            max_lag=th.max_lag_search)
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
    workers: int = 1,
    ranks: Ranks | None = None,
) -> CurationSummary:
    """Score (or reuse the scores of) every pair under `pairs_root`, decide keep/reject, write the manifest.

    Each newly measured pair is appended to a log at once (an interrupted run keeps its work); at the end the
    manifest is rewritten in pair order with every decision re-made under `thresholds`.

    Parallel: `workers` processes measure pairs on this machine; under several ranks (`accelerate launch`,
    `torchrun`) each rank measures its share of the sorted pairs into its own log beside the manifest, and rank 0,
    once all are done, merges the logs into the one manifest. The returned summary is the whole run's on rank 0 and
    this rank's share elsewhere.
    """
    th = thresholds or CurationThresholds()
    ranks = ranks or Ranks()
    manifest = Path(manifest)
    pairs = discover_pairs(pairs_root, include_incomplete=True)
    if not pairs:
        raise InputError(f"no pair folders (with {Path('NAME/source.mp4')} and target.mp4) in {pairs_root}")
    if workers < 1:
        raise InputError("--workers must be at least 1")
    plot_path = None if plot is None else manifest.with_suffix(".png") if plot == "auto" else Path(plot)
    _check_outputs(pairs, manifest, plot_path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    log_path = manifest if ranks.world == 1 else _rank_log(manifest, ranks.rank)
    if rescore and ranks.world > 1:
        log_path.unlink(missing_ok=True)
    old = {} if rescore else _measured(manifest, notes=notes)
    todo = [p for p in ranks.mine(pairs) if _reusable(old.get(p.name)) is None]
    measured = 0
    with open(log_path, "a", encoding="utf-8") as log:
        for i, rec in enumerate(measure_pairs(todo, th, scorer, workers)):
            log.write(json.dumps(_finish(rec, th)) + "\n")
            log.flush()
            measured += rec.get("scores") is not None
            if progress:
                progress(i + 1, len(todo), rec["name"])
    measured_all = sum(ranks.gather_json(measured))  # waits for every rank: all logs are complete after this
    if not ranks.is_main:
        return CurationSummary(manifest, None, len(todo), 0, 0, 0, measured)
    # A rescore trusts only this run's logs (a single process logs into the manifest itself).
    found = _measured(manifest, (ranks.world if ranks.world > 1 else 0) if rescore else None, notes)
    records = []
    for pair in pairs:
        rec = _reusable(found.get(pair.name))
        if rec is None:  # measured in this run and unreadable (or, after a lost log, not measured at all)
            prev = found.get(pair.name) or {"error": "not measured; run curate again"}
            rec = {"name": pair.name, "scores": None, "error": prev.get("error", "not measured"),
                   "score_version": SCORE_VERSION}
        records.append(_finish(rec, th))
    with atomic_output(manifest) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for rank_log in manifest.parent.glob(_rank_log(manifest, "*").name):  # merged now: the manifest holds them
        rank_log.unlink(missing_ok=True)

    if plot_path is not None:
        plot_summary(records, th, plot_path)
    reasons: dict[str, int] = {}
    for r in records:
        for reason in r.get("reasons", []):
            reasons[_reason_key(reason)] = reasons.get(_reason_key(reason), 0) + 1
    errors = sum(1 for r in records if r.get("error"))
    kept = sum(1 for r in records if r["keep"])
    return CurationSummary(manifest, plot_path, len(records), kept, len(records) - kept - errors, errors,
                           measured_all, reasons, list(dict.fromkeys(notes)))


def _check_outputs(pairs: list[Pair], manifest: Path, plot: Path | None) -> None:
    """The manifest and the plot are writable files of their type, and none of the pairs' files (nor each other)."""
    outputs = [Output(manifest, "the manifest (--out)", (".jsonl", ".json"), make_parents=True)]
    if plot is not None:
        outputs.append(Output(plot, "the plot (--plot)", (".png",), make_parents=True))
    inputs = [(p, f"a file of pair {pair.name}") for pair in pairs
              for p in (pair.source, pair.target, pair.root / "edit.png", pair.meta_path)]
    check_outputs(outputs, inputs)


# --- the parallel driver: who measures what, and where it is logged ---------------------------------------------------
def _rank_log(manifest: Path, rank) -> Path:
    """Rank `rank`'s log of measured pairs, hidden beside the manifest (merged into it and removed at the end)."""
    return manifest.with_name(f".{manifest.name}.rank-{rank if rank == '*' else f'{rank:05d}'}.jsonl")


def _measured(manifest: Path, ranks: int | None = None, notes: list[str] | None = None) -> dict[str, dict]:
    """Every pair's latest record: the manifest, then the rank logs — all of them (an interrupted run's too, whatever
    its size), or only those of ranks below `ranks` (a rescore: the others hold measurements it replaced). What is
    done about a damaged line goes to `notes`."""
    found = read_manifest(manifest, resuming=True, notes=notes)
    if ranks is None:
        logs = sorted(manifest.parent.glob(_rank_log(manifest, "*").name))
    else:
        logs = [_rank_log(manifest, r) for r in range(ranks)]
    for path in logs:
        found.update(read_manifest(path, resuming=True, notes=notes))
    return found


def _reusable(prev: dict | None) -> dict | None:
    """The part of a stored record that can be used without measuring again, or None."""
    if prev and prev.get("scores") is not None and prev.get("score_version") == SCORE_VERSION:
        return {"name": prev["name"], "scores": prev["scores"], "score_version": SCORE_VERSION}
    return None


def measure_one(pair: Pair, th: CurationThresholds, scorer: Callable[[Pair, CurationThresholds], dict]) -> dict:
    """One pair's raw record: its scores, or `scores: None` with an `error` sentence (never raises)."""
    rec = {"name": pair.name, "score_version": SCORE_VERSION}
    try:
        if not pair.is_complete():
            missing = "source.mp4" if not pair.source.is_file() else "target.mp4"
            raise InputError(f"{missing} is missing")
        rec["scores"] = scorer(pair, th)
    except Exception as exc:  # noqa: BLE001 - an unreadable pair is reported and skipped, never ends the run
        rec["scores"] = None
        rec["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, InputError) else str(exc)
    return rec


def _worker_init() -> None:
    # One thread per worker: N workers on N cores beat N workers fighting over N×N threads.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def measure_pairs(pairs: list[Pair], th: CurationThresholds, scorer, workers: int = 1):
    """Yield each pair's raw record (in completion order), measured here or by `workers` processes.

    Workers are spawned (not forked: MediaPipe and torch threads do not survive a fork), each loads the detectors once
    and measures many pairs; the scorer must therefore be a module-level function."""
    if workers <= 1 or len(pairs) <= 1:
        for pair in pairs:
            yield measure_one(pair, th, scorer)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(min(workers, len(pairs)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    try:
        futures = {pool.submit(measure_one, pair, th, scorer): pair for pair in pairs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): those pairs are retried next run
                yield {"name": futures[future].name, "score_version": SCORE_VERSION, "scores": None,
                       "error": "the worker process measuring it died; run curate again"}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    ("edit_kept", "min_edit_kept", "min"),
)


def plot_summary(records: list[dict], th: CurationThresholds, path: str | Path) -> Path:
    """One histogram per score (kept pairs green, rejected red) with the threshold drawn: where the cut falls."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 3, figsize=(13, 9.5))
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
    return save_figure(fig, path)
