"""Check an uploaded edited image and fit it to the frame it claims to edit.

People edit frames in other tools, which may export a different size, add transparency, rotate by EXIF or crop.
We accept what can be fitted without moving the face (same aspect, any scale) and say what was done; geometry
itself lives in `synclora.video.geometry`, shared with the CLI, so both treat an upload the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synclora.edit.image import load_image
from synclora.errors import InputError
from synclora.video import geometry

# Mean absolute difference (0–255) of 32×32 greyscale thumbnails above which an upload is probably another picture.
UNRELATED_MAD = 60.0
MAX_UPLOAD_BYTES = 50_000_000


def fit_upload(path: str | Path, frame: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Return the uploaded edit as (H, W, 3) uint8 at `frame`'s size, plus sentences saying what was changed."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
        raise InputError(
            f"the edited image is {path.stat().st_size / 1e6:.0f} MB; images up to {MAX_UPLOAD_BYTES // 1_000_000} MB "
            "are accepted"
        )
    img, notices = load_image(path)
    h, w = frame.shape[:2]
    img, notice = geometry.fit_edited_image(img, w, h)
    notices = list(notices) + ([notice] if notice else [])
    if img.shape[:2] != (h, w):  # the geometry contract; a mismatch here would misplace every pixel
        raise InputError(f"the edited image could not be fitted to the frame's {w}×{h}")
    if looks_unrelated(img, frame):
        notices.append(
            "the uploaded image looks very different from the chosen frame; make sure it is an edit of this frame"
        )
    return img, notices


def looks_unrelated(img: np.ndarray, frame: np.ndarray) -> bool:
    """A cheap guess that `img` is not an edit of `frame` (different shot, wrong frame of another clip)."""
    from PIL import Image

    def thumb(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).convert("L").resize((32, 32), Image.Resampling.BOX), np.float32)

    return float(np.abs(thumb(img) - thumb(frame)).mean()) > UNRELATED_MAD
