"""Several edited frames in one propagation: the same look pinned at several frames, or one look per span.

The plan (which keyframe governs which frame, with what weight) is checked exactly; the scheduler's blend between two
keyframes is checked with a backend that answers each keyframe's value; whole propagations on a 900-frame clip use
the ideal propagator (it adds the keyframe's change to every frame) so every frame can be judged, and the CPU preview
and the tiny Sync-LoRA model run the same code path.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from synclora import pipeline
from synclora.cli import main
from synclora.config import Keyframe, PropagationRequest, PropagationSettings, parse_keyframe
from synclora.errors import InputError
from synclora.propagate import registry
from synclora.propagate.base import BackendSpec, Propagator, no_progress
from synclora.propagate.schedule import propagate_keyframes
from synclora.testing import media
from synclora.video import io
from synclora.video.keyframes import plan_keyframes

LTX_LIKE = BackendSpec(max_frames=17, frame_step=8, native_fps=25.0)


def _info(n: int = 900, fps=Fraction(30)):
    return SimpleNamespace(n_frames=n, fps=Fraction(fps), path=Path("talk.mp4"))


# ---------------------------------------------------------------------------------------------------- the plan
BAD = [
    (([950], [None]), "frame 950 is out of range: talk.mp4 has frames 0 to 899"),
    (([10], ["0:950"]), "frame 950 of the span 0:950 is out of range"),
    (([40, 40], [None, None]), "two keyframes are on frame 40"),
    (([40, 120], ["0:100", "90:300"]), "the spans 0:100 (keyframe 40) and 90:300 (keyframe 120) overlap on frames "
                                       "90–100"),
    (([10], ["20:30"]), "the edited frame 10 is outside the span 20:30"),
    (([10, 200], ["20:30", "100:300"]), "keyframe 10: the edited frame 10 is outside the span 20:30"),
    (([1, 2], ["0:1", None]), "some keyframes have a span and some (frame 2) do not"),
    ((list(range(1000)), [None] * 1000), "1000 keyframes were given; a propagation takes at most 100"),
    (([], []), "no edited frame was given"),
]


@pytest.mark.parametrize("given,says", BAD, ids=[s[:30] for _, s in BAD])
def test_bad_keyframes_are_one_sentence(given, says):
    with pytest.raises(InputError) as err:
        plan_keyframes(*given, _info())
    assert says in str(err.value) and "\n" not in str(err.value)


def test_more_keyframes_than_frames_and_the_edited_span_are_refused():
    with pytest.raises(InputError, match="5 keyframes were given but talk.mp4 has only 4 frames"):
        plan_keyframes([0, 1, 2, 3, 4], [None] * 5, _info(4))
    with pytest.raises(InputError, match="keyframe 700 is outside the edited span 0:500"):
        plan_keyframes([40, 700], [None, None], _info(), span="0:500")
    with pytest.raises(InputError, match="leave the edited span empty"):
        plan_keyframes([40, 700], ["0:99", "600:899"], _info(), span="0:500")
    with pytest.raises(InputError, match="INDEX IMAGE"):
        parse_keyframe(["40"])
    with pytest.raises(InputError, match="whole number"):
        parse_keyframe(["forty", "a.png"])
    with pytest.raises(InputError, match="not START:END"):
        Keyframe(40, Path("a.png"), "10..50")


def test_same_look_every_frame_follows_its_nearest_keyframes():
    plan = plan_keyframes([700, 40], [None, None], _info())
    (look,) = plan.looks
    assert look.keys == (40, 700) and look.members == (1, 0) and look.span.whole
    assert [plan.governing(i) for i in (0, 40, 369, 370, 371, 700, 899)] == [40, 40, 40, 40, 700, 700, 700]
    legs = {(leg.key, leg.to): ramp for leg, ramp in look.legs(None)}
    # backward from the first to the start, both ways between the two (blended over all of 40..700), forward on
    assert legs == {(40, 0): None, (40, 700): (40, 700), (700, 40): (40, 700), (700, 899): None}
    # a chunked backend: the two meet in the middle, cross-faded over 8 frames
    legs = {(leg.key, leg.to): ramp for leg, ramp in look.legs(8)}
    assert legs == {(40, 0): None, (40, 374): (365, 374), (700, 365): (365, 374), (700, 899): None}


def test_two_looks_fade_between_their_spans_and_into_the_source():
    plan = plan_keyframes([100, 600], ["50:300", "330:899"], _info(), fade=10)
    assert [look.keys for look in plan.looks] == [(100,), (600,)]
    a = [dict(plan.weights(i)).get(0, 0.0) for i in range(900)]
    b = [dict(plan.weights(i)).get(1, 0.0) for i in range(900)]
    assert all(a[i] == 1 for i in range(50, 301)) and all(b[i] == 1 for i in range(330, 900))
    assert all(b[i] == 0 for i in range(0, 320)) and all(a[i] == 0 for i in range(311, 900))
    assert np.all(np.diff(a[39:51]) > 0) and np.all(np.diff(a[300:312]) < 0)  # monotonic fades
    assert a[39] == 0 and a[50] == 1
    assert [plan.governing(i) for i in (0, 45, 300, 315, 320, 899)] == [None, 100, 100, None, 600, 600]
    # adjacent spans: the fades between them have no room (said), a cut from one look to the other
    plan = plan_keyframes([100, 600], ["0:399", "400:899"], _info(), fade=10)
    assert plan.weights(399) == [(0, 1.0)] and plan.weights(400) == [(1, 1.0)]
    assert any("only 0 frames lie between them" in n for n in plan.notices)
    # a gap shorter than both fades: split between them, so no frame shows both looks; each fade still monotonic
    plan = plan_keyframes([100, 600], ["0:399", "405:899"], _info(), fade=10)
    assert [(look.span.fade_out, look.span.fade_in) for look in plan.looks] == [(3, 0), (0, 2)]
    assert all(len(plan.weights(i)) == 1 for i in range(399, 406))
    wa = [dict(plan.weights(i)).get(0, 0) for i in range(399, 404)]
    wb = [dict(plan.weights(i)).get(1, 0) for i in range(402, 406)]
    assert np.all(np.diff(wa) < 0) and np.all(np.diff(wb) > 0)


@pytest.mark.parametrize("meet", [0, None, 4])
@pytest.mark.parametrize("anchors", [[0], [39], [5, 6], [3, 20, 33], [2, 37]])
def test_stream_runs_cover_every_frame_with_weights_summing_to_one(anchors, meet):
    from synclora.propagate.stream import Anchor, plan_runs

    img = np.zeros((2, 2, 3), np.uint8)
    runs = plan_runs([Anchor(a, img) for a in anchors], 0, 39, meet)
    share = np.zeros(40)
    for r in runs:
        for i in list(r.frames)[1:]:
            share[i] += r.weight(i)
    share[anchors] += 1
    np.testing.assert_allclose(share, 1.0)
    if meet == 0:  # a cut halfway: every frame made by one run
        assert sorted([i for r in runs for i in list(r.frames)[1:]] + anchors) == list(range(40))


# ---------------------------------------------------------------------------------------------------- the scheduler
class Constant(Propagator):
    """Answers every frame with the value of its segment's edited frame: shows which keyframe each frame came from."""

    name = "constant"
    label = "test backend"

    def __init__(self, spec: BackendSpec = BackendSpec()):
        self.spec = spec
        self.starts: list[int] = []
        self.frames_seen = 0

    def propagate(self, segment, progress=no_progress):
        self.starts.append(int(segment.edited[0, 0, 0]))
        self.frames_seen += len(segment.frames)
        return np.full_like(segment.frames, segment.edited[0, 0, 0])


