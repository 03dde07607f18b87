"""Every limit on what synclora reads, in one place (docs/LIMITS.md says what a user sees for each, and why).

Two kinds:

- **Propagation limits** (`MAX_FRAMES`, `MAX_PIXELS`, `MAX_DURATION_S`, `MAX_WORKING_BYTES`): what one propagation
  takes on. Checked from the probe facts before any frame is decoded (`limits.check_clip`, `pipeline.check_request`).
- **Reading ceilings** (`MAX_TIMELINE_FRAMES`, `MAX_TIMELINE_S`, `MAX_STREAMS`, audio rate and channels,
  `MAX_IMAGE_PIXELS`): how far any reader (`info`, `report`, the app's upload) believes a file. Containers carry
  numbers an attacker chooses — timestamps, time bases, frame sizes, sample counts — and every allocation made from
  such a number is bounded by one of these *before* it is made, so a hostile file of a few KB costs milliseconds and
  megabytes to refuse.
"""

from __future__ import annotations

from pathlib import Path

from synclora.errors import InputError
from synclora.memory import keeps_freed_frames

# --- one propagation -------------------------------------------------------------------------------------------------
# Longest clip, in frames. A propagation streams its clip (memory does not grow with its length, see `memory_need`);
# runtime grows linearly (docs/LIMITS.md gives the measured speed).
MAX_FRAMES = 10 * 60 * 30  # ten minutes at 30 fps, five at 60
# Largest frame, in pixels (4096×4096 covers 4K UHD and DCI 4K). Also the ceiling of every decoder (see below): a
# frame beyond it is never decoded, so it cannot cost more than ~50 MB.
MAX_PIXELS = 4096 * 4096
# Longest clip in time: bounds the audio (decoded, resampled and re-encoded with the result) of slow clips whose
# frame count is small (3600 frames at 6 fps is 10 minutes).
MAX_DURATION_S = 10 * 60
# Frames read into one array at once (`io.read_frames`, the audio of a span): a reader that holds what it reads.
MAX_WORKING_BYTES = 4 * 1024**3
# Keyframes (edited frames) of one propagation: each is an image held in memory and a propagation of its own; a
# hundred pins a two-minute clip every second or so.
MAX_KEYFRAMES = 100

# --- memory of a propagation -----------------------------------------------------------------------------------------
# What one propagation needs, from its frame sizes alone (see `memory_need`): the interpreter with its libraries, plus
# bytes per pixel of the source frame (frames in flight between decoder, backend and encoders; the edit's change as
# float32 planes; the H.264 encoder's lookahead) and per working pixel of a segment backend's chunk. Fitted to peak RSS
# measured on the CPU preview with `/usr/bin/time -v` (benchmarks/README.md), each covered with 10-40 % to spare:
# 1280×720 0.75-0.83 GiB alone, 0.93-0.99 with the side by side and the report (+ `metrics.tap.memory_need`);
# 1920×1080 1.30-1.37 / 1.46-1.61 GiB; 3840×2160 5.08 / 5.35-5.61 GiB (freed blocks kept, below).
BASE_BYTES = 300 * 1024**2
SOURCE_PIXEL_BYTES = 600
# From 2560×1440 up a frame's float arrays pass the size glibc's allocator gives straight back to the kernel; freed
# blocks are kept for the next frame then (`memory.frame_heap`: 4K 1.6× faster), which holds this much more at the peak.
HEAP_PIXEL_BYTES = 120
SBS_PIXEL_BYTES = 120  # per pixel of a side-by-side half (`viewing_size`): its frames and encoder, twice as wide
CHUNK_PIXEL_BYTES = 3 * 4  # a segment backend's chunk frames at working size: source, result, stitching, unfit
SPILL_BYTES = 2 * 64 * 1024**2  # per-frame state kept in memory before it goes to disk (propagate.stream.Spill)
# One propagation may need at most this (a 4K UHD clip with its side by side stays under it); more is refused up front.
MAX_JOB_BYTES = 7 * 1024**3


# The side-by-side video is for looking, at twice a clip's width: each half at most this long on its long side (720p
# for a landscape clip, 720×1280 for a portrait one), which already shows each half larger than a full-HD screen can
# beside the other. A 1080p clip's side by side then costs x264 less than half of what 3844×1080 costs; the result
# itself keeps the clip's size.
VIEWING_MAX_SIDE = 1280


