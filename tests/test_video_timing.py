"""Frame bookkeeping between the source and a backend: every source frame comes back exactly once, in place."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from synclora.testing import media as M
from synclora.video import io
from synclora.video.timing import (
    Chunk,
    pad_indices,
    padded_length,
    plan_chunks,
    plan_time,
    stitch_chunks,
    valid_length,
)

FPS = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60)]
COUNTS = [1, 2, 7, 10, 23, 38, 50, 97]  # none of the interesting ones is 8k+1 (1 and 97 are, on purpose)


def test_padding_helpers():
    assert [padded_length(n, 8) for n in (1, 2, 9, 10, 17, 18)] == [1, 9, 9, 17, 17, 25]
    assert padded_length(5, 1) == 5
    assert valid_length(17, 8) and not valid_length(16, 8) and valid_length(4, 1)
    assert list(pad_indices(4, 9)) == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert list(pad_indices(1, 3)) == [0, 0, 0]


@pytest.mark.parametrize("fps", FPS, ids=lambda f: f"{float(f):.3f}")
@pytest.mark.parametrize("mode", ["exact", "resample"])
def test_time_plan_round_trip(fps, mode):
    for n in COUNTS:
        plan = plan_time(n, fps, 25.0, 8, mode)
        assert valid_length(plan.n_padded, 8) and plan.n_padded >= plan.n_backend
        assert plan.n_padded - plan.n_backend < 8
        assert len(plan.backend_to_source) == plan.n_padded and len(plan.source_to_backend) == n
        assert plan.backend_to_source.min() >= 0 and plan.backend_to_source.max() < n
        assert plan.source_to_backend.max() < plan.n_backend  # padding never reaches the output
        src = np.arange(n)
        backend_in = plan.to_backend(src)
        result = plan.to_source(backend_in)  # an identity backend
        assert len(result) == n
        if mode == "exact" or fps == 25:
            assert np.array_equal(result, src), (n, fps)
            assert np.array_equal(backend_in[: plan.n_backend], src)
        else:
            # each output frame comes from the source frame nearest its own time (within half a model frame)
            err = np.abs(result - src) / float(fps)
            assert err.max() <= 0.5 / 25 + 0.5 / float(fps) + 1e-9
            assert plan.n_backend == int(np.floor((n - 1) / float(fps) * 25 + 0.5)) + 1
        assert plan.notice


def test_time_plan_notices_say_what_happens():
    exact = plan_time(38, Fraction(30000, 1001), 25, 8, "exact")
    assert exact.backend_fps == 25 and "nothing dropped or repeated" in exact.notice and "41 frames" in exact.notice
    res = plan_time(38, Fraction(60), 25, 8, "resample")
    assert res.backend_fps == 25 and "drop inside the model" in res.notice and "38 output frames" in res.notice
    same = plan_time(10, Fraction(25), 25, 1, "resample")
    assert same.n_padded == 10 and "own 25 fps" in same.notice
    free = plan_time(10, Fraction(30000, 1001), None, 1, "exact")
    assert free.backend_fps == pytest.approx(30000 / 1001) and free.pad == 0


@pytest.mark.parametrize("fps", FPS, ids=lambda f: f"{float(f):.3f}")
def test_file_round_trip_through_an_8k_plus_1_backend(tmp_path, fps):
    """Source file -> backend frames (25 fps, 8k+1) -> identity backend -> written result: same fps, count, frames."""
    n = 22
    src = M.write_clip(tmp_path / "src.mp4", M.indexed_frames(n, size=(96, 64)), fps)
    info = io.probe(src)
    frames = io.read_frames(src)
    plan = plan_time(info.n_frames, info.fps, 25.0, 8, "exact")
    backend_out = plan.to_backend(frames)  # what the model would return, frame for frame
    assert len(backend_out) == 25
    out = io.write_video(tmp_path / "out.mp4", plan.to_source(backend_out), info.fps)
    back = io.probe(out)
    assert back.fps == fps and back.n_frames == n and back.duration == pytest.approx(info.duration)
    assert [M.read_index(f) for f in io.read_frames(out)] == list(range(n))


@pytest.mark.parametrize("n,max_frames,step,overlap", [
    (100, 49, 8, 8), (100, 49, 8, 1), (49, 49, 8, 8), (50, 49, 8, 8), (7, 49, 8, 4), (300, 121, 8, 16),
    (20, 5, 1, 1), (20, 6, 1, 2), (1, 9, 8, 1), (250, None, 8, 8),
])
def test_chunk_plans_cover_every_frame_once(n, max_frames, step, overlap):
    chunks = plan_chunks(n, max_frames, step, overlap)
    assert chunks[0].start == 0 and chunks[-1].stop == n
    for c in chunks:
        assert valid_length(c.padded_length, step)
        if max_frames is not None:
            assert c.padded_length <= max_frames
        assert len(c.indices()) == c.padded_length and c.indices().max() < c.stop
    for a, b in zip(chunks, chunks[1:]):
        assert b.start == a.stop - overlap and b.overlap == overlap  # shared frames, the edited frame first
        assert b.stop > a.stop  # progress
    assert all(c.pad == 0 for c in chunks[:-1])
    # outputs that carry the frame index: stitching gives each frame exactly once, in order
    outputs = [c.indices().astype(np.float32)[:, None] for c in chunks]
    stitched = stitch_chunks(chunks, outputs)
    assert stitched.shape == (n, 1)
    assert np.array_equal(stitched[:, 0], np.arange(n, dtype=np.float32))


def test_stitch_cross_fades_shared_frames_and_keeps_the_anchor():
    chunks = [Chunk(0, 9, 0, 0), Chunk(5, 14, 0, 4)]
    a = np.zeros((9, 2, 2, 3), np.uint8)
    b = np.full((9, 2, 2, 3), 200, np.uint8)
    out = stitch_chunks(chunks, [a, b])
    assert out.shape == (14, 2, 2, 3) and out.dtype == np.uint8
    vals = out[:, 0, 0, 0].tolist()
    assert vals[:6] == [0] * 6  # the shared frame the chunk starts from (frame 5) keeps the previous chunk's result
    assert vals[6:9] == [50, 100, 150] and vals[9:] == [200] * 5


def test_chunk_plan_rejects_impossible_settings():
    with pytest.raises(ValueError):
        plan_chunks(100, 9, 8, 9)
    with pytest.raises(ValueError):
        plan_chunks(100, 49, 8, 0)
