"""The app's keyframe list (add, remove, re-edit) and `/edit_keyframes`, called directly; the page in a real browser
is in test_browser.py."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from synclora.config import Keyframe, PropagationSettings
from synclora.testing import media
from synclora.ui import keyframes as keyframe_list
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

N, FPS = 60, Fraction(25)


class _Req:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("clip")
    frames, _ = media.talking_face_frames(N, size=(64, 64), fps=float(FPS), seed=5, head="still")
    return media.write_clip(tmp / "talk.mp4", frames, FPS, audio=media.tone(N / float(FPS) + 0.1))


@pytest.fixture()
def app(tmp_path) -> GradioPipeline:
    return GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None,
                          defaults=PropagationSettings(backend="flow"), max_upload_mb=5)


def _edit_of(clip: Path, k: int, tmp: Path, colour=(255, 0, 0)) -> Path:
    img = io.read_frame(clip, k).copy()
    img[40:46, 8:20] = colour
    path = tmp / f"edit{k}.png"
    Image.fromarray(img).save(path)
    return path


def test_the_list_round_trips_through_its_two_page_values(tmp_path):
    keys = [Keyframe(40, tmp_path / "a.png", "0:49"), Keyframe(50, tmp_path / "b.png", "50:59")]
    images, text = keyframe_list.format_list(keys)
    assert text == "40 0:49\n50 50:59"
    assert keyframe_list.parse(images, text) == keys
    assert keyframe_list.parse([{"path": images[0]}], "40 0:49") == keys[:1]
    with pytest.raises(Exception, match="one line"):
        keyframe_list.parse(images, "40")
    with pytest.raises(Exception, match="frame index"):
        keyframe_list.parse(images[:1], "forty")


def test_the_edit_on_screen_joins_the_list_and_replaces_a_keyframe_on_its_frame(tmp_path):
    a, b, c = (tmp_path / f"{n}.png" for n in "abc")
    same = [Keyframe(10, a), Keyframe(50, b)]
    keys, span = keyframe_list.merged(same, str(c), 30, "5:55")
    assert [k.index for k in keys] == [10, 30, 50] and span == "5:55"  # one look: the span box holds for all
    keys, _ = keyframe_list.merged(same, str(c), 50, None)  # a re-edit of frame 50
    assert [(k.index, k.image) for k in keys] == [(10, a), (50, c)]
    looks = [Keyframe(10, a, "0:19")]
    keys, span = keyframe_list.merged(looks, str(c), 40, "30:59")
    assert [k.span for k in keys] == ["0:19", "30:59"] and span is None  # the span box is the new look's span


def test_add_remove_and_reedit(app, clip, tmp_path):
    e10, e50 = _edit_of(clip, 10, tmp_path), _edit_of(clip, 50, tmp_path)
    images, text, items, md, sel = app.add_keyframe(str(clip), str(e10), 10, None, False, None, "")
    assert text == "10" and len(items) == 1 and "1 keyframe" in md and sel == -1
    out = app.add_keyframe_and_clear(str(clip), str(e50), 50, None, False, images, text)
    images, text, items = out[:3]
    assert text == "10\n50" and [c for _, c in items] == ["frame 10 · same look", "frame 50 · same look"]
    assert out[5:7] == (None, -1) and "Pick another frame" in out[7]  # the edit on screen is in the list now
    assert app.reedit_keyframe(1, images, text)[0] == 50
    images, text, items, md, _ = app.remove_keyframe(0, images, text)
    assert text == "50" and len(items) == 1
    with pytest.raises(gr.Error, match="Select a keyframe"):
        app.remove_keyframe(-1, images, text)
    with pytest.raises(gr.Error, match="Edit a frame first"):
        app.add_keyframe(str(clip), None, -1, None, False, images, text)
    with pytest.raises(gr.Error, match="Give this keyframe's span"):
        app.add_keyframe(str(clip), str(e10), 10, "", True, None, "")
    with pytest.raises(gr.Error, match="tick or untick"):
        app.add_keyframe(str(clip), str(e10), 10, "0:20", True, images, text)


def test_edit_keyframes_two_looks_end_to_end(app, clip, tmp_path):
    """The page's call: one listed keyframe with its span, the edit on screen with the span box's span."""
    e10, e50 = _edit_of(clip, 10, tmp_path), _edit_of(clip, 50, tmp_path, (0, 0, 255))
    out, sbs, md = app.edit_keyframes(str(clip), str(e50), 50, [str(e10)], "10 0:24", "flow", "preview",
                                      span="35:59", fade=3, request=_Req("k1"))
    res, src = io.probe(out), io.probe(clip)
    assert (res.n_frames, res.fps, res.has_audio) == (src.n_frames, src.fps, True)
    frames = io.read_frames(out)
    patch = frames[:, 40:46, 8:20].astype(int)
    red, blue = (patch[..., 0] - patch[..., 2]).mean(axis=(1, 2)), (patch[..., 2] - patch[..., 0]).mean(axis=(1, 2))
    assert (red[:25] > 100).mean() >= 0.9 and (blue[35:] > 100).mean() >= 0.9
    assert (red[35:] < 60).all() and (blue[:25] < 60).all()
    assert "Keyframes **10**, **50**" in md
    assert "--keyframe 10 edit10.png 0:24 --keyframe 50 edit50.png 35:59" in md
    assert '"keyframes": [{"index": 10, "span": "0:24"}, {"index": 50, "span": "35:59"}]' in md


BAD = [
    (([], "", None, None), "Give the edited frame"),
    ((["A"], "10\n20", None, None), "one line"),
    ((["A", "A"], "10\n10", None, None), "two keyframes are on frame 10"),
    ((["A", "A"], "10 0:30\n40 25:59", None, None), "overlap on frames 25–30"),
    ((["A"], "10", "A", 80), "frame 80 is out of range"),
    ((["A"], "10 0:99", None, None), "out of range"),
    ((["SMALL"], "10", None, None), "aspect"),
    ((["A"] * 1000, "\n".join(str(i) for i in range(1000)), None, None), "1000 keyframes were given"),
]


@pytest.mark.parametrize("given,says", BAD, ids=[s for _, s in BAD])
def test_bad_keyframes_are_one_sentence_in_the_app(app, clip, tmp_path, given, says):
    a = _edit_of(clip, 10, tmp_path)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 64, 3), np.uint8)).save(small)
    images, text, edited, frame = given
    images = [str(a) if i == "A" else str(small) for i in images]
    edited = str(a) if edited == "A" else None
    with pytest.raises(gr.Error, match="(?i)" + says):
        app.edit_keyframes(str(clip), edited, frame, images, text, "flow", request=_Req("k2"))
    assert not any(p.suffix == ".mp4" for p in app.files.root.rglob("*"))  # nothing written


def test_the_sync_report_of_a_keyframed_result_judges_each_keyframes_part(app, clip, tmp_path, monkeypatch):
    import synclora.metrics.keyframes as mk

    e10, e50 = _edit_of(clip, 10, tmp_path), _edit_of(clip, 50, tmp_path, (0, 0, 255))
    out, _, _ = app.edit_keyframes(str(clip), str(e50), 50, [str(e10)], "10 0:24", "flow", "preview",
                                   span="35:59", fade=3, request=_Req("k3"))
    seen = []

    class _Rep:
        lag, kept, thresholds = 0, None, None

        def __init__(self, k):
            self.verdict = "in sync"
            self.problems = ["the edit faded on frames 40–59"] if k == 50 else []

        def plot(self, path):
            Image.new("RGB", (40, 30)).save(path)

    def fake(source, result, images, governing, frame_range, progress=None, **kw):
        parts = mk.governed_parts(governing, *frame_range)
        seen.append((sorted(images), parts))
        return [mk.KeyframePart(k, a, b, _Rep(k)) for k, a, b in parts]

    monkeypatch.setattr(mk, "compare_keyframes", fake)
    plot, md, _ = app.sync_report(str(clip), out, None, 50, request=_Req("k3"))
    assert seen == [([10, 50], [(10, 0, 28), (50, 32, 60)])]  # spans and their fades; 28–31 are the source's own
    assert "keyframe 50's part: the edit faded on frames 40–59" in md and "keyframe 10 (frames 0–27)" in md.lower()
    assert plot is not None
