"""Load an edited frame from any still-image file into plain 8-bit RGB, or say clearly why it can't be used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synclora.errors import InputError

# Pillow's own guard against decompression bombs, but as a clear user error instead of a warning.
MAX_IMAGE_PIXELS = 64_000_000


def load_image(path: str | Path, what: str = "edited image") -> tuple[np.ndarray, list[str]]:
    """Return (H, W, 3) uint8 RGB and notices about what was converted.

    Handles EXIF orientation, alpha (composited on white), palette, greyscale, CMYK and 16-bit images. `what` names
    the image in the messages (e.g. "still" for pair generation).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path.name}")
    if path.stat().st_size == 0:
        raise InputError(f"the {what} {path.name} is an empty file")
    notices: list[str] = []
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"the {what} is {im.width}×{im.height}; images over "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are not accepted"
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(
                    f"the {what} {path.name} is animated ({frames} frames); upload one still image (PNG or JPEG)"
                )
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, notices)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable image ({type(exc).__name__}); use PNG or JPEG") from None
    return rgb, notices


def _to_rgb(im: Image.Image, notices: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notices.append("16-bit image converted to 8-bit")
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            notices.append("transparent areas of the edited image were filled with white")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode == "CMYK":
        notices.append("CMYK image converted to RGB")
    elif mode in ("L", "1"):
        notices.append("greyscale image used as RGB")
    if im.info.get("icc_profile") is None and mode == "RGB":
        return np.asarray(im)
    if mode.startswith("RGB") and mode != "RGB":  # e.g. 16-bit-per-channel RGB from some decoders
        notices.append("image converted to 8-bit RGB")
    return np.asarray(im.convert("RGB"))
