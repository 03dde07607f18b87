"""Sync scores on known curves: no face model runs here, so every number has exact ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.metrics.landmarks import CUE_NAMES, CueTrack, cues_from_landmarks
from synclora.metrics.scores import (
    SyncThresholds,
    blink_events,
    lagged_corr,
    match_blinks,
    pearson,
)
from synclora.metrics.verdict import score_tracks

N = 80


def _signal(seed: int, n: int = N, smooth: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.normal(size=n + smooth), np.ones(smooth) / smooth, mode="same")[:n]


def _track(seed: int = 0, *, shift: int = 0, freeze: tuple[str, ...] = (), blinks=(10, 35, 60), n: int = N,
           no_face: tuple[int, ...] = ()) -> CueTrack:
    """A track whose every cue moves well above the activity floor; `shift` delays it like a late result."""
    scale = {"yaw": 6.0, "pitch": 4.0, "roll": 3.0, "mouth": 0.06, "gaze_x": 0.06, "gaze_y": 0.05}
    cues = {}
    for i, name in enumerate(CUE_NAMES):
        if name in ("left_eye", "right_eye"):
            x = 0.28 + 0.01 * _signal(seed * 10 + i, n)
            for b in blinks:
                x[b - 1: b + 2] = [0.18, 0.06, 0.18]
        else:
            x = scale[name] * _signal(seed * 10 + i, n)
        cues[name] = x
    idx = np.clip(np.arange(n) - shift, 0, n - 1)
    cues = {k: v[idx].copy() for k, v in cues.items()}
    for name in freeze:
        cues[name] = np.full(n, cues[name][0]) + 1e-4 * _signal(99, n)
    face = np.ones(n, bool)
    face[list(no_face)] = False
    for v in cues.values():
        v[~face] = np.nan
    boxes = np.tile([10.0, 10.0, 100.0, 120.0], (n, 1))
    boxes[~face] = np.nan
    return CueTrack(cues=cues, face=face, boxes=boxes, size=(128, 128), fps=25.0)


def test_pearson_and_lag_conventions():
    x = _signal(1)
    assert pearson(x, x)[0] == pytest.approx(1.0)
    assert pearson(x, -x)[0] == pytest.approx(-1.0)
    late = np.concatenate([np.full(3, x[0]), x[:-3]])  # result shows source frame t at t + 3
    curve = lagged_corr(x, late, 5)
    assert int(np.nanargmax(curve)) - 5 == 3
    assert curve[5 + 3] == pytest.approx(1.0)


def test_identical_tracks_are_perfect():
    rep = score_tracks(_track(), _track(), 5)
    assert rep.in_sync and rep.verdict.startswith("in sync")
    assert rep.lag == 0
    for name, s in rep.cues.items():
        assert s.corr == pytest.approx(1.0), name
        assert s.lag == 0 and s.active and not s.frozen
    assert (rep.blinks.matched, rep.blinks.missed, rep.blinks.extra) == (3, 0, 0)


@pytest.mark.parametrize("shift", [3, -2])
def test_shift_reports_lag_with_sign(shift):
    rep = score_tracks(_track(), _track(shift=shift), 5)
    assert rep.lag == shift
    assert all(s.lag == shift for s in rep.cues.values())
    assert not rep.in_sync
    word = "lags" if shift > 0 else "leads"
    assert f"{word} by {abs(shift)} frames" in rep.verdict
    # Blinks are matched after the lag, and their offsets show it.
    assert rep.blinks.missed == 0 and rep.blinks.offsets == [shift] * 3


def test_frozen_mouth_and_missed_blinks():
    rep = score_tracks(_track(), _track(freeze=("mouth",), blinks=()), 5)
    assert rep.cues["mouth"].frozen
    assert rep.cues["mouth"].std_result < 0.25 * rep.cues["mouth"].std_source
    assert "mouth frozen" in rep.verdict
    assert "3 blinks missed" in rep.verdict
    assert rep.blinks.missed == 3 and rep.blinks.matched == 0
    assert not rep.cues["roll"].frozen and rep.cues["roll"].corr == pytest.approx(1.0)


def test_unrelated_motion_is_out_of_sync():
    rep = score_tracks(_track(0), _track(7), 5)
    assert not rep.in_sync
    assert any("out of sync" in p for p in rep.problems)
    assert rep.cues["yaw"].corr < 0.6


def test_still_source_is_not_judged():
    still = _track()
    for name in ("yaw", "pitch"):
        still.cues[name] = 0.2 * _signal(5)  # below the 1.5° floor: landmarker jitter, not motion
    rep = score_tracks(still, _track(), 5)
    assert not rep.cues["yaw"].active and not rep.cues["pitch"].active
    assert not any(p.startswith(("yaw", "pitch")) for p in rep.problems)


def test_frames_without_face_are_counted_not_dropped():
    rep = score_tracks(_track(), _track(no_face=(5, 6, 7, 40)), 5)
    assert rep.faces.result_missing == [5, 6, 7, 40] and rep.faces.lost == [5, 6, 7, 40]
    assert rep.faces.source_missing == []
    assert rep.cues["mouth"].n == N - 4
    assert "face lost in 4 of 80 frames" in rep.verdict
    d = rep.to_dict()
    assert d["faces"]["result_missing_count"] == 4 and d["faces"]["n_frames"] == N


def test_no_face_in_source():
    rep = score_tracks(_track(no_face=tuple(range(N))), _track(), 5)
    assert not rep.in_sync and rep.verdict == "no face found in the source"


def test_json_contract(tmp_path):
    rep = score_tracks(_track(), _track(shift=2), 4)
    path = rep.save_json(tmp_path / "r.json")
    d = json.loads(path.read_text())
    assert set(d["cues"]) == set(CUE_NAMES)
    for name, c in d["cues"].items():
        assert isinstance(c["corr"], float) and isinstance(c["lag"], int), name
    assert d["lag"] == 2 and d["in_sync"] is False and d["verdict"] == rep.verdict
    assert d["blinks"]["matched"] == 3 and d["identity"] is None
    assert d["thresholds"]["min_corr"] == SyncThresholds().min_corr


def test_plot_writes_png(tmp_path):
    rep = score_tracks(_track(), _track(freeze=("mouth",), no_face=(3, 4)), 5)
    out = rep.plot(tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_thresholds_are_configurable():
    src, res = _track(), _track(shift=1)
    assert score_tracks(src, res, 0).in_sync is False  # lag 0 only: a 1-frame shift lowers r
    loose = SyncThresholds(min_corr=-1.0)
    assert score_tracks(src, res, 0, thresholds=loose).in_sync is True


def test_length_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        score_tracks(_track(), _track(n=N - 1), 5)


def test_blink_events_and_matching():
    x = np.full(50, 0.3)
    x[[9, 10, 11]] = [0.15, 0.05, 0.2]
    x[30] = 0.1
    assert blink_events(x, 0.75) == [10, 30]
    flicker = x.copy()
    flicker[[20, 21, 22, 23]] = [0.1, 0.25, 0.25, 0.08]  # one blink whose openness crosses the threshold twice
    assert blink_events(flicker, 0.75) == [10, 20, 23, 30]
    assert blink_events(flicker, 0.75, merge=2) == [10, 23, 30]  # two open frames: still that blink
    assert blink_events(flicker, 0.75, merge=1) == [10, 20, 23, 30]  # parted by more than `merge`: two
    assert blink_events(x, 0.75, merge=2) == [10, 30]  # blinks apart stay apart
    b = match_blinks([10, 30], [11, 45], lag=0, tolerance=2)
    assert (b.matched, b.missed, b.extra, b.offsets) == (1, 1, 1, [1])


def test_cues_from_landmarks_geometry():
    """A frontal synthetic mesh: zero pose; rolling it in the image plane changes roll only."""
    rng = np.random.default_rng(0)
    pts = np.zeros((478, 3))
    pts[:, :2] = rng.uniform(90, 110, (478, 2))
    pts[33], pts[263] = (80, 100, 0), (120, 100, 0)  # eye outer corners
    pts[133], pts[362] = (95, 100, 0), (105, 100, 0)
    pts[10], pts[152] = (100, 70, 0), (100, 150, 0)  # forehead, chin
    pts[13], pts[14] = (100, 130, 0), (100, 134, 0)  # lips: gap 4 over eye span 40
    pts[468], pts[473] = (87.5, 100, 0), (112.5, 100, 0)  # irises centred
    from synclora.metrics.landmarks import _MIRROR

    for left, right in _MIRROR:  # a symmetric face: each mirror pair straddles the midline x = 100
        if (left, right) not in ((263, 33), (362, 133)):
            pts[left] = (100 + rng.uniform(5, 30), rng.uniform(70, 150), 0)
            pts[right] = (200 - pts[left, 0], pts[left, 1], 0)
    c = cues_from_landmarks(pts)
    assert c["yaw"] == pytest.approx(0, abs=1e-6) and c["pitch"] == pytest.approx(0, abs=1e-6)
    assert c["roll"] == pytest.approx(0, abs=1e-6)
    assert c["mouth"] == pytest.approx(0.1)
    assert c["gaze_x"] == pytest.approx(0, abs=1e-9)
    a = np.radians(10)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    c2 = cues_from_landmarks((pts - 100) @ rot.T + 100)
    assert c2["roll"] == pytest.approx(10, abs=1e-6)
    assert c2["yaw"] == pytest.approx(0, abs=1e-6) and c2["mouth"] == pytest.approx(0.1)


def test_too_few_frames_is_not_called_in_sync():
    rep = score_tracks(_track(n=6, blinks=()), _track(n=6, blinks=()), 5)
    assert not rep.in_sync and rep.verdict.startswith("too few frames to judge")


def test_per_cue_threshold_override():
    src, res = _track(0), _track(0)
    res.cues["gaze_x"] = 0.5 * src.cues["gaze_x"] + 0.06 * _signal(42)  # r ≈ 0.5 with the source
    r = score_tracks(src, res, 0).cues["gaze_x"].corr
    assert 0.2 < r < 0.6
    assert "gaze_x out of sync" in score_tracks(src, res, 0).verdict
    assert score_tracks(src, res, 0, thresholds=SyncThresholds(cue_min_corr={"gaze_x": 0.1})).in_sync


def test_track_cache_roundtrip(tmp_path):
    t = _track(no_face=(3,))
    back = CueTrack.load(t.save(tmp_path / "t.npz"))
    assert back.size == t.size and back.fps == t.fps and (back.face == t.face).all()
    for k in CUE_NAMES:
        np.testing.assert_array_equal(back.cues[k], t.cues[k])
    rep = score_tracks(t, back)
    assert rep.in_sync  # a frame without a face in both videos is counted, not held against the result
    assert rep.faces.source_missing == [3] and rep.faces.result_missing == [3] and rep.faces.lost == []


def _edit(*hidden: str):
    """What an edit did, as the occlusion analysis reports it: `hidden` regions hidden, the rest unchanged."""
    from synclora.metrics.occlusion import EditRegions, RegionEvidence

    regions = {n: RegionEvidence("hidden" if n in hidden else "unchanged", 0.1 if n in hidden else 1.0, 0.1, 0.2,
                                 0.0, 0.01) for n in ("left_eye", "right_eye", "mouth", "face")}
    return EditRegions(edit_index=0, index_from="given", regions=regions)


def test_cues_the_edit_hides_are_scored_but_not_judged():
    src = _track()
    res = _track()
    # Behind dark lenses the landmarker guesses eyes that neither blink nor look around.
    for name in ("left_eye", "right_eye"):
        res.cues[name] = 0.28 + 0.01 * _signal(70 + len(name))
    for name in ("gaze_x", "gaze_y"):
        res.cues[name] = 0.05 * _signal(80 + len(name))
    blind = score_tracks(src, res, 5)
    assert not blind.in_sync and "blinks missed" in blind.verdict and "eyes frozen" in blind.verdict
    rep = score_tracks(src, res, 5, edit=_edit("left_eye", "right_eye"))
    assert rep.in_sync and rep.lag == 0
    assert rep.verdict == ("in sync (mean r 1.00 over 4 moving cues; both eyes are hidden by the edit, "
                           "not judged)")
    assert rep.hidden == {"left_eye", "right_eye", "gaze_x", "gaze_y"}
    assert rep.cues["left_eye"].corr is not None  # still measured
    assert not rep.blinks.judged and rep.blinks.missed == 3  # measured, not held against the result
    d = rep.to_dict()
    assert d["cues"]["gaze_x"]["hidden"] is True and d["blinks"]["judged"] is False
    # A late result is still caught by what stays visible.
    late = score_tracks(src, _track(shift=3), 5, edit=_edit("left_eye", "right_eye"))
    assert late.lag == 3 and late.verdict.startswith("lags by 3 frames")


def test_one_hidden_eye_uses_the_other_for_blinks_and_gaze():
    src, res = _track(), _track()
    for t in (src, res):  # each eye's own gaze, as extract_cues stores it
        for side in ("left", "right"):
            t.cues[f"{side}_gaze_x"] = t.cues["gaze_x"].copy()
            t.cues[f"{side}_gaze_y"] = t.cues["gaze_y"].copy()
    res.cues["left_eye"] = np.full(N, 0.28)  # the hidden eye never blinks in the result ...
    res.cues["gaze_x"] = 0.05 * _signal(90)  # ... and spoils the averaged gaze
    rep = score_tracks(src, res, 5, edit=_edit("left_eye"))
    assert rep.in_sync, rep.verdict
    assert rep.blinks.judged and rep.blinks.matched == 3
    assert rep.cues["gaze_x"].corr == pytest.approx(1.0) and not rep.cues["gaze_x"].hidden
    assert rep.verdict.endswith("the left eye is hidden by the edit, not judged)")


def test_when_every_moving_cue_is_hidden_sync_is_not_judged():
    rep = score_tracks(_track(), _track(shift=2), 5, edit=_edit("left_eye", "right_eye", "mouth", "face"))
    assert rep.in_sync is None and rep.lag == 0
    assert rep.verdict == ("sync not judged: the edit hides everything that moves (both eyes, the mouth and the face "
                           "(head pose))")
    assert rep.to_dict()["in_sync"] is None


def test_landmark_array_reads_the_wire_format_exactly():
    from mediapipe.framework.formats import landmark_pb2

    from synclora.face.mesh import landmark_array

    rng = np.random.default_rng(3)
    xyz = rng.uniform(-1, 1, (478, 3)).astype(np.float32)
    xyz[5] = 0.0  # zeros are still written (proto2 optional fields)
    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in xyz:
        msg.landmark.add(x=float(x), y=float(y), z=float(z))
    assert np.array_equal(landmark_array(msg), xyz.astype(np.float64))
    msg.landmark[7].visibility = 0.5  # another layout: the plain path, same numbers
    assert np.array_equal(landmark_array(msg), xyz.astype(np.float64))
