"""Face cues per frame, sync scores (corr, lag, blinks), identity, and the sync report.

`compare_videos(source, result)` → `SyncReport` (verdict, numbers, `plot(path)`, `save_json(path)`);
`extract_cues` + `score_tracks` for callers that cache tracks (curation). MediaPipe and dlib load lazily.
"""

from synclora.metrics.compare import compare_videos
from synclora.metrics.landmarks import CUE_NAMES, CueTrack, extract_cues
from synclora.metrics.report import SyncReport
from synclora.metrics.scores import BlinkScore, CueScore, SyncThresholds
from synclora.metrics.verdict import score_tracks

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
