"""The app's sync report comes with the result: measured while the propagation ran (the source's half while the
visitor edited), so the report panel only draws it."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

import synclora.metrics.compare as report_mod
from synclora.config import PropagationSettings
from synclora.testing import media
from synclora.testing.face_edits import lips_mask, lipstick
from synclora.testing.faces import portrait, talking_clip
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

N, K = 30, 6


class _Req:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("ready")
    frames = talking_clip("grace_hopper", N).frames
    src = media.write_clip(d / "talk.mp4", frames, Fraction(25), audio=media.tone(N / 25 + 0.1))
    _, pts = portrait("grace_hopper")
    edited = d / "edit.png"
    Image.fromarray(lipstick(io.read_frame(src, K), lips_mask(frames.shape[1:3], pts))).save(edited)
    return str(src), str(edited)


def test_the_report_is_ready_with_the_result(clip, tmp_path, monkeypatch):
    app = GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None,
                         defaults=PropagationSettings(backend="flow"))
    video, edited = clip
    req = _Req("s1")
    app.load_video(video, K, request=req)  # the upload: the source's cues are measured from here on
    clip_cues = app._sources["s1"][1]
    assert clip_cues.wait(120)
    out, _, _ = app.edit_video(video, edited, K, "flow", request=req, progress=lambda *a, **k: None)

    def measured_again(*a, **k):
        raise AssertionError("the report was measured again")

    monkeypatch.setattr(report_mod, "compare_videos", measured_again)
    copy = tmp_path / "served-copy.mp4"  # the server may hand the page a copy of the result
    shutil.copy(out, copy)
    plot, verdict, view = app.sync_report(video, str(copy), edited, K, request=req)
    assert Path(plot).is_file() and view is None
    assert "Overall lag **+0** frames" in verdict and "The edit on frame 6" in verdict
    assert app._sources["s1"][1] is clip_cues and clip_cues.ready()  # kept for the next try on this clip
    # another session, or another edit, is measured from the files
    with pytest.raises(Exception, match="AssertionError"):  # (the stand-in above: it was measured)
        app.sync_report(video, str(copy), edited, K, request=_Req("s2"))
    app.end_session(req)
    assert not clip_cues.file.exists()
