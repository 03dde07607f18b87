"""Opening a media file with PyAV and saying in one sentence why it cannot be opened."""

from __future__ import annotations

from pathlib import Path

import av

from synclora.errors import InputError


def check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"Video file not found: {path}.")
    if not path.is_file():
        raise InputError(f"{path} is not a file.")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")


def open_input(path: Path) -> av.container.InputContainer:
    check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise InputError(f"{path.name} could not be opened as a video ({short_error(e)}).") from e
    except (UnicodeDecodeError, ValueError) as e:  # PyAV raises these for a few malformed headers
        raise InputError(f"{path.name} could not be opened as a video ({e}).") from e


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
    return streams[0]


