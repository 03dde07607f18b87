"""Every limit on what synclora reads, in one place (docs/LIMITS.md says what a user sees for each, and why).

Two kinds:

- **Propagation limits** (`MAX_FRAMES`, `MAX_PIXELS`, `MAX_DURATION_S`, `MAX_WORKING_BYTES`): what one propagation
  takes on. Checked from the probe facts before any frame is decoded (`pipeline.check_source`, `check_request`).
- **Reading ceilings** (`MAX_TIMELINE_FRAMES`, `MAX_TIMELINE_S`, `MAX_STREAMS`, audio rate and channels,
  `MAX_IMAGE_PIXELS`): how far any reader (`info`, `report`, the app's upload) believes a file. Containers carry
  numbers an attacker chooses — timestamps, time bases, frame sizes, sample counts — and every allocation made from
  such a number is bounded by one of these *before* it is made, so a hostile file of a few KB costs milliseconds and
  megabytes to refuse.
"""

from __future__ import annotations

from pathlib import Path

from synclora.errors import InputError

# --- one propagation -------------------------------------------------------------------------------------------------
# Longest clip, in frames: the working frames are held in memory and runtime grows linearly.
MAX_FRAMES = 60 * 60  # one minute at 60 fps, two at 30
# Largest frame, in pixels (4096×4096 covers 4K UHD and DCI 4K). Also the ceiling of every decoder (see below): a
# frame beyond it is never decoded, so it cannot cost more than ~50 MB.
MAX_PIXELS = 4096 * 4096
# Longest clip in time: bounds the audio (decoded, resampled and re-encoded with the result) of slow clips whose
# frame count is small (3600 frames at 6 fps is 10 minutes).
MAX_DURATION_S = 10 * 60
# The working frames of one propagation (frames × working width × height × 3 bytes; the result takes as much again).
MAX_WORKING_BYTES = 4 * 1024**3
# Keyframes (edited frames) of one propagation: each is an image held in memory and a propagation of its own; a
# hundred pins a two-minute clip every second or so.
MAX_KEYFRAMES = 100

# --- what any reader believes of a file -----------------------------------------------------------------------------
# A file whose timeline (after VFR→CFR conversion) claims more frames than this is refused by every reader, `info`
# included: the timeline's arrays cost 8 bytes a frame, so this keeps probing under ~10 MB.
MAX_TIMELINE_FRAMES = 1_000_000  # 9 h at 30 fps
MAX_TIMELINE_S = 24 * 3600  # a day; beyond it a container's timestamps are not a real recording
MAX_FPS = 1000  # frame rates above this come from broken or forged timestamps, not cameras
# Streams in one container (real files have a handful; each costs the demuxer and us a little).
MAX_STREAMS = 64
# Audio a reader believes: sample rates and channel counts beyond these are not real recordings.
MAX_AUDIO_RATE = 768_000
MAX_AUDIO_CHANNELS = 64

# --- still images (the edited frame) -------------------------------------------------------------------------------
# Decompression bombs: a few KB of PNG can declare gigapixels. Checked from the header before decoding; Pillow's own
# guard (`PIL.Image.MAX_IMAGE_PIXELS`) is set to the same number for every other decode in the process (Gradio's).
MAX_IMAGE_PIXELS = 64_000_000


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
