"""Reading frames of the CFR clip `probe` describes: frame i is at time i / fps, rotation applied, RGB uint8."""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import av
import cv2
import numpy as np

from synclora import limits
from synclora.errors import InputError
from synclora.video.colour import frame_to_rgb
from synclora.video.container import DECODER_OPTIONS, decode_error, open_input
from synclora.video.probe import Timeline, VideoInfo, probe, timeline

T = TypeVar("T")


def check_range(info: VideoInfo, start: int, stop: int | None) -> tuple[int, int]:
    n = info.n_frames
    stop = n if stop is None else stop
    if not (0 <= start <= n) or not (start <= stop <= n):
        raise InputError(f"Frame range [{start}, {stop}) is outside {info.path.name}, which has frames 0 to {n - 1}.")
    return start, stop


def iter_frames(
    path: str | os.PathLike,
    *,
    start: int = 0,
    stop: int | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames start..stop-1 of the CFR clip, rotation applied.

    `size=(w, h)` resizes each frame on the fly (cv2.INTER_AREA) so long clips at working size fit in memory.
    """
    path = Path(path)
    tl = timeline(path)
    start, stop = check_range(tl.info, start, stop)
    if start == stop:
        return
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"size must be positive, got {size}")

    def convert(frame: av.VideoFrame) -> np.ndarray:
        img = frame_to_rgb(frame)
        if tl.rot_k:
            img = np.rot90(img, tl.rot_k)
        if size is not None and (img.shape[1], img.shape[0]) != size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(img)

    yield from iter_slots(path, tl, start, stop, convert)


def iter_slots(path: Path, tl: Timeline, start: int, stop: int, convert: Callable[[av.VideoFrame], T]
               ) -> Iterator[T]:
    """`convert(av.VideoFrame)` for every CFR slot start..stop-1 of the timeline; a slot that repeats a frame gets
    `.copy()` of the converted value (`synclora.video.lazy` passes frames that convert only on demand)."""
    slots = tl.slot_src
    first_src = int(slots[start])
    check = _size_check(path, tl)

    with open_input(path) as container:
        vs = _stream(container, tl)
        counter = 0
        # A seek lands by time, but a file stored out of order may hold later frames before that point: such a file
        # is decoded from its start.
        if first_src > 0 and tl.seekable and tl.reorder == 0:
            try:
                container.seek(int(tl.src_pts[first_src]), stream=vs, backward=True, any_frame=False)
                counter = -1  # unknown until a frame with a known pts arrives
            except av.FFmpegError:
                container.seek(0)
        j = start
        prev: av.VideoFrame | None = None
        prev_img: np.ndarray | None = None
        prev_k = -1
        try:
            for k, frame in _presentation_order(container.decode(vs), tl, check):
                if k is None:
                    if counter < 0:
                        # after a seek, a frame without a timestamp cannot be placed: decode from the start instead
                        yield from _iter_slots_sequential(path, tl, start, stop, convert)
                        return
                    k = counter
                counter = k + 1
                if k <= prev_k:
                    continue  # a duplicate presentation time; the timeline counted it once
                if prev_k < 0 and k > first_src:
                    # the seek landed after the target (broken index): fall back to plain decoding
                    yield from _iter_slots_sequential(path, tl, start, stop, convert)
                    return
                # slots that show a frame before k show the previous frame
                while j < stop and slots[j] < k:
                    if prev is None:
                        raise InputError(f"{path.name}: frame {j} could not be decoded.")
                    yield (prev_img := convert(prev)) if prev_img is None else prev_img.copy()
                    j += 1
                prev, prev_img, prev_k = frame, None, k
                while j < stop and slots[j] == k:
                    yield (prev_img := convert(frame)) if prev_img is None else prev_img.copy()
                    j += 1
                if j >= stop:
                    return
        except av.FFmpegError as e:
            raise decode_error(path, e, f" after frame {j}") from e
        while j < stop and prev is not None and slots[j] <= prev_k:
            yield (prev_img := convert(prev)) if prev_img is None else prev_img.copy()
            j += 1
        if j < stop:
            raise InputError(f"{path.name} is damaged: only {j} of its {tl.info.n_frames} frames could be decoded.")


def _presentation_order(frames: Iterator[av.VideoFrame], tl: Timeline, check: Callable[[av.VideoFrame], None]
                        ) -> Iterator[tuple[int | None, av.VideoFrame]]:
    """(index on the timeline, frame) in presentation order. A decoder hands frames out in its own order: for a codec
    that does not reorder, the order the packets are stored in, where timestamps may go backwards (valid in
    Matroska). Up to `tl.reorder` frames (the probe's bound for this file) are held back until every earlier one
    has come, so each frame comes out once, in order. Frames without a timestamp come as (None, frame), as they are;
    frames whose time is not on the timeline (cut by an edit list) are left out."""
    held: list[tuple[int, int, av.VideoFrame]] = []
    last = None  # the index handed out last
    for n, frame in enumerate(frames):
        check(frame)
        if not (tl.seekable and frame.pts is not None):
            yield None, frame
            continue
        k = int(np.searchsorted(tl.src_pts, frame.pts))
        if k >= len(tl.src_pts) or tl.src_pts[k] != frame.pts:
            continue
        heapq.heappush(held, (k, n, frame))
        while held and (len(held) > tl.reorder or (last is not None and held[0][0] <= last + 1)):
            last, _, f = heapq.heappop(held)
            yield last, f
    while held:
        k, _, f = heapq.heappop(held)
        yield k, f


def _stream(container: av.container.InputContainer, tl: Timeline) -> av.video.stream.VideoStream:
    """The timeline's video stream, with the decoder's frame-size cap (`container.DECODER_OPTIONS`) and threads."""
    vs = next(s for s in container.streams.video if s.index == tl.stream_index)
    vs.codec_context.options = {**vs.codec_context.options, **DECODER_OPTIONS}
    vs.thread_type = "AUTO"
    return vs


def _size_check(path: Path, tl: Timeline) -> Callable[[av.VideoFrame], None]:
    """Every decoded frame has the probed size: a stream that changes size midway is refused, never resized
    silently (and a bigger frame never reaches a converter sized for the first)."""
    stored = (tl.info.height, tl.info.width) if tl.rot_k % 2 == 0 else (tl.info.width, tl.info.height)

    def check(frame: av.VideoFrame) -> None:
        if (frame.height, frame.width) != stored:
            raise InputError(f"{path.name} changes its frame size from {stored[1]}×{stored[0]} to "
                             f"{frame.width}×{frame.height} partway through; re-encode it at one size first.")

    return check


def _iter_slots_sequential(path: Path, tl: Timeline, start: int, stop: int, convert: Callable[[av.VideoFrame], T]
                           ) -> Iterator[T]:
    """Decode from the first frame counting frames in presentation order (no seeking, no pts lookups)."""
    slots = tl.slot_src
    j = start
    check = _size_check(path, tl)
    with open_input(path) as container:
        vs = _stream(container, tl)
        try:
            for k, (_, frame) in enumerate(_presentation_order(container.decode(vs), tl, check)):
                img = None
                while j < stop and slots[j] <= k:
                    yield (img := convert(frame)) if img is None else img.copy()
                    j += 1
                if j >= stop:
                    return
        except av.FFmpegError as e:
            raise decode_error(path, e, f" after frame {j}") from e
    if j < stop:
        raise InputError(f"{path.name} is damaged: only {j} of its {tl.info.n_frames} frames could be decoded.")


def read_frames(
    path: str | os.PathLike, *, start: int = 0, stop: int | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """All frames start..stop-1 as one (T, H, W, 3) uint8 array (see `iter_frames`)."""
    info = probe(path)
    start, stop = check_range(info, start, stop)
    w, h = size if size is not None else (info.width, info.height)
    need = (stop - start) * int(w) * int(h) * 3
    if need > limits.MAX_WORKING_BYTES:
        raise InputError(f"{info.path.name}: frames {start}–{stop - 1} at {w}×{h} need {need / 1024**3:.1f} GiB; at "
                         f"most {limits.MAX_WORKING_BYTES / 1024**3:.0f} GiB are read at once — read fewer frames.")
    out = np.empty((stop - start, h, w, 3), dtype=np.uint8)
    i = 0
    for i, img in enumerate(iter_frames(path, start=start, stop=stop, size=size)):
        out[i] = img
    return out


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """Frame `index` of the CFR clip (seeks to the nearest keyframe before it)."""
    info = probe(path)
    if not 0 <= index < info.n_frames:
        raise InputError(f"Frame {index} does not exist: {info.path.name} has frames 0 to {info.n_frames - 1}.")
    return next(iter_frames(path, start=index, stop=index + 1))

