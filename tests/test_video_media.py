"""The synthetic test media other areas rely on: deterministic, and the truth matches the pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synclora.testing import media as M


def test_talking_face_is_deterministic_and_truth_is_complete():
    a, ta = M.talking_face_frames(30, size=(128, 160), fps=25, seed=3)
    b, tb = M.talking_face_frames(30, size=(128, 160), fps=25, seed=3)
    assert a.shape == (30, 160, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    for key in ("mouth", "mouth_px", "eye_closure", "head", "face_center", "mouth_center", "left_eye", "right_eye"):
        assert len(ta[key]) == 30 and np.array_equal(ta[key], tb[key])
    assert not np.array_equal(a, M.talking_face_frames(30, size=(128, 160), fps=25, seed=4)[0])


def _patch(frame: np.ndarray, xy: np.ndarray, r: int) -> np.ndarray:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return frame[y - r: y + r + 1, x - r: x + r + 1].astype(np.float64)


def test_mouth_pixels_follow_the_mouth_truth():
    mouth = np.concatenate([np.zeros(5), np.linspace(0, 1, 10), np.ones(5), np.linspace(1, 0, 10)])
    frames, truth = M.talking_face_frames(30, size=(256, 256), mouth=mouth, blinks=(), head="sway")
    assert np.allclose(truth["mouth"], mouth)
    # the dark area in a box at the (moving) mouth centre grows with the opening
    dark = np.array([(_patch(f, c, 18).mean(axis=2) < 80).sum() for f, c in zip(frames, truth["mouth_center"])])
    assert np.corrcoef(dark, mouth)[0, 1] > 0.95
    assert dark[:5].max() < dark[15:20].min() / 4


def test_blinks_close_the_eyes_on_the_known_frames():
    frames, truth = M.talking_face_frames(40, size=(256, 256), blinks=(10, 25), blink_length=5, head="still")
    closed = set(truth["blink_frames"])
    assert closed and closed <= set(range(10, 15)) | set(range(25, 30))
    # the pupil (dark) is hidden by the eyelid (skin) when closed
    lum = np.array([_patch(f, truth["left_eye"][i], 3).mean() for i, f in enumerate(frames)])
    open_frames = [i for i in range(40) if truth["eye_closure"][i] == 0]
    assert min(lum[i] for i in closed) > max(lum[i] for i in open_frames) + 30


def test_head_motion_moves_the_face():
    frames, truth = M.talking_face_frames(20, size=(200, 200), head="sway", seed=1)
    assert np.ptp(truth["head"][:, 0]) > 1.0 and np.ptp(truth["head"][:, 2]) > 0.2
    still, t_still = M.talking_face_frames(3, size=(200, 200), head="still", mouth=np.zeros(3), blinks=())
    assert np.array_equal(still[0], still[2]) and np.allclose(t_still["head"], 0)
    # the background has texture for optical flow: strong gradients everywhere
    gray = cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0))[:40, :40].mean() > 5


def test_index_stamp_survives_resize():
    frames = M.indexed_frames(5, size=(160, 120))
    for i, f in enumerate(frames):
        assert M.read_index(f) == i
        assert M.read_index(cv2.resize(f, (80, 60), interpolation=cv2.INTER_AREA)) == i
        assert M.read_index(cv2.resize(f, (320, 240), interpolation=cv2.INTER_LINEAR)) == i
    big = M.stamp_index(np.zeros((64, 96, 3), np.uint8), 4095)
    assert M.read_index(big) == 4095
    with pytest.raises(ValueError):
        M.stamp_index(np.zeros((64, 96, 3), np.uint8), 4096)


def test_audio_helpers():
    t = M.tone(0.5, 16000, 440, channels=2)
    assert t.shape == (2, 8000) and t.dtype == np.float32
    assert not np.allclose(t[0], t[1])  # channels differ
    nz = M.noise(1.0, 8000, channels=1, seed=1)
    assert nz.shape == (1, 8000) and np.abs(nz).max() <= 0.3 + 1e-6
    assert np.array_equal(nz, M.noise(1.0, 8000, channels=1, seed=1))


def test_vfr_times_are_irregular_and_increasing():
    t = M.vfr_times(50, 30, seed=0)
    d = np.diff(t)
    assert t[0] == 0 and np.all(d > 0)
    assert d.max() > 2 / 30 and d.std() > 0.003