def viewing_size(width: int, height: int, max_side: int = VIEWING_MAX_SIDE) -> tuple[int, int]:
    """The (width, height) a width×height frame is shown at in a side by side: never enlarged, even height."""
    if max(width, height) <= max_side:
        return width, height
    h = max(2, int(height * max_side / max(width, height)) // 2 * 2)
    return max(1, int(round(width * h / height))), h


# --- what any reader believes of a file -----------------------------------------------------------------------------
# A file whose timeline (after VFR→CFR conversion) claims more frames than this is refused by every reader, `info`
# included: the timeline's arrays cost 8 bytes a frame, so this keeps probing under ~10 MB.
MAX_TIMELINE_FRAMES = 1_000_000  # 9 h at 30 fps
MAX_TIMELINE_S = 24 * 3600  # a day; beyond it a container's timestamps are not a real recording
MAX_FPS = 1000  # frame rates above this come from broken or forged timestamps, not cameras
# Streams in one container (real files have a handful; each costs the demuxer and us a little).
MAX_STREAMS = 64
# Frames stored out of presentation order (timestamps going backwards in packet order, valid in Matroska): a reader
# holds this many decoded frames back to put them in order (32 frames of 4K are ~400 MB); a file needing more is
# refused. Real files need 0 (or a few, for B-frames).
MAX_REORDER_FRAMES = 32
# Audio a reader believes: sample rates and channel counts beyond these are not real recordings.
MAX_AUDIO_RATE = 768_000
MAX_AUDIO_CHANNELS = 64

# --- still images (the edited frame) -------------------------------------------------------------------------------
# Decompression bombs: a few KB of PNG can declare gigapixels. Checked from the header before decoding; Pillow's own
# guard (`PIL.Image.MAX_IMAGE_PIXELS`) is set to the same number for every other decode in the process (Gradio's).
MAX_IMAGE_PIXELS = 64_000_000


def memory_need(width: int, height: int, *, side_by_side: bool = True, chunk_frames: int = 0,
                work_size: tuple[int, int] = (0, 0)) -> int:
    """Bytes one propagation of a width×height clip needs at its peak, whatever its length: streamed, it holds a
    window of frames. `chunk_frames` frames of `work_size` (a segment backend's chunk) come on top."""
    pixels = width * height
    shown = viewing_size(width, height)  # the side by side's halves, never larger than the clip
    sbs = shown[0] * shown[1] * SBS_PIXEL_BYTES if side_by_side else 0
    kept = pixels * HEAP_PIXEL_BYTES if keeps_freed_frames(width, height) else 0  # `memory.frame_heap`
    need = BASE_BYTES + SPILL_BYTES + pixels * SOURCE_PIXEL_BYTES + kept + sbs
    return need + chunk_frames * work_size[0] * work_size[1] * CHUNK_PIXEL_BYTES


def memory_budget(given_gb: float | None = None) -> int:
    """Bytes all propagations running at once may need together (the app admits jobs against it): the machine's
    memory less a quarter for the server itself and the system, or `given_gb` (`SYNCLORA_MEMORY_GB`) when set."""
    import os

    if given_gb is not None:
        if not given_gb > 0:
            raise InputError(f"SYNCLORA_MEMORY_GB must be a positive number of gigabytes, got {given_gb!r}")
        return int(given_gb * 1024**3)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 1024**3
    return int(total * 0.75)


def check_clip(info) -> None:
    """The propagation limits (frames, frame size, duration) from a clip's probe facts alone, before any frame is
    decoded. Used wherever a clip is taken on: a propagation, the app right after an upload, a sync report."""
    name = Path(info.path).name
    if info.n_frames < 2:
        raise InputError(f"{name} has {info.n_frames} frame(s); a video of at least 2 frames is needed")
    if info.width * info.height > MAX_PIXELS:
        raise InputError(
            f"{name} is {info.width}×{info.height}; frames of at most {MAX_PIXELS // 1_000_000} megapixels "
            "(e.g. 3840×2160) are accepted — downscale the clip first"
        )
    if info.n_frames > MAX_FRAMES:
        raise InputError(f"{name} has {info.n_frames} frames; at most {MAX_FRAMES} are accepted — trim the clip first")
    if info.duration > MAX_DURATION_S:
        raise InputError(f"{name} lasts {info.duration / 60:.1f} minutes; clips of at most {MAX_DURATION_S // 60} "
                         "minutes are accepted — trim the clip first")

# --- the served app's requests --------------------------------------------------------------------------------------
# Any request body but an upload (uploads have their own cap, `SYNCLORA_MAX_UPLOAD_MB`): an event's JSON is a few
# file references, numbers and short texts; anything longer is refused before it is read whole (`ui.guard`).
MAX_REQUEST_BYTES = 1024**2
# A text value an API caller may send (a span such as `2s:5.5s` is a few characters; an instruction at most 500).
MAX_TEXT_CHARS = 10_000
