"""Opening a media file with PyAV and saying in one sentence why it cannot be opened.

Every decoder this package opens is capped at `limits.MAX_PIXELS` per frame (FFmpeg's `max_pixels`), also the ones
FFmpeg opens while probing a file: a header that claims a huge frame size is refused before a frame buffer is
allocated, and so is a stream that changes to a huge size midway.
"""

from __future__ import annotations

from pathlib import Path

import av

from synclora import limits
from synclora.errors import InputError
from synclora.paths import check_input

# Options for every decoder: the frame-size cap (the probe's decoders get it through `av.open`'s options).
DECODER_OPTIONS = {"max_pixels": str(limits.MAX_PIXELS)}


def check_file(path: Path) -> None:
    check_input(path, "video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")


def open_input(path: Path) -> av.container.InputContainer:
    check_file(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore", options=dict(DECODER_OPTIONS))
    except av.FFmpegError as e:
        raise InputError(f"{path.name} could not be opened as a video ({short_error(e)}).") from e
    except (UnicodeDecodeError, ValueError) as e:  # PyAV raises these for a few malformed headers
        raise InputError(f"{path.name} could not be opened as a video ({e}).") from e
    if len(container.streams) > limits.MAX_STREAMS:
        n = len(container.streams)
        container.close()
        raise InputError(f"{path.name} has {n} streams; files with at most {limits.MAX_STREAMS} are read.")
    return container


def short_error(e: BaseException) -> str:
    msg = str(e).strip().rstrip(".")
    if msg.startswith("[Errno"):
        msg = msg.split("]", 1)[-1].strip()
        msg = msg[:1].lower() + msg[1:]
    if ": '" in msg:  # PyAV appends the file name; the user knows it already
        msg = msg.split(": '")[0]
    return msg or type(e).__name__


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    streams = [
        s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    if not streams:
        if container.streams.audio:
            raise InputError(f"{path.name} has no video stream (it looks like an audio-only file).")
        raise InputError(f"{path.name} has no video stream.")
    vs = streams[0]
    cc = vs.codec_context
    if cc is None:
        raise InputError(f"{path.name}: its video codec ({vs.codec.name if vs.codec else 'unknown'}) cannot be decoded "
                         "here.")
    w, h = int(cc.width or 0), int(cc.height or 0)
    if w * h > limits.MAX_PIXELS:
        raise too_large(path, w, h)
    cc.options = {**cc.options, **DECODER_OPTIONS}
    return vs


def too_large(path: Path, w: int | None = None, h: int | None = None) -> InputError:
    size = f"{w}×{h}, " if w and h else ""
    return InputError(f"{path.name} has frames of {size}over {limits.MAX_PIXELS // 1_000_000} megapixels; frames of at "
                      "most 4096×4096 (e.g. 3840×2160) are read — downscale the clip first.")


def decode_error(path: Path, e: av.FFmpegError, where: str = "") -> InputError:
    """A decoder's failure as a sentence; a frame refused for exceeding `max_pixels` (FFmpeg says only "Invalid
    argument", EINVAL) is said as the size limit."""
    if isinstance(e, av.error.ArgumentError):
        return too_large(path)
    return InputError(f"{path.name} could not be decoded{where} ({short_error(e)}).")


