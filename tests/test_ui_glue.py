"""UI glue without a server: session folders, GPU duration, error wording, and each GradioPipeline step."""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from synclora import runtime
from synclora.config import PropagationSettings
from synclora.errors import InputError, ModelUnavailableError
from synclora.testing import media
from synclora.ui import gpu
from synclora.ui.common import user_errors
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

N = 20
FPS = Fraction(24)


class _Req:
    """What Gradio passes as `gr.Request` (only the session hash is used)."""

    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("clip")
    frames, _ = media.talking_face_frames(N, size=(96, 128), fps=float(FPS), seed=5)
    return media.write_clip(tmp / "talk.mp4", frames, FPS, audio=media.tone(N / float(FPS) + 0.1))


@pytest.fixture()
def app(tmp_path) -> GradioPipeline:
    return GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None,
                          defaults=PropagationSettings(backend="flow"), max_upload_mb=5)


def _edit_of(clip: Path, k: int, tmp: Path) -> Path:
    img = io.read_frame(clip, k).copy()
    img[40:56, 30:50] = (255, 0, 0)
    path = tmp / f"edit{k}.png"
    Image.fromarray(img).save(path)
    return path


# ---------------------------------------------------------------------------------------------------- sessions
def test_session_folders_are_separate_and_sanitised(tmp_path):
    files = SessionFiles(tmp_path)
    a, b = files.dir_for("abc123"), files.dir_for("xyz789")
    assert a != b and a.parent == b.parent == tmp_path
    evil = files.dir_for("../../etc")
    assert evil.parent == tmp_path and ".." not in evil.name
    f = files.new_file("abc123", "my clip!.mov", ".mp4")
    assert f.parent == a and f.suffix == ".mp4" and " " not in f.name
    assert files.owns(f, "abc123") and not files.owns(f, "xyz789")
    files.remove("abc123")
    assert not a.exists() and b.exists()


def test_session_sweep_removes_only_stale_folders(tmp_path):
    files = SessionFiles(tmp_path, max_age_s=60)
    old, new = files.dir_for("old"), files.dir_for("new")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert files.sweep(force=True) == ["old"]
    assert not old.exists() and new.exists()


# ---------------------------------------------------------------------------------------------------- GPU time
def test_gpu_duration_grows_with_frames_resolution_and_quality_and_is_clamped():
    full, prev = PropagationSettings(quality="full"), PropagationSettings(quality="preview")
    assert gpu.gpu_seconds(81, full) >= gpu.gpu_seconds(81, prev)
    assert gpu.gpu_seconds(400, full) > gpu.gpu_seconds(81, full)
    big = PropagationSettings(quality="full", resolution=1024)
    assert gpu.gpu_seconds(200, big) > gpu.gpu_seconds(200, full)
    assert gpu.gpu_seconds(1, prev) == gpu.MIN_SECONDS
    assert gpu.gpu_seconds(100_000, big) == gpu.MAX_SECONDS


def test_gpu_decorator_is_harmless_off_zerogpu(monkeypatch):
    assert not runtime.on_zerogpu()
    for value, zero in (("true", True), ("1", True), ("T", True), ("false", False), ("", False)):
        monkeypatch.setenv("SPACES_ZERO_GPU", value)
        assert runtime.on_zerogpu() is zero, value  # the rule `spaces.config` applies
    monkeypatch.delenv("SPACES_ZERO_GPU")

    def f(x):
        return x + 1

    assert gpu.gpu(duration=lambda x: 30)(f)(1) == 2


# ---------------------------------------------------------------------------------------------------- errors
def test_user_errors_become_one_sentence_and_bugs_hide_their_traceback():
    @user_errors
    def bad_input():
        raise InputError("frame 99 is out of range")

    @user_errors
    def unavailable():
        raise ModelUnavailableError("the synclora backend cannot run here: no GPU")

    @user_errors
    def bug():
        raise KeyError("internal detail")

    with pytest.raises(gr.Error) as e:
        bad_input()
    assert e.value.message == "Frame 99 is out of range."
    with pytest.raises(gr.Error, match="cannot run here: no GPU"):
        unavailable()
    with pytest.raises(gr.Error) as e:
        bug()
    assert "KeyError" in e.value.message and "internal detail" not in e.value.message


