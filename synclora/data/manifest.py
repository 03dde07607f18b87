"""Curation manifests (`curate`'s manifest.jsonl: one JSON record per pair, last line per name wins) and the pairs a
manifest keeps for training."""

from __future__ import annotations

import json
from pathlib import Path

from synclora.data.pairs import discover_pairs
from synclora.errors import InputError


def read_manifest(path: str | Path, *, resuming: bool = False) -> dict[str, dict]:
    """{name: record}. A broken line is an input error, except while `resuming` curation, where the file is our own
    log of an interrupted run: then a missing file reads as empty and a torn last line is ignored."""
    path = Path(path)
    if resuming and not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    out: dict[str, dict] = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if resuming and i == len(lines):
                continue
            hint = "; move the file away to start over" if resuming else f" ({exc})"
            raise InputError(f"{path.name} line {i} is not JSON{hint}") from None
        if not isinstance(rec, dict) or "name" not in rec:
            raise InputError(f"{path.name} line {i} has no 'name'")
        out[rec["name"]] = rec
    return out


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


