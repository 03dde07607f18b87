"""`Frames`: a file or an array behind one interface — the file's own exact rate, an array's rate only when said (never
an assumed 25 fps), the same frames whichever way they are read, and a malformed array refused in a sentence."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.testing import media as M
from synclora.video.frames import Frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = M.indexed_frames(20, size=(96, 64))
    path = M.write_clip(tmp_path_factory.mktemp("frames") / "ntsc.mp4", frames, Fraction(30000, 1001), gop=5)
    return path, frames


def test_a_file_has_its_own_rate_and_its_frames_on_its_timeline(clip):
    path, frames = clip
    f = Frames(path)
    assert f.path == path and f.array is None
    assert f.fps == pytest.approx(30000 / 1001) and f.fps != 25.0
    assert (f.n_frames, f.size) == (20, (96, 64))
    assert [M.read_index(x) for x in f.rgb(4, 9)] == [4, 5, 6, 7, 8]
    assert [M.read_index(x.rgb()) for x in f.lazy(4, 9)] == [4, 5, 6, 7, 8]
    assert M.read_index(f.frame(13)) == 13
    assert Frames.of(f) is f


def test_an_array_has_no_rate_unless_told(clip):
    _, frames = clip
    f = Frames.of(frames)
    assert f.fps is None and f.path is None
    assert Frames(frames, fps=50).fps == 50.0
    assert (f.n_frames, f.size) == (20, (96, 64))
    assert [M.read_index(x) for x in f.lazy(2, 5)] == [2, 3, 4]
    assert np.array_equal(f.frame(7), frames[7]) and f.frame(7).flags.c_contiguous
    assert f.check_length() is f


@pytest.mark.parametrize("bad", [np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 8, 3), np.float32),
                                 np.zeros((4, 8, 8, 4), np.uint8)])
def test_a_malformed_array_is_refused_in_a_sentence(bad):
    with pytest.raises(InputError, match=r"frames must be a \(T, H, W, 3\) uint8 array"):
        Frames(bad)
