"""The cases file and the methods: what is judged, read once and checked entry by entry.

A cases file is a JSON list of `{"name", "clip", "edited", "edit_index"}` with optional `"span"` (as `propagate
--span` takes it) and `"results": {"METHOD": "path.mp4"}` (results made elsewhere, judged as they are). Paths are
relative to the file. One bad entry is one sentence for that case; the others go on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from synclora.errors import InputError

# Case and method names become folder and file names (DIR/CASE/METHOD.mp4): letters, digits, '.', '_', '-'.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
_KEYS = {"name", "clip", "edited", "edit_index", "span", "results"}
BACKENDS = ("flow", "synclora")


@dataclass(frozen=True)
class Case:
    name: str
    clip: Path
    edited: Path
    edit_index: int
    span: str | None = None
    results: dict[str, Path] = field(default_factory=dict)  # outside results by method name


@dataclass(frozen=True)
class Method:
    """A column of the table: a backend run here (with its own LoRA or not), or results given in the cases file."""

    name: str
    backend: str | None = None  # None: the cases file holds its results
    lora: Path | None = None

    @property
    def runs_here(self) -> bool:
        return self.backend is not None

    @property
    def cpu(self) -> bool:
        """Runs on the CPU, so several may run at once in worker processes (the GPU one runs in this process)."""
        return self.backend in (None, "flow")

    def describe(self) -> str:
        if self.backend is None:
            return "results from the cases file"
        return f"{self.backend} backend" + (f" with LoRA {self.lora}" if self.lora else "")


# A method's result is DIR/CASE/METHOD.mp4, beside the case's grid.mp4.
RESERVED_METHODS = {"grid"}


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{what} {name!r} must be 1–64 letters, digits, '.', '_' or '-' (it names files)")
    if what == "the method name" and name in RESERVED_METHODS:
        raise InputError(f"{what} {name!r} is taken by the case's grid video; choose another")
    return name


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            raise InputError(f"{k!r} is given twice in one entry")
        seen[k] = v
    return seen


def load_cases(path: str | Path) -> tuple[list[Case], list[dict]]:
    """(the good cases, one `{"case", "error"}` per bad entry). A file that is not a JSON list of entries is an
    `InputError`: nothing can run from it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"the cases file {path} does not exist") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise InputError(f"the cases file {path} cannot be read as text ({type(exc).__name__})") from None
    try:
        data = json.loads(text, object_pairs_hook=lambda p: p)
    except json.JSONDecodeError as exc:
        raise InputError(f"the cases file {path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"the cases file {path.name} must be a JSON list of cases "
                         '[{"name", "clip", "edited", "edit_index"}, …]')
    cases, problems, names = [], [], set()
    for i, entry in enumerate(data):
        label = f"case {i + 1}"
        try:
            if not isinstance(entry, list):  # object_pairs_hook turns every object into a list of pairs
                raise InputError("is not an object {\"name\", \"clip\", \"edited\", \"edit_index\"}")
            d = _unique_pairs(entry)
            if isinstance(d.get("name"), str):
                label = d["name"]
            case = _case(d, path.parent)
            if case.name in names:
                raise InputError("this case name is used twice in the cases file")
            names.add(case.name)
            cases.append(case)
        except InputError as exc:
            problems.append({"case": label, "error": f"{label}: {exc}"})
    return cases, problems


def _case(d: dict, root: Path) -> Case:
    missing = [k for k in ("name", "clip", "edited", "edit_index") if k not in d]
    if missing:
        raise InputError("misses " + ", ".join(f'"{k}"' for k in missing))
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise InputError("has unknown keys " + ", ".join(f'"{k}"' for k in unknown) + f" (known: {sorted(_KEYS)})")
    name = check_name(d["name"], "the case name")
    k = d["edit_index"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InputError(f'"edit_index" must be a frame number (0 or more), got {k!r}')
    for key in ("clip", "edited"):
        if not isinstance(d[key], str) or not d[key]:
            raise InputError(f'"{key}" must be a path, got {d[key]!r}')
    span = d.get("span")
    if span is not None and not isinstance(span, str):
        raise InputError(f'"span" must be text like "12:40" or "2s:5.5s", got {span!r}')
    if span is not None:
        from synclora.video.timing import parse_span

        parse_span(span)
    raw = d.get("results") or []
    if not isinstance(raw, list):
        raise InputError('"results" must be an object {"METHOD": "path.mp4"}')
    results = {}
    for method, p in _unique_pairs(raw).items():
        check_name(method, "the method name")
        if not isinstance(p, str) or not p:
            raise InputError(f'the result of method "{method}" must be a path, got {p!r}')
        results[method] = (root / p).resolve()
    return Case(name, (root / d["clip"]).resolve(), (root / d["edited"]).resolve(), k, span, results)


def methods_for(cases: list[Case], backends: list[str], loras: list[str]) -> list[Method]:
    """The table's columns in order: the backends, the LoRAs (`NAME=FILE`, run on the Sync-LoRA backend), then the
    outside methods the cases name. A name given twice on the command line is an `InputError`."""
    out: list[Method] = []

    def add(m: Method) -> None:
        if any(o.name == m.name for o in out):
            raise InputError(f"the method name {m.name!r} is given twice; every --backend and --lora NAME needs its "
                             "own name")
        out.append(m)

    for b in backends:
        if b not in BACKENDS:
            raise InputError(f"unknown backend {b!r}; choose one of: {', '.join(BACKENDS)}")
        add(Method(b, b))
    for spec in loras:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--lora takes NAME=FILE (e.g. mine=run/lora.safetensors), got {spec!r}")
        add(Method(check_name(name, "the method name"), "synclora", Path(file)))
    run_here = {m.name for m in out}
    for case in cases:
        for name in case.results:
            if name not in run_here and not any(o.name == name for o in out):
                out.append(Method(name))
    return out
