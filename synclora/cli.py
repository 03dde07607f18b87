"""`python -m synclora …`: thin faces over the core. Parse → typed request → core call → print.

User mistakes (`SyncloraError`, and disk/permission/codec/image failures via `errors.user_error`) print one line on
stderr and exit with code 2; a stop signal exits 128+N after cleaning up; anything else is a bug and keeps its
traceback. A propagation's summary goes to stdout, its notices (warnings) to stderr. Each area registers its own
subcommands (`register(subparsers)`) so this file stays small.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from synclora import config, limits

# Areas that add subcommands; each module has register(subparsers). Missing ones are skipped quietly only if the
# module itself does not exist (an area not installed), never on an error inside it.
_AREAS = ("synclora.metrics.cli", "synclora.data.cli", "synclora.evaluate.cli", "synclora.train.cli",
          "synclora.ltx.cli", "synclora.doctor")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def tqdm_progress(desc: str):
    """A ProgressFn drawing one tqdm bar on stderr, created on first use (so input errors print alone)."""
    from tqdm import tqdm

    state: dict = {}

    def progress(fraction: float, label: str) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=1000, file=sys.stderr, leave=False,
                                      bar_format="{percentage:3.0f}%|{bar:30}| {elapsed} {desc}")
        bar.n = max(bar.n, min(1000, int(fraction * 1000)))
        bar.set_description_str(f"{desc}: {label}", refresh=False)
        bar.refresh()

    def close() -> None:
        if "bar" in state:
            state.pop("bar").close()

    progress.close = close  # type: ignore[attr-defined]
    return progress


def _run_info(args: argparse.Namespace) -> int:
    from synclora.video import io

    info = io.probe(Path(args.source))
    print(info.summary())
    return 0


def _run_propagate(args: argparse.Namespace) -> int:
    from synclora.config import PropagationRequest
    from synclora.errors import InputError
    from synclora.pipeline import run_propagation

    keyframes = tuple(config.parse_keyframe(v) for v in args.keyframe or ())
    if keyframes and (args.edited or args.edit_index is not None):
        raise InputError("give either --edited with --edit-index (one keyframe) or --keyframe (one or more), not both")
    if not keyframes and not args.edited:
        raise InputError("give the edited frame: --edited IMAGE --edit-index K, or --keyframe INDEX IMAGE [SPAN]")
    req = PropagationRequest(
        source=Path(args.source),
        edited=Path(args.edited) if args.edited else None,
        out=Path(args.out),
        edit_index=args.edit_index if args.edit_index is not None else 0,
        side_by_side=Path(args.side_by_side) if args.side_by_side else None,
        settings=config.from_args(args),
        keyframes=keyframes,
    )
    tap = _report_tap(args, req) if args.report else None
    taps = [tap] if tap is not None else []
    early = _EarlyReport(tap, Path(args.report)) if tap is not None else None
    progress = tqdm_progress("propagate") if not args.quiet else None
    try:
        try:
            result = run_propagation(req, progress, taps=taps) if progress else run_propagation(req, taps=taps)
        finally:
            if progress:
                progress.close()
        print(result.summary())
        _print_notices(result.notices)
        if args.report:
            _write_report(tap, args.report, early)
    finally:
        if early is not None:
            early.discard()
    return 0


def _report_tap(args: argparse.Namespace, req):
    """The sync report measured while propagating (`--report J.json`; its plot is written beside it as J.png)."""
    from synclora.errors import InputError
    from synclora.metrics.tap import tap_for
    from synclora.paths import Output, check_outputs
    from synclora.pipeline import check_request

    check_request(req)  # the propagation's own inputs first, with its own sentences
    report = Path(args.report)
    check_outputs([Output(report, "--report", (".json",), make_parents=True),
                   Output(report.with_suffix(".png"), "the report's plot (beside --report)", (".png",),
                          make_parents=True),
                   Output(Path(req.out), "--out", (".mp4",))],
                  [(req.source, "the source video"), (req.edited, "the edited image"),
                   (req.side_by_side, "the side-by-side video")])
    tap = tap_for(req, background=True)
    if tap is None:
        raise InputError("--report: the edited span is one frame, which has no motion for a sync report to judge")
    return tap


class _EarlyReport:
    """The report's JSON and plot drawn into staging files (`paths.temp_path`) as soon as the tap has every frame,
    while the encoder still finishes the video (its last frames take seconds): the plot no longer waits for it.
    `take` hands the staged pair over once the propagation succeeded; `discard` removes whatever was not taken."""

    def __init__(self, tap, path: Path):
        self.path, self.staged = path, None
        tap.when_ready(self._draw)

    def _draw(self, report) -> None:
        self.staged = _stage_report(report, self.path)

    def take(self) -> tuple[Path, Path] | None:
        staged, self.staged = self.staged, None
        return staged

    def discard(self) -> None:
        for f in self.take() or ():
            f.unlink(missing_ok=True)


def _stage_report(report, path: Path) -> tuple[Path, Path]:
    """The report's JSON and plot written into staging files beside `path` (`paths.temp_path`); none left on failure."""
    from synclora.paths import temp_path

    staged = (temp_path(path), temp_path(path.with_suffix(".png")))
    try:
        report.save_json(staged[0])
        report.plot(staged[1])
    except BaseException:
        for f in staged:
            f.unlink(missing_ok=True)
        raise
    return staged


