"""MediaPipe's face mesh as synclora uses it: tracking mode on frames shrunk by a whole factor, every face's 478
landmarks in the original frame's pixels.

Shared by the sync report (`metrics.landmarks`: cues per frame), the CPU preview's face guidance
(`propagate.face_guide`: the map back to the edited frame follows the mesh), the pair curation and the test media.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from synclora.signals import stderr_hushed

# What MediaPipe's C++ writes to fd 2: absl's "W0000 00:00:1796673301.721903   14147 file.cc:114] ..." (anywhere: a
# progress bar's line has no newline yet), and TFLite's and absl's own "INFO: Created TensorFlow Lite XNNPACK delegate
# for CPU." and "WARNING: All log messages before absl::InitializeLog() ...". A server's "INFO:" lines are kept.
_NATIVE_LINE = re.compile(rb"(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]"
                          rb"|(?:\A|(?<=[\r\n]))(?:INFO|WARNING|ERROR): [^\r\n]*(?:TensorFlow Lite|absl::))"
                          rb"[^\r\n]*(?:\r?\n)?")


@dataclass
class _Hold:
    saved: int  # fd 2 as it was before the first window opened
    held: IO[bytes]
    users: int = 1
    show_all: bool = False  # a window failed with no sentence of its own: everything held is shown


_hold: _Hold | None = None
_hold_lock = threading.Lock()


def _open_window() -> bool:
    global _hold
    with _hold_lock:
        if _hold is not None:
            _hold.users += 1
            return True
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no stderr to speak of
            return False
        try:
            held = tempfile.TemporaryFile()
        except OSError:  # nowhere to hold it: MediaPipe's lines are then seen, nothing else changes
            os.close(saved)
            return False
        os.dup2(held.fileno(), 2)
        _hold = _Hold(saved, held)
        return True


def _close_window(show_all: bool) -> None:
    global _hold
    with _hold_lock:
        hold = _hold
        hold.users -= 1
        hold.show_all |= show_all
        if hold.users:
            return
        _hold = None
        sys.stderr.flush()
        if not stderr_hushed():  # a stopped CLI run keeps fd 2 hushed until its last line (`signals.speak`)
            os.dup2(hold.saved, 2)
        os.close(hold.saved)
        hold.held.seek(0)
        text = hold.held.read()
        hold.held.close()
    if not hold.show_all:
        text = _NATIVE_LINE.sub(b"", text)
    if text:
        sys.stderr.write(text.decode(errors="replace"))
        sys.stderr.flush()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hold back what MediaPipe's C++ (absl, TFLite) writes straight to file descriptor 2 meanwhile ("Created TensorFlow
    Lite XNNPACK delegate", "Feedback manager requires ..."): no environment variable silences it, and a user must see
    only what synclora says. Opened where a graph starts and first sees a face (`FaceMeshTracker`, `count_faces`).

    fd 2 belongs to the whole process, so windows opened on several threads share one hold: the first opens it, the
    last closes it. What was held is then written out without MediaPipe's lines (whatever else wrote meanwhile, a
    progress bar or a warning, is only delayed), or whole if a window failed other than by a stop."""
    if not _open_window():
        yield
        return
    failed = False
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception:
        failed = True
        raise
    finally:
        _close_window(show_all=failed)


class _Deferred(types.ModuleType):
    """A stand-in for a module MediaPipe imports and synclora's path never uses from MediaPipe (see `mediapipe`): any
    attribute read loads the real module, for whoever reads it."""

    def __getattr__(self, name: str):
        with _mp_lock:  # the window is over (or this is its own thread): the real module takes the name back
            for module in _DEFERRED:
                if isinstance(sys.modules.get(module), _Deferred):
                    del sys.modules[module]
        return getattr(importlib.import_module(self.__name__), name)


_DEFERRED = ("matplotlib", "matplotlib.pyplot")
_mp_lock = threading.RLock()