# ---------------------------------------------------------------------------------------------------- steps 1-2
def test_load_video_sets_facts_slider_preview_and_editor(app, clip):
    facts, slider, img, caption, fps, editor_value, before_after, _ = app.load_video(str(clip), 7)
    assert f"{N} frames" in facts and "24 fps" in facts and "audio" in facts
    assert "Kept exactly" in facts
    assert slider["maximum"] == N - 1 and slider["value"] == 7 and slider["interactive"]
    assert (img == io.read_frame(clip, 7)).all()
    assert "Frame **7**" in caption and f"{7 / 24:.3f} s" in caption
    assert fps == 24.0
    assert editor_value["background"].shape == img.shape
    assert before_after[0] is img


def test_load_video_clamps_a_stale_frame_index_and_handles_no_video(app, clip):
    assert app.load_video(str(clip), 500)[1]["value"] == N - 1
    out = app.load_video(None, 3)
    assert out[1]["interactive"] is False and out[2] is None


def test_upload_size_cap_is_a_clear_error(tmp_path, clip):
    small = GradioPipeline(files=SessionFiles(tmp_path / "s"), instruct=None, max_upload_mb=0.001)
    with pytest.raises(gr.Error, match="accepts up to"):
        small.load_video(str(clip), 0)


def test_pick_frame_warns_when_the_edit_belongs_to_another_frame(app, clip, tmp_path):
    edited = _edit_of(clip, 3, tmp_path)
    img, caption, _, before_after, status = app.pick_frame(str(clip), 3, 3, str(edited))
    assert (before_after[1] != img).any() and "ready" in status
    img, caption, _, before_after, status = app.pick_frame(str(clip), 9, 3, str(edited))
    assert (before_after[1] == img).all() and "frame **3**" in status and "frame **9**" in status


def test_player_copy_only_for_files_a_browser_cannot_time_exactly(app, clip, tmp_path):
    assert not app.needs_player_copy(io.probe(clip))
    frames, _ = media.talking_face_frames(12, size=(64, 48), seed=1)
    vfr, _ = media.write_vfr_clip(tmp_path / "vfr.mp4", frames, 30)
    info = io.probe(vfr)
    assert info.vfr and app.needs_player_copy(info)
    out = app.prepare_upload(str(vfr), _Req("s1"))
    copy = io.probe(out)
    assert app.files.owns(out, "s1")
    assert copy.n_frames == info.n_frames and copy.fps == info.fps and not copy.vfr


# ---------------------------------------------------------------------------------------------------- step 3
def test_drawing_becomes_the_edited_frame_in_the_session_folder(app, clip):
    frame = io.read_frame(clip, 4)
    layer = np.zeros(frame.shape[:2] + (4,), np.uint8)
    layer[10:20, 10:30] = (0, 255, 0, 255)
    path, before_after, k, status = app.use_drawing({"background": frame, "layers": [layer]}, str(clip), 4,
                                                     _Req("s2"))
    assert k == 4 and app.files.owns(path, "s2") and "frame **4**" in status
    saved = np.asarray(Image.open(path))
    assert saved.shape == frame.shape and (saved[10:20, 10:30] == (0, 255, 0)).all()
    assert (before_after[0] == frame).all() and (before_after[1] == saved).all()


def test_untouched_drawing_is_refused(app, clip):
    frame = io.read_frame(clip, 0)
    with pytest.raises(gr.Error, match="same as the original"):
        app.use_drawing({"background": frame, "layers": []}, str(clip), 0, _Req("s2"))


def test_uploaded_edit_is_fitted_and_the_resize_is_announced(app, clip, tmp_path):
    frame = io.read_frame(clip, 2).copy()
    frame[30:40, 30:40] = 255
    big = tmp_path / "big.png"
    Image.fromarray(frame).resize((192, 256)).save(big)
    path, _, k, status = app.use_upload(str(big), str(clip), 2, _Req("s3"))
    assert k == 2 and np.asarray(Image.open(path)).shape == frame.shape
    assert "192×256" in status


