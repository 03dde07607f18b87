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


def _planes(path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each frame's decoded Y, Cb, Cr planes, as stored."""
    import av

    from synclora.video.colour import planes420

    with av.open(str(path)) as c:
        return [tuple(p.copy() for p in planes420(f)) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def hd_face(folder) -> Path:
    """A face clip as the result's encoder writes it (BT.709, limited range): the kind whose planes pass through."""
    from synclora.testing.faces import talking_clip

    return io.write_video(folder / "face709.mp4", talking_clip("grace_hopper", 4, size=256).frames, 25)


@pytest.mark.parametrize("box", [(0, 0, 256, 256), (37, 51, 180, 203), (0, 9, 7, 256), (250, 0, 256, 3),
                                 (100, 100, 101, 101)])
def test_a_box_alone_converts_to_the_same_pixels_as_the_whole_frame(hd_face, folder, box):
    x0, y0, x1, y1 = box
    for f in iter_lazy_frames(hd_face):
        part = f.rgb_box(box)
        assert np.array_equal(part, f.rgb()[y0:y1, x0:x1])  # bit for bit, the box's edges too
    sd = M.write_clip(folder / "sd.mp4", M.indexed_frames(3, size=(256, 256)), 25)  # BT.601 by its size
    for f in iter_lazy_frames(sd):
        assert f.planes709() is None  # not what the encoder writes: converted from RGB instead
        assert np.array_equal(f.rgb_box(box), f.rgb()[y0:y1, x0:x1])


def test_a_patched_frame_is_the_source_outside_its_box_and_its_planes_pass_through(hd_face):
    from synclora.video.colour import rgb_to_yuv420_planes
    from synclora.video.lazy import PatchedFrame

    f = next(iter_lazy_frames(hd_face))
    box = (41, 33, 120, 97)  # odd edges: the planes are redone over whole 2×2 chroma blocks
    patch = np.full((64, 79, 3), (200, 30, 60), np.uint8)
    p = PatchedFrame(f, box, patch)
    full = f.rgb().copy()
    full[33:97, 41:120] = patch
    assert np.array_equal(np.asarray(p), full) and np.array_equal(p.rgb_box((30, 20, 140, 110)), full[20:110, 30:140])
    y, u, v = p.planes709()
    sy, su, sv = f.planes709()
    grown = np.zeros(y.shape, bool)
    grown[32:98, 40:120] = True
    assert np.array_equal(y[~grown], sy[~grown])  # the source's own samples outside the box
    assert np.array_equal(u[~grown[::2, ::2]], su[~grown[::2, ::2]])
    ey, eu, ev = rgb_to_yuv420_planes(full)  # inside: what converting the whole patched frame gives
    assert np.array_equal(y[grown], ey[grown]) and np.array_equal(v[grown[::2, ::2]], ev[grown[::2, ::2]])
    assert p.reduced(2).shape == (128, 128, 3)


def test_the_encoder_writes_untouched_frames_as_the_source_samples(hd_face, folder):
    """Lossless x264 (CRF 0) shows what the encoder was handed: a decoded frame's own planes, not a round trip via RGB
    (which moves chroma and luma by a level here and there)."""
    from synclora.video.lazy import PatchedFrame

    frames = list(iter_lazy_frames(hd_face))
    box = (60, 80, 130, 150)
    out = [PatchedFrame(f, box, np.zeros((70, 70, 3), np.uint8)) if i % 2 else f for i, f in enumerate(frames)]
    written = io.write_video(folder / "pass.mp4", out, 25, crf=0)
    via_rgb = io.write_video(folder / "rgb.mp4", [np.asarray(f) for f in out], 25, crf=0)
    src, got, rgb = _planes(hd_face), _planes(written), _planes(via_rgb)
    assert len(got) == len(src) == len(frames)
    for i, ((sy, su, sv), (y, u, v), (ry, _, _)) in enumerate(zip(src, got, rgb)):
        if i % 2 == 0:
            assert np.array_equal(y, sy) and np.array_equal(u, su) and np.array_equal(v, sv)
        else:
            keep = np.ones(y.shape, bool)
            keep[80:150, 60:130] = False
            assert np.array_equal(y[keep], sy[keep]) and np.array_equal(u[keep[::2, ::2]], su[keep[::2, ::2]])
            assert (y[~keep] <= 17).all()  # the black patch
        assert not np.array_equal(ry, sy)  # the RGB route does not keep the samples: the test can tell the two apart
    inner = io.read_frames(written)[1][82:148, 62:128]  # (its rim shares chroma with the source around it)
    assert np.array_equal(inner, np.zeros_like(inner))