def mediapipe():
    """MediaPipe, imported without the matplotlib.pyplot it imports at once for a plotting helper
    (`solutions.drawing_utils.plot_landmarks`) nothing here calls: 0.8 s of a CLI run's start-up, on the thread that
    starts the propagation. Where matplotlib is loaded already (the app), nothing changes. Anyone who reads an
    attribute of the stand-ins gets the real module."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ warnings are not for the user
    with _mp_lock:  # (an import under way on another thread is waited for, not handed out half made)
        if "mediapipe" in sys.modules or any(m in sys.modules for m in _DEFERRED):
            return importlib.import_module("mediapipe")
        stand_ins = {m: _Deferred(m) for m in _DEFERRED}
        stand_ins["matplotlib"].pyplot = stand_ins["matplotlib.pyplot"]
        sys.modules.update(stand_ins)
        try:
            return importlib.import_module("mediapipe")
        finally:
            for m, stand_in in stand_ins.items():
                if sys.modules.get(m) is stand_in:
                    del sys.modules[m]


def count_faces(frames: np.ndarray, picks: list[int], min_confidence: float) -> list[int]:
    """Faces MediaPipe's face detector (the face mesh's own) finds on each picked frame (a few ms each)."""
    mp = mediapipe()
    with quiet_native_stderr(), mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=min_confidence) as det:
        return [len(det.process(np.ascontiguousarray(frames[i])).detections or []) for i in picks]


def landmark_array(landmarks) -> np.ndarray:
    """(N, 3) float64 from MediaPipe's NormalizedLandmarkList.

    Reads the protobuf wire format directly when every point is (x, y, z) only — 17 bytes each: field tag, length,
    then three tagged little-endian float32s — which is ~20× faster than 478 × 3 attribute reads (a quarter of a
    millisecond a frame). Any other layout (visibility or presence set) takes the plain path.
    """
    n = len(landmarks.landmark)
    buf = np.frombuffer(landmarks.SerializeToString(), np.uint8)
    if buf.size == 17 * n and n:
        rows = buf.reshape(n, 17)
        if ((rows[:, 0] == 0x0A) & (rows[:, 1] == 15) & (rows[:, 2] == 0x0D) & (rows[:, 7] == 0x15)
                & (rows[:, 12] == 0x1D)).all():
            xyz = np.ascontiguousarray(rows[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]]).view("<f4")
            return xyz.reshape(n, 3).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)


_face_seen = False  # by any tracker of this process


class FaceMeshTracker:
    """MediaPipe face mesh in tracking mode on downscaled frames. One instance per video (it keeps state).

    Frames are shrunk by a whole factor k (cv2's INTER_AREA fast path: 0.3 ms for 720p against 6 ms for a
    fractional factor) chosen from the first face found, so the face stays at least `face_px` wide — the landmark
    model's own input is 192 px, so larger gains nothing. Until a face is found, k keeps the long side near
    `search_side` (the detector works at 128–192 px anyway).
    """

    def __init__(self, *, face_px: int = 192, search_side: int = 640, static: bool = False,
                 min_confidence: float = 0.5, max_faces: int = 1):
        mp = mediapipe()
        self.face_px = face_px
        self.search_side = search_side
        self.max_faces = max_faces
        self.factor: int | None = None  # fixed after the first face
        # The graph's threads log from C++ while its calculators open, which the first frame waits for: a blank
        # one (no face, so the tracker's state is as new) lets them finish inside the window, on whatever thread
        # builds the tracker (the report's is built beside a running propagation).
        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scale(self, width: int, height: int) -> int:
        """The whole factor the next frame of this size is shrunk by."""
        return self.factor if self.factor is not None else max(1, int(round(max(height, width) / self.search_side)))

    def landmarks(self, frame) -> np.ndarray | None:
        """(478, 3) landmarks in the original frame's pixels, or None if no face.

        `frame`: an RGB uint8 array or a lazy frame (`synclora.video.lazy`), which shrinks straight from its planes.
        """
        found = self.faces(frame)
        return found[0] if found else None

    def faces(self, frame) -> list[np.ndarray]:
        """(478, 3) landmarks of each face found (up to `max_faces`), in the original frame's pixels.

        x, y are MediaPipe's normalised coordinates times the frame size (a pixel's centre is at index + 0.5).
        """
        from synclora.video.lazy import as_frame

        frame = as_frame(frame)
        k = self.scale(frame.width, frame.height)
        img = frame.reduced(k)  # drops < k edge pixels so the factor is exact
        global _face_seen
        if _face_seen:
            res = self._mesh.process(np.ascontiguousarray(img))
        else:  # MediaPipe warns from C++ on the first face it projects in a process ("NORM_RECT without ...")
            with quiet_native_stderr():
                res = self._mesh.process(np.ascontiguousarray(img))
        if not res.multi_face_landmarks:
            return []
        _face_seen = True
        ih, iw = img.shape[:2]
        found = []
        for face in res.multi_face_landmarks:
            pts = landmark_array(face)
            pts *= (iw * k, ih * k, iw * k)
            found.append(pts)
        if self.factor is None:
            face_w = float(found[0][:, 0].max() - found[0][:, 0].min())
            # Fixed from here on: tracking state and cue scale stay consistent for the whole video.
            self.factor = max(1, int(face_w // self.face_px))
        return found
