"""The sync report on real faces with known motion: photos shipped by matplotlib (Grace Hopper) and synclora.testing
(Eileen Collins, scikit-image's sample), animated with a talking jaw, blinks, gaze swings and head roll
(synclora.testing.faces)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.metrics.compare import compare_videos
from synclora.metrics.landmarks import extract_cues
from synclora.metrics.verdict import score_tracks
from synclora.testing.faces import delay, freeze_region, mouth_box, talking_clip

N = 72


@pytest.fixture(scope="module")
def clip():
    return talking_clip("grace_hopper", N)


@pytest.fixture(scope="module")
def src_track(clip):
    return extract_cues(clip.frames)


@pytest.fixture(scope="module")
def identical(clip):
    return compare_videos(clip.frames, clip.frames.copy(), edited_frame=clip.frames[0])


def _r(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_cues_follow_the_known_motion(clip, src_track):
    assert src_track.face.all()
    c = src_track.cues
    assert _r(c["mouth"], clip.mouth) > 0.95
    assert _r(c["roll"], clip.roll) > 0.95
    assert _r(c["gaze_x"], clip.gaze) > 0.8
    eyes = (c["left_eye"] + c["right_eye"]) / 2
    assert _r(eyes, clip.eyes_closed) < -0.9
    rep = score_tracks(src_track, src_track)
    assert rep.blinks.source == clip.blinks
    # The moving cues are the ones the clip moves; yaw/pitch stay within jitter and are not judged.
    active = {n for n, s in rep.cues.items() if s.active}
    assert {"roll", "mouth", "left_eye", "right_eye", "gaze_x"} <= active
    assert not {"yaw", "pitch"} & active


def test_identical_copy_is_perfect(identical):
    rep = identical
    assert rep.in_sync and rep.lag == 0 and rep.verdict.startswith("in sync")
    for name, s in rep.cues.items():
        assert s.corr == pytest.approx(1.0) and s.lag == 0, name
    assert (rep.blinks.matched, rep.blinks.missed, rep.blinks.extra) == (3, 0, 0)
    assert rep.identity is not None and rep.identity.same_person
    assert rep.identity.mean_similarity > 0.97 and rep.identity.mean_distance < 0.35


def test_result_delayed_by_3_frames_reports_lag_3(clip, src_track):
    res = delay(clip.frames, 3)
    seen = []
    rep = compare_videos(clip.frames, res, progress=lambda f, msg: seen.append(f))
    assert seen and seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen)
    assert rep.lag == 3
    assert "lags by 3 frames" in rep.verdict and not rep.in_sync
    for name in ("roll", "mouth", "left_eye", "right_eye"):
        assert rep.cues[name].lag == 3, name
        assert rep.cues[name].corr_at_lag > 0.95, name
    assert rep.cues["mouth"].corr < 0.5  # at lag 0 the talking mouth no longer lines up
    assert rep.blinks.matched == 3 and rep.blinks.offsets == [3, 3, 3]
    # and the other way round: a result 2 frames early
    early = score_tracks(src_track, extract_cues(delay(clip.frames, -2)))
    assert early.lag == -2 and "leads by 2 frames" in early.verdict


def test_frozen_mouth_gets_low_mouth_correlation():
    still_head = talking_clip("grace_hopper", N, roll_deg=0.0, shift_px=0.0)
    frozen = freeze_region(still_head.frames, mouth_box("grace_hopper"), ref=0)  # mouth of frame 0 pasted in all
    rep = score_tracks(extract_cues(still_head.frames), extract_cues(frozen))
    m = rep.cues["mouth"]
    assert m.active and m.frozen
    assert m.corr is None or m.corr < 0.3
    assert "mouth frozen" in rep.verdict and not rep.in_sync
    # the eyes still blink in time
    assert rep.blinks.matched == 3 and rep.cues["left_eye"].corr > 0.9


def test_different_face_lowers_identity(clip, identical):
    other = talking_clip("astronaut", N)  # same motion schedule, another person
    same = identical
    diff = compare_videos(clip.frames, other.frames, edited_frame=clip.frames[0])
    assert diff.identity is not None
    assert diff.identity.mean_similarity < same.identity.mean_similarity - 0.05
    assert diff.identity.mean_distance > 0.6 and not diff.identity.same_person
    assert "identity drifts" in diff.verdict
    # the motion itself is in sync: mouth and blinks follow the same schedule
    assert diff.cues["mouth"].corr > 0.9 and diff.blinks.matched == 3


def test_frames_without_a_face_are_reported(clip):
    res = clip.frames.copy()
    gone = [20, 21, 22, 50]
    res[gone] = 127  # grey frames: no face
    rep = compare_videos(clip.frames, res)
    assert rep.faces.result_missing == gone and rep.faces.lost == gone and rep.faces.source_missing == []
    assert f"face lost in 4 of {N} frames" in rep.verdict
    assert rep.cues["mouth"].n == N - 4
    assert np.isnan(rep.result_track.cues["mouth"][gone]).all()


def test_input_errors(clip):
    short = compare_videos(clip.frames, clip.frames[:-5])  # a shorter result: judged over what both cover, and said
    n = len(clip.frames)
    assert short.frames == (0, n - 6) and any(f"({n - 5} frames)" in note for note in short.notes)
    with pytest.raises(InputError):
        compare_videos(clip.frames, clip.frames[..., 0])
    rep = compare_videos(clip.frames, clip.frames[:-5], frame_range=(10, 60))
    assert rep.faces.n_frames == 50 and rep.in_sync


@pytest.mark.slow
def test_cli_report_on_mp4_files(clip, tmp_path, capsys):
    from synclora.cli import main
    from synclora.video.io import write_video

    src, res = tmp_path / "src.mp4", tmp_path / "res.mp4"
    write_video(src, clip.frames, 25)
    write_video(res, delay(clip.frames, 2), 25)
    from PIL import Image

    edited = tmp_path / "edited.png"
    Image.fromarray(clip.frames[0]).save(edited)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    rc = main(["report", str(src), str(res), "--edited", str(edited), "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    d = json.loads(out_json.read_text())
    # identity looks at most 8 result frames and at most one a second (25 fps here): dlib's descriptor is costly
    every = max(-(-N // 8), 25)
    assert d["identity"]["same_person"] is True and d["identity"]["sample_every"] == every
    assert d["identity"]["frames"] == list(range(0, N, every))
    assert d["lag"] == 2 and "lags by 2 frames" in d["verdict"]
    assert d["cues"]["mouth"]["lag"] == 2 and d["cues"]["mouth"]["corr"] < 0.9
    assert set(d["cues"]) >= {"yaw", "pitch", "roll", "mouth", "left_eye", "right_eye", "gaze_x", "gaze_y"}
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    short = tmp_path / "short.mp4"
    write_video(short, clip.frames[:40], 25)
    assert main(["report", str(src), str(short)]) == 0  # judged over the time both cover, and said
    assert "judged frames: 0–39" in capsys.readouterr().out


def test_synthetic_cartoon_face_is_measured_too():
    """helper media: the drawn talking face of synclora.testing.media is detected, and its blinks are found."""
    from synclora.testing.media import talking_face_frames

    frames, truth = talking_face_frames(60, blinks=[12, 40])
    track = extract_cues(frames)
    assert track.face.all()
    assert _r(track.cues["mouth"], truth["mouth"]) > 0.9
    rep = score_tracks(track, track)
    assert len(rep.blinks.source) == 2
    for found, start in zip(rep.blinks.source, (12, 40)):
        assert start <= found < start + 5