def test_instruction_tab_explains_why_it_is_off(app, clip):
    ok, md = app.instruct_status()
    assert not ok and "not available here because" in md
    with pytest.raises(gr.Error, match="not available here because"):
        app.use_instruction("add a hat", 0, str(clip), 0, _Req("s4"))
    with pytest.raises(gr.Error, match="Type an instruction"):
        app.use_instruction("  ", 0, str(clip), 0, _Req("s4"))


# ---------------------------------------------------------------------------------------------------- steps 4-5
def test_check_ready_names_what_is_missing():
    with pytest.raises(gr.Error, match="Upload a video"):
        GradioPipeline.check_ready(None, None, 0, -1)
    with pytest.raises(gr.Error, match="Edit the frame first"):
        GradioPipeline.check_ready("v.mp4", None, 0, -1)
    with pytest.raises(gr.Error, match="made on frame 3 but frame 5 is selected"):
        GradioPipeline.check_ready("v.mp4", "e.png", 5, 3)
    GradioPipeline.check_ready("v.mp4", "e.png", 5, 5)
    GradioPipeline.check_ready("v.mp4", "e.png", 5, -1)  # examples and API: no page state to compare


def test_backend_panel_lists_every_backend_with_availability(app):
    md = app.backend_markdown()
    assert "**flow** (available)" in md and "**synclora**" in md and "auto" in md


def test_edit_video_writes_result_and_side_by_side_in_the_session_folder(app, clip, tmp_path):
    edited = _edit_of(clip, 5, tmp_path)
    out, sbs, md = app.edit_video(str(clip), str(edited), 5, "flow", "preview", 11, request=_Req("s5"))
    assert app.files.owns(out, "s5") and app.files.owns(sbs, "s5")
    src, res, both = io.probe(clip), io.probe(out), io.probe(sbs)
    assert (res.n_frames, res.fps, res.size, res.has_audio) == (src.n_frames, src.fps, src.size, True)
    assert both.n_frames == src.n_frames and both.width > src.width
    assert "**Edited frame 5**" in md and "seed **11**" in md and "flow" in md
    assert "--edit-index 5" in md and "--seed 11" in md and "--backend flow" in md and "--quality preview" in md


@pytest.mark.parametrize(
    "frame, message",
    [(N, "out of range"), (2.5, "whole number"), (None, "whole number")],
)
def test_edit_video_bad_frame_index_is_one_sentence(app, clip, tmp_path, frame, message):
    edited = _edit_of(clip, 0, tmp_path)
    with pytest.raises(gr.Error, match=message):
        app.edit_video(str(clip), str(edited), frame, "flow", request=_Req("s6"))


