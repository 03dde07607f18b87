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
        help="make candidate training pairs: portrait stills → instruction edit → image-to-video twice (the paper's "
        "way)",
        description="For each portrait still in --stills: edit it with the instruction model (FLUX.2 [klein]), then "
        "animate the original and the edited still with LTX-2.3 image-to-video, same motion prompt, seed and "
        "settings → PAIRS/<still>__eNN/{source.mp4, target.mp4, edit.png, meta.json}. Shipped lists of edit "
        "instructions and motion prompts are used unless --instructions/--prompts name your own (one per line). "
        "Finished pairs are skipped, so an interrupted run is simply restarted. Under `accelerate launch "
        "--multi_gpu` or `torchrun` the pairs are split between the processes (docs/TRAINING.md). "
        "--from-backend instead propagates edited frames through source clips with a backend; --from-dataset lays "
        "out an existing (reference, target) dataset such as the public Sync-LoRA one.",
    )
    p.add_argument("--stills", type=Path, help="folder of portrait stills (png, jpg, webp, bmp)")
    p.add_argument("--out", required=True, type=Path, help="PAIRS folder to write")
    p.add_argument("--instructions", type=Path, default=None,
                   help="edit instructions, one per line, '#' comments (default: the shipped list)")
    p.add_argument("--prompts", type=Path, default=None,
                   help="motion prompts for the image-to-video model, one per line (default: the shipped list)")
    p.add_argument("--edits-per-still", type=int, default=1, metavar="K",
                   help="pairs per still, each with another instruction (default 1)")
    p.add_argument("--num-frames", type=int, default=None, metavar="N",
                   help="frames per clip, 8k+1 (default 81, at 25 fps; tiny 9); --resolution sets the square size "
                   "(default 512; tiny 64)")
    p.add_argument("--quiet", action="store_true", help="no line per pair on stderr")
    g = p.add_argument_group("other ways to make pairs")
    g.add_argument("--from-backend", action="store_true",
                   help="propagate edited frames (--edits) through source clips (--sources) with a backend")
    g.add_argument("--sources", nargs="+", type=Path, help="--from-backend: source clips or folders of clips")
    g.add_argument("--edits", nargs="+", type=Path,
                   help="--from-backend: edited frames named <clip stem>.png or <clip stem>__<tag>.png")
    config.add_edit_index_argument(g, "--from-backend: index of the edited frame in every clip (default 0)")
    g.add_argument("--overwrite", action="store_true", help="--from-backend: remake pairs that have a target.mp4")
    g.add_argument("--from-dataset", type=Path, metavar="METADATA",
                   help="import a dataset listing (json/jsonl/csv) of reference + target videos instead")
    g.add_argument("--target-column", default="media_path", help="dataset column of the target video")
    g.add_argument("--reference-column", default="reference_path", help="dataset column of the reference video")
    g.add_argument("--copy", action="store_true", help="with --from-dataset: copy the videos instead of linking")
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
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="measure pairs in N processes on this machine (about one per CPU core; default 1); under "
                   "`accelerate launch`/`torchrun` each rank also takes its own share of the pairs")
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


def _check_out(args: argparse.Namespace, inputs: list) -> None:
    """--out is a folder that can be made and written, and none of the run's inputs (before any model loads)."""
    from synclora.paths import Output, check_outputs

    check_outputs([Output(args.out, "--out (the pairs folder)", folder=True)], inputs)


def run_generate(args: argparse.Namespace) -> int:
    from synclora.data.pairs import import_dataset
    from synclora.errors import InputError
    from synclora.paths import check_input

    if args.from_dataset:
        check_input(args.from_dataset, "dataset listing")
        _check_out(args, [(args.from_dataset, "the dataset listing")])
        pairs = import_dataset(args.from_dataset, args.out, args.target_column, args.reference_column, args.copy)
        print(f"{len(pairs)} pairs laid out in {args.out}")
        return 0
    if args.from_backend or args.sources or args.edits:
        if args.stills:
            raise InputError("--stills and --from-backend are two ways of making pairs; use one")
        return _run_from_backend(args)
    return _run_from_stills(args)


