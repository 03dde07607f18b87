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
    ("the progress callback's type", r"^\s*ProgressFn\s*=\s*Callable\[\[float, str\]|^\s*def no_progress\b",
     "synclora/progress.py"),
    ("the sync limits the report and curation share",
     r"^\s*(?:MAX_IDENTITY_DISTANCE|MIN_EDIT_KEPT|EDIT_MIN_RUN|MAX_FACE_LOST|CUE_GROUPS\b[^=\n]*)\s*=|"
     r"(?:max_identity_distance|min_edit_kept|max_face_lost|max_missing_face|edit_min_run)\s*:[^=]*=\s*[\d.]+|"
     r"\(\s*\"yaw\",\s*\"pitch\",\s*\"roll\"\s*\)",
     "synclora/metrics/scores.py"),
    ("file descriptor 2 redirected (MediaPipe's chatter held back; hushed after a stop)", r"os\.dup2\([^)]*,\s*2\)",
     ("synclora/face/mesh.py", "synclora/signals.py")),
    ("MediaPipe itself (face/ is its boundary)", r"^\s*(?:import mediapipe|from mediapipe)",
     ("synclora/face/mesh.py", "synclora/face/parts.py")),
    ("the backends' display names", r"[\"']Sync-LoRA[\"']|[\"']CPU preview[\"']", "synclora/config.py"),
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
        homes = [home] if isinstance(home, str) else list(home)
        if not where or not set(where) <= set(homes):
            problems.append(f"{what}: expected only in {homes}, found in {where}")
    assert not problems, "\n".join(problems)


def _module_graph() -> dict[str, set[str]]:
    """synclora module -> the synclora modules it imports (inside functions too; a package's own parents excluded)."""
    import ast

    mods = {}
    for path in (ROOT / "synclora").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: never imported at run time
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name and not name.startswith(t + ".")}
    return graph


def test_no_import_circle():
    """No two modules import each other, however indirectly (a circle hides which one is the lower layer)."""
    graph = _module_graph()
    circles, done = [], set()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in graph}
    for m in sorted(graph):
        if m in done or m not in reachable[m]:
            continue
        circle = sorted(n for n in reachable[m] if m in reachable[n])
        done |= set(circle)
        circles.append(" ↔ ".join(circle))
    assert not circles, "\n".join(circles)


def test_every_backend_has_one_record_and_one_registry_entry():
    """A backend is named once (`config.BACKENDS`); the settings' literal, their choices and the registry agree."""
    import typing

    from synclora import config
    from synclora.propagate import registry

    names = [b.name for b in config.BACKENDS]
    assert list(typing.get_args(config.Backend)) == ["auto", *names]
    assert [v for v, _ in config.metadata("backend")["choices"]] == ["auto", *names]
    assert [b.name for b in registry.backends()] == names
    assert [registry._code(n).name for n in names] == names  # each record names its own backend's class
