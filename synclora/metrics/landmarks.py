"""Face cues per frame: head pose, mouth opening, eye openness, gaze — from MediaPipe's face mesh.

Why this shape: the sync report and the curation filter both need the same few 1-D curves per video, fast, on a CPU.
MediaPipe's legacy face mesh (bundled in the wheel, no download) already runs its 192×192 landmark model on a face
crop and tracks the face from frame to frame, so the expensive detector runs only when the face is lost. We add one
thing: frames are shrunk by a whole factor so the face is still ≥ `face_px` pixels wide, which keeps the per-frame
cost nearly independent of the video's resolution (image transfer and the detector scale with frame size).

Every cue is normalised by the face's own size or is an angle, so a resized or re-encoded result compares with its
source. Frames without a face keep NaN cues and `face[t] = False`; nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synclora.errors import InputError
from synclora.face.mesh import FaceMeshTracker
from synclora.face.parts import FACE_OVAL
from synclora.progress import ProgressFn

FrameHook = Callable[[int, object, "np.ndarray | None", int], None]

# Cue names, in plot order. left/right are the subject's own (MediaPipe's "left eye" is on the image's right).
CUE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "mouth", "left_eye", "right_eye", "gaze_x", "gaze_y")
CUE_UNITS: dict[str, str] = {
    "yaw": "deg",
    "pitch": "deg",
    "roll": "deg",
    "mouth": "lip gap / eye span",
    "left_eye": "eye aspect ratio",
    "right_eye": "eye aspect ratio",
    "gaze_x": "iris offset / eye width",
    "gaze_y": "iris offset / eye width",
}
# Each eye's own gaze, kept beside the averaged gaze cues so that an edit hiding one eye leaves the other's.
EYE_GAZE_NAMES: tuple[str, ...] = ("left_gaze_x", "left_gaze_y", "right_gaze_x", "right_gaze_y")

# Face-mesh indices (478-point refined topology).
_R_EYE = (33, 160, 158, 133, 153, 144)  # subject's right eye: outer, top1, top2, inner, bottom2, bottom1
_L_EYE = (263, 387, 385, 362, 380, 373)  # subject's left eye, same order (outer … inner)
_R_IRIS, _L_IRIS = 468, 473
_LIP_TOP, _LIP_BOTTOM = 13, 14
_FOREHEAD, _CHIN = 10, 152
# Mirror pairs (subject's left, right) across the whole face: the face's left-right axis is their mean direction, so
# head pose does not hang on two eye corners that sunglasses or a hand may hide (the landmarker then guesses them).
_MIRROR = tuple((FACE_OVAL[i], FACE_OVAL[-i]) for i in range(1, 18)) + (
    (263, 33), (362, 133), (300, 70), (336, 107), (291, 61), (278, 48), (294, 64), (327, 98), (344, 115))
_MIRROR_L = [a for a, _ in _MIRROR]
_MIRROR_R = [b for _, b in _MIRROR]


@dataclass
class CueTrack:
    """Per-frame cues of one video: `cues[name]` is a float array (T,), NaN where `face` is False."""

    cues: dict[str, np.ndarray]
    face: np.ndarray  # (T,) bool
    boxes: np.ndarray  # (T, 4) float x0, y0, x1, y1 in the original frame's pixels, NaN without a face
    size: tuple[int, int]  # (width, height) of the original frames
    fps: float | None = None
    notes: list[str] = field(default_factory=list)
    kept: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # sampled RGB frames (see keep_every)

    def __len__(self) -> int:
        return int(self.face.shape[0])

    def save(self, path: str | Path) -> Path:
        """Cache as .npz (plain arrays, no pickle) — curation scores many pairs against cached tracks."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"cue_{k}": v for k, v in self.cues.items()}
        np.savez_compressed(path, face=self.face, boxes=self.boxes, size=np.array(self.size),
                            fps=np.array(np.nan if self.fps is None else self.fps), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CueTrack:
        with np.load(path, allow_pickle=False) as z:
            cues = {k[4:]: z[k] for k in z.files if k.startswith("cue_")}
            fps = float(z["fps"])
            return cls(cues=cues, face=z["face"], boxes=z["boxes"], size=tuple(int(v) for v in z["size"]),
                       fps=None if np.isnan(fps) else fps)

    @property
    def missing(self) -> np.ndarray:
        """Indices of frames where no face was found."""
        return np.flatnonzero(~self.face)

    def slice(self, start: int, stop: int) -> CueTrack:
        return CueTrack(
            cues={k: v[start:stop] for k, v in self.cues.items()},
            face=self.face[start:stop],
            boxes=self.boxes[start:stop],
            size=self.size,
            fps=self.fps,
            notes=list(self.notes),
            kept={i - start: f for i, f in self.kept.items() if start <= i < stop},
        )


def cues_from_landmarks(pts: np.ndarray) -> dict[str, float]:
    """Cues of one face from (478, 3) landmarks in pixels (x right, y down, z away from the camera, x's scale)."""
    r_out, l_out = pts[_R_EYE[0]], pts[_L_EYE[0]]
    span = float(np.linalg.norm(l_out - r_out))  # 3-D outer-eye-corner span: face size that survives yaw
    # Head frame: x from the face's right to its left (all mirror pairs), y down the face (forehead → chin),
    # n = x × y points into the head.
    ax = (pts[_MIRROR_L] - pts[_MIRROR_R]).sum(0)
    ax /= max(float(np.linalg.norm(ax)), 1e-6)
    down = pts[_CHIN] - pts[_FOREHEAD]
    down = down - np.dot(down, ax) * ax
    down /= max(float(np.linalg.norm(down)), 1e-6)
    n = np.cross(ax, down)
    yaw = np.degrees(np.arctan2(-n[0], n[2]))  # + when the nose turns towards the image's right
    pitch = np.degrees(np.arctan2(n[1], np.hypot(n[0], n[2])))  # + when the face looks up
    roll = np.degrees(np.arctan2(ax[1], ax[0]))  # + when the eye line turns clockwise in the image

    mouth = float(np.linalg.norm(pts[_LIP_TOP] - pts[_LIP_BOTTOM])) / max(span, 1e-6)

    def ear(idx: tuple[int, ...]) -> float:
        p = pts[list(idx), :2]
        width = np.linalg.norm(p[0] - p[3])
        return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * max(width, 1e-6)))

    def gaze(idx: tuple[int, ...], iris: int) -> tuple[float, float]:
        a, b = pts[idx[0], :2], pts[idx[3], :2]
        if a[0] > b[0]:  # measure along the image's left → right so both eyes share a sign
            a, b = b, a
        width = max(float(np.linalg.norm(b - a)), 1e-6)
        ex = (b - a) / width
        ey = np.array([-ex[1], ex[0]])  # perpendicular, pointing down the image
        d = pts[iris, :2] - (a + b) / 2.0
        return float(np.dot(d, ex) / width), float(np.dot(d, ey) / width)

    grx, gry = gaze(_R_EYE, _R_IRIS)
    glx, gly = gaze(_L_EYE, _L_IRIS)
    return {
        "yaw": float(yaw),
        "pitch": float(pitch),
        "roll": float(roll),
        "mouth": mouth,
        "left_eye": ear(_L_EYE),
        "right_eye": ear(_R_EYE),
        "gaze_x": (grx + glx) / 2.0,
        "gaze_y": (gry + gly) / 2.0,
        "left_gaze_x": glx,
        "left_gaze_y": gly,
        "right_gaze_x": grx,
        "right_gaze_y": gry,
    }