def _keys(*pairs):
    return [(k, np.full((8, 8, 3), v, np.uint8)) for k, v in pairs]


def test_between_two_keyframes_the_result_is_their_blend_by_distance():
    frames = np.zeros((101, 8, 8, 3), np.uint8)
    backend = Constant()
    out, _ = propagate_keyframes(frames, _keys((10, 0), (90, 200)), backend, PropagationSettings(), 25.0)
    got = out[:, 0, 0, 0].astype(float)
    want = np.clip((np.arange(101) - 10) / 80, 0, 1) * 200
    np.testing.assert_allclose(got, want, atol=0.5)  # lands on each keyframe, never jumps
    assert backend.frames_seen == 11 + 81 + 81 + 11  # backward, both ways between, forward
    assert sorted(set(backend.starts)) == [0, 200]  # every call starts from a keyframe


def test_a_chunked_backend_meets_in_the_middle_each_chunk_from_its_keyframe():
    frames = np.zeros((101, 8, 8, 3), np.uint8)
    backend = Constant(LTX_LIKE)
    settings = PropagationSettings(chunk_overlap=4)
    out, _ = propagate_keyframes(frames, _keys((10, 0), (90, 200)), backend, settings, 25.0)
    got = out[:, 0, 0, 0]
    assert (got[:48] == 0).all() and (got[52:] == 200).all()
    assert np.all(np.diff(got[47:53].astype(int)) > 0)  # a cross-fade of 4 frames where they meet
    assert got[10] == 0 and got[90] == 200
    assert backend.frames_seen < 2 * 101  # about the clip once, not twice
    # a later chunk starts from the previous chunk's output, which here is its keyframe's value
    assert set(backend.starts) == {0, 200}


