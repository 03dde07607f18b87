"""`propagate --report J.json`: the sync report measured while propagating, with the result."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from synclora.cli import main
from synclora.testing import media
from synclora.testing.face_edits import lips_mask, lipstick
from synclora.testing.faces import portrait, talking_clip
from synclora.video import io

N, K = 40, 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-report")
    frames = talking_clip("grace_hopper", N).frames
    src = media.write_clip(d / "talk.mp4", frames, Fraction(25), audio=media.tone(N / 25 + 0.1))
    _, pts = portrait("grace_hopper")
    edited = d / "edit.png"
    Image.fromarray(lipstick(io.read_frame(src, K), lips_mask(frames.shape[1:3], pts))).save(edited)
    return src, edited


def _propagate(clip, out, *extra):
    src, edited = clip
    return main(["propagate", str(src), "--edited", str(edited), "--edit-index", str(K), "--out", str(out),
                 "--backend", "flow", "--quiet", *extra])


@pytest.mark.slow
def test_report_comes_with_the_result_and_reads_as_the_report_of_the_files(clip, tmp_path, capfd):
    out, rep = tmp_path / "out.mp4", tmp_path / "sync" / "sync.json"
    assert _propagate(clip, out, "--report", str(rep)) == 0
    printed, said = capfd.readouterr()
    # The report's landmarkers start on a thread of their own beside the propagation; MediaPipe's C++ logs stay unseen
    assert [line for line in said.splitlines() if not line.startswith("note: ")] == [], said
    made = json.loads(rep.read_text())
    assert rep.with_suffix(".png").is_file() and f"report: {rep}" in printed and "sync report: " in printed
    assert made["frames"] == [0, N - 1] and made["edit"]["edit_index"] == K and made["edit_kept"] is not None
    # `report` on the files reads the H.264 result; the tap saw the frames before they were encoded
    files = tmp_path / "files.json"
    src, edited = clip
    assert main(["report", str(src), str(out), "--edited", str(edited), "--edit-index", str(K),
                 "--json", str(files)]) == 0
    again = json.loads(files.read_text())
    assert made["lag"] == again["lag"] == 0 and made["in_sync"] == again["in_sync"]
    for name, cue in again["cues"].items():
        if cue["active"] and cue["corr"] is not None:
            assert made["cues"][name]["corr"] == pytest.approx(cue["corr"], abs=0.05), name
    assert np.isclose(made["identity"]["mean_distance"], again["identity"]["mean_distance"], atol=0.05)


@pytest.mark.slow
def test_report_judges_the_edited_span(clip, tmp_path):
    rep = tmp_path / "span.json"
    assert _propagate(clip, tmp_path / "out.mp4", "--span", "5:30", "--fade", "0", "--report", str(rep)) == 0
    assert json.loads(rep.read_text())["frames"] == [5, 30]


@pytest.mark.parametrize("bad", ["sync.txt", "talk.mp4", "one-frame span"])
def test_a_bad_report_is_one_sentence_before_any_work(clip, tmp_path, capsys, bad):
    out = tmp_path / "out.mp4"
    report = clip[0] if bad == "talk.mp4" else tmp_path / ("sync.json" if bad == "one-frame span" else bad)
    extra = ["--span", f"{K}:{K}", "--fade", "0"] if bad == "one-frame span" else []
    assert _propagate(clip, out, "--report", str(report), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "report" in err[0], err
    assert not out.exists() and not (tmp_path / "sync.json").exists()


@pytest.mark.slow
def test_the_report_is_drawn_while_the_video_is_finished_and_a_late_failure_leaves_neither(clip, tmp_path,
                                                                                            monkeypatch):
    """The tap has every frame before the encoder has written its last ones: the report's files are drawn meanwhile
    (staged, hidden), put in place only when the video is complete, and removed when finishing it fails."""
    import threading

    from synclora.metrics import tap as tap_module
    from synclora.video.stream import FrameWriter

    drawn_on = []
    real_finish = tap_module.ReportTap._finish_early

    def finish_early(self):
        drawn_on.append(threading.current_thread().name)
        real_finish(self)

    monkeypatch.setattr(tap_module.ReportTap, "_finish_early", finish_early)
    out, rep = tmp_path / "ok" / "out.mp4", tmp_path / "ok" / "sync.json"
    out.parent.mkdir()
    assert _propagate(clip, out, "--report", str(rep)) == 0
    assert drawn_on == ["sync-report-early"]
    assert json.loads(rep.read_text())["frames"] == [0, N - 1] and rep.with_suffix(".png").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4", "sync.json", "sync.png"]

    real_close = FrameWriter.close

    def failing_close(self):
        real_close(self)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FrameWriter, "close", failing_close)
    bad = tmp_path / "bad"
    bad.mkdir()
    assert _propagate(clip, bad / "out.mp4", "--report", str(bad / "sync.json")) == 2
    assert len(drawn_on) == 2
    assert list(bad.iterdir()) == []  # no video, no report, no staged file
