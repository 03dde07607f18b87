"""The landmark view: source and result side by side with the face landmarks the report measured, as a video.

Numbers say *that* a cue is off; this shows *how*: the mesh, eyes, irises, brows and lips the report read, drawn on
both videos frame by frame (with the source's audio), so a late mouth or a guessed eye behind sunglasses is seen at a
glance. Regions the edit hides are drawn in grey, as the report leaves them out.

Drawn here with OpenCV on the landmarks the report already has. controlnet-aux's MediaPipe face annotator (a
design-card dependency) cannot be used for this: it runs its own face mesh on the image instead of taking landmarks,
draws on black, and its wheel pulls opencv-python-headless next to our opencv-contrib-python. The colours follow its
scheme (contours by part, no tessellation) so the view reads like the conditioning images people know.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from synclora.metrics import face_parts as fp

PANEL_MAX_HEIGHT = 480  # px; the view is for looking, not measuring (and its encoding costs per pixel)
GREY = (150, 150, 150)
_COLOURS = {  # RGB
    "oval": (10, 200, 10),
    "left_eye": (180, 200, 10),
    "right_eye": (10, 200, 180),
    "left_brow": (180, 220, 10),
    "right_brow": (10, 220, 180),
    "lips": (230, 60, 60),
    "left_iris": (250, 200, 10),
    "right_iris": (10, 200, 250),
}
_LINES = {
    "oval": (fp.FACE_OVAL, "face"),
    "left_eye": (fp.LEFT_EYE, "left_eye"),
    "right_eye": (fp.RIGHT_EYE, "right_eye"),
    "left_brow": (fp.LEFT_BROW, "left_eye"),
    "right_brow": (fp.RIGHT_BROW, "right_eye"),
    "lips": (fp.LIPS_OUTER, "mouth"),
    "lips_inner": (fp.LIPS_INNER, "mouth"),
    "left_iris": (fp.LEFT_IRIS, "left_eye"),
    "right_iris": (fp.RIGHT_IRIS, "right_eye"),
}
_OPEN = {"left_brow", "right_brow"}  # drawn as a line, not a closed outline
_RINGS = {"left_eye": fp.LEFT_EYE, "right_eye": fp.RIGHT_EYE, "mouth": fp.LIPS_OUTER, "face": fp.FACE_OVAL}


def panel_factor(height: int) -> int:
    """The whole factor a video is shrunk by for its panel (at most `PANEL_MAX_HEIGHT` high): a lazy frame makes that
    image straight from its planes, and at 720p it is the very image the landmarker saw (factor 2)."""
    return max(1, -(-height // PANEL_MAX_HEIGHT))


def draw_panel(img: np.ndarray, pts: np.ndarray | None, size: tuple[int, int], frame_size: tuple[int, int],
               hidden: set[str], label: str) -> np.ndarray:
    """`img` (any size, RGB) fitted to `size` and dimmed, with `pts` (landmarks in `frame_size` pixels) drawn."""
    import cv2

    if (img.shape[1], img.shape[0]) != size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    out = cv2.convertScaleAbs(img, alpha=0.6)  # dimmed so the lines stand out
    if pts is not None:
        s = np.array([size[0] / frame_size[0], size[1] / frame_size[1]])
        p = np.round(pts[:, :2] * s * 4).astype(np.int32)  # 2 fractional bits
        if hidden:
            shade = out.copy()
            cv2.fillPoly(shade, [p[list(_RINGS[r])] for r in hidden], GREY, cv2.LINE_AA, shift=2)
            out = cv2.addWeighted(shade, 0.55, out, 0.45, 0)
        for name, (ring, region) in _LINES.items():
            colour = GREY if region in hidden else _COLOURS.get(name, _COLOURS["lips"])
            cv2.polylines(out, [p[list(ring)]], name not in _OPEN, colour, 1 if name.endswith("iris") else 2,
                          cv2.LINE_AA, shift=2)
    _text(out, label, 6, 18)
    if pts is None:
        _text(out, "no face found", 6, size[1] - 10)
    return out


def _text(img: np.ndarray, text: str, x: int, y: int) -> None:
    import cv2

    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


class LandmarkVideo:
    """Writes the view frame by frame on its own thread (H.264 via `synclora.video.io.write_video`, atomic)."""

    def __init__(self, path: str | Path, fps: float, source_size: tuple[int, int], result_size: tuple[int, int],
                 hidden: set[str], *, start: int = 0, audio_from: str | Path | None = None,
                 audio_span: tuple[int, int] | None = None):
        self.path = Path(path)
        self.hidden = set(hidden)
        self.start = start
        self.source_size, self.result_size = source_size, result_size
        self.src_factor, self.res_factor = panel_factor(source_size[1]), panel_factor(result_size[1])
        self.src_panel = (source_size[0] // self.src_factor // 2 * 2, source_size[1] // self.src_factor // 2 * 2)
        h = self.src_panel[1]  # the result's panel matches its height (resized only when the sizes differ)
        rw, rh = result_size[0] // self.res_factor, result_size[1] // self.res_factor
        self.res_panel = (rw // 2 * 2, rh // 2 * 2) if rh // 2 * 2 == h else (max(2, round(rw * h / rh) // 2 * 2), h)
        self._q: queue.Queue = queue.Queue(maxsize=32)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, args=(fps, audio_from, audio_span), daemon=True)
        self._thread.start()

    def _frames(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _write(self, fps, audio_from, audio_span) -> None:
        from synclora.video import io

        try:
            io.write_video(self.path, self._frames(), fps, audio_from=audio_from, audio_span=audio_span, crf=24,
                           preset="superfast")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller in close()
            self._error = exc
            while True:  # drain, so that a producer blocked on a full queue goes on
                try:
                    if self._q.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def add(self, i: int, src_img: np.ndarray, src_pts, res_img: np.ndarray, res_pts) -> None:
        """Frame i of the compared range: each image at any size (best: the frame shrunk by `src_factor` /
        `res_factor`, which needs no further resizing), landmarks in the video's own pixels (None: no face)."""
        if self._error is not None:
            return
        left = draw_panel(src_img, src_pts, self.src_panel, self.source_size, self.hidden,
                          f"source  frame {self.start + i}")
        right = draw_panel(res_img, res_pts, self.res_panel, self.result_size, self.hidden, "result")
        self._q.put(np.concatenate([left, right], axis=1))

    def close(self, ok: bool = True) -> Path | None:
        """Finish the file (ok) or drop it (after an error elsewhere); raises what the writer hit."""
        self._q.put(None if ok else RuntimeError("the sync report stopped"))
        self._thread.join()
        if ok and self._error is not None:
            raise self._error
        return self.path if ok else None