# ---------------------------------------------------------------------------------------------------- whole runs
class Ideal(Propagator):
    """Adds the segment's change (edited − its first frame) to every frame: a perfect carrier of a flat edit."""

    name = "ideal"
    label = "test backend"

    def __init__(self, spec: BackendSpec = BackendSpec()):
        self.spec = spec
        self.frames_seen = 0

    def propagate(self, segment, progress=no_progress):
        self.frames_seen += len(segment.frames)
        delta = segment.edited.astype(np.int16) - segment.frames[0].astype(np.int16)
        return np.clip(segment.frames.astype(np.int16) + delta, 0, 255).astype(np.uint8)


N, FPS = 900, 30
RED = (slice(40, 46), slice(8, 20))  # a patch on the cheek (look A)
BLUE = (slice(10, 14), slice(24, 40))  # a band on the forehead (look B)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("keyframes")
    frames, truth = media.talking_face_frames(N, size=(64, 64), fps=FPS, seed=3, head="still")
    src = media.write_clip(d / "src.mp4", frames, FPS, audio=media.tone(N / FPS))
    decoded = io.read_frames(src)
    paths = {}
    for name, k, where, colour in (("a40", 40, RED, (255, 0, 0)), ("a700", 700, RED, (255, 0, 0)),
                                   ("a200", 200, RED, (255, 0, 0)), ("b650", 650, BLUE, (0, 0, 255))):
        img = decoded[k].copy()
        img[where] = colour
        paths[name] = d / f"{name}.png"
        Image.fromarray(img).save(paths[name])
    return {"dir": d, "src": src, "decoded": decoded, "paths": paths, "truth": truth}


def _redness(frames):
    r = frames[(slice(None), *RED)].astype(int)
    return (r[..., 0] - r[..., 1]).mean(axis=(1, 2))


def _blueness(frames):
    b = frames[(slice(None), *BLUE)].astype(int)
    return (b[..., 2] - b[..., 1]).mean(axis=(1, 2))


def _mouth_lag(source: np.ndarray, result: np.ndarray, truth) -> int:
    """The lag (frames) at which the result's mouth-region signal best matches the source's."""
    x, y = truth["mouth_center"][0].astype(int)
    s = source[:, y - 3:y + 4, x - 6:x + 7].astype(float).mean(axis=(1, 2, 3))
    r = result[:, y - 3:y + 4, x - 6:x + 7].astype(float).mean(axis=(1, 2, 3))
    s, r = s - s.mean(), r - r.mean()
    lags = range(-5, 6)
    score = [np.dot(s[max(0, -lag):len(s) - max(0, lag)], r[max(0, lag):len(r) - max(0, -lag)]) for lag in lags]
    return list(lags)[int(np.argmax(score))]


def _run(clip, tmp_path, monkeypatch, backend, keyframes, **settings):
    monkeypatch.setattr(registry, "get", lambda s: backend)
    out = tmp_path / "out.mp4"
    req = PropagationRequest(source=clip["src"], edited=None, out=out, keyframes=tuple(keyframes),
                             settings=PropagationSettings(backend="flow", **settings))
    result = pipeline.run_propagation(req)
    return result, io.read_frames(out)


def _contract(clip, result):
    a, b = io.probe(clip["src"]), io.probe(result.out)
    assert (b.n_frames, b.fps, b.duration, b.has_audio) == (a.n_frames, a.fps, a.duration, True)
    sa, ra = io.audio_samples(clip["src"], (0, N))
    sb, rb = io.audio_samples(result.out, (0, N))
    assert ra == rb and sa.shape == sb.shape and np.abs(sa - sb).max() < 1e-4


