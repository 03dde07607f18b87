"""Read and write video (PyAV only; no system ffmpeg needed): the public face of `synclora.video`.

Sync is the product, so reading is built around one exact timeline per file:

- `probe` demuxes the video packets (no decoding for ordinary files) and finds the constant frame rate (CFR) the
  timestamps follow, as an exact rational (30000/1001, not 29.97). A file whose timestamps do not fit any constant
  rate one-to-one is variable-frame-rate (VFR): it is converted to CFR at its average rate (rounded to a sensible
  rational) by showing, at each CFR time t, the latest source frame whose timestamp is <= t — what a player shows.
  Every reader below yields exactly `probe(path).n_frames` frames for the whole clip; frame i is at time i / fps.
- Rotation metadata (phone videos) is applied; `width`/`height` are the display size.
- `write_video` writes H.264 yuv420p mp4 (+faststart) with time base 1/fps, so frame i sits at i/fps, and muxes the
  source audio of the same span back (stream copy when possible). The file appears at its path only when complete.

The work is done in one module per concern — `probe`, `decode`, `colour`, `audio`, `encode`, `compose` (and
`container` for opening files) — and this module is the API the rest of the package uses.
"""

from synclora.limits import VIEWING_MAX_SIDE, viewing_size
from synclora.video.audio import audio_samples
from synclora.video.compose import fade_frames, side_by_side, side_by_side_frame
from synclora.video.decode import iter_frames, read_frame, read_frames
from synclora.video.encode import VIEWING_PRESET, VIEWING_THREADS, even_size, write_video
from synclora.video.probe import STANDARD_RATES, VideoInfo, format_fps, probe, sensible_rate

__all__ = [
    "VideoInfo",
    "probe",
    "iter_frames",
    "read_frames",
    "read_frame",
    "write_video",
    "VIEWING_PRESET",
    "VIEWING_THREADS",
    "side_by_side",
    "side_by_side_frame",
    "viewing_size",
    "VIEWING_MAX_SIDE",
    "fade_frames",
    "audio_samples",
    "sensible_rate",
    "format_fps",
    "even_size",
    "STANDARD_RATES",
]
