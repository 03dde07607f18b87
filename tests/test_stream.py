"""The streamed propagation: the same result as propagating the whole clip at once, taps that see every frame once
in order, runs that cover every frame once, and state kept on disk that comes back unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from synclora import pipeline
from synclora.config import PropagationRequest, PropagationSettings
from synclora.propagate import schedule
from synclora.propagate.flow import FlowPropagator
from synclora.propagate.flow_track import FrameMap
from synclora.propagate.stream import Anchor, Spill, plan_runs
from synclora.testing import media
from synclora.video import io
from synclora.video.stream import FrameWriter, iter_frames_reversed, prefetch

N, FPS, K = 40, 25, 17


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("stream")
    frames, _ = media.talking_face_frames(N, size=(96, 96), fps=FPS, seed=3)
    src = media.write_clip(d / "src.mp4", frames, FPS, audio=media.tone(N / FPS + 0.2))
    decoded = io.read_frames(src)
    edited = decoded[K].copy()
    edited[30:42, 20:40] = (255, 0, 0)
    path = d / "edited.png"
    Image.fromarray(edited).save(path)
    return {"src": src, "edited": path, "decoded": decoded, "edited_img": edited}


class Recorder:
    def __init__(self):
        self.source, self.result, self.finished = [], [], []
        self.frames: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    def on_source(self, index, frame):
        with self.lock:
            self.source.append(index)

    def on_result(self, index, frame):
        with self.lock:
            self.result.append(index)
            self.frames[index] = frame.copy()

    def finish(self, ok):
        self.finished.append(ok)


def test_stream_equals_the_whole_clip_and_taps_see_every_frame_once(clip, tmp_path):
    tap = Recorder()
    settings = PropagationSettings(backend="flow")
    req = PropagationRequest(source=clip["src"], edited=clip["edited"], out=tmp_path / "o.mp4", edit_index=K,
                             side_by_side=tmp_path / "sbs.mp4", settings=settings)
    result = pipeline.run_propagation(req, taps=[tap])
    assert tap.source == list(range(N)) and tap.result == list(range(N)) and tap.finished == [True]
    streamed = np.stack([tap.frames[i] for i in range(N)])
    # the whole clip at once, through the backend's segment form: the same frames, bit for bit
    whole, _ = schedule.propagate_clip(clip["decoded"], K, clip["edited_img"], FlowPropagator(settings), settings,
                                       float(FPS))
    assert np.array_equal(streamed, whole)
    red = streamed[:, 30:42, 20:40].astype(int)
    assert ((red[..., 0] - red[..., 1]).mean(axis=(1, 2)) > 100).all()  # carried both ways from frame K
    out = io.probe(result.out)
    assert out.n_frames == N and out.fps == io.probe(clip["src"]).fps and out.has_audio
    assert io.probe(result.side_by_side).n_frames == N
    assert np.array_equal(io.read_frame(result.out, K).shape, clip["edited_img"].shape)


def test_progress_moves_with_every_frame_written_those_before_the_edit_too(clip, tmp_path):
    """The frames before the edited one are written after the backward walk (the quick part); counted by runs alone,
    progress stood still while they were written (at 1080p, minutes for a long clip edited in its middle)."""
    tap, calls = Recorder(), []
    req = PropagationRequest(source=clip["src"], edited=clip["edited"], out=tmp_path / "o.mp4", edit_index=K,
                             settings=PropagationSettings(backend="flow"))
    pipeline.run_propagation(req, lambda f, label: calls.append((f, label, len(tap.result))), taps=[tap])
    fractions = [f for f, _, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    writing = [(f, n) for f, label, n in calls if label.startswith(("writing: ", "forward: "))]
    assert [n for _, n in writing] == list(range(1, N + 1))  # one step per frame written, in order
    assert writing[0][0] < 0.3 and 0.3 < dict((n, f) for f, n in writing)[N // 2] < 0.7  # in step with the writing
    assert any(label.startswith("backward: ") for _, label, _ in calls)


def test_a_failing_tap_fails_the_run_and_leaves_nothing(clip, tmp_path):
    class Boom(Recorder):
        def on_result(self, index, frame):
            if index == 25:
                raise RuntimeError("tap failed")

    tap = Boom()
    req = PropagationRequest(source=clip["src"], edited=clip["edited"], out=tmp_path / "o.mp4", edit_index=K,
                             side_by_side=tmp_path / "sbs.mp4", settings=PropagationSettings(backend="flow"))
    with pytest.raises(RuntimeError, match="tap failed"):
        pipeline.run_propagation(req, taps=[tap])
    assert tap.finished == [False]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("anchors", [[0], [39], [17], [5, 6], [3, 20, 33]])
def test_runs_cover_every_frame_once(anchors):
    img = np.zeros((2, 2, 3), np.uint8)
    runs = plan_runs([Anchor(a, img) for a in anchors], 0, 39)
    owned = [i for r in runs for i in list(r.frames)[1:]]
    assert sorted(owned + anchors) == list(range(40))
    for r in runs:
        assert r.frames[0] == r.anchor.index and r.frames[-1] == r.stop


def test_spill_gives_back_what_it_kept_in_memory_and_on_disk():
    rng = np.random.default_rng(0)
    spill = Spill(budget=20_000)
    kept = {}
    for i in range(20):
        fm = FrameMap((1, 2, 30, 40), (0, 8, 0, 9), rng.random((9, 8, 2), dtype=np.float32),
                      rng.random((9, 8), dtype=np.float32), (rng.random((478, 3)).astype(np.float32), None))
        kept[i] = fm
        spill.put(i, fm)
        spill.put(100 + i, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    assert spill._file is not None  # some went to disk
    for i in reversed(range(20)):
        fm = spill.take(i)
        assert fm.box == kept[i].box and fm.cut == kept[i].cut and fm.faces[1] is None
        assert np.array_equal(fm.mapping, kept[i].mapping) and np.array_equal(fm.alpha, kept[i].alpha)
        assert np.array_equal(fm.faces[0], kept[i].faces[0])
        assert spill.take(100 + i).shape == (16, 16, 3)
    spill.close()


def test_reverse_windows_and_prefetch_give_every_frame(clip):
    back = np.stack(list(prefetch(iter_frames_reversed(clip["src"], 30, 3, window=7))))
    assert np.array_equal(back, clip["decoded"][3:31][::-1])


def test_backward_reading_starts_its_windows_at_keyframes_so_each_frame_is_decoded_once(tmp_path, monkeypatch):
    """A window reaches back to the keyframe its decoding starts from whenever the frames from there fit in the hold;
    otherwise it is as many frames as fit. Either way every frame comes back, exactly as decoded going forward."""
    from synclora.video import lazy
    from synclora.video.probe import timeline

    frames, _ = media.talking_face_frames(40, size=(64, 64), fps=FPS, seed=5)
    src = media.write_clip(tmp_path / "gop.mp4", frames, FPS, gop=10)
    assert timeline(src).key_src.tolist() == [0, 10, 20, 30]
    forward = io.read_frames(src)
    windows = []
    real = lazy.iter_lazy_frames

    def spy(path, *, start=0, stop=None):
        windows.append((start, stop - 1))
        return real(path, start=start, stop=stop)

    monkeypatch.setattr(lazy, "iter_lazy_frames", spy)
    frame_bytes = 64 * 64 * 3 // 2
    back = np.stack(list(iter_frames_reversed(src, 38, 2, window=4, hold_bytes=12 * frame_bytes)))
    assert np.array_equal(back, forward[2:39][::-1])
    assert windows == [(30, 38), (20, 29), (10, 19), (2, 9)]
    windows.clear()  # a hold too small for a keyframe's window: windows of what fits, from the last frame back
    back = np.stack(list(iter_frames_reversed(src, 38, 2, window=4, hold_bytes=6 * frame_bytes)))
    assert np.array_equal(back, forward[2:39][::-1])
    assert windows == [(33, 38), (30, 32), (24, 29), (20, 23), (14, 19), (10, 13), (4, 9), (2, 3)]


def test_writer_abort_leaves_nothing(tmp_path, clip):
    w = FrameWriter(io.write_video, tmp_path / "x.mp4", FPS)
    for f in clip["decoded"][:5]:
        w.put(f)
    w.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sync_lora_host_memory_is_bounded_by_its_chunks(tmp_path, monkeypatch):
    """The tiny Sync-LoRA model (17-frame chunks) on a clip several chunks long, edited mid-clip: each chunk's frames
    are decoded when it is their turn (never more than a chunk at once), and the result keeps the contract.

    38 frames edited at 18: 19 frames back and 20 forward, two chunks each way (a full one and a short one), the
    fewest model calls with several chunks in both directions."""
    from synclora.propagate import stream

    n, k = 38, 18
    frames, _ = media.talking_face_frames(n, size=(64, 48), fps=FPS, seed=2)
    src = media.write_clip(tmp_path / "s.mp4", frames, FPS, audio=media.tone(n / FPS + 0.1))
    img = io.read_frame(src, k).copy()
    img[10:20, 20:40] = (255, 0, 0)
    Image.fromarray(img).save(tmp_path / "e.png")
    held = []
    real = stream._read_run

    def spy(job, run, picks):
        out = real(job, run, picks)
        held.append(len(out))
        return out

    monkeypatch.setattr(stream, "_read_run", spy)
    settings = PropagationSettings(backend="synclora", model="tiny", chunk_overlap=4)
    result = pipeline.run_propagation(PropagationRequest(source=src, edited=tmp_path / "e.png", out=tmp_path / "o.mp4",
                                                         edit_index=k, settings=settings))
    assert len(held) >= 4 and max(held) <= 17, held  # both directions in several chunks, none over a chunk
    info = io.probe(result.out)
    assert info.n_frames == n and info.has_audio


def test_an_edit_given_for_another_frame_than_it_was_made_from_is_named(clip, tmp_path):
    """The edit is carried from the frame it was given for, as asked, and the notices say which frame it matches."""
    settings = PropagationSettings(backend="flow")
    made_from = 3
    edited = clip["decoded"][made_from].copy()
    edited[30:42, 20:40] = (255, 0, 0)
    Image.fromarray(edited).save(tmp_path / "e3.png")
    wrong = pipeline.run_propagation(PropagationRequest(source=clip["src"], edited=tmp_path / "e3.png",
                                                        out=tmp_path / "o.mp4", edit_index=K, settings=settings))
    said = [m for m in wrong.notices if "looks like it was made from" in m]
    assert len(said) == 1 and f"frame {made_from}" in said[0] and f"frame {K}" in said[0], wrong.notices
    # carried from frame K all the same: the result's frame K is the edited image (up to the encoding)
    at_k = io.read_frame(wrong.out, K).astype(int)
    assert np.abs(at_k - edited).mean() < np.abs(at_k - clip["decoded"][K]).mean() / 2
    right = pipeline.run_propagation(PropagationRequest(source=clip["src"], edited=clip["edited"],
                                                        out=tmp_path / "o2.mp4", edit_index=K, settings=settings))
    assert not [m for m in right.notices if "looks like it was made from" in m], right.notices


def test_a_tap_built_on_a_thread_gets_every_frame_and_raises_its_build_error_at_the_first():
    """`video.taps.BuiltLater`: frames, `when_ready` and `finish` reach the tap once it is built; a build that fails
    fails the first call that needs the tap, with the build's own error."""
    import time

    from synclora.errors import InputError
    from synclora.video.taps import BuiltLater

    class Slow(Recorder):
        def __init__(self):
            time.sleep(0.2)
            super().__init__()
            self.ready = []

        def when_ready(self, fn):
            self.ready.append(fn)

        def finish(self, ok):
            self.finished.append(ok)

    tap = BuiltLater(Slow)
    tap.when_ready(print)  # before the tap exists: handed on when it does
    for i in range(3):
        tap.on_source(i, np.zeros((2, 2, 3), np.uint8))
        tap.on_result(i, np.zeros((2, 2, 3), np.uint8))
    tap.finish(True)
    assert tap.source == [0, 1, 2] and tap.result == [0, 1, 2] and tap.finished == [True] and tap.ready == [print]

    def broken():
        raise InputError("the edited frame has no face")

    bad = BuiltLater(broken)
    with pytest.raises(InputError, match="no face"):
        bad.on_source(0, np.zeros((2, 2, 3), np.uint8))
    bad.finish(False)  # nothing to finish: no error of its own
