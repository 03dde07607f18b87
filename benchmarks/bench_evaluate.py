"""Evaluate of 3 cases × 2 methods with one worker against two, in the same run.

Run: python -m benchmarks.bench_evaluate [--frames 72] [--repeats 1] [--table docs/table.md]

Three real moving faces (`synclora.testing.cases`: two people, one with a still head), each edited with lipstick on
frame 10; the methods are the CPU flow backend (run on every case) and a right result made elsewhere (`right`).
Every repeat evaluates into a fresh folder with `--workers 1` (the baseline) and `--workers 2`, no grid, and checks
that both tables hold the same numbers (the seconds column aside). Printed: wall seconds per run and their ratio, and
the CPU seconds of each (this process and its workers), which say whether the machine had a second core to give.
`--table` also copies the 1-worker table there, as the documentation's sample.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from synclora.evaluate.run import EvalConfig, evaluate
from synclora.testing.cases import write_case, write_cases

MEASURES = ("in_sync", "lag", "corr", "mouth_corr", "identity", "edit_kept_mean", "flicker", "preservation_psnr")


def _cases(root: Path, frames: int) -> Path:
    entries = [write_case(root, "hopper", person="grace_hopper", n=frames, results=("right",)),
               write_case(root, "collins", person="astronaut", n=frames, seed=1, results=("right",)),
               write_case(root, "hopper-still", person="grace_hopper", n=frames, seed=2, still=True,
                          results=("right",))]
    return write_cases(root, entries)


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _run(cases: Path, out: Path, workers: int) -> tuple[float, float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), _cpu()
    summary = evaluate(EvalConfig(cases=cases, out=out, backends=("flow",), workers=workers, grid=False))
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    assert summary.ok == 6, [r.get("error") for r in summary.rows]
    rows = json.loads((out / "results.json").read_text())["rows"]
    return seconds, cpu, {(r["case"], r["method"]): tuple(r.get(k) for k in MEASURES) for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=72)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--table", type=Path, default=None, help="write the 1-worker table here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = _cases(root, args.frames)
        print(f"evaluate: 3 cases × 2 methods (flow, right), {args.frames} frames of 256×256 each, 25 fps")
        for r in range(args.repeats):
            one, cpu_one, rows_one = _run(cases, root / "w1", 1)
            if args.table is not None and r == 0:
                shutil.copy(root / "w1" / "table.md", args.table)
            two, cpu_two, rows_two = _run(cases, root / "w2", 2)
            same = rows_one == rows_two
            print(f"repeat {r + 1}: workers 1 {one:.1f} s ({cpu_one:.0f} CPU-s), workers 2 {two:.1f} s "
                  f"({cpu_two:.0f} CPU-s) → ×{one / two:.2f} wall; same table: {same}")
            if not same:
                raise SystemExit("the tables differ between 1 and 2 workers")


if __name__ == "__main__":
    main()
