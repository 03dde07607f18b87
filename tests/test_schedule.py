"""The scheduler: any frame, both directions, chunked backends, exact frame mapping back."""

from __future__ import annotations

import numpy as np
import pytest

from synclora.config import PropagationSettings
from synclora.propagate.base import BackendSpec, Propagator, Segment
from synclora.propagate.schedule import propagate_clip
from synclora.testing.media import indexed_frames, read_index


class OffsetBackend(Propagator):
    """Adds the edited frame's change (edited - frames[0]) to every frame: the ideal propagator for a flat colour edit.

    Records each call so tests can check what the scheduler sent.
    """

    name = "offset"
    label = "test"

    def __init__(self, spec: BackendSpec):
        self.spec = spec
        self.calls: list[Segment] = []

    def propagate(self, segment, progress=lambda f, s: None):
        self.calls.append(segment)
        n = len(segment.frames)
        assert n <= (self.spec.max_frames or n)
        assert (n - 1) % self.spec.frame_step == 0
        delta = segment.edited.astype(np.int16) - segment.frames[0].astype(np.int16)
        for i in range(n):
            progress((i + 1) / n, f"frame {i + 1}/{n}")
        return np.clip(segment.frames.astype(np.int16) + delta, 0, 255).astype(np.uint8)


LTX_LIKE = BackendSpec(max_frames=17, frame_step=8, size_multiple=8, native_fps=25.0)


@pytest.mark.parametrize("n,k", [(5, 0), (40, 0), (40, 39), (61, 23), (100, 50), (9, 4)])
@pytest.mark.parametrize("fps", [24000 / 1001, 30.0, 60.0])
@pytest.mark.parametrize("mode", ["exact", "resample"])
def test_result_keeps_every_frame_in_place(n, k, fps, mode):
    frames = indexed_frames(n, size=(64, 48)) // 2 + 40  # stays readable; +40 below never clips
    edited = frames[k] + 40  # brighten: a global edit
    backend = OffsetBackend(LTX_LIKE)
    settings = PropagationSettings(time_mode=mode, chunk_overlap=4)
    out, notices = propagate_clip(frames, k, edited, backend, settings, fps)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(out[k], edited)
    if mode == "exact":
        # Every frame is its own source frame + the edit: catches any dropped, repeated or shifted frame.
        assert np.array_equal(out, frames + 40)
    else:
        # Resampling may pick a neighbouring frame inside the model, but never one further than half a model frame.
        got = np.array([read_index(f) for f in out])
        assert np.all(np.abs(got - np.arange(n)) <= max(1, round(fps / 25)))
        assert got[k] == k
    assert notices


def test_backward_half_is_time_reversed_and_starts_at_k():
    frames = indexed_frames(30, size=(64, 48))
    backend = OffsetBackend(BackendSpec())
    propagate_clip(frames, 12, frames[12], backend, PropagationSettings(), 25.0)
    fwd, bwd = backend.calls
    assert [read_index(f) for f in fwd.frames] == list(range(12, 30))
    assert [read_index(f) for f in bwd.frames] == list(range(12, -1, -1))


def test_chunks_respect_limits_and_chain_anchors():
    frames = indexed_frames(100, size=(64, 48))
    edited = frames[0].copy()
    edited[:10] = 255
    frames[:, :10] = 0  # the edited band: every frame must end up 255 there, through all chunk edited frames
    backend = OffsetBackend(LTX_LIKE)
    out, notices = propagate_clip(frames, 0, edited, backend, PropagationSettings(chunk_overlap=4), 25.0)
    assert len(backend.calls) > 1
    for seg in backend.calls[1:]:
        # The next chunk's edited frame is the previous output at its first frame: the edit carries over.
        assert (seg.edited[:10] == 255).all()
    assert (out[:, :10] == 255).all()
    assert any("chunks" in n for n in notices)


def test_progress_is_monotonic_and_reaches_one():
    seen = []
    frames = indexed_frames(50, size=(32, 32))
    propagate_clip(frames, 20, frames[20], OffsetBackend(LTX_LIKE), PropagationSettings(), 25.0,
                   lambda f, s: seen.append(f))
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)
