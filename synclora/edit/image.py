"""Load an edited frame from any still-image file into plain 8-bit RGB, or say clearly why it can't be used."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synclora.errors import InputError, user_error
from synclora.limits import MAX_IMAGE_PIXELS
from synclora.paths import check_input

# The process-wide policy for every decode Pillow does (ours, Gradio's): Pillow refuses images over twice its
# MAX_IMAGE_PIXELS outright, so half our limit makes that refusal fall exactly at our limit. Our own loaders check
# the header first and say it in a sentence; this catches decodes we do not control.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2


def _too_large(name: str, size: tuple[int, int] | None, bomb: Exception | None = None) -> InputError:
    if size:
        what = f"is {size[0]}×{size[1]}"
    else:  # Pillow refused it from the header: its message holds the pixel count
        found = re.search(r"\((\d+) pixels\)", str(bomb or ""))
        what = (f"declares {int(found.group(1)) / 1e6:,.0f} megapixels" if found else
                f"declares more than {MAX_IMAGE_PIXELS // 1_000_000} megapixels")
    return InputError(f"the image {name} {what}; images of at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels are "
                      "accepted (a larger one could be a decompression bomb)")


def check_image(path: str | Path, what: str = "edited image") -> tuple[int, int]:
    """(width, height) from the file's header, refusing a missing, empty, unreadable or oversized image before a
    single pixel is decoded (a few KB of PNG or a forged JPEG header can declare gigapixels)."""
    path = check_input(path, what)
    if path.stat().st_size == 0:
        raise InputError(f"the {what} {path.name} is an empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
    except Image.DecompressionBombError as exc:
        raise _too_large(path.name, None, exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # permission denied, I/O error, ...: say that
            raise user_error(exc) or InputError(f"{path.name} cannot be read ({exc.strerror})") from None
        raise InputError(f"{path.name} is not a readable image ({type(exc).__name__}); use PNG or JPEG") from None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise _too_large(path.name, size)
    return size


def load_image(path: str | Path, what: str = "edited image") -> tuple[np.ndarray, list[str]]:
    """Return (H, W, 3) uint8 RGB and notices about what was converted.

    Handles EXIF orientation, alpha (composited on white), palette, greyscale, CMYK and 16-bit images. `what` names
    the image in the messages (e.g. "still" for pair generation).
    """
    path = Path(path)
    check_image(path, what)
    notices: list[str] = []
    try:
        with warnings.catch_warnings():  # within our limit (checked above): Pillow's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(
                    f"the {what} {path.name} is animated ({frames} frames); upload one still image (PNG or JPEG)"
                )
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im, notices)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_large(path.name, None, exc) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable image ({type(exc).__name__}); use PNG or JPEG") from None
    return rgb, notices


def _to_rgb(im: Image.Image, notices: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        hi = 65535 if arr.max() > 255 else 255
        notices.append("16-bit image converted to 8-bit")
        return _grey_to_rgb(arr, lambda b: np.clip((b.astype(np.int64) * 255 + hi // 2) // hi, 0, 255))
    if mode == "F":
        arr = np.asarray(im)
        scale = np.float32(255.0 if arr.max() <= 1.0 else 1.0)
        return _grey_to_rgb(arr, lambda b: np.clip(b * scale, 0, 255))
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


_ROWS = 64  # rows converted at a time: the wide temporaries stay a few MB whatever the image's size


def _grey_to_rgb(arr: np.ndarray, to_8bit) -> np.ndarray:
    """(H, W, 3) uint8 from a 16/32-bit or float greyscale array, a block of rows at a time, so a deep image costs
    what an 8-bit one does (the whole image converted to float64 at once once cost twice as much)."""
    out = np.empty(arr.shape + (3,), np.uint8)
    for r in range(0, arr.shape[0], _ROWS):
        out[r: r + _ROWS] = to_8bit(arr[r: r + _ROWS]).astype(np.uint8)[..., None]
    return out
