"""Concepts that must be defined once, or the copies drift apart: a second definition anywhere fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (what, a regex for a definition, the one file allowed to hold it)
ONCE = [
    ("the ZeroGPU test", r"^\s*def on_zerogpu\b|SPACES_ZERO_GPU|\bConfig\.zero_gpu\b", "synclora/runtime.py"),
    ("LTX's frame rate", r"^\s*FRAME_RATE\s*=", "synclora/ltx/recipe.py"),
    ("the distilled sigmas", r"^\s*STAGE_[12]_(?:SIGMAS|NOISE_SCALE)\s*=", "synclora/ltx/recipe.py"),
    ("the progress callback's type", r"^\s*ProgressFn\s*=|^\s*def no_progress\b", "synclora/progress.py"),
    ("the out-of-memory hint", r"^\s*OOM_HINT\s*=|try quality 'preview'", "synclora/errors.py"),
]


def _sources():
    for folder in ("synclora", "benchmarks", "examples"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield ROOT / "app.py"


def test_each_concept_is_defined_once():
    problems = []
    for what, pattern, home in ONCE:
        rule = re.compile(pattern, re.M)
        where = [str(p.relative_to(ROOT)) for p in _sources() if rule.search(p.read_text(encoding="utf-8"))]
        if where != [home]:
            problems.append(f"{what}: expected only in {home}, found in {where}")
    assert not problems, "\n".join(problems)
