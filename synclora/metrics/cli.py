"""`python -m synclora report SOURCE RESULT`: the sync report on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from synclora import config


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="measure how well a result follows its source (lips, pose, gaze, blinks, identity, edit kept)",
        description="Per-cue correlation and lag of source vs result, blinks matched as events, frames without a "
        "face, identity against the edited frame, and one verdict. With the edited frame, cues the edit hides "
        "(sunglasses over the eyes, a mask over the mouth) are measured but not judged, and every frame is checked "
        "for how much of the edit it keeps.",
    )
    p.add_argument("source", type=Path, help="source video")
    p.add_argument("result", type=Path, help="result video (same frame count)")
    p.add_argument("--edited", type=Path, default=None,
                   help="the edited frame (image): identity, what the edit hides, how much of it is kept")
    config.add_edit_index_argument(
        p, "the edit index: the source frame the edited frame was made from (default: the source frame that matches "
        "it best). Without --edited, the result's frame K is taken as the edit", default=None)
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the full report as JSON")
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="write the curves plot as PNG")
    p.add_argument("--landmarks", type=Path, default=None, metavar="OUT.mp4",
                   help="write the landmark view: source and result side by side with their face landmarks")
    p.add_argument("--max-lag", type=int, default=5, help="largest lag searched, in frames (default 5)")
    p.add_argument("--span", default=None, metavar="START:END",
                   help="judge only these frames, as `propagate --span` takes them (frames 12:40, both inclusive, or "
                   "seconds 2s:5.5s): the edited span, or the frames both videos share when their lengths differ")
    p.add_argument("--min-corr", type=float, default=None, help="per-cue correlation below this is out of sync")
    p.set_defaults(func=run)


def check_paths(args: argparse.Namespace) -> None:
    """Inputs are files; --json, --plot and --landmarks are writable files of the right type, and none of the inputs
    (before anything is measured, so a bad --plot is said at once, not after the report)."""
    from synclora.paths import Output, check_input, check_outputs

    check_input(args.source, "source video")
    check_input(args.result, "result video")
    if args.edited is not None:
        check_input(args.edited, "edited image")
    outputs = []
    if args.json is not None:
        outputs.append(Output(args.json, "--json", (".json",), make_parents=True))
    if args.plot is not None:
        outputs.append(Output(args.plot, "--plot", (".png",), make_parents=True))
    if args.landmarks is not None:
        outputs.append(Output(args.landmarks, "--landmarks", (".mp4",), make_parents=True))
    check_outputs(outputs, [(args.source, "the source video"), (args.result, "the result video"),
                            (args.edited, "the edited image")])


def run(args: argparse.Namespace) -> int:
    import math

    from synclora.errors import InputError
    from synclora.metrics.compare import compare_videos
    from synclora.metrics.scores import SyncThresholds

    if args.max_lag < 0:
        raise InputError(f"--max-lag must be ≥ 0, got {args.max_lag}")
    if args.min_corr is not None and not (math.isfinite(args.min_corr) and -1 <= args.min_corr <= 1):
        raise InputError(f"--min-corr must be a correlation from -1 to 1, got {args.min_corr}")
    check_paths(args)
    th = SyncThresholds()
    if args.min_corr is not None:
        th.min_corr = args.min_corr
    frame_range = None
    if args.span:
        from synclora.video import io, timing

        span = timing.resolve_span(args.span, io.probe(args.source))
        frame_range = (span.start, span.end + 1)
    from synclora.paths import staged_outputs

    # All outputs or none, and a failed or stopped call leaves what was at --json, --plot and --landmarks as it was.
    with staged_outputs(args.json, args.plot, args.landmarks) as (json_tmp, plot_tmp, landmarks_tmp):
        report = compare_videos(
            args.source,
            args.result,
            edited_frame=args.edited,
            edit_index=args.edit_index,
            frame_range=frame_range,
            max_lag=args.max_lag,
            thresholds=th,
            landmarks_video=landmarks_tmp,
        )
        if report.landmarks_video is not None:
            report.landmarks_video = Path(args.landmarks)  # where it will be once committed (the JSON says so too)
        if json_tmp is not None:
            report.save_json(json_tmp)
        if plot_tmp is not None:
            report.plot(plot_tmp)
    written = {"json": args.json, "plot": args.plot, "landmarks": report.landmarks_video}
    print(report.summary())
    for label, path in written.items():
        if path is not None:
            print(f"{label}: {path}")
    return 0
