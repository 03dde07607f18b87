"""Frame taps: observers that see every frame of a propagation once, as it streams past.

A propagation streams its clip (decode → backend → encode) and never holds it whole, so anything that wants to look
at the frames — the sync report's cue extraction, an evaluation, a landmark view — watches them go by instead of
decoding the files again afterwards. The propagation calls, in this order of guarantees:

- `on_source(index, frame)` once for every source frame, index 0..n-1 ascending, full size RGB uint8 (H, W, 3);
- `on_result(index, frame)` once for every result frame as it is handed to the encoder, index 0..n-1 ascending;
- `frames_done()`, if the tap has it, once every frame has been handed over, while the outputs are still being
  finished (the encoder's last frames take seconds): a tap may finish its own work meanwhile;
- `finish(ok)` once at the end (`ok` False when the run failed or was stopped).

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