@pytest.mark.slow
def test_same_look_twice_on_900_frames(clip, tmp_path, monkeypatch):
    """Keyframes at 40 and 700: the edit on ≥ 95 % of frames, frame 700 is the second edited image, lag 0."""
    backend = Ideal()
    keys = [Keyframe(40, clip["paths"]["a40"]), Keyframe(700, clip["paths"]["a700"])]
    result, out = _run(clip, tmp_path, monkeypatch, backend, keys)
    red = _redness(out) - _redness(clip["decoded"])
    assert (red > 120).mean() >= 0.95, (red > 120).mean()
    for k in (40, 700):  # each edited image, up to the encoder (far closer to it than to the source frame)
        edited = np.asarray(Image.open(clip["paths"][f"a{k}"]))
        assert media.psnr(out[k], edited) > max(30, media.psnr(out[k], clip["decoded"][k]) + 8), k
    assert _mouth_lag(clip["decoded"], out, clip["truth"]) == 0
    _contract(clip, result)
    assert backend.frames_seen == 41 + 660 + 660 + 200  # backward to 0, both ways between (blended), forward on
    text = result.summary()
    assert "keyframes 40, 700" in text and "edited: keyframes 40, 700: all 900 frames" in text
    assert [k.index for k in result.keyframes] == [40, 700]


@pytest.mark.slow
def test_two_looks_on_two_spans(clip, tmp_path, monkeypatch):
    """Each span its own look on ≥ 90 % of its frames and the other look on none; the source outside; monotonic."""
    keys = [Keyframe(200, clip["paths"]["a200"], "100:399"), Keyframe(650, clip["paths"]["b650"], "500:799")]
    result, out = _run(clip, tmp_path, monkeypatch, Ideal(), keys, fade=8)
    src = clip["decoded"]
    red, blue = _redness(out) - _redness(src), _blueness(out) - _blueness(src)  # what the edit added
    assert (red[100:400] > 120).mean() >= 0.9 and (blue[500:800] > 120).mean() >= 0.9
    assert (np.abs(blue[100:400]) < 15).all() and (np.abs(red[500:800]) < 15).all()  # the other look on none
    outside = [i for i in range(N) if not (92 <= i <= 407 or 492 <= i <= 807)]
    for i in outside:
        assert media.psnr(out[i], src[i]) > 35, i
    for level, (a, b) in ((red, (91, 101)), (red, (399, 409)), (blue, (491, 501)), (blue, (799, 809))):
        steps = np.diff(level[a:b])
        assert (steps > 5).all() or (steps < -5).all(), level[a:b]  # the fades: monotonic
    assert _mouth_lag(src, out, clip["truth"]) == 0
    _contract(clip, result)
    assert [k.span for k in result.keyframes] == ["100:399", "500:799"]
    assert result.settings.span is None and result.settings.fade == 8


def test_one_keyframe_is_the_same_code_path_as_edited_and_edit_index(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "get", lambda s: Ideal())
    written = []
    for req in (
        PropagationRequest(source=clip["src"], edited=clip["paths"]["a40"], out=tmp_path / "a.mp4", edit_index=40,
                           settings=PropagationSettings(backend="flow", span="0:99")),
        PropagationRequest(source=clip["src"], edited=None, out=tmp_path / "b.mp4",
                           keyframes=(Keyframe(40, clip["paths"]["a40"]),),
                           settings=PropagationSettings(backend="flow", span="0:99")),
    ):
        written.append(io.read_frames(pipeline.run_propagation(req).out))
    assert np.array_equal(*written)
    with pytest.raises(InputError, match="not both"):
        PropagationRequest(source=clip["src"], edited=clip["paths"]["a40"], out=tmp_path / "c.mp4",
                           keyframes=(Keyframe(40, clip["paths"]["a40"]),))


