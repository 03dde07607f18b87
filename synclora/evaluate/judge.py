"""One row of the table: make (or find) one method's result for one case and judge it against the case's clip.

The judging is the sync report's own `compare_videos` (the same numbers `report` prints) plus flicker and
preservation. A result that does not line up with its clip is mapped where that is honest (another frame size:
resized for the pixel measures; another length: the frames both have) and said in the row's notes; another frame
rate is refused, because frame i would no longer be at the same moment.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from synclora.config import PropagationRequest, PropagationSettings
from synclora.errors import InputError
from synclora.evaluate.cases import Case, Method

# Bumped when a row's measures change meaning: rows of another version are measured again.
ROW_VERSION = 1


def row_key(case: Case, method: Method, settings: PropagationSettings, max_lag: int) -> dict:
    """Everything a row depends on: a stored row with another key is stale and measured again."""
    key = {"version": ROW_VERSION, "clip": str(case.clip), "edited": str(case.edited), "edit_index": case.edit_index,
           "span": case.span, "method": method.name, "max_lag": max_lag}
    for p in (case.clip, case.edited):
        key[f"mtime:{p.name}"] = _mtime(p)
    if method.runs_here:
        key["settings"] = {**settings.to_dict(), "backend": method.backend, "lora": str(method.lora or "")}
        if method.lora:
            key["lora_mtime"] = _mtime(method.lora)
    else:
        result = case.results.get(method.name)
        key["result"] = str(result)
        key["result_mtime"] = _mtime(result) if result else None
    return key


def _mtime(path: Path | None) -> float | None:
    try:
        return Path(path).stat().st_mtime if path else None
    except OSError:
        return None


def make_result(case: Case, method: Method, settings: PropagationSettings, out: Path) -> tuple[Path, float, list]:
    """(the result to judge, seconds the method took or NaN when made elsewhere, notices)."""
    from synclora.paths import check_input
    from synclora.pipeline import run_propagation

    check_input(case.clip, f"clip of case {case.name}")
    check_input(case.edited, f"edited frame of case {case.name}")
    if not method.runs_here:
        result = case.results.get(method.name)
        if result is None:
            raise InputError(f"the cases file gives no result of {method.name} for this case")
        if not result.is_file():
            raise InputError(f"the result {result} does not exist")
        return result, float("nan"), []
    s = replace(settings, backend=method.backend, lora=str(method.lora) if method.lora else None, span=case.span)
    req = PropagationRequest(source=case.clip, edited=case.edited, out=out, edit_index=case.edit_index, settings=s)
    res = run_propagation(req)
    return res.out, res.seconds, list(res.notices)


def judged_frames(case: Case, clip_info, result_info) -> tuple[tuple[int, int], list[str]]:
    """The frames to compare (start, stop) and what was mapped to get them."""
    from synclora.video import io, timing

    notes = []
    name = Path(result_info.path).name
    if result_info.fps != clip_info.fps:
        raise InputError(f"{name} runs at {io.format_fps(result_info.fps)} fps and its clip at "
                         f"{io.format_fps(clip_info.fps)} fps; sync is judged frame by frame, so write the result "
                         "at the clip's frame rate")
    n = min(clip_info.n_frames, result_info.n_frames)
    if result_info.n_frames != clip_info.n_frames:
        notes.append(f"{name} has {result_info.n_frames} frames and its clip {clip_info.n_frames}: judged over "
                     f"frames 0–{n - 1}, which both have")
    start, stop = 0, n
    if case.span:
        span = timing.resolve_span(case.span, clip_info, edit_index=case.edit_index)
        start, stop = span.start, min(span.end + 1, n)
    if stop - start < 2:
        raise InputError(f"{name}: fewer than 2 frames to judge")
    return (start, stop), notes


def judge(case: Case, result: Path, max_lag: int = 5) -> dict:
    """The row's measures for `result` against the case's clip (no method facts)."""
    from synclora.edit.image import load_image
    from synclora.metrics.compare import compare_videos
    from synclora.metrics.pixels import pixel_scores
    from synclora.video import io

    clip_info, result_info = io.probe(case.clip), io.probe(result)
    frame_range, notes = judged_frames(case, clip_info, result_info)
    if not 0 <= case.edit_index < clip_info.n_frames:
        raise InputError(f"the edit index {case.edit_index} is outside {case.clip.name} (frames 0 to "
                         f"{clip_info.n_frames - 1})")
    edited, _ = load_image(case.edited)
    report = compare_videos(case.clip, result, edited_frame=edited, edit_index=case.edit_index,
                            frame_range=frame_range, max_lag=max_lag)
    pixels = pixel_scores(case.clip, result, edited=edited, edit_index=case.edit_index, frame_range=frame_range)
    row = row_from(report, pixels, notes + report.notes + pixels.notes)
    row["clip_frames"] = clip_info.n_frames
    return row


def _num(v, digits: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def row_from(report, pixels, notes: list[str]) -> dict:
    """The table's numbers from a `SyncReport` and `PixelScores`."""
    th = report.thresholds
    kept = report.kept
    kept_mean = kept_min = low = None
    if kept is not None and np.isfinite(kept.curve).any():
        kept_mean = _num(np.nanmean(kept.curve))
        kept_min = _num(kept.worst(th.edit_min_run))
        low = int(np.sum(np.isfinite(kept.curve) & (kept.curve < th.min_edit_kept)))
    mouth = report.cues.get("mouth")
    cues = {name: {"r": _num(s.corr), "lag": int(s.lag), "r_at_lag": _num(s.corr_at_lag),
                   "judged": bool(s.active and not s.hidden), "frozen": bool(s.frozen)}
            for name, s in report.cues.items()}
    b = report.blinks
    curves = {}
    if report.source_track is not None and report.result_track is not None:
        curves = {"source_mouth": [_num(v, 5) for v in report.source_track.cues["mouth"]],
                  "mouth": [_num(v, 5) for v in report.result_track.cues["mouth"]]}
    return {
        "in_sync": report.in_sync,
        "verdict": report.verdict,
        "lag": int(report.lag),
        "mouth_corr": None if mouth is None else _num(mouth.corr),
        "corr": _num(report.corr),
        "cues": cues,
        "blinks": {"matched": b.matched, "missed": b.missed, "extra": b.extra, "judged": b.judged},
        "identity": None if report.identity is None else _num(report.identity.mean_similarity),
        "identity_distance": None if report.identity is None else _num(report.identity.mean_distance),
        "edit_kept_mean": kept_mean,
        "edit_kept_min": kept_min,
        "edit_kept_low_frames": low,
        "face_lost": len(report.faces.lost),
        "flicker": _num(pixels.flicker),
        "source_flicker": _num(pixels.source_flicker),
        "preservation_psnr": _num(pixels.preservation_psnr),
        "frames": list(report.frames) if report.frames else None,
        "notes": list(dict.fromkeys(notes)),
        "curves": curves,
    }


