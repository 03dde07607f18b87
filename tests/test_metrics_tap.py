"""The sync report fed frame by frame as a propagation streams (ReportTap) gives the report of the files themselves."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.metrics.compare import compare_videos
from synclora.metrics.tap import ReportTap
from synclora.testing.face_edits import lips_mask, lipstick
from synclora.testing.faces import delay, portrait, talking_clip
from synclora.video import io
from synclora.video.lazy import iter_lazy_frames
from synclora.video.taps import FrameTap

N = 48
EDIT_AT = 10


@pytest.fixture(scope="module")
def clip():
    return talking_clip("grace_hopper", N)


@pytest.fixture(scope="module")
def edited(clip):
    _, pts = portrait("grace_hopper")
    return lipstick(clip.frames[EDIT_AT], lips_mask(clip.frames.shape[1:3], pts))


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("tap")
    src, res = d / "source.mp4", d / "result.mp4"
    io.write_video(src, iter(clip.frames), 25.0)
    io.write_video(res, iter(delay(clip.frames, 2)), 25.0)
    return src, res


def _numbers(rep) -> dict:
    d = rep.to_dict()
    d.pop("landmarks_video")
    return d


def _run(tap, sources, results, *, source_first: bool = False, timeout: float = 120.0):
    """Feed the tap as a propagation would: the two streams from two threads (or all source frames first)."""
    errors = []

    def feed(fn, frames):
        try:
            for i, f in enumerate(frames):
                fn(i, f)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    if source_first:
        feed(tap.on_source, sources)
        feed(tap.on_result, results)
    else:
        threads = [threading.Thread(target=feed, args=(tap.on_source, sources)),
                   threading.Thread(target=feed, args=(tap.on_result, results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
            assert not t.is_alive(), "the tap blocked the propagation"
    tap.finish(not errors)
    if errors:
        raise errors[0]
    return tap.report()


@pytest.mark.slow
def test_tap_fed_report_equals_the_file_fed_report(files, edited):
    src, res = files
    by_file = compare_videos(src, res, edited_frame=edited, edit_index=EDIT_AT)
    tap = ReportTap(src, edited_frame=edited, edit_index=EDIT_AT)
    assert isinstance(tap, FrameTap)
    by_tap = _run(tap, iter_lazy_frames(src), iter_lazy_frames(res))
    assert _numbers(by_tap) == _numbers(by_file)
    assert by_tap.lag == 2 and by_tap.identity is not None and by_tap.kept is not None
    assert by_tap.edit is not None and by_tap.edit.edit_index == EDIT_AT
    # The decoded RGB frames a propagation hands over: the same verdict, the numbers within the colour conversion.
    rgb = _run(ReportTap(src, edited_frame=edited, edit_index=EDIT_AT), io.iter_frames(src), io.iter_frames(res))
    assert rgb.verdict == by_file.verdict and rgb.lag == by_file.lag
    for name, s in by_file.cues.items():
        if s.active:
            assert rgb.cues[name].corr == pytest.approx(s.corr, abs=0.05), name


def test_tap_on_arrays_equals_compare_videos_and_copies_what_it_is_given(clip, edited):
    res = delay(clip.frames, 2)
    direct = compare_videos(clip.frames, res, edited_frame=edited, edit_index=EDIT_AT)

    def reused(frames):  # one buffer, overwritten for every frame, as a decoder may do
        buf = np.empty_like(frames[0])
        for f in frames:
            buf[:] = f
            yield buf
        buf[:] = 0

    tap = ReportTap(clip.frames, edited_frame=edited, edit_index=EDIT_AT)
    assert _numbers(_run(tap, reused(clip.frames), reused(res))) == _numbers(direct)


def test_source_far_ahead_of_its_result_does_not_block(clip, edited):
    """A propagation may decode the whole source before its first result frame (a backward pass)."""
    res = clip.frames.copy()
    tap = ReportTap(clip.frames, edited_frame=edited, edit_index=EDIT_AT)
    rep = _run(tap, clip.frames, res, source_first=True)
    assert rep.lag == 0 and rep.in_sync is not None and rep.kept is not None


def test_span_only_the_judged_frames_are_measured(files):
    src, res = files
    by_file = compare_videos(src, res, frame_range=(8, 40))
    seen = []
    tap = ReportTap(src, frame_range=(8, 40), progress=lambda f, _m: seen.append(f))
    rep = _run(tap, iter_lazy_frames(src), iter_lazy_frames(res))
    assert _numbers(rep) == _numbers(by_file) and rep.frames == (8, 39)
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


def test_missing_frames_are_said_not_scored(clip):
    tap = ReportTap(clip.frames)
    with pytest.raises(InputError, match="do not line up"):
        _run(tap, clip.frames, clip.frames[:-3])


def test_an_error_in_the_report_fails_the_run_and_leaves_no_view(clip, tmp_path):
    view = tmp_path / "view.mp4"

    def stop(frac, _msg):
        if frac > 0.3:
            raise InputError("stopped")

    tap = ReportTap(clip.frames, landmarks_video=view, progress=stop)
    with pytest.raises(InputError, match="stopped"):
        _run(tap, clip.frames, clip.frames)
    assert not view.exists() and not list(tmp_path.iterdir())


def test_memory_is_numbers_per_frame_not_frames():
    """The tap keeps a few numbers per frame: 3× the frames must not cost more than a few KB per extra frame."""
    clip = talking_clip("grace_hopper", 24, size=320)

    def peak(repeats: int) -> int:
        frames = [clip.frames[i % len(clip.frames)] for i in range(24 * repeats)]  # no new frame memory
        tap = ReportTap(np.stack(frames))
        tracemalloc.start()
        try:
            _run(tap, frames, frames)
            gc.collect()  # what the tap holds, not cycles awaiting collection (±60 KB either way, by thread timing)
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    small, large = peak(1), peak(3)
    assert large - small < 48 * 4096, (small, large)


def test_a_failed_report_does_not_fail_a_propagation_that_does_not_ask_it_to(clip):
    def broken(frac, _msg):
        raise RuntimeError("landmarker crashed")

    tap = ReportTap(clip.frames, progress=broken, strict=False)
    for i, f in enumerate(clip.frames):  # never raises, never blocks
        tap.on_source(i, f)
        tap.on_result(i, f)
    tap.finish(True)
    with pytest.raises(RuntimeError, match="landmarker crashed"):
        tap.report()


@pytest.mark.slow
def test_source_measured_ahead_gives_the_same_report(files, edited, tmp_path):
    """The app measures the source while the visitor edits: the tap then runs the landmarker on the result only."""
    from synclora.metrics.source_cues import SourceCues

    src, res = files
    cues = SourceCues(src, tmp_path)
    assert cues.wait(120) and cues.file.is_file()
    by_file = compare_videos(src, res, edited_frame=edited, edit_index=EDIT_AT)
    tap = ReportTap(src, edited_frame=edited, edit_index=EDIT_AT, source_cues=cues)
    assert type(tap._source).__name__ == "_KnownSource"
    assert _numbers(_run(tap, iter_lazy_frames(src), iter_lazy_frames(res))) == _numbers(by_file)
    head = _run(ReportTap(src, frame_range=(0, 40), source_cues=cues), iter_lazy_frames(src), iter_lazy_frames(res))
    assert _numbers(head) == _numbers(compare_videos(src, res, frame_range=(0, 40)))
    # a span from a later frame starts the landmarker there on both videos, as the report of the files does
    later = ReportTap(src, frame_range=(8, 40), source_cues=cues)
    assert type(later._source).__name__ == "_Side"
    assert _numbers(_run(later, iter_lazy_frames(src), iter_lazy_frames(res))) == _numbers(
        compare_videos(src, res, frame_range=(8, 40)))
    # the report panel's own run over the files reads only the result when nothing needs the source's frames
    assert _numbers(compare_videos(src, res, source_cues=cues)) == _numbers(compare_videos(src, res))
    cues.close()
    assert not cues.file.exists()
