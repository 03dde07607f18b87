"""Scores between two cue curves: correlation, lag, activity, blink events — and the rules of the verdict.

Kept free of MediaPipe and dlib so curation can score cached tracks with its own thresholds.
Conventions: `lag > 0` means the result is late (result frame t + lag shows what the source shows at frame t).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# Motion below these standard deviations is within the landmarker's own jitter (largest std measured on the two test
# portraits, still with ±1 px shifts / rolling / talking / blinking, 72 frames at 256 px: yaw 0.63°, pitch 0.69°,
# roll 0.36°, mouth 0.004, eyes 0.011, gaze 0.013 outside blinks), doubled; such a cue cannot judge sync.
DEFAULT_ACTIVITY_FLOOR: dict[str, float] = {
    "yaw": 1.5,
    "pitch": 1.5,
    "roll": 0.75,
    "mouth": 0.01,
    "left_eye": 0.02,
    "right_eye": 0.02,
    "gaze_x": 0.025,
    "gaze_y": 0.025,
}

# Limits whose meaning is the same for the report's verdict and for curation (data/curate.py reads these, so the two
# cannot drift apart): dlib's own same-person threshold, the share of the edit a frame must keep, the share of the
# source's face frames the result may lose.
MAX_IDENTITY_DISTANCE = 0.6
MIN_EDIT_KEPT = 0.5
EDIT_MIN_RUN = 2
MAX_FACE_LOST = 0.02

CUE_GROUPS: dict[str, tuple[str, ...]] = {
    "head": ("yaw", "pitch", "roll"),
    "mouth": ("mouth",),
    "eyes": ("left_eye", "right_eye"),
    "gaze": ("gaze_x", "gaze_y"),
}


@dataclass
class SyncThresholds:
    """Every number the verdict uses; curation passes its own."""

    min_corr: float = 0.6  # an active cue correlating less than this (at the detected lag) is out of sync
    frozen_ratio: float = 0.25  # result motion / source motion below this: the cue is frozen
    lag_gain: float = 0.02  # a non-zero lag must beat lag 0's mean correlation by this much to be reported
    blink_ratio: float = 0.75  # eye openness below this × the clip's median openness counts as shut
    blink_tolerance: int = 2  # frames between a source blink and its result blink (after the detected lag)
    max_missing_face: float = MAX_FACE_LOST  # fraction of the source's face frames that may lack a face in the result
    max_identity_distance: float = MAX_IDENTITY_DISTANCE  # dlib's own same-person threshold on descriptor distance
    min_frames: int = 8  # fewer common face frames than this: no score
    cue_min_corr: dict[str, float] = field(default_factory=dict)  # per-cue overrides of min_corr, e.g. {"gaze_x": 0.3}
    activity_floor: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ACTIVITY_FLOOR))
    min_edit_kept: float = MIN_EDIT_KEPT  # a part of the edit kept below this share has faded or slid off
    edit_min_run: int = EDIT_MIN_RUN  # ... for at least this many frames in a row (one odd frame is not a fade)

    def min_corr_for(self, name: str) -> float:
        return self.cue_min_corr.get(name, self.min_corr)


@dataclass
class CueScore:
    corr: float | None  # Pearson r at lag 0 over frames with a face in both videos (None: too few or flat)
    lag: int  # frames in ±max_lag that maximise the cross-correlation; + when the result is late
    corr_at_lag: float | None  # Pearson r at `lag`
    std_source: float  # motion of the cue in the source (cue units)
    std_result: float
    active: bool  # the source moves this cue more than the landmarker's jitter: it can judge sync
    frozen: bool  # active in the source, (nearly) still in the result
    n: int  # frames used at lag 0
    hidden: bool = False  # the edit hides what this cue is read from: measured, not judged

    def to_dict(self) -> dict:
        return {k: _json_number(v) for k, v in asdict(self).items()}

    @property
    def note(self) -> str:
        """Why the verdict leaves this cue out, in words ('' when it is judged)."""
        if self.hidden:
            return HIDDEN_LABEL
        if self.frozen:
            return "frozen"
        return "" if self.active else "still in source (not judged)"


HIDDEN_LABEL = "hidden by the edit — not judged"


def fmt(v) -> str:
    """A score for a person: three decimals, or a dash when there is none."""
    return "—" if v is None or not np.isfinite(v) else f"{v:.3f}"


@dataclass
class BlinkScore:
    source: list[int]  # frames where a blink is deepest
    result: list[int]
    matched: int
    missed: int  # in the source, not in the result
    extra: int  # in the result, not in the source
    offsets: list[int]  # result − source frame per matched blink
    judged: bool = True  # False when the edit hides both eyes

    def to_dict(self) -> dict:
        return asdict(self)


def _json_number(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 4)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return v


def pearson(x: np.ndarray, y: np.ndarray, min_n: int = 8) -> tuple[float, int]:
    """Pearson r over the frames where both are finite (NaN if too few frames or a flat curve) and that count."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < min_n:
        return float("nan"), n
    a, b = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den <= 1e-12:
        # Both flat and equal is a perfect copy; anything else flat is undefined.
        return (1.0 if np.allclose(x[ok], y[ok]) else float("nan")), n
    return float((a * b).sum() / den), n