def evaluate_row(case: Case, method: Method, settings: PropagationSettings, out_dir: Path, max_lag: int,
                 key: dict) -> dict:
    """Make and judge one row and store it (atomically, at `rows/…json` of the case's folder); never raises for a
    user's mistake — the row then carries an `error` sentence and is not stored, so a rerun tries again."""
    from synclora.data.cluster import write_json_atomic
    from synclora.errors import user_error

    case_dir = out_dir / case.name
    case_dir.mkdir(parents=True, exist_ok=True)
    row = {"case": case.name, "method": method.name}
    t0 = time.perf_counter()
    try:
        result, seconds, notices = make_result(case, method, settings, case_dir / f"{method.name}.mp4")
        judged = judge(case, result, max_lag)
    except Exception as exc:  # noqa: BLE001 - one failed row is reported in the table; the others go on
        error = user_error(exc)
        row["error"] = str(error) if error is not None else f"{type(exc).__name__}: {exc}"
        return row
    n_frames = judged["clip_frames"]
    row.update(judged)
    row["notes"] = list(dict.fromkeys(notices + row["notes"]))
    row["result"] = str(result)
    row["seconds"] = _num(seconds, 2)
    row["method_fps"] = _num(n_frames / seconds, 2) if n_frames and seconds and np.isfinite(seconds) else None
    row["judge_seconds"] = round(time.perf_counter() - t0 - (seconds if np.isfinite(seconds) else 0.0), 2)
    row["key"] = key
    write_json_atomic(row_path(out_dir, case.name, method.name), row)
    return row


def row_path(out_dir: Path, case: str, method: str) -> Path:
    return Path(out_dir) / case / "rows" / f"{method}.json"
