"""A source clip's face cues and landmarks, measured once in the background and kept for that clip.

In the app a visitor uploads a clip, then spends a while editing one frame of it. The source's half of the sync report
does not depend on the edit, so it is measured then (`SourceCues`, a thread started right after the upload): when the
propagation runs, the report tap reads the source's cues and landmarks from here and runs the landmarker on the result
frames only — half the report's work is gone from the propagation's time. The landmarks (the edit-kept score samples
each source frame where they put the edit) go to a file next to the clip, not to memory: 11 KB a frame.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from synclora.metrics.landmarks import CueStream, CueTrack

N_LANDMARKS = 478


class SourceCues:
    """Measures `path` on a thread of its own from construction on; `ready()` once every frame is measured."""

    def __init__(self, path: str | Path, folder: str | Path | None = None):
        from synclora.video import io

        self.path = Path(path)
        info = io.probe(self.path)
        self.n, self.fps, self.size = info.n_frames, float(info.fps), (info.width, info.height)
        self.file: Path | None = None
        if folder is not None:
            self.file = Path(folder) / f"{self.path.stem}-source-landmarks.npy"
            self._pts = np.lib.format.open_memmap(self.file, "w+", np.float64, (self.n, N_LANDMARKS, 3))
        else:
            self._pts = np.zeros((self.n, N_LANDMARKS, 3))
        self._face = np.zeros(self.n, bool)
        self._k = np.ones(self.n, np.int32)
        self.track: CueTrack | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-cues", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from synclora.video.lazy import iter_lazy_frames

        try:
            with CueStream(on_frame=self._keep) as stream:
                for frame in iter_lazy_frames(self.path):
                    if self._stop.is_set():
                        return
                    stream.add(frame)
                track = stream.track(self.fps, self.size)
            if len(track) != self.n:
                raise RuntimeError(f"read {len(track)} of the {self.n} frames of {self.path.name}")
            self.track = track
        except BaseException as exc:  # noqa: BLE001 - kept: a tap then measures the source itself
            self.error = exc
        finally:
            self._done.set()

    def _keep(self, i: int, frame, pts: np.ndarray | None, k: int) -> None:
        self._k[i] = k
        if pts is not None:
            self._pts[i] = pts
            self._face[i] = True

    def ready(self) -> bool:
        """Every frame measured (False while measuring, after an error, or once cancelled)."""
        return self._done.is_set() and self.track is not None

    def wait(self, timeout: float | None = None) -> bool:
        self._done.wait(timeout)
        return self.ready()

    def landmarks(self, index: int) -> tuple[np.ndarray | None, int]:
        """(the landmarks of source frame `index` or None without a face, the factor the landmarker shrank it by)."""
        return (np.array(self._pts[index]) if self._face[index] else None), int(self._k[index])

    def close(self) -> None:
        """Stop measuring and delete the landmarks file (a tap reading it still can: the mapping outlives the name)."""
        self._stop.set()
        self._thread.join()
        if self.file is not None:
            self.file.unlink(missing_ok=True)