def _as_frames(video, frame_range: tuple[int, int] | None = None):
    """(frames iterable, count, fps, (w, h)). Files stream as lazy frames on `synclora.video.io`'s exact CFR
    timeline: only what the landmarker and the hooks ask for is converted."""
    from synclora.video.frames import Frames

    video = Frames.of(video)
    start, stop = frame_range if frame_range is not None else (0, video.n_frames)
    return video.lazy(start, stop), len(range(start, min(stop, video.n_frames))), video.fps, video.size


class CueStream:
    """The one cue extractor: frames go in one at a time, in order; `track()` gives the CueTrack.

    A file decoded for the report, an array, and the frames a propagation streams past (`synclora.metrics.tap`) all
    go through `add`, so every route measures the same numbers for the same frames. Keeps per-frame numbers only
    (and the `keep_every` frames asked for); the tracker is one per video (it tracks the face frame to frame).
    `on_frame(i, frame, landmarks or None, k)` sees every frame as it passes (a lazy frame: `reduced(k)` is the image
    the landmarker saw) — the edit-kept score, identity and the landmark view ride on it.
    """

    def __init__(self, *, face_px: int = 192, search_side: int = 640, static: bool = False, keep_every: int = 0,
                 on_frame: FrameHook | None = None):
        self.keep_every = keep_every
        self.on_frame = on_frame
        self.kept: dict[int, np.ndarray] = {}
        self.size: tuple[int, int] | None = None
        self._rows: list[tuple[float, ...] | None] = []
        self._boxes: list[tuple[float, float, float, float]] = []
        self._tracker = FaceMeshTracker(face_px=face_px, search_side=search_side, static=static)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, frame) -> np.ndarray | None:
        """Measure the next frame (an RGB uint8 array or a lazy frame); its landmarks, or None without a face."""
        from synclora.video.lazy import as_frame

        frame = as_frame(frame)
        i = len(self._rows)
        if self.size is None:
            self.size = (frame.width, frame.height)
        k = self._tracker.scale(frame.width, frame.height)
        pts = self._tracker.landmarks(frame)
        if self.on_frame is not None:
            self.on_frame(i, frame, pts, k)
        if self.keep_every and i % self.keep_every == 0:
            self.kept[i] = frame.rgb()
        if pts is None:
            self._rows.append(None)
            self._boxes.append((np.nan,) * 4)
        else:
            c = cues_from_landmarks(pts)
            self._rows.append(tuple(c[name] for name in _ALL_CUES))
            self._boxes.append((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
        return pts

    def close(self) -> None:
        self._tracker.close()

    def __enter__(self) -> CueStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def track(self, fps: float | None = None, size: tuple[int, int] | None = None) -> CueTrack:
        """The cues of every frame added so far (`size`: the video's (w, h); default: the first frame's)."""
        t = len(self._rows)
        if t == 0:
            raise InputError("the video has no frames")
        face = np.array([r is not None for r in self._rows], dtype=bool)
        table = np.full((t, len(_ALL_CUES)), np.nan)
        for i, r in enumerate(self._rows):
            if r is not None:
                table[i] = r
        cues = {name: table[:, j].copy() for j, name in enumerate(_ALL_CUES)}
        notes = [] if face.any() else ["no face found in any frame"]
        return CueTrack(cues=cues, face=face, boxes=np.array(self._boxes, dtype=np.float64),
                        size=size or self.size or (0, 0), fps=fps, notes=notes, kept=dict(self.kept))


_ALL_CUES = CUE_NAMES + EYE_GAZE_NAMES


def extract_cues(
    video,
    progress: ProgressFn | None = None,
    *,
    face_px: int = 192,
    search_side: int = 640,
    static: bool = False,
    frame_range: tuple[int, int] | None = None,
    keep_every: int = 0,
    on_frame: FrameHook | None = None,
) -> CueTrack:
    """Cues for every frame of `video` (a path or a (T, H, W, 3) uint8 RGB array), through `CueStream`.

    `keep_every=n` keeps every n-th frame (index → RGB) in `track.kept` for later per-frame models, so a file is
    decoded once. `on_frame`: see `CueStream`.
    """
    frames, n_hint, fps, size = _as_frames(video, frame_range)
    with CueStream(face_px=face_px, search_side=search_side, static=static, keep_every=keep_every,
                   on_frame=on_frame) as stream:
        for i, frame in enumerate(frames):
            stream.add(frame)
            if progress is not None and (i % 25 == 0 or i + 1 == n_hint):
                progress((i + 1) / max(n_hint, 1), f"face cues {i + 1}/{n_hint}")
        return stream.track(fps, size)
