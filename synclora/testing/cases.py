"""Evaluation cases with known answers, made from real moving faces (synclora.testing.faces): a clip with audio, its
edited frame, and outside results that are right, 3 frames late, with a frozen mouth, shimmering, or with the
background repainted — for the evaluate tests and benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synclora.testing.faces import delay, freeze_region, mouth_box, talking_clip
from synclora.testing.media import tone, write_clip

FPS = 25


def shimmer(frames: np.ndarray, sigma: float = 6.0, seed: int = 0) -> np.ndarray:
    """Fresh noise on every frame: what a viewer sees as shimmer."""
    rng = np.random.default_rng(seed)
    noisy = frames.astype(np.float32) + rng.normal(0, sigma, frames.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def repaint_background(frames: np.ndarray, clean: np.ndarray, strength: float = 0.35) -> np.ndarray:
    """The frames with everything outside the face's neighbourhood tinted, as a backend that repaints the whole
    picture would (the face, where the edit is, is untouched). `clean` is the unedited clip (its still background
    tells face from background)."""
    h, w = frames.shape[1:3]
    yy, xx = np.mgrid[:h, :w]
    face = ((xx - w / 2) / (0.32 * w)) ** 2 + ((yy - 0.45 * h) / (0.42 * h)) ** 2 < 1
    out = frames.astype(np.float32)
    tint = np.array([40.0, -25.0, 30.0], np.float32)
    out[:, ~face] = out[:, ~face] * (1 - strength) + (out[:, ~face] + tint) * strength
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_case(folder: str | Path, name: str = "hopper", *, person: str = "grace_hopper", n: int = 72,
               edit: str = "lipstick", edit_index: int = 10, seed: int = 0, still: bool = False,
               results: tuple[str, ...] = ("right", "late", "frozen")) -> dict:
    """Write NAME/clip.mp4 (with audio), NAME/edited.png and the asked-for outside results under `folder`; return
    the case's entry (paths relative to `folder`). Results: right, late (3 frames), frozen (mouth), shimmer,
    repainted. `still`: no head roll or drift, so a frozen mouth box stays on the mouth."""
    from PIL import Image

    folder = Path(folder)
    d = folder / name
    d.mkdir(parents=True, exist_ok=True)
    kw = dict(seed=seed, roll_deg=0.0, shift_px=0.0) if still else dict(seed=seed)
    clip = talking_clip(person, n, **kw)
    edited = talking_clip(person, n, edit=edit, **kw).frames
    write_clip(d / "clip.mp4", clip.frames, FPS, audio=tone(n / FPS, freq=330 + 40 * seed))
    Image.fromarray(edited[edit_index]).save(d / "edited.png")
    makers = {
        "right": lambda: edited,
        "late": lambda: delay(edited, 3),
        "frozen": lambda: freeze_region(edited, mouth_box(person), ref=0),
        "shimmer": lambda: shimmer(edited, seed=seed),
        "repainted": lambda: repaint_background(edited, clip.frames),
    }
    out = {}
    for r in results:
        write_clip(d / f"{r}.mp4", makers[r](), FPS)
        out[r] = f"{name}/{r}.mp4"
    entry = {"name": name, "clip": f"{name}/clip.mp4", "edited": f"{name}/edited.png", "edit_index": edit_index}
    if out:
        entry["results"] = out
    return entry


def write_cases(folder: str | Path, entries: list[dict]) -> Path:
    path = Path(folder) / "cases.json"
    path.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return path
