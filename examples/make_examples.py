"""Regenerate the app's examples: short talking-portrait clips with sound, each with a pre-made edited frame.

    python -m examples.make_examples

Material: two public-domain photographs — Grace Hopper (US Navy photo, matplotlib's sample data) and Eileen Collins
(NASA photo, scikit-image's `data.astronaut()`, shipped in `synclora/testing/data/`) — animated by
`synclora.testing.faces.talking_clip` (jaw, blinks, gaze, head roll/drift). The sound is synthetic "speech": a
voiced buzz whose loudness follows the mouth opening, so sync can be heard as well as seen. Edits are painted with
OpenCV at the MediaPipe landmarks of the chosen frame (red nose, lipstick, moustache): local appearance edits that
both backends can carry and that leave eyes and mouth visible, so the sync report can judge them. Every file stays
well under 1 MB; `examples.json` lists them for the app.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FPS = 24
SAMPLE_RATE = 24000

# MediaPipe face-mesh landmark indices.
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
NOSE_TIP, NOSE_BOTTOM, UPPER_LIP, MOUTH_L, MOUTH_R = 1, 2, 0, 61, 291


def speech_audio(mouth: np.ndarray, fps: float, seed: int) -> np.ndarray:
    """(2, n) float32: a 120–160 Hz voiced buzz with formant-like colour, loud when the mouth is open."""
    n = int(round(len(mouth) / fps * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    env = np.interp(t, np.arange(len(mouth)) / fps, mouth / (mouth.max() + 1e-9))
    env = np.convolve(env, np.ones(240) / 240, mode="same")  # 10 ms smoothing, no clicks
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum((0.6 / k) * np.sin(k * phase) * (1.6 if k in (5, 6, 13) else 1.0) for k in range(1, 20))
    breath = 0.05 * rng.normal(size=n)
    y = (voice / 3.0 + breath) * env
    y = 0.5 * y / (np.abs(y).max() + 1e-9)
    return np.stack([y, y]).astype(np.float32)


def landmarks(img: np.ndarray) -> np.ndarray:
    from synclora.face.mesh import FaceMeshTracker

    with FaceMeshTracker(static=True, search_side=100_000) as tracker:
        pts = tracker.landmarks(img)
    if pts is None:
        raise RuntimeError("no face found in the example frame")
    return pts[:, :2]


def clown_nose(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """A glossy red ball on the nose tip: a bold local edit that hides neither the eyes nor the mouth."""
    out = img.copy()
    tip = pts[NOSE_TIP]
    r = 0.3 * abs(pts[MOUTH_R, 0] - pts[MOUTH_L, 0])
    c = tuple(np.round(tip).astype(int))
    cv2.circle(out, c, int(r), (205, 20, 30), -1, cv2.LINE_AA)
    cv2.circle(out, c, int(r), (120, 10, 15), max(1, int(r / 8)), cv2.LINE_AA)
    hi = tuple(np.round(tip + np.array([-0.35 * r, -0.35 * r])).astype(int))
    cv2.circle(out, hi, max(1, int(r / 4)), (255, 170, 170), -1, cv2.LINE_AA)
    return out


def lipstick(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(pts[list(LIPS_OUTER)]).astype(np.int32)], 255)
    cv2.fillPoly(mask, [np.round(pts[list(LIPS_INNER)]).astype(np.int32)], 0)
    mask = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255.0
    grey = img.astype(np.float32).mean(axis=2, keepdims=True)
    red = np.clip(grey * np.array([0.9, 0.12, 0.16]) + np.array([75, 5, 15]), 0, 255)
    return (img * (1 - 0.85 * mask) + red * 0.85 * mask).astype(np.uint8)


def moustache(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out = img.copy()
    nose, lip = pts[NOSE_BOTTOM], pts[UPPER_LIP]
    ml, mr = pts[MOUTH_L], pts[MOUTH_R]
    y = 0.45 * nose[1] + 0.55 * lip[1]
    half = 0.75 * abs(mr[0] - ml[0])
    cx = (ml[0] + mr[0]) / 2
    thick = max(5, int(0.45 * abs(lip[1] - nose[1]) + 4))
    for sign in (-1, 1):
        xs = np.linspace(0, 1, 24)
        curve = np.stack([cx + sign * xs * half, y + thick * 0.3 * np.sin(np.pi * xs) - 0.9 * thick * xs**3], 1)
        for (x0, y0), (x1, y1), w in zip(curve[:-1], curve[1:], np.linspace(thick, 2, 23)):
            cv2.line(out, (int(x0), int(y0)), (int(x1), int(y1)), (52, 34, 24), int(max(2, w)), cv2.LINE_AA)
    return out


EXAMPLES = [
    # (file stem, photo, frames, seed, edited frame, edit, label, layout)
    ("grace-red-nose", "grace_hopper", 72, 1, 0, clown_nose, "Red nose · Grace Hopper · frame 0", "square"),
    ("eileen-lipstick", "astronaut", 72, 2, 36, lipstick, "Red lipstick · Eileen Collins · middle frame", "square"),
    ("grace-moustache-portrait", "grace_hopper", 60, 3, 59, moustache,
     "Moustache · portrait 9:16 · last frame", "portrait"),
]


def portrait_layout(frames: np.ndarray) -> np.ndarray:
    """Put a square clip into a 9:16 phone-style frame (blurred copy of itself behind), like a vertical video."""
    n, s = frames.shape[:2]
    w, h = 288, 512
    out = np.empty((n, h, w, 3), np.uint8)
    for i, f in enumerate(frames):
        bg = cv2.GaussianBlur(cv2.resize(f, (h, h))[:, (h - w) // 2:(h - w) // 2 + w], (0, 0), 12)
        fg = cv2.resize(f, (w, w), interpolation=cv2.INTER_AREA)
        bg[(h - w) // 2:(h - w) // 2 + w] = fg
        out[i] = bg
    return out


def main() -> None:
    from synclora.testing.faces import talking_clip
    from synclora.testing.media import write_clip

    index = []
    for stem, photo, n, seed, k, edit, label, layout in EXAMPLES:
        clip = talking_clip(photo, n, size=320, seed=seed)
        frames = portrait_layout(clip.frames) if layout == "portrait" else clip.frames
        audio = speech_audio(clip.mouth, FPS, seed)
        video = HERE / f"{stem}.mp4"
        write_clip(video, frames, Fraction(FPS), audio=audio, sample_rate=SAMPLE_RATE, crf=26, gop=12)
        edited = edit(frames[k], landmarks(frames[k]))
        Image.fromarray(edited).save(HERE / f"{stem}-edit.png", optimize=True)
        index.append({"label": label, "video": video.name, "edited": f"{stem}-edit.png", "edit_index": k})
        sizes = [(HERE / f).stat().st_size // 1024 for f in (video.name, f"{stem}-edit.png")]
        print(f"{stem}: {len(frames)} frames {frames.shape[2]}×{frames.shape[1]}, edit at frame {k}, "
              f"{sizes[0]} KB video, {sizes[1]} KB edit")
    (HERE / "examples.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
