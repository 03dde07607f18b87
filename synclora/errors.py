"""User-facing errors.

Anything raised as a `SyncloraError` carries a sentence meant for the person who gave the input; the CLI prints it
on one line (exit code 2) and the app shows it as `gr.Error`. Failures of the machine or of a library that the user
can act on (a full or read-only disk, an image bomb, a file a codec refuses) become such sentences in one place,
`user_error`. Everything else is a bug and keeps its traceback.
"""

import errno
import os
import re
import sys
import unicodedata


class SyncloraError(Exception):
    """An error whose message is written for the user."""


class InputError(SyncloraError):
    """The user's input (file, frame index, image, option) cannot be used."""


class ModelUnavailableError(SyncloraError):
    """A backend or model cannot run here (no GPU, weights missing or corrupt)."""


class OutOfMemoryError(SyncloraError):
    """The accelerator ran out of memory; the message says what to try."""


# What to try when a propagation runs out of memory (the GPU backend and the pipeline say it after their own words).
OOM_HINT = "try quality 'preview', a lower resolution, memory mode 'fp8' or 'offload', or a shorter or smaller clip"


# --- failures of the machine or a library, said as sentences ---------------------------------------------------------
# OS errors a user can act on (free space, pick another folder, fix permissions), by errno: what to say about the file.
_OS_SENTENCES = {
    errno.ENOSPC: "there is no space left on the disk to write {file}; free some space or choose another folder",
    errno.EDQUOT: "the disk quota is used up; {file} could not be written",
    errno.EFBIG: "{file} became larger than this file system (or this process) allows",
    errno.EROFS: "{file} is on a read-only file system; choose another folder",
    errno.EACCES: "permission denied: {file}",
    errno.EPERM: "permission denied: {file}",
    errno.EISDIR: "{file} is a folder, not a file",
    errno.ENOTDIR: "a part of {file} is not a folder",
    errno.ENAMETOOLONG: "the file name {file} is too long",
    errno.ENOENT: "{file} was not found (was it moved or deleted?)",
    errno.ELOOP: "{file} is a loop of symbolic links",
    errno.EIO: "input/output error on {file} (a failing disk or network drive?)",
    errno.EMFILE: "too many files are open; try again",
    errno.ENFILE: "too many files are open on this machine; try again",
    errno.ENOMEM: "there was not enough memory for {file}",
}


def user_error(exc: BaseException) -> SyncloraError | None:
    """The one place that turns OS, codec and image-library failures into sentences for the user.

    Returns `exc` itself for our own errors, a `SyncloraError` for failures the user can act on (a full or read-only
    disk, a denied permission, a folder where a file was meant, an image bomb, a file a codec refuses, memory), and
    None for anything else — a bug, which keeps its traceback. The CLI's `main` and the app's `user_errors` both call
    this. Libraries are looked up in `sys.modules`, never imported here: this module stays light.
    """
    if isinstance(exc, SyncloraError):
        return exc
    image = sys.modules.get("PIL.Image")
    if image is not None and isinstance(exc, (image.DecompressionBombError, image.DecompressionBombWarning)):
        limit = 2 * (image.MAX_IMAGE_PIXELS or 0) // 1_000_000  # Pillow refuses at twice its setting
        return InputError(f"the image declares more than {limit} megapixels (a decompression bomb?); images up to "
                          "that size are accepted")
    if image is not None and isinstance(exc, image.UnidentifiedImageError):
        return InputError(f"{_file(exc) or 'the file'} is not a readable image; use PNG or JPEG")
    if isinstance(exc, MemoryError):
        return OutOfMemoryError("the machine ran out of memory for this input; try a shorter or smaller one")
    if type(exc).__name__ == "SameFileError":  # shutil's: copying a file onto itself
        return InputError(f"{exc}; choose another output")
    if isinstance(exc, OSError) and exc.errno in _OS_SENTENCES:
        if exc.errno == errno.ENOMEM:
            return OutOfMemoryError("the machine ran out of memory for this input; try a shorter or smaller one")
        return InputError(_OS_SENTENCES[exc.errno].format(file=_file(exc) or "a file"))
    av = sys.modules.get("av")
    if av is not None and isinstance(exc, av.FFmpegError):
        name = _file(exc)
        return InputError(f"{name + ': ' if name else ''}the video could not be processed ({_reason(exc)})")
    return None


# --- what reaches a terminal or a page --------------------------------------------------------------------------------
MAX_SHOWN = 2000  # characters of one sentence; a longer one is cut (user text inside it is never echoed whole)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` safe to print on one line: control and format characters (newlines, terminal escape sequences, bidi
    overrides) are written as escapes, so a file named `a\\nerror: b` or one holding `ESC ]0;title BEL` cannot
    add lines, recolour or retitle the user's terminal; and the text is cut to `limit` characters."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return "".join(_escape(c) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)


def brief(value: object, limit: int = 40) -> str:
    """A value a user (or an API caller) sent, quoted for a sentence: its repr, cut to `limit` characters."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit]) + "…"
    return text if len(text) <= limit + 20 else text[: limit + 20] + "…"


# Hidden temp names (`paths.temp_path`, possibly nested: a staged output written through its own temp file) stand
# for the file the user named: a sentence names that, never `.result.mp4.1a2b3c4d.part`.
_TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.part$")


def user_name(name: str) -> str:
    """The name of the file the user asked for, from the name of a hidden temp file written for it."""
    while (m := _TEMP.match(name)) is not None:
        name = m.group(1)
    return name


def _file(exc: BaseException) -> str:
    name = getattr(exc, "filename", None)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return user_name(os.path.basename(str(name))) if name else ""


def _reason(exc: BaseException) -> str:
    msg = str(getattr(exc, "strerror", None) or exc).strip().rstrip(".")
    return (msg.split(": '")[0] or type(exc).__name__)[:200]
