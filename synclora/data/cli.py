"""`python -m synclora generate …` and `python -m synclora curate PAIRS --out manifest.jsonl`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def register(subparsers) -> None:
    from synclora import config

    p = subparsers.add_parser(
        "generate",
        help="make candidate training pairs (PAIRS/<name>/source.mp4 + target.mp4) with any backend",
        description="Propagate each edited frame through its source clip with a backend and lay the result out as "
        "a pair folder. Edits named <clip stem>.png or <clip stem>__<tag>.png belong to that clip. Finished pairs "
        "are skipped, so an interrupted run can simply be restarted. --from-dataset instead lays out an existing "
        "(reference, target) dataset such as the public Sync-LoRA one.",
    )
    p.add_argument("--sources", nargs="+", type=Path, help="source clips or folders of clips")
    p.add_argument("--edits", nargs="+", type=Path, help="edited frames or folders of edited frames")
    config.add_edit_index_argument(p, "index of the edited frame in every clip (default 0)")
    p.add_argument("--out", required=True, type=Path, help="PAIRS folder to write")
    p.add_argument("--overwrite", action="store_true", help="remake pairs that already have a target.mp4")
    p.add_argument("--from-dataset", type=Path, metavar="METADATA",
                   help="import a dataset listing (json/jsonl/csv) of reference + target videos instead")
    p.add_argument("--target-column", default="media_path", help="dataset column of the target video")
    p.add_argument("--reference-column", default="reference_path", help="dataset column of the reference video")
    p.add_argument("--copy", action="store_true", help="with --from-dataset: copy the videos instead of linking")
    config.add_arguments(p)
    p.set_defaults(func=run_generate)

    p = subparsers.add_parser(
        "curate",
        help="score pairs with the sync report and keep only those that move in sync",
        description="Scores every pair (pose, mouth, gaze, eyes/blinks, lag, motion, identity vs edit.png), keeps "
        "it when every per-cue threshold holds, and writes one JSON line per pair plus a plot of the score "
        "distributions with the thresholds. Already scored pairs are not measured again; change thresholds and "
        "re-run to re-decide instantly.",
    )
    p.add_argument("pairs", type=Path, help="PAIRS folder (PAIRS/<name>/source.mp4, target.mp4)")
    p.add_argument("--out", required=True, type=Path, help="manifest .jsonl to write (resumed if it exists)")
    p.add_argument("--plot", type=Path, default=None, help="summary plot PNG (default: next to the manifest)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--rescore", action="store_true", help="measure every pair again, ignoring stored scores")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                   help="override a threshold, e.g. --threshold min_mouth_corr=0.85 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_curate)


def _bar(desc: str, quiet: bool):
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="pair", file=sys.stderr)

    def progress(i: int, n: int, name: str) -> None:
        bar.total = n
        bar.n = i
        bar.set_postfix_str(name, refresh=False)
        bar.refresh()

    return progress, bar.close


def run_generate(args: argparse.Namespace) -> int:
    from synclora import config
    from synclora.data.generate import generate_pairs, plan_jobs
    from synclora.data.pairs import import_dataset
    from synclora.errors import InputError
    from synclora.paths import Output, check_input, check_outputs

    out = Output(args.out, "--out (the pairs folder)", folder=True)
    if args.from_dataset:
        check_input(args.from_dataset, "dataset listing")
        check_outputs([out], [(args.from_dataset, "the dataset listing")])
        pairs = import_dataset(args.from_dataset, args.out, args.target_column, args.reference_column, args.copy)
        print(f"{len(pairs)} pairs laid out in {args.out}")
        return 0
    if not args.sources or not args.edits:
        raise InputError("give --sources and --edits (or --from-dataset)")
    settings = config.from_args(args)
    jobs = plan_jobs(args.sources, args.edits, args.edit_index)
    check_outputs([out], [(p, what) for j in jobs for p, what in ((j.source, "a source clip"),
                                                                     (j.edit, "an edited frame"))])
    progress, close = _bar("generate", False)
    try:
        summary = generate_pairs(jobs, args.out, settings, overwrite=args.overwrite, progress=progress)
    finally:
        close()
    print(summary.text())
    return 0 if summary.made or summary.skipped else 2


def parse_thresholds(items: list[str]):
    from synclora.data.curate import CurationThresholds
    from synclora.errors import InputError

    th = CurationThresholds().to_dict()
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in th:
            raise InputError(f"--threshold {item!r}: use NAME=VALUE with NAME one of {', '.join(th)}")
        try:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            th[name] = type(th[name])(number) if isinstance(th[name], int) else number
        except (ValueError, OverflowError):
            raise InputError(f"--threshold {item!r}: {value!r} is not a finite number") from None
    return CurationThresholds.from_dict(th)


def run_curate(args: argparse.Namespace) -> int:
    from synclora.data.curate import curate

    th = parse_thresholds(args.threshold)
    progress, close = _bar("curate", args.quiet)
    try:
        summary = curate(args.pairs, args.out, th, plot=None if args.no_plot else (args.plot or "auto"),
                         rescore=args.rescore, progress=progress)
    finally:
        close()
    print(summary.text())
    return 0
