"""The product speaks of the product: no tracker references or notes on how the work was organised in the package,
docs, README, benchmarks or examples (a user reads none of that)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FORBIDDEN = [
    re.compile(r"\b(?:issue|ticket|pr|pull request)s?\s*#?\d+\b", re.IGNORECASE),  # "issue 13", "PR #7"
    re.compile(r"(?<![\w/&(\"'=])#\d{1,5}(?![\w-])"),  # "#13" (not a colour "#111111" or an anchor "(#5-...)")
    re.compile(r"\bno (?:gpu|device)(?: time)? (?:was )?lent\b", re.IGNORECASE),
    re.compile(r"\bdevice time\b", re.IGNORECASE),
    re.compile(r"\bthe issue'?s?\b", re.IGNORECASE),
    re.compile(r"\b(?:integrator|the brief)\b", re.IGNORECASE),
]


def _files():
    yield ROOT / "README.md"
    for folder, patterns in (("synclora", ("*.py", "*.md", "*.txt", "*.yaml", "*.json")),
                             ("docs", ("*.md",)), ("benchmarks", ("*.py", "*.md", "*.sh")),
                             ("examples", ("*.py", "*.md"))):
        for pattern in patterns:
            yield from sorted((ROOT / folder).rglob(pattern))


def test_the_rules_catch_what_they_are_for():
    for text in ("see issue 13", "Issue #7 says", "fixed in #12.", "no GPU was lent", "no device time left",
                 "the issue's goal", "ask the integrator"):
        assert any(rule.search(text) for rule in _FORBIDDEN), text
    for text in ('colors=["#111111"]', "[§5](#5-at-cluster-scale)", "a session's files", "lent per call",
                 "x = a[0]  # 2 frames"):
        assert not any(rule.search(text) for rule in _FORBIDDEN), text


def test_no_word_of_how_the_work_was_organised():
    found = []
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for rule in _FORBIDDEN if rule.search(line)]
    assert not found, "\n".join(found)
