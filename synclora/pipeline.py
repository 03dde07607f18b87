"""One propagation, end to end: decode → backend → encode (+ source audio), streamed.

The CLI and the app both build a `PropagationRequest` and call `run_propagation`; neither holds logic of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from synclora import limits
from synclora.config import Keyframe, PropagationRequest, PropagationSettings
from synclora.edit.image import load_image
from synclora.edit.match import EditCheck
from synclora.errors import OOM_HINT, InputError, OutOfMemoryError, shown
from synclora.memory import frame_heap, free_memory, is_out_of_memory
from synclora.paths import Output, check_input, check_outputs, staged_outputs
from synclora.propagate import registry, schedule, stream
from synclora.propagate.base import BackendSpec, ProgressFn, no_progress
from synclora.video import geometry, io, timing
from synclora.video import keyframes as kf
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
    span: timing.FrameSpan | None = None  # the frames the first look covers (None: the whole clip)
    keyframes: tuple[Keyframe, ...] = ()  # every keyframe, as given (spans in frames)
    plan: kf.KeyframePlan | None = None  # which keyframe governs which frames

    def summary(self) -> str:
        """What was made, for the CLI's stdout; the notices are apart (the CLI prints them on stderr, the app lists
        them under the result)."""
        s = self.settings
        several = len(self.keyframes) > 1
        edited = (f"keyframes {', '.join(str(k.index) for k in self.keyframes)}" if several
                  else f"edited frame {self.edit_index}")
        lines = [
            f"result: {shown(str(self.out))}",
            f"backend: {self.backend} ({s.quality}), seed {s.seed}, {edited}, fit {s.fit}, "
            f"working size {self.working_size[0]}×{self.working_size[1]}, time mode {s.time_mode}",
        ]
        if several and self.plan is not None:
            lines += [f"edited: {line}" for line in self.plan.describe()]
        else:
            lines.append(f"edited: {self.span.describe() if self.span else 'the whole clip'}")
        lines += [
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
    images = []
    for key in req.keyframes:
        what = "edited image" if len(req.keyframes) == 1 else f"edited image of keyframe {key.index}"
        check_input(key.image, what)
        images.append((key.image, f"the {what}"))
    outputs = [Output(Path(req.out), "the result", (".mp4",))]
    if req.side_by_side:
        outputs.append(Output(Path(req.side_by_side), "the side-by-side video", (".mp4",)))
    check_outputs(outputs, [(req.source, "the source video"), *images, (lora, "the LoRA file")])


def check_request(req: PropagationRequest) -> tuple[io.VideoInfo, dict[int, np.ndarray], list[str]]:
    """Validate everything the user gave before any heavy work; returns (source facts, each keyframe's edited frame
    by its index, notices)."""
    if len(req.keyframes) > limits.MAX_KEYFRAMES:  # before a thousand files are even looked at
        raise InputError(f"{len(req.keyframes)} keyframes were given; a propagation takes at most "
                         f"{limits.MAX_KEYFRAMES}")
    check_paths(req)
    source = Path(req.source)
    info = io.probe(source)
    limits.check_clip(info)
    plan = check_keyframes(req, info)
    check_plan(info, req.settings, plan.frames)
    images: dict[int, np.ndarray] = {}
    notices: list[str] = []
    for key in req.keyframes:
        edited, more = load_image(key.image)
        try:
            edited, notice = geometry.fit_edited_image(edited, info.width, info.height)
        except InputError as exc:
            if len(req.keyframes) == 1:
                raise
            raise InputError(f"keyframe {key.index}: {exc}") from None
        images[key.index] = edited
        tag = f"Keyframe {key.index}: " if len(req.keyframes) > 1 else ""
        notices += [tag + m for m in more + ([notice] if notice else [])]
    return info, images, notices


def check_keyframes(req: PropagationRequest, info: io.VideoInfo) -> kf.KeyframePlan:
    """Which keyframe governs which frames (their spans, `settings.span` and its fades), resolved against the probed
    clip: the one place every face goes through, so a bad keyframe or span gets the same sentence from the CLI, the
    app and the API."""
    keys = req.keyframes
    return kf.plan_keyframes([k.index for k in keys], [k.span for k in keys], info, span=req.settings.span,
                             fade=req.settings.fade)


def check_span(req: PropagationRequest, info: io.VideoInfo) -> timing.FrameSpan:
    """The frames the (first) look covers, with its fades; see `check_keyframes`."""
    return check_keyframes(req, info).looks[0].span


def applied_settings(settings: PropagationSettings, plan: kf.KeyframePlan) -> PropagationSettings:
    """The settings as applied: the span in frames with its fade (both unset for the whole clip, and the span unset
    where every keyframe has its own), so the summary, the reproduce line and the settings JSON say exactly which
    frames were edited."""
    span = plan.looks[0].span
    if not plan.one_look:
        return replace(settings, span=None, fade=span.fade)
    if span.whole:
        return replace(settings, span=None, fade=None)
    return replace(settings, span=span.text, fade=span.fade)


def applied_keyframes(keys: tuple[Keyframe, ...], plan: kf.KeyframePlan) -> tuple[Keyframe, ...]:
    """The keyframes as applied: each one's own span in frames."""
    if plan.one_look:
        return keys
    spans = {look.keys[0]: look.span.text for look in plan.looks}
    return tuple(replace(k, span=spans[k.index]) for k in keys)


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