def _run_from_backend(args: argparse.Namespace) -> int:
    from synclora import config
    from synclora.data.generate import generate_pairs, plan_jobs
    from synclora.errors import InputError

    if not args.sources or not args.edits:
        raise InputError("--from-backend needs --sources and --edits")
    settings = config.from_args(args)
    jobs = plan_jobs(args.sources, args.edits, args.edit_index)
    _check_out(args, [(p, what) for j in jobs
                      for p, what in ((j.source, "a source clip"), (j.edit, "an edited frame"))])
    progress, close = _bar("generate", args.quiet)
    try:
        summary = generate_pairs(jobs, args.out, settings, overwrite=args.overwrite, progress=progress)
    finally:
        close()
    print(summary.text())
    return 0 if summary.made or summary.skipped else 2


# Propagation flags that mean nothing for pairs made from stills (said, rather than silently ignored).
_BACKEND_ONLY = ("backend", "fit", "time_mode", "chunk_overlap", "lora")


def _run_from_stills(args: argparse.Namespace) -> int:
    from synclora import config
    from synclora.data.cluster import Ranks
    from synclora.data.stills import (
        PairOptions,
        find_stills,
        generate_from_stills,
        plan_jobs,
        read_text_list,
        stderr_progress,
    )
    from synclora.errors import InputError

    if not args.stills:
        raise InputError("give --stills STILLS/ (or --from-backend with --sources and --edits, or --from-dataset)")
    for name in _BACKEND_ONLY:
        if getattr(args, name) is not None:
            raise InputError(f"{config.flag(name)} applies to --from-backend only")
    if args.overwrite or args.edit_index:
        raise InputError("--overwrite and --edit-index apply to --from-backend only (remove a pair folder to remake "
                         "it)")
    ranks = Ranks.from_env()
    settings = config.from_args(args)  # checks --seed, --model, --memory, --resolution, --quality
    options = PairOptions.for_model(
        settings.model, resolution=settings.resolution if args.resolution is not None else None,
        num_frames=args.num_frames, quality=args.quality and settings.quality, memory=settings.memory,
        seed=settings.seed, edits_per_still=args.edits_per_still,
    )
    instructions = read_text_list(args.instructions, "instructions")
    prompts = read_text_list(args.prompts, "prompts")
    jobs = plan_jobs(find_stills(args.stills), instructions, prompts, settings.seed, args.edits_per_still)
    _check_out(args, [(args.instructions, "the instructions file"), (args.prompts, "the prompts file"),
                      *((job.still, "a still") for job in jobs)])
    if settings.model == "real":
        import torch

        if torch.cuda.is_available():  # one GPU per process: "cuda" below means this rank's own
            torch.cuda.set_device(ranks.local_rank % torch.cuda.device_count())
    try:
        summary = generate_from_stills(jobs, args.out, options, instructions, prompts, ranks=ranks,
                                       progress=None if args.quiet else stderr_progress(ranks))
    finally:
        ranks.close()
    if not ranks.is_main:
        return 0  # the main process reports the run (and a failing exit here would make the launcher stop it)
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
    from synclora.data.cluster import Ranks
    from synclora.data.curate import curate

    th = parse_thresholds(args.threshold)
    ranks = Ranks.from_env()
    progress, close = _bar("curate" if ranks.world == 1 else f"curate, {ranks.label()}", args.quiet)
    try:
        summary = curate(args.pairs, args.out, th, plot=None if args.no_plot else (args.plot or "auto"),
                         rescore=args.rescore, progress=progress, workers=args.workers, ranks=ranks)
    finally:
        close()
        ranks.close()
    if ranks.is_main:
        print(summary.text())
    return 0