def test_edit_video_unavailable_backend_says_why(app, clip, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    edited = _edit_of(clip, 0, tmp_path)
    with pytest.raises(gr.Error, match="cannot run here"):
        app.edit_video(str(clip), str(edited), 0, "synclora", request=_Req("s7"))


def test_session_end_removes_its_files(app, clip, tmp_path):
    edited = _edit_of(clip, 1, tmp_path)
    out, _, _ = app.edit_video(str(clip), str(edited), 1, "flow", "preview", request=_Req("s8"))
    assert Path(out).exists()
    app.end_session(_Req("s8"))
    assert not Path(out).exists()


def test_backend_summary_says_what_auto_runs_and_why_synclora_is_off(app, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = app.backend_summary()
    assert "**auto** runs **the CPU preview**" in line and "Sync-LoRA is off here" in line and "GPU" in line


def test_limits_are_said_right_after_the_upload(app, tmp_path, monkeypatch):
    from synclora import limits

    frames, _ = media.talking_face_frames(12, size=(64, 48), seed=2)
    clip = media.write_clip(tmp_path / "short.mp4", frames, FPS)
    monkeypatch.setattr(limits, "MAX_FRAMES", 10)
    with pytest.raises(gr.Error, match="at most 10"):
        app.load_video(str(clip), 0)


def test_missing_video_file_is_a_sentence(app, tmp_path):
    with pytest.raises(gr.Error, match="not found on the server"):
        app.load_video(str(tmp_path / "gone.mp4"), 0)


@pytest.mark.parametrize("frame", ["abc", float("nan"), float("inf"), True])
def test_any_frame_value_an_api_caller_sends_is_a_sentence(app, clip, tmp_path, frame):
    edited = _edit_of(clip, 0, tmp_path)
    with pytest.raises(gr.Error, match="whole number"):
        app.edit_video(str(clip), str(edited), frame, "flow", request=_Req("s9"))


def test_sync_report_is_measured_once_per_result_and_forgotten_with_the_session(app, monkeypatch, tmp_path):
    import synclora.metrics.compare as report

    calls = []

    class _Rep:
        verdict, lag, corr, in_sync, problems, notes = "in sync (mean r 0.9)", 0, 0.9, True, [], []
        edit = kept = landmarks_video = None

        def plot(self, path):
            Image.new("RGB", (400, 300)).save(path)
            return path

    monkeypatch.setattr(report, "compare_videos", lambda *a, **k: calls.append(a) or _Rep())
    monkeypatch.setattr(app, "check_clip", lambda path: None)  # the clips are names only: nothing is read
    first = app.sync_report("src.mp4", "res.mp4", "e.png", request=_Req("s10"))
    # e.g. the result tab re-sends "change"
    again = app.sync_report("src.mp4", "res.mp4", "e.png", request=_Req("s10"))
    assert first == again and len(calls) == 1
    assert "In sync" in first[1] and "Overall lag **+0** frames" in first[1] and Path(first[0]).is_file()
    app.sync_report("src.mp4", "other.mp4", "e.png", request=_Req("s10"))
    assert len(calls) == 2
    app.end_session(_Req("s10"))
    with pytest.raises(gr.Error, match="visit has ended"):  # an ended visit gets no new files
        app.sync_report("src.mp4", "res.mp4", "e.png", request=_Req("s10"))
    app.sync_report("src.mp4", "res.mp4", "e.png", request=_Req("s11"))  # a new visit measures again
    assert len(calls) == 3


@pytest.mark.slow
def test_sync_report_on_a_real_result_and_its_bad_inputs(app, tmp_path):
    """The panel's outputs from real files: plot and verdict with what the edit did; the landmark view on request."""
    from synclora.testing import faces

    src = faces.talking_clip("grace_hopper", 30)
    good = faces.talking_clip("grace_hopper", 30, edit="sunglasses").frames
    video, result = io.write_video(tmp_path / "src.mp4", src.frames, 25), io.write_video(tmp_path / "res.mp4", good, 25)
    edited = tmp_path / "edited.png"
    Image.fromarray(good[7]).save(edited)
    plot, md, view = app.sync_report(str(video), str(result), str(edited), 7, request=_Req("s12"))
    assert Path(plot).is_file() and view is None  # the landmark view only when asked for
    view = app.landmark_view(str(video), str(result), str(edited), 7, request=_Req("s12"))
    assert Path(view).is_file() and io.probe(view).n_frames == 30
    assert md.startswith("#### In sync") and "both eyes are hidden by the edit, not judged" in md
    assert "The edit on frame 7: left eye **hidden**, right eye **hidden**, mouth **unchanged**" in md
    # an edit frame past the end is ignored (the best-matching frame is found), not an error
    _, md2, _ = app.sync_report(str(video), str(result), str(edited), 999, request=_Req("s12"))
    assert "The edit on frame 7" in md2
    with pytest.raises(gr.Error, match=r"Edited image not found: missing\.png\."):
        app.sync_report(str(video), str(result), str(tmp_path / "missing.png"), 7, request=_Req("s12"))
    # a result cut short is judged over the time both cover, and that is said
    short = io.write_video(tmp_path / "short.mp4", good[:10], 25)
    _, md3, _ = app.sync_report(str(video), str(short), str(edited), 7, request=_Req("s12"))
    assert "The result lasts 0.40 s (10 frames) and the source 1.20 s (30 frames)" in md3