def _write_report(tap, path: Path, early: _EarlyReport | None = None) -> None:
    """The report's JSON and plot, both or neither (what was at those paths stays as it was otherwise); the verdict
    on stdout. Drawn while the video was finished when that worked, else now. A report that could not be made is said
    as the error and fails the command; the result is kept (it is complete)."""
    from synclora.paths import commit

    report = tap.report()
    plot = path.with_suffix(".png")
    staged = (early.take() if early is not None else None) or _stage_report(report, path)
    try:
        commit([(staged[0], path), (staged[1], plot)])
    except BaseException:
        for f in staged:
            f.unlink(missing_ok=True)
        raise
    print(f"sync report: {report.verdict}")
    print(f"report: {path}\nplot: {plot}")


def _print_notices(notices: list[str]) -> None:
    """What the user should know about a result (no face to follow, frames the tracker lost, a changed frame rate):
    one `note:` line each on stderr, apart from the result's summary on stdout."""
    from synclora.errors import shown

    for n in notices:
        print(f"note: {shown(n)}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m synclora",
        description="Edit one frame of a portrait video and carry the edit through the whole clip, in sync with the "
        "source's lips, pose, gaze and blinks (Sync-LoRA on LTX-2.3, or a fast CPU preview).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    p = sub.add_parser("info", help="print a video's facts (fps, frames, duration, size, rotation, audio)")
    p.add_argument("source")
    p.set_defaults(func=_run_info)

    p = sub.add_parser("propagate", help="propagate an edited frame through a video")
    p.add_argument("source", help="source video (mp4, mov, webm, mkv, avi, gif)")
    p.add_argument("--edited", help="the edited frame (PNG/JPEG), same aspect as the video")
    config.add_edit_index_argument(p, "index of the frame that was edited, from 0 (default 0)", default=None)
    p.add_argument("--keyframe", action="append", nargs="+", metavar=("INDEX", "IMAGE [SPAN]"),
                   help="an edited frame: IMAGE is an edited copy of frame INDEX; repeat it for several. Without "
                   "SPAN: the same look pinned at several frames (every frame follows its nearest keyframes); with "
                   "SPAN (as --span takes it) on every keyframe: one look per span, faded into each other and into "
                   "the source. --edited/--edit-index is the same as one --keyframe")
    p.add_argument("--out", required=True, help="result .mp4 (source size, fps, frame count and audio)")
    p.add_argument("--side-by-side", help="also write source | result side by side to this .mp4 (each half at most "
                   f"{limits.VIEWING_MAX_SIDE} px on its long side)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", type=Path, default=None, metavar="J.json",
                   help="also measure the sync report while propagating (the edited span is judged): write it as "
                   "JSON to J.json and its plot beside it (J.png); the verdict is printed")
    config.add_arguments(p)
    p.set_defaults(func=_run_propagate)

    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from synclora import signals
    from synclora.errors import shown, user_error

    # SIGTERM/SIGHUP/SIGINT unwind like Ctrl-C: no temp file or half output stays. From the start: building the
    # parser imports every area, and a signal may land inside one of those imports.
    with signals.stop_cleanly(hush_stderr=True):
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            rc = int(args.func(args) or 0)
            signals.raise_if_stopped()  # a signal whose exception some library swallowed still ends the run
            return rc
        except BaseException as exc:
            # The stop behind the exception: in its chain, or only on record (numpy's C import replaces the
            # exception raised inside it by a bare ImportError).
            stop = signals.stop_of(exc) or (signals.Terminated(signals.received()) if signals.received() else None)
            if isinstance(stop, signals.Terminated):
                signals.say(f"stopped by {signal_name(stop.signum)}; nothing was left half-written")
                return stop.exit_code
            if stop is not None:
                signals.say("interrupted")
                return 130
            signals.speak()
            if isinstance(exc, SystemExit) or not isinstance(exc, Exception):
                raise
            error = user_error(exc)  # ours, or a disk/permission/codec/image failure said as a sentence
            if error is None:
                raise
            print(f"error: {shown(error)}", file=sys.stderr)  # one line, whatever a file name holds
            return 2


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name
