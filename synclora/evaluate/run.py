"""The evaluation run: which rows are mine and still to do, who computes them, and the merged table at the end.

Every finished row is its own file (DIR/CASE/rows/METHOD.json, written atomically, keyed by everything it depends
on), so a stopped run resumes by computing only the rows that are missing or stale. CPU methods (the flow preview,
results made elsewhere) can run `workers` at a time in spawned processes; the GPU backend runs in this process,
one row at a time, with its model loaded once. Under `accelerate launch`/`torchrun` each rank takes its share of the
cases (`synclora.data.cluster.Ranks`), and rank 0 writes the one table once every rank is done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synclora.config import PropagationSettings
from synclora.data.cluster import Ranks
from synclora.errors import InputError
from synclora.evaluate import table
from synclora.evaluate.cases import Case, Method, load_cases, methods_for
from synclora.evaluate.judge import evaluate_row, row_key, row_path

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EvalConfig:
    cases: Path
    out: Path
    backends: tuple[str, ...] = ()
    loras: tuple[str, ...] = ()  # NAME=FILE, each run on the Sync-LoRA backend
    settings: PropagationSettings = field(default_factory=PropagationSettings)  # backend, lora and span set per row
    workers: int = 1
    max_lag: int = 5
    grid: bool = True  # the side-by-side video and the plot per case


@dataclass
class EvalSummary:
    out: Path
    results: Path | None  # results.json (rank 0 only)
    table_md: str
    rows: list[dict]  # every case × method: measures, or `error`
    computed: int  # rows measured in this run (all ranks)
    reused: int  # rows found finished on disk

    @property
    def ok(self) -> int:
        return sum(1 for r in self.rows if "error" not in r)


def _worker_init() -> None:
    # One thread per worker: N workers on N cores beat N workers fighting over N×N threads.
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _stored(path: Path, key: dict) -> dict | None:
    """A finished row with this key, or None (missing, damaged or stale)."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and row.get("key") == key and "error" not in row else None


def _check_out(config: EvalConfig, cases: list[Case]) -> None:
    from synclora.paths import Output, check_outputs

    inputs = [(config.cases, "the cases file")]
    for c in cases:
        inputs += [(c.clip, f"the clip of case {c.name}"), (c.edited, f"the edited frame of case {c.name}")]
        inputs += [(p, f"a result of case {c.name}") for p in c.results.values()]
    check_outputs([Output(config.out, "--out (the evaluation folder)", folder=True)], inputs)


def evaluate(config: EvalConfig, progress: ProgressFn | None = None, ranks: Ranks | None = None) -> EvalSummary:
    """Judge every method on every case into `config.out`; see the module docstring for how work is shared."""
    ranks = ranks or Ranks()
    if config.workers < 1:
        raise InputError("--workers must be at least 1")
    if config.max_lag < 0:
        raise InputError(f"--max-lag must be ≥ 0, got {config.max_lag}")
    cases, problems = load_cases(config.cases)
    methods = methods_for(cases, list(config.backends), list(config.loras))
    if not cases:
        raise InputError("no case in the cases file can be used: " + "; ".join(p["error"] for p in problems))
    if not methods:
        raise InputError("nothing to judge: give --backend or --lora NAME=FILE, or results in the cases file")
    _check_out(config, cases)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    keys = {(c.name, m.name): row_key(c, m, config.settings, config.max_lag) for c in cases for m in methods}
    mine = ranks.mine(cases)
    todo = [(c, m) for c in mine for m in methods
            if _stored(row_path(out, c.name, m.name), keys[c.name, m.name]) is None]
    errors: dict[str, str] = {}
    done = 0
    for row in _run_rows(todo, config, keys, progress):
        done += "error" not in row
        if "error" in row:
            errors[f"{row['case']}\x1f{row['method']}"] = row["error"]
    if config.grid:
        from synclora.evaluate.grid import case_outputs

        for c in mine:
            case_outputs(c, methods, out, [_stored(row_path(out, c.name, m.name), keys[c.name, m.name])
                                           for m in methods])
    reused = len(mine) * len(methods) - len(todo)
    # A barrier too: after it, every rank's rows are on disk.
    shared = ranks.gather_json({"errors": errors, "computed": done, "reused": reused})
    if not ranks.is_main:
        return EvalSummary(out, None, "", [], done, reused)
    for part in shared:
        errors.update(part["errors"])
    computed = sum(part["computed"] for part in shared)
    rows = []
    for c in cases:
        for m in methods:
            row = _stored(row_path(out, c.name, m.name), keys[c.name, m.name])
            if row is None:
                why = errors.get(f"{c.name}\x1f{m.name}", "not measured (the run stopped first); run it again")
                row = {"case": c.name, "method": m.name, "error": why}
            rows.append(row)
    rows += [{"case": p["case"], "method": None, "error": p["error"]} for p in problems]
    results = table.write_all(out, [c.name for c in cases], methods, rows)
    return EvalSummary(out, results, table.markdown(rows, methods), rows, computed,
                       sum(part["reused"] for part in shared))


def _method_settings(settings: PropagationSettings, m: Method) -> PropagationSettings:
    from dataclasses import replace

    return replace(settings, backend=m.backend, lora=str(m.lora) if m.lora else None)


def _loaded(settings: PropagationSettings, m: Method) -> bool:
    """Whether this method's model was loaded before the rows began (the app's, a training run's): then it stays."""
    from synclora.propagate import registry

    return registry.loaded(_method_settings(settings, m))


def _unload(settings: PropagationSettings, m: Method) -> None:
    from synclora.propagate import registry

    registry.unload(_method_settings(settings, m))


def _run_rows(todo: list[tuple[Case, Method]], config: EvalConfig, keys: dict, progress: ProgressFn | None):
    """Yield each row as it finishes: CPU rows on `workers` spawned processes while GPU rows run here."""
    total = len(todo)
    count = 0

    def tick(row: dict):
        nonlocal count
        count += 1
        if progress is not None:
            progress(count, total, f"{row['case']} / {row['method']}")
        return row

    cpu = [(c, m) for c, m in todo if m.cpu]
    # GPU rows method by method: each model (backend + LoRA) is loaded once, and let go before the next one loads.
    order = {m.name: i for i, (_, m) in reversed(list(enumerate(todo)))}
    here = sorted([(c, m) for c, m in todo if not m.cpu], key=lambda cm: order[cm[1].name])
    if config.workers <= 1 or len(cpu) <= 1:
        here = cpu + here
        cpu = []

    def run_here(c: Case, m: Method) -> dict:
        return evaluate_row(c, m, config.settings, config.out, config.max_lag, keys[c.name, m.name])

    def run_all_here():
        for i, (c, m) in enumerate(here):
            loaded = m.runs_here and _loaded(config.settings, m)
            try:
                yield tick(run_here(c, m))
            finally:
                last = i + 1 == len(here) or here[i + 1][1].name != m.name
                if m.runs_here and last and not loaded:
                    _unload(config.settings, m)

    if not cpu:
        yield from run_all_here()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(min(config.workers, len(cpu)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    try:
        futures = {pool.submit(evaluate_row, c, m, config.settings, config.out, config.max_lag,
                               keys[c.name, m.name]): (c, m) for c, m in cpu}
        yield from run_all_here()  # the GPU rows, while the workers do the CPU ones
        for future in as_completed(futures):
            c, m = futures[future]
            try:
                row = future.result()
            except BrokenProcessPool:  # a worker died (killed, out of memory): its rows are retried next run
                row = {"case": c.name, "method": m.name,
                       "error": "the worker process measuring it died; run evaluate again"}
            yield tick(row)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
