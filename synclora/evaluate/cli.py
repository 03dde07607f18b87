"""`python -m synclora evaluate CASES --out DIR …`: the evaluation table on the command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from synclora import config

# Settings chosen per row (backend, LoRA) or per case (span, fade), never once for the whole run.
_PER_ROW = {"backend", "lora", "span", "fade"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="judge many edits × methods (our backends, your LoRAs, results made elsewhere) into one table",
        description="Runs every --backend and --lora on every case of the cases file, judges each result (and each "
        "result the file names) with the sync report's measures plus flicker and preservation, and writes "
        "results.json, table.md, table.csv and, per case, grid.mp4 and plot.png into --out. A stopped run resumes "
        "where it stopped. Under `accelerate launch`/`torchrun` the cases are split across the processes. "
        "See docs/EVALUATE.md.",
    )
    p.add_argument("cases", type=Path, help='cases JSON: [{"name", "clip", "edited", "edit_index", "span"?, '
                   '"results"?: {"METHOD": "result.mp4"}}], paths relative to the file')
    p.add_argument("--out", required=True, type=Path, help="the evaluation folder")
    p.add_argument("--backend", dest="backends", action="append", default=[], choices=["flow", "synclora"],
                   help="run this backend on every case (a method named after it); may be repeated")
    p.add_argument("--lora", dest="loras", action="append", default=[], metavar="NAME=FILE",
                   help="run the Sync-LoRA backend with this LoRA file on every case (a method named NAME); may be "
                   "repeated")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="rows of CPU methods (flow, outside results) measured N at a time (default 1)")
    p.add_argument("--max-lag", type=int, default=5, help="largest lag searched, in frames (default 5)")
    p.add_argument("--no-grid", action="store_true", help="no grid.mp4 and plot.png per case")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    d = config.PropagationSettings()
    for f in fields(config.PropagationSettings):
        if f.name in _PER_ROW:
            continue
        meta = f.metadata
        metavar = "{" + ",".join(v for v, _ in meta["choices"]) + "}" if meta["choices"] else "N"
        p.add_argument(config.flag(f.name), dest=f.name, default=None, metavar=metavar,
                       help=(meta["help"] + f" (default {getattr(d, f.name)})").replace("%", "%%"))
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from synclora.evaluate.run import EvalConfig

    settings = config.PropagationSettings.from_values(
        {f.name: getattr(args, f.name) for f in fields(config.PropagationSettings) if f.name not in _PER_ROW})
    return EvalConfig(cases=args.cases, out=args.out, backends=tuple(args.backends), loras=tuple(args.loras),
                      settings=settings, workers=args.workers, max_lag=args.max_lag, grid=not args.no_grid)


def run(args: argparse.Namespace) -> int:
    from synclora.data.cluster import Ranks
    from synclora.evaluate.run import evaluate

    cfg = config_from_args(args)
    ranks = Ranks.from_env()
    bar = None

    def progress(done: int, total: int, label: str) -> None:
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="evaluate", unit="row", file=sys.stderr, leave=False)
        bar.n = done
        bar.set_postfix_str(label, refresh=False)
        bar.refresh()

    try:
        summary = evaluate(cfg, progress, ranks)
    finally:
        if bar is not None:
            bar.close()
        ranks.close()
    if not ranks.is_main:
        return 0
    print(summary.table_md, end="")
    print(f"results: {summary.results}; table: {summary.out / 'table.md'}, {summary.out / 'table.csv'}")
    print(f"rows: {summary.ok} of {len(summary.rows)} judged ({summary.computed} measured now, {summary.reused} "
          "reused from an earlier run)")
    for r in summary.rows:
        if "error" in r:
            where = r["case"] + (f" / {r['method']}" if r.get("method") else "")
            print(f"error: {where}: {r['error']}", file=sys.stderr)
    if summary.ok == 0:
        print("error: no row could be judged", file=sys.stderr)
        return 2
    return 0