def _write_side_by_side(path: Path, pairs: Iterator[tuple[np.ndarray, np.ndarray]], fps, **kwargs) -> Path:
    """Source | result at its viewing size, composed on the writer's own thread: the shrinking and copying (~7 ms a
    1080p pair) stay off the propagation's."""
    frames = (io.side_by_side_frame(np.asarray(src), np.asarray(out), max_side=io.VIEWING_MAX_SIDE)
              for src, out in pairs)
    return io.write_video(path, frames, fps, **kwargs)


def run_propagation(req: PropagationRequest, progress: ProgressFn = no_progress,
                    taps: Sequence[FrameTap] = ()) -> PropagationResult:
    """Propagate the keyframes (edited copies of some frames) through their spans of the source clip (the whole clip
    by default); write the result (and SBS). Only the spans and their fades reach the backend; every other frame of
    the result is the source's own decoded frame, each keyframe is exactly its edited image, and the result keeps the
    source's frame count, fps and audio.

    One stream (`propagate.stream`): the source is decoded once front to back while the result and the side by side
    are encoded, each on a thread of its own; memory holds a window of frames, not the clip. Every tap sees every
    source frame and every result frame once, in order (see `video.taps`)."""
    t0 = time.perf_counter()
    info, images, notices = check_request(req)
    keyplan = check_keyframes(req, info)
    notices += list(keyplan.notices)
    settings = applied_settings(req.settings, keyplan)
    progress(0.0, "loading backend")
    with _memory_errors():
        backend = registry.get(settings)
    plan = working_plan(info, settings, backend.spec)
    notices += list(info.notices)
    tracks = stream.can_track(backend)
    if plan.notice and not tracks:  # a frame-by-frame backend works at the clip's own size
        notices.append(plan.notice)
    # Every keyframe is an anchor; each look's runs cover its span and fades, blended by distance between two
    # keyframes of one look (over all the way for a tracking backend, around the middle for a chunked one).
    anchors = {k: stream.Anchor(k, img) for k, img in images.items()}
    meet = schedule.meet_frames(backend, settings)
    runs = [r for look in keyplan.looks
            for r in stream.plan_runs([anchors[k] for k in look.keys], look.span.first, look.span.last, meet)]
    job = stream.StreamJob(Path(req.source), info, list(anchors.values()), runs, backend, settings, plan)
    audio = Path(req.source) if info.has_audio else None
    written: list[str] = []  # what the encoder says (audio re-encoded, odd size)
    check = EditCheck(images)  # was each edited image made from the frame it was given for?
    taps = (check, *taps)
    writers: list[FrameWriter] = []
    ok = False
    progress(0.02, "propagating")
    try:
        # Both outputs or neither: a failed or stopped call leaves what was at --out and --side-by-side as it was.
        with _memory_errors(), frame_heap(info.width, info.height), \
                staged_outputs(req.out, req.side_by_side) as (out, sbs):
            try:  # the writers stop (and remove what they wrote) before the staged files are cleared
                writers.append(FrameWriter(io.write_video, out, info.fps, audio_from=audio, notices=written))
                if sbs:
                    writers.append(FrameWriter(_write_side_by_side, sbs, info.fps, audio_from=audio,
                                               preset=io.VIEWING_PRESET, threads=io.VIEWING_THREADS))
                for i, src, carried in stream.stream(job, lambda f, label: progress(0.02 + 0.96 * f, label)):
                    for tap in taps:
                        tap.on_source(i, src)
                    if carried is None or i in images:
                        frame = src if carried is None else carried  # outside every span: the source's own frame
                    else:
                        parts = keyplan.weights(i)  # the looks' windows never share a frame (video.keyframes)
                        w = parts[0][1] if parts else 1.0
                        frame = carried if w >= 1 else io.fade_frames(np.asarray(src), np.asarray(carried), w)
                    for tap in taps:
                        tap.on_result(i, frame)
                    writers[0].put(frame)
                    if sbs:
                        writers[1].put((src, frame))
                progress(0.98, "finishing the video")
                for tap in taps:
                    done = getattr(tap, "frames_done", None)
                    if done is not None:
                        done()  # a tap may finish its work while the encoder finishes the video
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
    notices += job.notices + written + check.notices() + _viewing_notices(req, info)
    progress(1.0, "done")
    return PropagationResult(
        out=Path(req.out),
        side_by_side=Path(req.side_by_side) if req.side_by_side else None,
        source_info=info,
        edit_index=req.keyframes[0].index,
        settings=settings,
        backend=backend.name,
        backend_label=backend.label,
        working_size=(info.width, info.height) if tracks else plan.work_size,
        notices=notices,
        seconds=time.perf_counter() - t0,
        span=keyplan.looks[0].span,
        keyframes=applied_keyframes(req.keyframes, keyplan),
        plan=keyplan,
    )


def _viewing_notices(req: PropagationRequest, info: io.VideoInfo) -> list[str]:
    """Said when the side by side shows the clip smaller than the result is (`io.VIEWING_MAX_SIDE`)."""
    if not req.side_by_side:
        return []
    w, h = io.viewing_size(info.width, info.height, io.VIEWING_MAX_SIDE)
    if (w, h) == (info.width, info.height):
        return []
    return [f"The side-by-side video shows source and result at {w}×{h} each, to keep it light to play; the result "
            f"itself is {info.width}×{info.height}."]
