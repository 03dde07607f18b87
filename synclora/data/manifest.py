"""Curation manifests (`curate`'s manifest.jsonl: one JSON record per pair, last line per name wins) and the pairs a
manifest keeps for training."""

from __future__ import annotations

import json
import math
from pathlib import Path

from synclora.data.pairs import discover_pairs
from synclora.errors import InputError
from synclora.paths import check_input


def read_manifest(path: str | Path, *, resuming: bool = False, notes: list[str] | None = None) -> dict[str, dict]:
    """{name: record}. A broken line is an input error naming the line, except while `resuming` curation, where the
    file is our own log of an interrupted run: then a missing file reads as empty, and a torn last line or a record
    whose scores are unusable is measured again — said in `notes`, never dropped silently."""
    path = Path(path)
    if resuming and not path.exists():
        return {}
    check_input(path, "manifest")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path.name} is not a text file (a manifest is UTF-8 JSON lines)") from None
    out: dict[str, dict] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            if resuming and i == len(lines):
                if notes is not None:
                    notes.append(f"{path.name} line {i} is cut short (an interrupted run?); that pair is measured "
                                 "again and the line is rewritten")
                continue
            hint = "; move the file away to start over" if resuming else f" ({exc})"
            raise InputError(f"{path.name} line {i} is not JSON{hint}") from None
        problem = _problem(rec)
        if problem and resuming and isinstance(rec, dict) and isinstance(rec.get("name"), str) and rec["name"]:
            if notes is not None:
                notes.append(f"{path.name} line {i} ({rec['name']}): {problem}; that pair is measured again")
            continue
        if problem:
            raise InputError(f"{path.name} line {i}: {problem}" + ("; move the file away to start over"
                                                                    if resuming else ""))
        out[rec["name"]] = rec
    return out


def _problem(rec) -> str | None:
    """What makes a manifest record unusable (None: nothing). Every field is checked for its type: a manifest is a
    file anyone can edit, and `keep: "false"` must not read as true."""
    if not isinstance(rec, dict):
        return "is not a JSON object"
    if not isinstance(rec.get("name"), str) or not rec["name"]:
        return "has no 'name'"
    if "keep" in rec and not isinstance(rec["keep"], bool):
        return f"'keep' must be true or false, got {rec['keep']!r}"
    scores = rec.get("scores")
    if scores is not None:
        if not isinstance(scores, dict):
            return "'scores' is not an object"
        for key, value in scores.items():
            kind = _SCORE_KINDS.get(key)
            if value is None or kind is None:  # unknown keys are not read by the decision: kept as they are
                continue
            if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or not math.isfinite(value)):
                return f"score {key!r} is not a number"
            if kind == "bool" and not isinstance(value, bool):
                return f"score {key!r} is not true or false"
            if kind == "text" and not isinstance(value, str):
                return f"score {key!r} is not text"
            if kind == "texts" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return f"score {key!r} is not a list of words"
    return None


# What each score the decision reads must be (curate.scores_from_report writes them; a manifest anyone edited may not).
_SCORE_KINDS = {
    **dict.fromkeys(("pose", "mouth", "gaze", "eyes", "blink", "blinks_source", "blinks_target", "lag", "motion_ratio",
                     "identity", "face_lost", "source_faces", "corr", "edit_index", "edit_kept"), "number"),
    "judged": "bool",
    "motion_ratio_cue": "text",
    "report_verdict": "text",
    "hidden": "texts",
    "edit_problems": "texts",
}


def select_pairs(data: Path, manifest: Path | None) -> tuple[list, list[tuple[str, str]]]:
    """Pairs to train on: all complete ones, or only those the manifest keeps. Returns (pairs, skipped reasons)."""
    pairs = discover_pairs(data)
    skipped: list[tuple[str, str]] = []
    if manifest is not None:
        records = read_manifest(manifest)
        kept = []
        for pair in pairs:
            rec = records.get(pair.name)
            if rec is None:
                skipped.append((pair.name, "not in the manifest"))
            elif not rec.get("keep"):
                skipped.append((pair.name, "rejected by curation"))
            else:
                kept.append(pair)
        pairs = kept
    if not pairs:
        raise InputError(f"no pairs to train on in {data}" + (f" kept by {manifest.name}" if manifest else ""))
    return pairs, skipped


