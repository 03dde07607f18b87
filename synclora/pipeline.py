"""One propagation, end to end: decode → backend → encode (+ source audio), streamed.

The CLI and the app both build a `PropagationRequest` and call `run_propagation`; neither holds logic of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from synclora import limits
from synclora.config import PropagationRequest, PropagationSettings
from synclora.edit.image import load_image
from synclora.errors import OOM_HINT, InputError, OutOfMemoryError, shown
from synclora.memory import free_memory, is_out_of_memory
from synclora.paths import Output, check_input, check_outputs, staged_outputs
from synclora.propagate import registry, stream
from synclora.propagate.base import BackendSpec, ProgressFn, no_progress
from synclora.video import geometry, io, timing
from synclora.video.stream import FrameWriter
from synclora.video.taps import FrameTap


@dataclass
class PropagationResult:
    out: Path
    side_by_side: Path | None
    source_info: io.VideoInfo
    edit_index: int
    settings: PropagationSettings
    backend: str
    backend_label: str
    working_size: tuple[int, int]
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    span: timing.FrameSpan | None = None  # the frames that carry the edit (None: the whole clip)

    def summary(self) -> str:
        """What was made, for the CLI's stdout; the notices are apart (the CLI prints them on stderr, the app lists
        them under the result)."""
        s = self.settings
        lines = [
            f"result: {shown(str(self.out))}",
            f"backend: {self.backend} ({s.quality}), seed {s.seed}, edited frame {self.edit_index}, fit {s.fit}, "
            f"working size {self.working_size[0]}×{self.working_size[1]}, time mode {s.time_mode}",
            f"edited: {self.span.describe() if self.span else 'the whole clip'}",
            f"{self.source_info.n_frames} frames at {io.format_fps(self.source_info.fps)} fps, "
            f"{self.source_info.width}×{self.source_info.height}, took {self.seconds:.1f} s",
        ]
        if self.side_by_side:
            lines.insert(1, f"side by side: {shown(str(self.side_by_side))}")
        return "\n".join(lines)


def check_paths(req: PropagationRequest) -> None:
    """Every file the propagation reads exists and is a file; every file it writes can be written and is none of
    them (nor each other) — before anything is decoded."""
    lora = req.settings.lora
    if lora:
        check_input(lora, "LoRA file")
    check_input(req.source, "source video")
    check_input(req.edited, "edited image")
    outputs = [Output(Path(req.out), "the result", (".mp4",))]
    if req.side_by_side:
        outputs.append(Output(Path(req.side_by_side), "the side-by-side video", (".mp4",)))
    check_outputs(outputs, [(req.source, "the source video"), (req.edited, "the edited image"),
                            (lora, "the LoRA file")])


def check_request(req: PropagationRequest) -> tuple[io.VideoInfo, np.ndarray, list[str]]:
    """Validate everything the user gave before any heavy work; returns (source facts, edited frame, notices)."""
    check_paths(req)
    source = Path(req.source)
    info = io.probe(source)
    limits.check_clip(info)
    k = req.edit_index
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise InputError(f"the edit index (frame number) must be a whole number, got {k!r}")
    if not 0 <= k < info.n_frames:
        raise InputError(f"frame {k} is out of range: {source.name} has frames 0 to {info.n_frames - 1}")
    check_plan(info, req.settings, check_span(req, info).window)
    edited, notices = load_image(req.edited)
    edited, notice = geometry.fit_edited_image(edited, info.width, info.height)
    return info, edited, notices + ([notice] if notice else [])


def check_span(req: PropagationRequest, info: io.VideoInfo) -> timing.FrameSpan:
    """The frames that carry the edit (`settings.span`, with its fades), resolved against the probed clip: the one
    place every face goes through, so a bad span gets the same sentence from the CLI, the app and the API."""
    return timing.resolve_span(req.settings.span, info, fade=req.settings.fade, edit_index=req.edit_index)


def applied_settings(settings: PropagationSettings, span: timing.FrameSpan) -> PropagationSettings:
    """The settings as applied: the span in frames with its fade (both unset for the whole clip), so the summary,
    the reproduce line and the settings JSON say exactly which frames were edited."""
    if span.whole:
        return replace(settings, span=None, fade=None)
    return replace(settings, span=span.text, fade=span.fade)


@contextlib.contextmanager
def _memory_errors():
    """Turn out-of-memory (GPU or host) into `OutOfMemoryError` with what to try, and free memory for the next job.

    The one place for this, so every backend and both faces (CLI, app) behave the same; torch is never imported here
    (the CPU path stays light), only looked up when a backend already loaded it.
    """
    message = None
    try:
        yield
    except OutOfMemoryError as exc:
        message = str(exc)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        message = f"the server ran out of memory for this clip; {OOM_HINT}"
    if message is None:
        return
    # Outside the except block: the traceback (and the tensors its frames hold) is gone, so memory can be freed.
    free_memory()
    raise OutOfMemoryError(message)


def working_plan(info: io.VideoInfo, settings: PropagationSettings, spec: BackendSpec | None = None):
    """Where the backend will work: size, crop/pad, scale (with a notice). The app shows it right after an upload."""
    spec = spec or registry.spec(settings)
    area = info.width * info.height if spec.native_size else settings.resolution**2
    return geometry.plan_fit(
        info.width,
        info.height,
        area=area,
        multiple=spec.size_multiple,
        mode=settings.fit,
        max_side=spec.max_side,
        allow_upscale=not spec.native_size,
    )


def check_plan(info: io.VideoInfo, settings: PropagationSettings, frames: int | None = None) -> None:
    """What the working plan asks of this clip fits the backend and the memory a propagation may take, said in the
    user's sizes, from the backend's spec alone: before any model loads or any frame is decoded. (`frames`, the span
    and its fades, no longer matters: memory does not grow with the clip's length.)"""
    name = Path(info.path).name
    spec = registry.spec(settings)
    W, H = working_plan(info, settings, spec).work_size
    if min(W, H) < spec.min_side:
        raise InputError(f"{name} is {info.width}×{info.height}, too small for the {registry.resolve(settings)} "
                         f"backend: it needs at least "
                         f"{spec.min_side} pixels on each side of its {W}×{H} working frames — use a larger clip")
    need = memory_need(info, settings, side_by_side=True, spec=spec)
    if need > limits.MAX_JOB_BYTES:
        raise InputError(f"{name}: a propagation of {info.width}×{info.height} frames needs about "
                         f"{need / 1024**3:.1f} GiB of memory, over the {limits.MAX_JOB_BYTES / 1024**3:.0f} GiB one "
                         "propagation may take — downscale the clip first")


def memory_need(info: io.VideoInfo, settings: PropagationSettings, *, side_by_side: bool = True,
                spec: BackendSpec | None = None) -> int:
    """Bytes this propagation needs at its peak (from probe facts and settings; not the clip's length: it streams).
    The app admits jobs by it, so visitors running at once cannot together exhaust the server's memory."""
    spec = spec or registry.spec(settings)
    frame_by_frame = registry.resolve(settings) == "flow"
    if frame_by_frame:
        return limits.memory_need(info.width, info.height, side_by_side=side_by_side)
    chunk = spec.max_frames or info.n_frames
    return limits.memory_need(info.width, info.height, side_by_side=side_by_side, chunk_frames=2 * chunk,
                              work_size=working_plan(info, settings, spec).work_size)


def run_propagation(req: PropagationRequest, progress: ProgressFn = no_progress,
                    taps: Sequence[FrameTap] = ()) -> PropagationResult:
    """Propagate the edited frame (frame `req.edit_index`) through its span of the source clip (the whole clip by
    default); write the result (and SBS). Only the span and its fades reach the backend; every other frame of the
    result is the source's own decoded frame, and the result keeps the source's frame count, fps and audio.

    One stream (`propagate.stream`): the source is decoded once front to back while the result and the side by side
    are encoded, each on a thread of its own; memory holds a window of frames, not the clip. Every tap sees every
    source frame and every result frame once, in order (see `video.taps`)."""
    t0 = time.perf_counter()
    info, edited, notices = check_request(req)
    span = check_span(req, info)
    notices += list(span.notices)
    settings = applied_settings(req.settings, span)
    progress(0.0, "loading backend")
    with _memory_errors():
        backend = registry.get(settings)
    plan = working_plan(info, settings, backend.spec)
    notices += list(info.notices)
    tracks = stream.can_track(backend)
    if plan.notice and not tracks:  # a frame-by-frame backend works at the clip's own size
        notices.append(plan.notice)
    anchors = [stream.Anchor(int(req.edit_index), edited)]
    job = stream.StreamJob(Path(req.source), info, anchors, stream.plan_runs(anchors, span.first, span.last),
                           backend, settings, plan)
    audio = Path(req.source) if info.has_audio else None
    written: list[str] = []  # what the encoder says (audio re-encoded, odd size)
    writers: list[FrameWriter] = []
    ok = False
    progress(0.02, "propagating")
    try:
        # Both outputs or neither: a failed or stopped call leaves what was at --out and --side-by-side as it was.
        with _memory_errors(), staged_outputs(req.out, req.side_by_side) as (out, sbs):
            try:  # the writers stop (and remove what they wrote) before the staged files are cleared
                writers.append(FrameWriter(io.write_video, out, info.fps, audio_from=audio, notices=written))
                if sbs:
                    writers.append(FrameWriter(io.write_video, sbs, info.fps, audio_from=audio))
                for i, src, carried in stream.stream(job, lambda f, label: progress(0.02 + 0.96 * f, label)):
                    for tap in taps:
                        tap.on_source(i, src)
                    if carried is None or i == req.edit_index:
                        frame = src if carried is None else carried  # outside the span: the source's own frame
                    else:
                        w = span.weight(i)
                        frame = carried if w >= 1 else io.fade_frames(src, carried, w)
                    for tap in taps:
                        tap.on_result(i, frame)
                    writers[0].put(frame)
                    if sbs:
                        writers[1].put(next(io.side_by_side([src], [frame])))
                progress(0.98, "finishing the video")
                for w in writers:
                    w.close()
            except BaseException:
                for w in writers:
                    w.abort()
                raise
        ok = True
    finally:
        for tap in taps:
            tap.finish(ok)
    notices += job.notices + written
    progress(1.0, "done")
    return PropagationResult(
        out=Path(req.out),
        side_by_side=Path(req.side_by_side) if req.side_by_side else None,
        source_info=info,
        edit_index=int(req.edit_index),
        settings=settings,
        backend=backend.name,
        backend_label=backend.label,
        working_size=(info.width, info.height) if tracks else plan.work_size,
        notices=notices,
        seconds=time.perf_counter() - t0,
        span=span,
    )
