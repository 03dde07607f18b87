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


# Which top-level parts of the package may import which: each edge points one way (errors ← limits, paths ← video ←
# ltx ← propagate, train; video ← face ← metrics, propagate; metrics, edit, propagate ← data, which runs the models to
# make pairs ← train; ui and cli on top). Imports inside functions count too.
_ALLOWED = {
    "errors": set(),
    "memory": set(),
    "limits": {"errors", "memory"},  # memory: which frame sizes keep freed blocks (and need more)
    "paths": {"errors", "signals"},
    "signals": set(),
    "progress": set(),  # the progress callback's type, shared by backends, the report and the LTX recipe
    "runtime": {"errors"},
    "config": {"errors", "video"},  # video.timing parses the span setting (never the other way round)
    "video": {"errors", "limits", "paths"},
    # the face mesh, read by the sync report, the preview's face guidance and the test media; signals: a stopped run
    # keeps MediaPipe's chatter hushed
    "face": {"signals", "video"},
    "edit": {"errors", "limits", "memory", "paths", "runtime", "video"},
    "ltx": {"errors", "memory", "paths", "runtime", "video", "progress"},
    "propagate": {"config", "errors", "memory", "runtime", "face", "ltx", "video", "progress"},
    "metrics": {"config", "errors", "edit", "face", "limits", "paths", "video", "progress"},  # config: --edit-index
    "pipeline": {"config", "errors", "limits", "memory", "edit", "paths", "propagate", "video"},
    "data": {"config", "errors", "memory", "edit", "face", "ltx", "metrics", "paths", "pipeline", "propagate", "video"},
    # evaluate: runs propagations and judges them with the report's measures, into one table (train may call it)
    "evaluate": {"config", "errors", "edit", "data", "metrics", "paths", "pipeline", "propagate", "video"},
    "train": {"config", "errors", "memory", "paths", "runtime", "data", "evaluate", "ltx", "video"},
    "testing": {"config", "errors", "face", "metrics", "pipeline", "train", "video"},
}


def _package_imports(path: Path) -> set[str]:
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "synclora":
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "synclora" or len(parts) < 2:
                continue
            if (ROOT / "synclora" / parts[1]).is_dir() or (ROOT / "synclora" / f"{parts[1]}.py").is_file():
                out.add(parts[1])
    return out


def test_imports_point_one_way():
    problems = []
    for path in (ROOT / "synclora").rglob("*.py"):
        rel = path.relative_to(ROOT / "synclora")
        part = rel.parts[0].removesuffix(".py")
        if part not in _ALLOWED:
            continue  # ui, cli, __main__: on top, may use anything
        for used in _package_imports(path) - {part}:
            if used not in _ALLOWED[part]:
                problems.append(f"synclora/{rel} imports synclora.{used}")
    assert not problems, "\n".join(sorted(problems))


def test_cited_documents_exist():
    """Every document the code, README or docs point to is in the repository (no outside notes)."""
    import re

    files = [ROOT / "README.md", ROOT / "app.py", *(ROOT / "docs").glob("*.md"), *(ROOT / "synclora").rglob("*.py"),
             *(ROOT / "benchmarks").glob("*.py")]
    missing = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for cited in re.findall(r"\b(docs/[\w-]+\.md|[\w-]+\.md)\b", text):
            candidates = [ROOT / cited, ROOT / "docs" / cited, ROOT / "assets" / cited, path.parent / cited]
            if not any(c.is_file() for c in candidates):
                missing.append(f"{path.relative_to(ROOT)} cites {cited}")
    assert not missing, "\n".join(missing)


def test_readme_layout_matches_the_tree():
    """Every top-level part of the package is in the README's Layout section, and everything listed there exists."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```")[1]
    listed = set(re.findall(r"^  (\w+(?:/|\.py))", block, flags=re.M))
    for name in listed:
        assert (ROOT / "synclora" / name.rstrip("/")).exists(), f"README lists synclora/{name}, which does not exist"
    parts = {p.name + "/" for p in (ROOT / "synclora").iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.name for p in (ROOT / "synclora").glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert parts <= listed, f"not in the README's Layout: {sorted(parts - listed)}"


# A module longer than this holds more than one thing: split it on its seams.
MAX_MODULE_LINES = 500


def test_no_module_over_500_lines():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
               for p in (ROOT / "synclora").rglob("*.py")}
    too_long = sorted(f"{p} ({n} lines)" for p, n in lengths.items() if n > MAX_MODULE_LINES)
    assert not too_long, f"longer than {MAX_MODULE_LINES} lines: {too_long}"
