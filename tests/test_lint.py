"""The code passes the project's lint (ruff, configured in pyproject.toml), so `noqa` markers and style stay honest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    local = Path(sys.executable).with_name("ruff")
    if local.is_file():
        return [str(local)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_check_passes():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (it is in requirements-test.txt)")
    proc = subprocess.run([*ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_test_module_imports_another():
    """Shared fixtures live in conftest.py and shared tables in synclora.testing, never in a test module."""
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    for path in (ROOT / "tests").glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                assert words[1].split(".")[0] not in tests, f"{path.name}: {line.strip()}"


def test_no_sys_path_patches():
    """Benchmarks and examples import the installed package (`pip install -e .` or `python -m benchmarks.x`)."""
    patch = "sys.path." + "insert"
    for folder in ("benchmarks", "examples", "synclora", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            assert patch not in path.read_text(encoding="utf-8"), path