def lagged_corr(src: np.ndarray, res: np.ndarray, max_lag: int, min_n: int = 8) -> np.ndarray:
    """r(lag) for lag in −max_lag … max_lag, pairing src[t] with res[t + lag]."""
    t = len(src)
    out = np.full(2 * max_lag + 1, np.nan)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            out[i] = pearson(src[: t - lag], res[lag:], min_n)[0]
        else:
            out[i] = pearson(src[-lag:], res[: t + lag], min_n)[0]
    return out


def zscore(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit deviation over the finite frames (what the plot draws); flat curves become 0."""
    ok = np.isfinite(x)
    out = np.full_like(x, np.nan, dtype=np.float64)
    if ok.sum() == 0:
        return out
    sd = x[ok].std()
    out[ok] = (x[ok] - x[ok].mean()) / sd if sd > 1e-12 else 0.0
    return out


def score_cue(
    name: str, src: np.ndarray, res: np.ndarray, max_lag: int, th: SyncThresholds
) -> tuple[CueScore, np.ndarray]:
    """One cue's score and its r(lag) curve.

    Pearson r ignores amplitude, so a result that barely moves (a frozen mouth) can still correlate with its source
    through the landmarker's jitter (r ≈ 0.5 measured on a pasted-still mouth). When the source moves this cue and
    the result moves it less than the jitter floor, r is scaled by (result motion / floor): below the floor there is
    no motion to be in sync with. Identical copies are unaffected (the result moves exactly as much as the source).
    """
    floor = th.activity_floor.get(name, 0.0)
    sd_s = float(np.nanstd(src)) if np.isfinite(src).any() else float("nan")
    sd_r = float(np.nanstd(res)) if np.isfinite(res).any() else float("nan")
    active = bool(np.isfinite(sd_s) and sd_s >= floor)
    frozen = bool(active and np.isfinite(sd_r) and sd_r < th.frozen_ratio * sd_s)
    damp = min(1.0, sd_r / floor) if active and floor > 0 and np.isfinite(sd_r) else 1.0
    r0, n = pearson(src, res, th.min_frames)
    r0 *= damp
    curve = lagged_corr(src, res, max_lag, th.min_frames) * damp
    if np.isfinite(curve).any():
        best = int(np.nanargmax(curve))
        lag, r_lag = best - max_lag, float(curve[best])
        if not np.isfinite(r0) or r_lag - r0 < th.lag_gain:
            lag, r_lag = 0, r0
    else:
        lag, r_lag = 0, r0
    if frozen:
        lag, r_lag = 0, r0  # the best lag of a still curve is noise
    return CueScore(_nan_none(r0), lag, _nan_none(r_lag), sd_s, sd_r, active, frozen, n), curve


def _nan_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def eye_openness(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    both = np.stack([left, right])
    ok = np.isfinite(both).any(0)
    out = np.full(both.shape[1], np.nan)
    out[ok] = np.nanmean(both[:, ok], axis=0)
    return out


def shut_frames(openness: np.ndarray, ratio: float) -> np.ndarray:
    """(T,) bool: eyes shut (openness < ratio × the clip's median openness, i.e. relative to this face's open eyes)."""
    ok = np.isfinite(openness)
    shut = np.zeros(len(openness), bool)
    if ok.any():
        shut[ok] = openness[ok] < ratio * np.median(openness[ok])
    return shut


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def blink_events(openness: np.ndarray, ratio: float, merge: int = 0) -> list[int]:
    """Frames where the eyes are most shut in each blink: a run of shut frames, and runs parted by at most `merge`
    open frames are one blink. Openness near the threshold flickers across it within one blink (a landmark's jitter
    on one video and not the other); counted as two blinks, that made a 10-minute result whose eyes were the
    source's own pixels "miss" 21 of 625 blinks."""
    found = runs(shut_frames(openness, ratio))
    joined: list[tuple[int, int]] = []
    for s, t in found:
        if joined and s - joined[-1][1] <= merge:
            joined[-1] = (joined[-1][0], t)
        else:
            joined.append((s, t))
    return [s + int(np.nanargmin(openness[s:t])) for s, t in joined]


def match_blinks(src: list[int], res: list[int], lag: int, tolerance: int) -> BlinkScore:
    """Pair each source blink with the nearest unused result blink within `tolerance` of source + lag."""
    used, offsets = set(), []
    for s in src:
        cands = [(abs(r - (s + lag)), r) for r in res if r not in used and abs(r - (s + lag)) <= tolerance]
        if cands:
            r = min(cands)[1]
            used.add(r)
            offsets.append(r - s)
    m = len(offsets)
    return BlinkScore(list(src), list(res), m, len(src) - m, len(res) - m, offsets)


def overall_lag(curves: dict[str, np.ndarray], max_lag: int, gain: float) -> tuple[int, float]:
    """The lag of the mean r(lag) over active cues (lag 0 unless another lag beats it by `gain`) and that mean r."""
    if not curves:
        return 0, float("nan")
    stack = np.stack(list(curves.values()))
    ok = np.isfinite(stack).any(0)
    if not ok.any():
        return 0, float("nan")
    mean = np.full(stack.shape[1], np.nan)
    mean[ok] = np.nanmean(stack[:, ok], axis=0)
    best = int(np.nanargmax(mean))
    r0 = mean[max_lag]
    if not np.isfinite(r0) or mean[best] - r0 >= gain:
        return best - max_lag, float(mean[best])
    return 0, float(r0)
