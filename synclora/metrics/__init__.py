"""Face cues per frame, sync scores (corr, lag, blinks), identity, and the sync report.

`compare_videos(source, result)` → `SyncReport` (verdict, numbers, `plot(path)`, `save_json(path)`);
`extract_cues` + `score_tracks` for callers that cache tracks (curation). MediaPipe and dlib load lazily.
"""

from synclora.metrics.landmarks import CUE_NAMES, CueTrack, extract_cues
from synclora.metrics.report import SyncReport, compare_videos, score_tracks
from synclora.metrics.scores import BlinkScore, CueScore, SyncThresholds

__all__ = [
    "CUE_NAMES",
    "BlinkScore",
    "CueScore",
    "CueTrack",
    "SyncReport",
    "SyncThresholds",
    "compare_videos",
    "extract_cues",
    "score_tracks",
]
