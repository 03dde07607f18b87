"""Editing a time range of the clip: `--span START:END` (frames or seconds) and `--fade N`.

Outside the span and its fades the result is the source's own decoded frame (bit-exact before encoding, within H.264
noise after); inside, the edit; in the fades a monotonic blend. Only the span and its fades reach the backend. The
contract (frame count, fps, duration, audio) holds, and a bad span is one sentence in every face.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from synclora import pipeline
from synclora.cli import main
from synclora.config import PropagationRequest, PropagationSettings
from synclora.errors import InputError
from synclora.propagate import registry
from synclora.propagate.base import BackendSpec, Propagator, no_progress
from synclora.testing import media
from synclora.ui.session import SessionFiles
from synclora.video import io
from synclora.video.timing import FrameSpan, default_fade, parse_span, resolve_span

N, FPS, K = 48, 25, 20  # clip length, fps, edited frame


def _info(n: int = 250, fps=Fraction(25), name: str = "talk.mp4"):
    return SimpleNamespace(n_frames=n, fps=Fraction(fps), path=Path(name))


# ---------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text,want", [
    ("12:40", (12, 40)),
    (" 12 : 40 ", (12, 40)),
    ("2s:5s", (50, 124)),  # from the frame on screen at 2 s to the last one that starts before 5 s: three seconds
    ("2.0s:5.5s", (50, 137)),
    ("2S:5.52s", (50, 137)),  # 5.52 s is where frame 138 starts
    (".5s:1s", (12, 24)),
    (":120", (0, 120)),
    ("2s:", (50, 249)),
    ("100:", (100, 249)),
    ("", (0, 249)),
    (":", (0, 249)),
    (None, (0, 249)),
    ("40:40", (40, 40)),  # one frame
    ("1.6s:1.64s", (40, 40)),  # one frame, in seconds
    ("9s:10s", (225, 249)),  # up to the very end of the clip (10 s)
    ("50:9.96s", (50, 248)),  # frames and seconds mixed
    ((3, 7), (3, 7)),
])
def test_a_span_resolves_to_exact_frames(text, want):
    span = resolve_span(text, _info())
    assert (span.start, span.end) == want
    assert span.length == want[1] - want[0] + 1


def test_seconds_are_exact_at_ntsc_rates():
    info = _info(600, Fraction(30000, 1001))
    span = resolve_span("1s:2s", info)
    assert (span.start, span.end) == (29, 59)  # 1 s is inside frame 29 (0.968–1.001 s); frame 59 starts at 1.968 s
    assert resolve_span("1.001s:", info).start == 30  # exactly where frame 30 starts


@pytest.mark.parametrize("text,says", [
    ("40:12", "ends before it starts"),
    ("3s:1s", "ends before it starts"),
    ("2s:2s", "is empty"),
    ("abc", "is not START:END"),
    ("12", "is not START:END"),
    ("1:2:3", "is not START:END"),
    ("1.5:3", "is not START:END"),  # a fraction of a frame
    ("12-40", "is not START:END"),
    ("-5:10", "negative"),
    ("10:1e3", "is not START:END"),
    (12, "must be text"),
])
def test_a_malformed_span_is_one_sentence_before_any_clip_is_read(text, says):
    with pytest.raises(InputError) as err:
        parse_span(text)
    assert says in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match=says):  # the settings refuse it too, with the same sentence
        PropagationSettings(span=text)


@pytest.mark.parametrize("text,k,says", [
    ("200:300", None, "frame 300 of the span 200:300 is out of range: talk.mp4 has frames 0 to 249"),
    ("250:", None, "frame 250 of the span 250: is out of range"),
    ("2s:10.5s", None, "the span 2s:10.5s ends at 10.5 s but talk.mp4 lasts 10.000 s"),
    ("10s:", None, "starts at 10 s but talk.mp4 lasts 10.000 s"),
    ("100:2s", None, "ends (frame 49) before it starts (frame 100)"),
    ("50:60", 40, "the edited frame 40 is outside the span 50:60 (frames 50–60)"),
    ("2s:3s", 76, "the edited frame 76 is outside the span 2s:3s (frames 50–74)"),
])
def test_a_span_that_does_not_fit_the_clip_is_one_sentence(text, k, says):
    with pytest.raises(InputError) as err:
        resolve_span(text, _info(), edit_index=k)
    assert says in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------- fades
def test_default_fade_is_about_a_third_of_a_second():
    assert [default_fade(f) for f in (Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 60, 5)] == \
        [8, 8, 8, 10, 10, 20, 2]
    assert resolve_span("100:120", _info()).fade_in == 8


def test_fades_lie_outside_the_span_and_are_monotonic():
    span = resolve_span("100:120", _info(), fade=4)
    assert (span.first, span.last, span.window) == (96, 124, 29)
    w = span.weights()
    assert w[:96].max() == 0 and w[125:].max() == 0  # the source's own frames
    assert (w[100:121] == 1).all()  # the edit in full
    assert list(w[95:101]) == [0, 0.2, 0.4, 0.6, 0.8, 1]  # 1/(F+1) … F/(F+1), then the span
    assert list(w[120:126]) == [1, 0.8, 0.6, 0.4, 0.2, 0]
    assert (np.diff(w[:111]) >= 0).all() and (np.diff(w[110:]) <= 0).all()
    hard = resolve_span("100:120", _info(), fade=0)
    assert (hard.first, hard.last) == (100, 120) and set(hard.weights()[[99, 121]]) == {0}
    assert "hard cuts" in hard.describe()


def test_spans_at_the_clips_ends_have_no_fade_there_and_short_room_shortens_it():
    at_start = resolve_span(":30", _info(), fade=8)
    assert (at_start.fade_in, at_start.fade_out, at_start.first, at_start.last) == (0, 8, 0, 38)
    assert not at_start.notices
    at_end = resolve_span("200:", _info(), fade=8)
    assert (at_end.fade_in, at_end.fade_out, at_end.last) == (8, 0, 249) and not at_end.notices
    near = resolve_span("3:246", _info(), fade=8)
    assert (near.fade_in, near.fade_out) == (3, 3)
    assert len(near.notices) == 2 and "fade-in is 3 frames instead of 8" in near.notices[0]
    whole = resolve_span(None, _info())
    assert whole.whole and (whole.first, whole.last) == (0, 249) and (whole.weights() == 1).all()
    with pytest.raises(InputError, match="fade"):
        resolve_span("3:5", _info(), fade=-1)


def test_the_span_says_which_frames_were_edited():
    span = resolve_span("2s:5.52s", _info(), fade=8)
    assert span.text == "50:137"
    assert span.describe() == ("frames 50–137 (2.000–5.520 s), fading in over frames 42–49 and out over frames "
                               "138–145; the other frames are the source's own")
    assert resolve_span("40:40", _info(), fade=0).describe().startswith("frame 40 (1.600–1.640 s)")
    assert isinstance(resolve_span(span, _info()), FrameSpan)


# ---------------------------------------------------------------------------------------------------- pipeline
class _Spy(Propagator):
    """A backend that counts what it is handed and answers with a constant frame (or the flow backend's answer)."""

    name = "spy"
    label = "test backend"

    def __init__(self, spec: BackendSpec = BackendSpec(), inner: Propagator | None = None, fill: int = 255):
        self.spec, self.inner, self.fill = spec, inner, fill
        self.frames_seen = 0
        self.calls = 0

    def propagate(self, segment, progress=no_progress):
        self.calls += 1
        self.frames_seen += len(segment.frames)
        if self.inner is not None:
            return self.inner.propagate(segment, progress)
        return np.full_like(segment.frames, self.fill)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("span")
    frames, truth = media.talking_face_frames(N, size=(96, 96), fps=FPS, seed=7)
    src = media.write_clip(d / "src.mp4", frames, FPS, audio=media.tone(N / FPS + 0.2))
    decoded = io.read_frames(src)
    edited = decoded[K].copy()
    edited[30:42, 20:40] = (255, 0, 0)  # a red patch
    path = d / "edited.png"
    Image.fromarray(edited).save(path)
    # "Up to encoding": how close a plain re-encode of the decoded source comes to it, frame by frame (PSNR).
    again = io.read_frames(io.write_video(d / "reencoded.mp4", list(decoded), FPS))
    floor = np.array([media.psnr(a, b) for a, b in zip(again, decoded)])
    return {"dir": d, "src": src, "edited": path, "decoded": decoded, "edited_img": edited, "floor": floor}


def _like_the_source(clip, result: np.ndarray, frames) -> None:
    """These result frames are the source's own, up to H.264: as close to it as a plain re-encode (within 1.5 dB: the
    first frames after an edited span are predicted from frames that differ from the source's, which costs the
    encoder a little at 96x96; a frame off by one, or an edit leaking out, costs far more)."""
    for i in frames:
        got = media.psnr(result[i], clip["decoded"][i])
        assert got > clip["floor"][i] - 1.5 and got > 35, (i, got, clip["floor"][i])


def _run(clip, tmp_path, monkeypatch, spy: _Spy, **settings):
    """Run a propagation with `spy` as the backend; return (result, frames handed to the writer, decoded result)."""
    monkeypatch.setattr(registry, "get", lambda s: spy)
    captured: dict[str, list] = {}
    real = io.write_video

    def write(path, frames, fps, **kw):
        frames = list(frames)
        name = Path(path).name  # outputs are staged as `.<name>.<random>.part` and moved into place at the end
        captured.setdefault(name[1:].rsplit(".", 2)[0] if name.endswith(".part") else name, frames)
        return real(path, frames, fps, **kw)

    monkeypatch.setattr(io, "write_video", write)
    out = tmp_path / "out.mp4"
    req = PropagationRequest(source=clip["src"], edited=clip["edited"], out=out, edit_index=K,
                             settings=PropagationSettings(backend="flow", **settings))
    result = pipeline.run_propagation(req)
    return result, np.stack(captured["out.mp4"]), io.read_frames(out)


def test_outside_the_span_the_result_is_the_source_and_inside_the_edit(clip, tmp_path, monkeypatch):
    from synclora.propagate.flow import FlowPropagator

    spy = _Spy(inner=FlowPropagator(PropagationSettings(backend="flow")))
    result, written, decoded = _run(clip, tmp_path, monkeypatch, spy, span="16:27", fade=3)
    src = clip["decoded"]
    span = result.span
    assert (span.start, span.end, span.first, span.last) == (16, 27, 13, 30)
    outside = [i for i in range(N) if not 13 <= i <= 30]
    for i in outside:  # bit-exact before encoding: the decoded source frame itself
        assert np.array_equal(written[i], src[i]), i
    _like_the_source(clip, decoded, outside)  # after encoding: the same, within H.264 noise
    red = written[:, 30:42, 20:40].astype(int)
    redness = red[..., 0] - red[..., 1]
    assert (redness[16:28].mean(axis=(1, 2)) > 150).all()  # the edit, carried by the flow backend
    assert np.array_equal(written[K], clip["edited_img"])
    assert (redness[:13].mean(axis=(1, 2)) < 80).all() and (redness[31:].mean(axis=(1, 2)) < 80).all()
    # The fades: the edit grows in and out monotonically (before and after encoding).
    for frames in (written, decoded):
        r = frames[:, 30:42, 20:40].astype(int)
        level = (r[..., 0] - r[..., 1]).mean(axis=(1, 2))
        assert (np.diff(level[12:17]) > 10).all(), level[12:17]
        assert (np.diff(level[27:32]) < -10).all(), level[27:32]
    # Only the span and its fades were propagated (forward and backward from the edited frame).
    assert spy.frames_seen == (30 - K + 1) + (K - 13 + 1)
    # The contract.
    a, b = io.probe(clip["src"]), io.probe(result.out)
    assert (b.n_frames, b.fps, b.duration, b.has_audio) == (a.n_frames, a.fps, a.duration, True)
    sa, ra = io.audio_samples(clip["src"], (0, N))
    sb, rb = io.audio_samples(result.out, (0, N))
    assert ra == rb and sa.shape == sb.shape and np.abs(sa - sb).max() < 1e-4
    # The summary says which frames were edited; the settings are the ones that reproduce it.
    assert "edited: frames 16–27 (0.640–1.120 s), fading in over frames 13–15 and out over frames 28–30" in \
        result.summary()
    assert (result.settings.span, result.settings.fade) == ("16:27", 3)


def test_fades_are_exact_blends_of_source_and_propagation(clip, tmp_path, monkeypatch):
    """With a backend that answers white, frame i of a fade is source·(1−w) + white·w, w = j/(F+1)."""
    result, written, _ = _run(clip, tmp_path, monkeypatch, _Spy(fill=255), span="18:24", fade=4)
    src = clip["decoded"].astype(float)
    share = (written.astype(float) - src).mean(axis=(1, 2, 3)) / (255 - src).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(share[14:18], [0.2, 0.4, 0.6, 0.8], atol=0.01)
    np.testing.assert_allclose(share[25:29], [0.8, 0.6, 0.4, 0.2], atol=0.01)
    assert (share[18:25][np.arange(7) != K - 18] > 0.999).all()
    assert (share[:14] == 0).all() and (share[29:] == 0).all()


@pytest.mark.parametrize("span,fade,first,last", [
    (":24", 4, 0, 28),  # at the clip's start: no fade-in
    ("16:", 4, 12, N - 1),  # to the clip's end: no fade-out
    ("20:20", 3, 17, 23),  # one frame
    ("20:20", 0, 20, 20),  # one frame, hard cuts: the backend has nothing to do
])
def test_spans_at_the_ends_and_of_one_frame(clip, tmp_path, monkeypatch, span, fade, first, last):
    spy = _Spy(fill=255)
    result, written, decoded = _run(clip, tmp_path, monkeypatch, spy, span=span, fade=fade)
    src = clip["decoded"]
    assert (result.span.first, result.span.last) == (first, last)
    for i in range(N):
        if not first <= i <= last:
            assert np.array_equal(written[i], src[i]), i
    assert np.array_equal(written[K], clip["edited_img"])
    if first == 0:
        assert (written[0] == 255).all()  # the span starts at frame 0: in full there
    if last == N - 1:
        assert (written[N - 1] == 255).all()
    assert spy.frames_seen == (0 if first == last else (last - K + 1) * (last > K) + (K - first + 1) * (first < K))
    assert io.probe(result.out).n_frames == N


@pytest.mark.slow
def test_a_short_span_of_a_long_clip_hands_the_backend_only_its_frames(tmp_path, monkeypatch):
    """A frame-limited backend (LTX-like: 8k+1 frames, at most 17 per call, 25 fps) sees the span and fades only."""
    frames, _ = media.talking_face_frames(400, size=(32, 32), seed=2)
    src = media.write_clip(tmp_path / "long.mp4", frames, 25, crf=30)
    edited = io.read_frame(src, 300)
    Image.fromarray(edited).save(tmp_path / "e.png")
    spy = _Spy(spec=BackendSpec(max_frames=17, frame_step=8, native_fps=25), fill=0)
    monkeypatch.setattr(registry, "get", lambda s: spy)
    req = PropagationRequest(source=src, edited=tmp_path / "e.png", out=tmp_path / "o.mp4", edit_index=300,
                             settings=PropagationSettings(backend="flow", span="296:310", fade=4))
    pipeline.run_propagation(req)
    # forward 300..314 (15 → padded to 17), backward 300..292 (9): 26 frames of a 400-frame clip
    assert spy.frames_seen == 17 + 9 and spy.calls == 2
    spy.frames_seen = spy.calls = 0
    req.settings = PropagationSettings(backend="flow")
    req.out = tmp_path / "whole.mp4"
    pipeline.run_propagation(req)
    assert spy.frames_seen > 400  # the whole clip, in chunks


# ---------------------------------------------------------------------------------------------------- faces
BAD_SPANS = [
    ("30:10", "ends before it starts"),  # reversed
    ("10:60", "out of range"),
    ("25:30", "outside the span"),  # does not contain the edited frame (K = 20)
    ("10..30", "is not START:END"),  # malformed
    ("1s:2.5s", "lasts 1.920 s"),  # seconds beyond the duration
]


@pytest.mark.parametrize("span,says", BAD_SPANS, ids=[s for s, _ in BAD_SPANS])
def test_bad_spans_are_one_line_and_exit_2_in_the_cli(clip, tmp_path, capsys, span, says):
    out = tmp_path / "out.mp4"
    rc = main(["propagate", str(clip["src"]), "--edited", str(clip["edited"]), "--edit-index", str(K),
               "--out", str(out), "--backend", "flow", "--quiet", "--span", span])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and says in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _request(session_hash: str):
    """What Gradio passes as `gr.Request` (only the session hash is used)."""
    return SimpleNamespace(session_hash=session_hash)


@pytest.mark.parametrize("span,says", BAD_SPANS, ids=[s for s, _ in BAD_SPANS])
def test_bad_spans_are_one_sentence_in_the_app(app, clip, span, says):
    with pytest.raises(gr.Error) as err:
        app.edit_video(str(clip["src"]), str(clip["edited"]), K, span=span, request=_request("v"))
    msg = str(err.value.message)
    assert says in msg and msg.endswith(".") and "Something went wrong" not in msg
    session = app.files.root / SessionFiles.key("v")
    assert not session.exists() or not any(session.iterdir())
    with pytest.raises(gr.Error, match=says):  # typed into the page's span box, said at once
        app.span_from_text(str(clip["src"]), K, 0, N - 1, span, None)


def test_cli_span_in_seconds_end_to_end(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["propagate", str(clip["src"]), "--edited", str(clip["edited"]), "--edit-index", str(K),
                 "--out", str(out), "--backend", "flow", "--quiet", "--span", "0.6s:1.2s", "--fade", "2"]) == 0
    text = capsys.readouterr().out
    assert "edited: frames 15–29 (0.600–1.200 s), fading in over frames 13–14 and out over frames 30–31" in text
    _like_the_source(clip, io.read_frames(out), (*range(13), *range(32, N)))
    assert io.probe(out).n_frames == N


def test_the_app_edits_a_span_and_says_so_in_the_reproduce_line(app, clip):
    # positional settings as before (backend … memory), then span and fade by name
    out, sbs, md = app.edit_video(str(clip["src"]), str(clip["edited"]), K, "flow", "full", 0, span="0.4s:1.2s",
                                  fade=2.0, request=_request("v"))
    assert "edited frames 10–29 (0.400–1.200 s), fading in over frames 8–9 and out over frames 30–31" in md
    assert "--span 10:29 --fade 2" in md and '"span": "10:29", "fade": 2' in md
    _like_the_source(clip, io.read_frames(out), (*range(8), *range(32, N)))
    whole_out, _, whole_md = app.edit_video(str(clip["src"]), str(clip["edited"]), K, request=_request("v"))
    assert "edited all 48 frames (the whole clip)" in whole_md and "--span" not in whole_md


def test_the_span_widgets_keep_the_chosen_frame_inside(app, clip):
    src = str(clip["src"])
    start, end, text, caption, fade = app.span_reset(src)
    assert (start["value"], start["maximum"], end["value"]) == (0, N - 1, N - 1) and text == ""
    assert fade == 8  # this clip's default fade (25 fps), shown in the fade box
    assert "whole clip" in caption and "48 frames" in caption
    # a span slider stops at the chosen frame
    start, end, text, caption = app.span_from_sliders(src, K, 30, 40)
    assert (start["value"], end["value"], text) == (K, 40, f"{K}:40")
    assert "Edited span (21 frames)" in caption and "frames 20–40 (0.800–1.640 s)" in caption
    # seconds typed in the box: the sliders follow, the text stays as typed
    start, end, text, caption = app.span_from_text(src, K, 0, 47, "0.5s:1s", 4)
    assert (start["value"], end["value"], text) == (12, 24, "0.5s:1s")
    assert "fading in over frames 8–11" in caption
    # leaving the box applies what is typed, unless the sliders already show it: a box left right after Enter or for a
    # slider would otherwise be applied again, and on a busy server after the slider's move, undoing it
    start, end, text, _ = app.span_text_left(src, K, 0, 47, "0.5s:1s", 4)
    assert (start["value"], end["value"], text) == (12, 24, "0.5s:1s")
    assert all(isinstance(v, type(gr.skip())) for v in app.span_text_left(src, K, 12, 24, "0.5s:1s", 4))
    with pytest.raises(gr.Error, match="span"):
        app.span_text_left(src, K, 12, 24, "9s:1s", 4)
    # moving the frame picker outside the span widens it; inside, nothing changes
    start, end, text, _ = app.span_follow_frame(src, 30, 12, 24, "0.5s:1s", 4)
    assert (start["value"], end["value"], text) == (12, 30, "12:30")
    assert all(isinstance(v, type(gr.skip())) for v in app.span_follow_frame(src, 15, 12, 24, "0.5s:1s", 4))
    off = app.span_reset(None)
    assert off[0]["interactive"] is False and off[3] == "No video yet."


def test_the_apps_sync_report_judges_the_span(app, monkeypatch, clip):
    import synclora.metrics.compare as report

    seen = []

    class _Rep:
        verdict, lag, corr, in_sync, problems, notes = "in sync (mean r 0.9)", 0, 0.9, True, [], []
        kept = edit = landmarks_video = None

        def plot(self, path):
            Image.new("RGB", (40, 30)).save(path)
            return path

    monkeypatch.setattr(report, "compare_videos", lambda *a, **k: seen.append(k["frame_range"]) or _Rep())
    monkeypatch.setattr(app, "check_clip", lambda path: None)  # "res.mp4" is a name only: nothing is read
    _, md, _ = app.sync_report(str(clip["src"]), "res.mp4", None, span="0.4s:1.2s", request=_request("r"))
    assert seen == [(10, 30)] and "Judged the edited span, frames 10–29" in md
    app.sync_report(str(clip["src"]), "res.mp4", None, span="", request=_request("r"))
    assert seen[-1] is None  # the whole clip
    plot, md, _ = app.sync_report(str(clip["src"]), "res.mp4", None, span="20:20", request=_request("r"))
    assert plot is None and "Only frame 20 was edited" in md and len(seen) == 2


def test_the_report_cli_judges_the_span_and_says_so(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["propagate", str(clip["src"]), "--edited", str(clip["edited"]), "--edit-index", str(K),
                 "--out", str(out), "--backend", "flow", "--quiet", "--span", "0.4s:1.2s"]) == 0
    capsys.readouterr()
    assert main(["report", str(clip["src"]), str(out), "--span", "0.4s:1.2s", "--json", str(tmp_path / "r.json")]) == 0
    assert "judged frames: 10–29" in capsys.readouterr().out
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == [10, 29] and report["faces"]["n_frames"] == 20
    assert main(["report", str(clip["src"]), str(out), "--span", "1s:3s"]) == 2
    assert "lasts 1.920 s" in capsys.readouterr().err


def test_zerogpu_is_asked_for_the_span_not_the_whole_clip(app, tmp_path):
    frames = np.zeros((600, 32, 32, 3), np.uint8)
    frames[..., 1] = (np.arange(600) % 200)[:, None, None]
    src = media.write_clip(tmp_path / "long.mp4", frames, 25, crf=40)
    settings = PropagationSettings(backend="synclora", resolution=1024)

    def ask(**span) -> int:
        req = PropagationRequest(source=src, edited=tmp_path / "e.png", out=tmp_path / "o.mp4", edit_index=300,
                                 settings=PropagationSettings.from_values(span, settings))
        return app._gpu_duration(req)

    whole, part = ask(), ask(span="290:310")
    assert part < whole
    assert part == ask(span="282:318", fade=0)  # the same frames handed to the backend, the same request
