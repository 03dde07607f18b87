"""Lazy frames (the sync report's decoding): the same frames as `io.iter_frames`, slot for slot, in every awkward case
(VFR repeats, rotation, a range in the middle, formats other than 8-bit 4:2:0), and small images made straight from
the planes that match shrinking the full frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from synclora.testing import media as M
from synclora.video import io
from synclora.video.lazy import ArrayFrame, LazyFrame, iter_lazy_frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lazy")


def _same_as_iter_frames(path, **kw) -> list:
    eager = list(io.iter_frames(path, **kw))
    lazy = list(iter_lazy_frames(path, **kw))
    assert len(lazy) == len(eager)
    for a, b in zip(eager, lazy):
        assert (b.width, b.height) == (a.shape[1], a.shape[0])
        assert np.array_equal(a, b.rgb())
    return lazy


def test_cfr_mp4_frame_for_frame_and_a_middle_range(folder):
    frames = M.indexed_frames(40, size=(160, 96))
    path = M.write_clip(folder / "cfr.mp4", frames, 25, gop=8)
    lazy = _same_as_iter_frames(path)
    assert all(isinstance(f, LazyFrame) for f in lazy)
    assert [M.read_index(f.rgb()) for f in lazy] == list(range(40))
    mid = _same_as_iter_frames(path, start=13, stop=29)  # seeks to a keyframe before 13
    assert [M.read_index(f.rgb()) for f in mid] == list(range(13, 29))


def test_vfr_repeats_and_rotation_follow_the_timeline(folder):
    frames = M.indexed_frames(30, size=(96, 64))
    vfr, _ = M.write_vfr_clip(folder / "vfr.mp4", frames, 30)
    lazy = _same_as_iter_frames(vfr)
    idx = [M.read_index(f.rgb()) for f in lazy]
    assert len(lazy) == io.probe(vfr).n_frames and len(set(idx)) < len(idx)  # held frames repeat, as the timeline says
    rotated = M.write_clip(folder / "rot.mp4", [np.ascontiguousarray(np.rot90(f, 1)) for f in frames], 25,
                           rotation=90)
    lazy = _same_as_iter_frames(rotated)
    assert (lazy[0].width, lazy[0].height) == (io.probe(rotated).width, io.probe(rotated).height)
    for k in (1, 2):  # the small image is turned like the full one
        small = lazy[3].reduced(k)
        assert small.shape[:2] == (lazy[3].height // k, lazy[3].width // k)


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv422p"])
def test_other_pixel_formats_fall_back_to_full_conversion(folder, pix_fmt):
    frames = M.indexed_frames(12, size=(96, 64))
    path = M.write_clip(folder / f"{pix_fmt}.mkv", frames, 25, pix_fmt=pix_fmt)
    lazy = _same_as_iter_frames(path)
    assert all(isinstance(f, ArrayFrame) for f in lazy)


def test_reduced_matches_shrinking_the_full_frame(folder):
    from synclora.testing.faces import talking_clip

    frames = talking_clip("grace_hopper", 6, size=512).frames
    path = io.write_video(folder / "face.mp4", frames, 25)
    for f in iter_lazy_frames(path):
        full = f.rgb()
        for k in (2, 3, 4):
            h, w = full.shape[0] // k, full.shape[1] // k
            ref = cv2.resize(full[: h * k, : w * k], (w, h), interpolation=cv2.INTER_AREA).astype(int)
            small = f.reduced(k)
            assert small.shape == ref.shape
            assert np.abs(small - ref).mean() < 1.5, k  # only chroma is filtered differently
        assert f.reduced(2) is f.reduced(2)  # cached: the landmarker, edit-kept and the view share it
