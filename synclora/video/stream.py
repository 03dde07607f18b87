"""Decoding ahead and encoding behind on threads of their own, so a propagation's three stages overlap.

PyAV (decode, H.264 encode) and OpenCV release the GIL, so on a few cores a decoder thread, the propagation and one
encoder thread per output run at the same time; bounded queues between them keep only a few frames in flight.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

_END = object()
_POLL_S = 0.1  # how often a blocked hand-off looks whether the other side has failed (and signals get through)
# Decoded frames a backward reader holds at most (as planes): 92 frames of 720p, 41 of 1080p — a phone's keyframe
# interval (1-2 s), so going backwards decodes each frame once.
REVERSE_HOLD_BYTES = 128 * 1024**2


class Stopped(Exception):
    """The consumer of a writer went away (failed or stopped); the writer removes what it wrote."""


def prefetch(items: Iterable, depth: int = 4) -> Iterator:
    """`items`, produced on a thread of its own up to `depth` ahead. An error there is raised here, at its place in
    the sequence; closing the iterator (or dropping it) stops the thread."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=_POLL_S)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            q.put((False, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let the producer see `stop` even if it is waiting for room
            try:
                q.get(timeout=_POLL_S)
            except queue.Empty:
                pass
            thread.join(timeout=_POLL_S)


def iter_frames_reversed(path: str | os.PathLike, start: int, stop: int, window: int = 32,
                         hold_bytes: int = REVERSE_HOLD_BYTES) -> Iterator[np.ndarray]:
    """Frames start, start-1, ..., stop (start >= stop) of the CFR clip: decoded forward in windows from the last one
    back (each a seek to the keyframe before it), so at most a window is held, as decoded planes (1.5 bytes a pixel
    for 4:2:0) and converted to RGB one by one as they are handed out. A window reaches back to the keyframe its
    decoding starts from, so no frame is decoded twice, when that fits in `hold_bytes`; else it is `window` frames or
    as many as fit, whichever is more."""
    from synclora.video.lazy import iter_lazy_frames
    from synclora.video.probe import timeline

    tl = timeline(Path(path))
    w, h = tl.info.width, tl.info.height
    most = max(window, int(hold_bytes // max(1, w * h * 3 // 2)))
    keys = None
    if tl.key_src is not None and len(tl.key_src):
        keys = np.searchsorted(tl.slot_src, tl.key_src)  # the first CFR slot showing each keyframe
    hi = start
    while hi >= stop:
        lo = max(stop, hi - most + 1)
        if keys is not None:
            k = int(np.searchsorted(keys, hi, side="right")) - 1  # the keyframe a decode of slot hi starts from
            if k >= 0 and hi - max(stop, int(keys[k])) + 1 <= most:
                lo = max(stop, int(keys[k]))
        frames = list(iter_lazy_frames(path, start=lo, stop=hi + 1))
        last = None
        while frames:
            f = frames.pop()
            yield f.rgb().copy() if f is last else f.rgb()  # a slot repeating a frame (VFR) gets its own copy
            last = f
        hi = lo - 1


def sample_frames(path: str | os.PathLike, indices: Iterable[int]) -> list[np.ndarray]:
    """One frame near each of `indices` (the keyframe at or before it, or the frame itself where the file cannot be
    seeked), each for the cost of decoding about one frame: samples to look at, not frames of a timeline."""
    import av

    from synclora.video.colour import frame_to_rgb
    from synclora.video.container import decode_error, open_input
    from synclora.video.decode import _stream, read_frame
    from synclora.video.probe import timeline

    path = Path(path)
    tl = timeline(path)
    if not tl.seekable:
        return [read_frame(path, i) for i in indices]
    out = []
    with open_input(path) as container:
        vs = _stream(container, tl)
        for i in indices:
            src = int(tl.slot_src[i])
            try:
                container.seek(int(tl.src_pts[src]), stream=vs, backward=True, any_frame=False)
                frame = next(iter(container.decode(vs)), None)
            except av.FFmpegError as e:
                raise decode_error(path, e, f" near frame {i}") from e
            if frame is None:
                out.append(read_frame(path, i))
                continue
            img = frame_to_rgb(frame)
            img = np.ascontiguousarray(np.rot90(img, tl.rot_k) if tl.rot_k else img)
            # a frame of another size is the reader's to refuse, in its words
            out.append(img if img.shape[:2] == (tl.info.height, tl.info.width) else read_frame(path, i))
    return out


class FrameWriter:
    """`write(path, frames, ...)` (an atomic writer such as `io.write_video`) on a thread of its own, fed frame by
    frame with `put`. `close` waits for the file and returns what `write` returned; `abort` makes `write` fail, so
    nothing is left at `path`. A frame handed to `put` must not be changed afterwards."""

    def __init__(self, write, path: str | os.PathLike, *args, depth: int = 6, **kwargs):
        self.path = Path(path)
        self._q: queue.Queue = queue.Queue(depth)
        self._abort = threading.Event()
        self._result = None
        self._error: BaseException | None = None

        def frames() -> Iterator[np.ndarray]:
            while True:
                try:
                    item = self._q.get(timeout=_POLL_S)
                except queue.Empty:
                    item = None
                if self._abort.is_set():
                    raise Stopped(f"writing {self.path.name} was stopped")
                if item is _END:
                    return
                if item is not None:
                    yield item

        def run() -> None:
            try:
                self._result = write(path, frames(), *args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - raised by `put`/`close` in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"write {self.path.name}", daemon=True)
        self._thread.start()

    def _hand(self, item) -> None:
        while True:
            if not self._thread.is_alive():
                self._raise()
                raise RuntimeError(f"the writer of {self.path.name} ended early")
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, frame: np.ndarray) -> None:
        self._hand(frame)

    def close(self):
        self._hand(_END)
        while self._thread.is_alive():
            self._thread.join(timeout=_POLL_S)
        self._raise()
        return self._result

    def abort(self) -> None:
        self._abort.set()
        while self._thread.is_alive():
            self._thread.join(timeout=_POLL_S)
