"""Frame taps: observers that see every frame of a propagation once, as it streams past.

A propagation streams its clip (decode → backend → encode) and never holds it whole, so anything that wants to look
at the frames — the sync report's cue extraction, an evaluation, a landmark view — watches them go by instead of
decoding the files again afterwards. The propagation calls, in this order of guarantees:

- `on_source(index, frame)` once for every source frame, index 0..n-1 ascending, at full size;
- `on_result(index, frame)` once for every result frame as it is handed to the encoder, index 0..n-1 ascending;
- `frames_done()`, if the tap has it, once every frame has been handed over, while the outputs are still being
  finished (the encoder's last frames take seconds): a tap may finish its own work meanwhile;
- `finish(ok)` once at the end (`ok` False when the run failed or was stopped).

A frame is an RGB uint8 (H, W, 3) array or a decoded frame (`synclora.video.lazy`) that converts only what is asked of
it: `np.asarray(frame)` is the whole RGB array, `frame.reduced(k)` a smaller one made straight from its planes.
The two streams may be called from different threads and interleave in any way. A tap must not keep a frame it is
given (copy what it needs; the array may be reused) and must be quick or queue the work itself: a slow tap slows the
propagation. A tap that raises fails the run like any other error. Kept here, below both the pipeline and the
metrics, so neither imports the other.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameTap(Protocol):
    def on_source(self, index: int, frame: np.ndarray) -> None: ...

    def on_result(self, index: int, frame: np.ndarray) -> None: ...

    def finish(self, ok: bool) -> None: ...


class BuiltLater:
    """A tap built on a thread of its own while the propagation starts (`build()` returns the tap): the first frame
    reaches a tap only once the clip's backward half is walked, and building one may take a second or two (models
    loaded, an edited frame analysed) that the cores have to spare then. A frame, `finish` or any other call waits
    for the build; an error in it is raised there. `when_ready(fn)` is handed on once the tap exists."""

    def __init__(self, build):
        import threading

        self._tap = None
        self._error: BaseException | None = None
        self._ready = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._build, args=(build,), name="tap-build", daemon=True)
        self._thread.start()

    def _build(self, build) -> None:
        try:
            tap = build()
        except BaseException as exc:  # noqa: BLE001 - raised to the caller at its next call
            self._error = exc
            return
        with self._lock:
            self._tap = tap
            if self._ready is not None:
                tap.when_ready(self._ready)

    def _get(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._tap

    def when_ready(self, fn) -> None:
        with self._lock:
            if self._tap is None:
                self._ready = fn
                return
        self._tap.when_ready(fn)

    def on_source(self, index: int, frame: np.ndarray) -> None:
        self._get().on_source(index, frame)

    def on_result(self, index: int, frame: np.ndarray) -> None:
        self._get().on_result(index, frame)

    def frames_done(self) -> None:
        done = getattr(self._get(), "frames_done", None)
        if done is not None:
            done()

    def finish(self, ok: bool) -> None:
        self._thread.join()
        if self._tap is not None:
            self._tap.finish(ok)

    def __getattr__(self, name: str):  # the built tap's own interface (a report's `report()`)
        return getattr(self._get(), name)
