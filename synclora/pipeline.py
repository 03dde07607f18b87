"""One propagation, end to end: read → fit → schedule → backend → unfit → write (+ source audio).

The CLI and the app both build a `PropagationRequest` and call `run_propagation`; neither holds logic of its own.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from synclora import limits
from synclora.config import PropagationRequest, PropagationSettings
from synclora.edit.image import load_image
from synclora.errors import OOM_HINT, InputError, OutOfMemoryError
from synclora.memory import free_memory, is_out_of_memory
from synclora.paths import Output, check_input, check_outputs, remove_outputs
from synclora.propagate import registry, schedule
from synclora.propagate.base import BackendSpec, ProgressFn, no_progress
from synclora.video import geometry, io, timing


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
            f"result: {self.out}",
            f"backend: {self.backend} ({s.quality}), seed {s.seed}, edited frame {self.edit_index}, fit {s.fit}, "
            f"working size {self.working_size[0]}×{self.working_size[1]}, time mode {s.time_mode}",
            f"edited: {self.span.describe() if self.span else 'the whole clip'}",
            f"{self.source_info.n_frames} frames at {io.format_fps(self.source_info.fps)} fps, "
            f"{self.source_info.width}×{self.source_info.height}, took {self.seconds:.1f} s",
        ]
        if self.side_by_side:
            lines.insert(1, f"side by side: {self.side_by_side}")
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
    """What the working plan asks of this clip (`frames` of it: the span and its fades) fits the backend and the
    memory limit, said in the user's sizes, from the backend's spec alone: before any model loads or any frame is
    decoded."""
    name = Path(info.path).name
    spec = registry.spec(settings)
    W, H = working_plan(info, settings, spec).work_size
    if min(W, H) < spec.min_side:
        raise InputError(f"{name} is {info.width}×{info.height}, too small for the {registry.resolve(settings)} "
                         f"backend: it needs at least "
                         f"{spec.min_side} pixels on each side of its {W}×{H} working frames — use a larger clip")
    frames = info.n_frames if frames is None else frames
    need = frames * W * H * 3
    if need > limits.MAX_WORKING_BYTES:
        raise InputError(f"{name}: {frames} frames of {info.width}×{info.height} to propagate; at the working size "
                         f"{W}×{H} they need {need / 1024**3:.1f} GiB, over the "
                         f"{limits.MAX_WORKING_BYTES / 1024**3:.0f} GiB "
                         "a propagation may hold — trim the clip or "
                         + ("downscale it" if spec.native_size else "lower the working resolution"))


def _read_working(path: Path, info: io.VideoInfo, plan, start: int, stop: int) -> np.ndarray:
    """Frames start..stop-1 at working size, in one preallocated array (no list of frames, no second copy from
    stacking)."""
    W, H = plan.work_size
    working = np.empty((stop - start, H, W, 3), np.uint8)
    n = 0
    for i, f in enumerate(io.iter_frames(path, start=start, stop=stop)):
        if i >= len(working):  # the reader's count is the contract; never go on with a different one
            n = i + 1
            break
        working[i] = plan.fit(f)
        n = i + 1
    if n != len(working):
        raise InputError(f"{path.name}: decoded {n} frames of {start}–{stop - 1} but the container reports "
                         f"{len(working)}")
    return working


def run_propagation(req: PropagationRequest, progress: ProgressFn = no_progress) -> PropagationResult:
    """Propagate the edited frame (frame `req.edit_index`) through its span of the source clip (the whole clip by
    default); write the result (and SBS). Only the span and its fades reach the backend; every other frame of the
    result is the source's own decoded frame, and the result keeps the source's frame count, fps and audio."""
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
    if plan.notice:
        notices.append(plan.notice)

    progress(0.02, "reading frames")
    with _memory_errors():
        working = _read_working(Path(req.source), info, plan, span.first, span.last + 1)
    edited_work = plan.fit(edited)

    def sub(lo: float, hi: float) -> ProgressFn:
        return lambda f, label: progress(lo + (hi - lo) * f, label)

    with _memory_errors():
        result, sched_notices = schedule.propagate_clip(
            working, req.edit_index - span.first, edited_work, backend, settings, float(info.fps), sub(0.05, 0.9)
        )
    notices += sched_notices

    progress(0.9, "writing result")

    def composed():
        """Every source frame once, in order: the edit inside the span, blended in the fades, the source outside."""
        count = 0
        for i, src in enumerate(io.iter_frames(req.source)):
            count += 1
            if i == req.edit_index:
                yield edited
            elif not span.first <= i <= span.last:
                yield src  # outside the span and its fades: the source's own frame, untouched
            else:
                frame = plan.unfit(result[i - span.first], src)
                w = span.weight(i)
                yield frame if w >= 1 else io.fade_frames(src, frame, w)
        if count != info.n_frames:  # raised inside write_video: nothing is left at --out
            raise InputError(f"{Path(req.source).name}: decoded {count} frames but the container reports "
                             f"{info.n_frames}")

    audio = Path(req.source) if info.has_audio else None
    out = sbs = None
    try:  # a failed or stopped call leaves no result behind, not half of one
        out = io.write_video(req.out, composed(), info.fps, audio_from=audio, notices=notices)
        if req.side_by_side:
            progress(0.95, "writing side by side")
            pairs = io.side_by_side(io.iter_frames(req.source), io.iter_frames(out))
            sbs = io.write_video(req.side_by_side, pairs, info.fps, audio_from=audio)
    except BaseException:
        remove_outputs([out, sbs])
        raise
    progress(1.0, "done")
    return PropagationResult(
        out=Path(out),
        side_by_side=Path(sbs) if sbs else None,
        source_info=info,
        edit_index=int(req.edit_index),
        settings=settings,
        backend=backend.name,
        backend_label=backend.label,
        working_size=(edited_work.shape[1], edited_work.shape[0]),
        notices=notices,
        seconds=time.perf_counter() - t0,
        span=span,
    )