# ---------------------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_keyframes_end_to_end(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "get", lambda s: Ideal())
    out = tmp_path / "out.mp4"
    p = clip["paths"]
    rc = main(["propagate", str(clip["src"]), "--keyframe", "200", str(p["a200"]), "100:399", "--keyframe", "650",
               str(p["b650"]), "500:799", "--out", str(out), "--backend", "flow", "--quiet", "--fade", "4"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "keyframes 200, 650" in cap.out
    assert "edited: keyframe 200: frames 100–399" in cap.out and "edited: keyframe 650: frames 500–799" in cap.out
    assert io.probe(out).n_frames == N


BAD_CLI = [
    (["--keyframe", "950", "A"], "frame 950 is out of range"),
    (["--keyframe", "40", "A", "0:99", "--keyframe", "60", "A", "50:200"], "overlap on frames 50–99"),
    (["--keyframe", "40", "A", "--keyframe", "40", "A"], "two keyframes are on frame 40"),
    (["--keyframe", "40", "A", "0:950"], "out of range"),
    (["--keyframe", "40", "SMALL"], "aspect"),
    (["--keyframe", "40", "A", "--edited", "A"], "not both"),
    (["--keyframe", "40"], "INDEX IMAGE"),
    ([], "give the edited frame"),
]


@pytest.mark.parametrize("args,says", BAD_CLI, ids=[s for _, s in BAD_CLI])
def test_bad_keyframes_are_one_line_and_exit_2_in_the_cli(clip, tmp_path, capsys, args, says):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 64, 3), np.uint8)).save(small)
    args = [str(clip["paths"]["a40"]) if a == "A" else str(small) if a == "SMALL" else a for a in args]
    out = tmp_path / "out" / "out.mp4"
    out.parent.mkdir()
    rc = main(["propagate", str(clip["src"]), *args, "--out", str(out), "--backend", "flow", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and says in err[0], err
    assert list(out.parent.iterdir()) == []


def test_a_thousand_keyframes_are_one_line_in_the_cli(clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    args = [a for k in range(1000) for a in ("--keyframe", str(k), str(clip["paths"]["a40"]))]
    rc = main(["propagate", str(clip["src"]), *args, "--out", str(out), "--backend", "flow", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "1000 keyframes were given" in err[0], err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------- real backends
@pytest.mark.slow
def test_the_cpu_preview_carries_two_keyframes(tmp_path):
    """The flow backend, same look at frames 20 and 100 of a 120-frame clip: carried everywhere, exact on both."""
    frames, _ = media.talking_face_frames(120, size=(64, 64), fps=25, seed=5, head="still")
    src = media.write_clip(tmp_path / "src.mp4", frames, 25)
    decoded = io.read_frames(src)
    keys = []
    for k in (20, 100):
        img = decoded[k].copy()
        img[RED] = (255, 0, 0)
        Image.fromarray(img).save(tmp_path / f"k{k}.png")
        keys.append(Keyframe(k, tmp_path / f"k{k}.png"))
    req = PropagationRequest(source=src, edited=None, out=tmp_path / "out.mp4", keyframes=tuple(keys),
                             settings=PropagationSettings(backend="flow"))
    out = io.read_frames(pipeline.run_propagation(req).out)
    assert (_redness(out) > 120).mean() >= 0.95
    assert media.psnr(out[100], np.asarray(Image.open(tmp_path / "k100.png"))) > 35


@pytest.mark.slow
def test_sync_lora_conditions_each_call_on_its_governing_keyframe(tmp_path, monkeypatch):
    """The tiny Sync-LoRA model through the whole pipeline: each model call is conditioned on the keyframe whose run
    it belongs to, the two runs meet in the middle (cross-faded over the chunk overlap), each keyframe lands."""
    from synclora.propagate.base import Segment

    settings = PropagationSettings(backend="synclora", model="tiny", quality="preview", chunk_overlap=4,
                                   resolution=64)
    inner = registry.get(settings)
    seen: list[np.ndarray] = []

    class Spy(Propagator):
        name, label, spec = inner.name, inner.label, inner.spec

        def propagate(self, segment: Segment, progress=no_progress):
            seen.append(segment.edited.copy())
            return inner.propagate(segment, progress)

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    src = media.write_clip(tmp_path / "src.mp4", frames, 25, audio=media.tone(9 / 25))
    decoded = io.read_frames(src)
    a, b = 255 - decoded[0], decoded[8] // 2
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    monkeypatch.setattr(registry, "get", lambda s: Spy())
    req = PropagationRequest(source=src, edited=None, out=tmp_path / "out.mp4", settings=settings,
                             keyframes=(Keyframe(0, tmp_path / "a.png"), Keyframe(8, tmp_path / "b.png")))
    result = pipeline.run_propagation(req)
    out = io.read_frames(result.out)
    assert len(out) == 9 and io.probe(result.out).has_audio
    for k, img in ((0, a), (8, b)):  # each keyframe is its image, up to the encoder (noise frames encode poorly)
        assert np.abs(out[k].astype(int) - img).mean() < np.abs(out[k].astype(int) - decoded[k]).mean() / 4
    # two calls: forward from 0 and backward from 8, each conditioned on its own keyframe (at working size)
    assert len(seen) == 2
    assert np.abs(seen[0].astype(int) - a).mean() < 3 and np.abs(seen[1].astype(int) - b).mean() < 3
