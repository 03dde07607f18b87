"""A sync report compares by time, not frame index: a result at another frame rate, size or length is said, and
judged on what is on screen at each source frame's time (`metrics.timeline`).

The clips: one talking face at 25 fps; the *same frames* at 50 fps (the motion twice as fast: out of sync, though
frame i matches frame i); the same motion at 50 fps (every frame twice: in sync); the same clip at twice the size; a
result cut short. Through the CLI (`report`) and the served app (`/sync_report`, in test_hardening_served.py's style).
"""

from __future__ import annotations

import numpy as np
import pytest

from synclora.cli import main
from synclora.errors import InputError
from synclora.metrics.timeline import line_up
from synclora.testing import media

N = 40


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("rates")
    frames, _ = media.talking_face_frames(N, size=(128, 96), seed=2)
    big = np.stack([np.kron(f, np.ones((2, 2, 1), np.uint8)) for f in frames])
    return {
        "src": media.write_clip(d / "src25.mp4", frames, 25),
        "fast": media.write_clip(d / "same-frames-50.mp4", frames, 50),
        "same": media.write_clip(d / "same-motion-50.mp4", np.repeat(frames, 2, axis=0), 50),
        "big": media.write_clip(d / "twice-the-size.mp4", big, 25),
        "short": media.write_clip(d / "short.mp4", frames[: N - 10], 25),
        "slow": media.write_clip(d / "same-motion-12.5.mp4", frames[::2], 12.5),
    }


# ------------------------------------------------------------------------------------------------ the timeline
def test_same_rate_and_length_is_frame_for_frame():
    tl = line_up(40, 40, 25, 25, (64, 48), (64, 48))
    assert tl.by_index and (tl.start, tl.stop) == (0, 40) and tl.notes == []


def test_a_faster_result_is_compared_with_the_frame_on_screen_at_each_time():
    tl = line_up(40, 80, 25, 50, (64, 48), (64, 48))
    assert not tl.by_index and tl.result_index.tolist() == list(range(0, 80, 2)) and tl.result_range == (0, 79)
    assert list(tl.sources_of(4)) == [2] and list(tl.sources_of(5)) == []
    assert any("50 fps and the source at 25 fps" in n for n in tl.notes)


def test_a_slower_result_serves_several_source_frames():
    tl = line_up(40, 20, 25, 12.5, (64, 48), (64, 48))
    assert tl.result_index.tolist()[:6] == [0, 0, 1, 1, 2, 2] and list(tl.sources_of(1)) == [2, 3]


def test_ntsc_against_30_keeps_every_frame_once():
    tl = line_up(300, 300, 30000 / 1001, 30, (64, 48), (64, 48))
    assert np.all(np.diff(tl.result_index) >= 0) and tl.result_index.max() < 300


def test_sizes_and_lengths_are_said():
    tl = line_up(40, 30, 25, 25, (64, 48), (128, 96))
    assert (tl.start, tl.stop) == (0, 30)
    assert any("128×96 and the source 64×48" in n for n in tl.notes)
    assert any("lasts 1.20 s (30 frames) and the source 1.60 s (40 frames)" in n for n in tl.notes)


def test_a_range_past_the_result_is_a_sentence():
    with pytest.raises(InputError, match="runs past the result"):
        line_up(40, 20, 25, 25, (64, 48), (64, 48), frame_range=(10, 30))
    with pytest.raises(InputError, match="at least 2 frames"):
        line_up(40, 1, 25, 25, (64, 48), (64, 48))


def test_frames_from_memory_have_no_rate_and_go_frame_by_frame():
    tl = line_up(40, 30, None, None, (64, 48), (64, 48))
    assert tl.by_index and (tl.start, tl.stop) == (0, 30)
    assert tl.notes == ["the result has 30 frames and the source 40: judged over the 30 frames both have"]
    # a file at 50 fps against its own frames in memory: the file's rate for both, never an assumed 25 fps
    for tl in (line_up(40, 40, 50, None, (64, 48), (64, 48)), line_up(40, 40, None, 50, (64, 48), (64, 48))):
        assert tl.by_index and tl.notes == []


def test_a_file_against_its_own_frames_in_memory_lines_up_frame_by_frame(clips):
    from synclora.metrics.tap import ReportTap
    from synclora.video import io

    frames = np.stack(list(io.iter_frames(clips["fast"])))  # the 50 fps file's frames, as an array
    for src, res in ((clips["fast"], frames), (frames, clips["fast"])):
        tap = ReportTap(src, res)
        assert tap.timeline.by_index and tap.timeline.notes == [] and tap.fps == 50.0
        tap.finish(False)


# ------------------------------------------------------------------------------------------------ the CLI
def _report(capsys, src, res) -> tuple[int, str]:
    rc = main(["report", str(src), str(res)])
    return rc, capsys.readouterr().out


def test_the_same_frames_at_twice_the_rate_are_not_in_sync(clips, capsys):
    rc, out = _report(capsys, clips["src"], clips["fast"])
    assert rc == 0
    verdict = out.splitlines()[0]
    assert "in sync" not in verdict.replace("out of sync", ""), out
    assert "the result runs at 50 fps and the source at 25 fps" in out
    assert "lasts 0.80 s" in out  # and it is half as long


@pytest.mark.parametrize("kind", ["same", "slow", "big"])
def test_the_same_motion_at_another_rate_or_size_is_in_sync_and_said(clips, capsys, kind):
    rc, out = _report(capsys, clips["src"], clips[kind])
    assert rc == 0 and out.startswith("verdict: in sync"), out
    said = {"same": "runs at 50 fps", "slow": "runs at 12.5 fps", "big": "the result is 256×192"}[kind]
    assert said in out


def test_a_shorter_result_is_judged_over_what_both_cover(clips, capsys):
    rc, out = _report(capsys, clips["src"], clips["short"])
    assert rc == 0 and "judged frames: 0–29" in out and "(30 frames) and the source 1.60 s (40 frames)" in out


def test_the_app_says_the_rates_too(app, clips):
    """The app's report (`GradioPipeline.sync_report`, what /sync_report runs) lists the same notes."""
    class _Req:
        session_hash = "rates"

    _, md, _ = app.sync_report(str(clips["src"]), str(clips["fast"]), None, request=_Req())
    assert "50 fps" in md and "25 fps" in md and "In sync" not in md.split("\n")[0]
