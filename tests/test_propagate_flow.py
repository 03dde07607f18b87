"""The CPU flow backend on synthetic clips whose motion is known exactly (affine warps of a random texture)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.propagate.base import Segment
from synclora.propagate.flow import FlowPropagator
from synclora.testing.media import noise_texture

SIZE = 256
BOX = (100, 110, 140, 136)  # x0, y0, x1, y1 of the "glasses" patch painted on frame 0
MOUTH = (150, 190, 200, 215)  # a region whose content the source itself changes (a mouth opening)


def _motion(t: int, n: int) -> np.ndarray:
    """2x3 affine from frame-0 to frame-t coordinates: rotation, zoom and a large translation."""
    u = t / (n - 1)
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 10 * np.sin(2 * np.pi * u), 1 + 0.08 * np.sin(np.pi * u))
    m[:, 2] += (30 * np.sin(np.pi * u), 15 * np.sin(2 * np.pi * u))
    return m


def _clip(n: int, occluder: bool = False, mouth: bool = False, seed: int = 0):
    big = noise_texture(SIZE * 2, seed)
    frames, mats = [], []
    occ = np.zeros((n, SIZE, SIZE), bool)
    bar = noise_texture(SIZE, seed + 7)
    for t in range(n):
        m = _motion(t, n)
        mb = m.copy()
        mb[:, 2] += m[:, :2] @ np.array([-SIZE / 2, -SIZE / 2])
        f = cv2.warpAffine(big, mb, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if mouth:  # the source's own change, away from the edit: must come through untouched
            x0, y0, x1, y1 = MOUTH
            open_ = int(12 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 9)))
            f[y0:y1, x0:x1] = 200
            cv2.ellipse(f, ((x0 + x1) // 2, (y0 + y1) // 2), (20, max(1, open_)), 0, 0, 360, (30, 10, 10), -1)
        if occluder:  # a textured bar (a hand) sweeping left to right across the patch, its texture moving with it
            x0 = int(-70 + (SIZE + 140) * t / (n - 1))
            a, b = max(0, x0), min(SIZE, x0 + 50)
            if b > a:
                f[:, a:b] = bar[:, a - x0 + 70 : b - x0 + 70]
                occ[t, :, a:b] = True
        frames.append(f)
        mats.append(m)
    return np.stack(frames), np.stack(mats), occ


def _edit(frame0: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = BOX
    edited = frame0.copy()
    edited[y0:y1, x0:x1] = (0.3 * edited[y0:y1, x0:x1] + 0.7 * np.array([20, 200, 40])).astype(np.uint8)
    return edited


def _patch_mask(mat: np.ndarray) -> np.ndarray:
    m0 = np.zeros((SIZE, SIZE), np.uint8)
    x0, y0, x1, y1 = BOX
    m0[y0:y1, x0:x1] = 1
    return cv2.warpAffine(m0, mat, (SIZE, SIZE), flags=cv2.INTER_NEAREST) > 0


def _changed(out: np.ndarray, src: np.ndarray, thr: int = 30) -> np.ndarray:
    return np.abs(out.astype(np.int16) - src.astype(np.int16)).max(axis=2) > thr


def _run(frames: np.ndarray, edited: np.ndarray, progress=None) -> np.ndarray:
    settings = PropagationSettings(backend="flow")
    seg = Segment(frames=frames, edited=edited, fps=25.0, settings=settings)
    prop = FlowPropagator(settings)
    return prop.propagate(seg, progress) if progress else prop.propagate(seg)


@pytest.fixture(scope="module")
def moving():
    frames, mats, _ = _clip(40, mouth=True)
    edited = _edit(frames[0])
    return frames, mats, edited, _run(frames, edited)


def test_contract():
    prop = FlowPropagator(PropagationSettings())
    assert prop.name == "flow"
    assert "fast CPU preview" in prop.label and "not for changes of shape, style or expression" in prop.label
    assert prop.spec.max_frames is None and prop.spec.frame_step == 1 and prop.spec.size_multiple == 8
    assert prop.spec.native_fps is None and prop.spec.max_side == 1024


def test_shape_dtype_and_anchor_exact(moving):
    frames, _, edited, out = moving
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], edited)


def test_patch_follows_known_motion(moving):
    frames, mats, _, out = moving
    errors, coverage = [], []
    for t in range(1, len(frames)):
        truth = _patch_mask(mats[t])
        got = _changed(out[t], frames[t])
        ys, xs = np.nonzero(got)
        ty, tx = np.nonzero(truth)
        errors.append(np.hypot(xs.mean() - tx.mean(), ys.mean() - ty.mean()))
        coverage.append((got & truth).sum() / truth.sum())
    assert max(errors) < 3.0, f"edit drifted from the known motion: {np.round(errors, 1)}"
    assert min(coverage) > 0.85, f"edit lost along the way: {np.round(coverage, 2)}"
    # The motion is large enough that an edit left in place would fail the bound above.
    still = _patch_mask(mats[0])
    far = [np.hypot(*(np.argwhere(_patch_mask(m)).mean(0) - np.argwhere(still).mean(0))) for m in mats]
    assert max(far) > 20


def test_untouched_regions_are_the_source(moving):
    frames, mats, _, out = moving
    for t in range(1, len(frames)):
        near = cv2.dilate(_patch_mask(mats[t]).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        np.testing.assert_array_equal(out[t][~near], frames[t][~near])
        x0, y0, x1, y1 = MOUTH  # the source's own mouth motion comes through exactly
        np.testing.assert_array_equal(out[t, y0:y1, x0:x1], frames[t, y0:y1, x0:x1])


def test_occluder_does_not_smear_and_edit_returns():
    frames, mats, occ = _clip(48, occluder=True)
    out = _run(frames, _edit(frames[0]))
    for t in range(1, len(frames)):
        smeared = _changed(out[t], frames[t]) & occ[t]
        assert smeared.sum() <= 0.01 * max(occ[t].sum(), 1) + 20, f"edit smeared onto the occluder at frame {t}"
    # once the occluder has passed, the edit is back where it belongs
    for t in range(len(frames) - 6, len(frames)):
        truth = _patch_mask(mats[t]) & ~occ[t]
        assert (_changed(out[t], frames[t]) & truth).sum() > 0.8 * truth.sum(), f"edit missing at frame {t}"


# ---------------------------------------------------------------- a drawn talking face (mouth, blinks, head motion)
FACE = 256


@pytest.fixture(scope="module")
def face():
    from synclora.testing.media import talking_face_frames

    n = 60
    u = np.arange(n) / (n - 1)
    head = np.stack([25 * np.sin(2 * np.pi * u), 10 * np.sin(np.pi * u), 6 * np.sin(2 * np.pi * u)], 1)
    frames, truth = talking_face_frames(n, size=(FACE, FACE), seed=1, head=head, blinks=[20, 44])
    return frames, truth


def _lenses(truth: dict, t: int) -> np.ndarray:
    m = np.zeros((FACE, FACE), np.uint8)
    for key in ("left_eye", "right_eye"):
        x, y = truth[key][t]
        cv2.ellipse(m, (int(round(x)), int(round(y))), (int(0.085 * FACE), int(0.06 * FACE)), 0, 0, 360, 255, -1)
    return m > 0


def _tint(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[mask] = (0.55 * img[mask] + 0.45 * np.array([0, 40, 120])).astype(np.uint8)
    return out


def test_glasses_follow_the_eyes_and_survive_blinks(face):
    frames, truth = face
    out = _run(frames, _tint(frames[0], _lenses(truth, 0)))
    closed = truth["eye_closure"] >= 0.5
    assert closed.any()
    err_open, err_blink, drift, lost = [], [], [], []
    for t in range(1, len(frames)):
        lens = _lenses(truth, t)
        ideal = _tint(frames[t], lens)
        roi = cv2.dilate(lens.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        mae = np.abs(out[t].astype(np.int16) - ideal.astype(np.int16))[roi].mean()
        (err_blink if closed[t] else err_open).append(mae)
        lost.append(np.abs(frames[t].astype(np.int16) - ideal.astype(np.int16))[roi].mean())  # the edit dropped
        got = _changed(out[t], frames[t], 20)
        ys, xs = np.nonzero(got & roi)
        ty, tx = np.nonzero(lens)
        if truth["eye_closure"][t] == 0:  # while a lid moves, part of the lens may fade: the centroid means less
            drift.append(np.hypot(xs.mean() - tx.mean(), ys.mean() - ty.mean()))
    base = np.mean(lost)
    assert np.mean(err_open) < 0.12 * base, (np.mean(err_open), base)
    assert np.mean(err_blink) < 0.42 * base, (np.mean(err_blink), base)  # the tint stays on the closed lids
    # the head moves by up to 25 px; the lenses stay on the eyes (measured: mean 0.5 px, max 1.6 px)
    assert np.mean(drift) < 1.0 and max(drift) < 3.0, np.round(drift, 1)


def test_lipstick_stays_off_the_open_mouth(face):
    frames, truth = face
    lips_rgb = np.array([170, 70, 80])

    def lips(t):
        x, y = truth["mouth_center"][t]
        near = np.zeros((FACE, FACE), np.uint8)
        cv2.ellipse(near, (int(x), int(y)), (int(0.11 * FACE), int(0.1 * FACE)), 0, 0, 360, 255, -1)
        return (near > 0) & (np.abs(frames[t].astype(int) - lips_rgb).sum(-1) < 60)

    edited = frames[0].copy()
    m0 = lips(0)
    edited[m0] = np.clip(edited[m0].astype(int) + [60, -40, -20], 0, 255).astype(np.uint8)
    out = _run(frames, edited)
    opened = [t for t in range(1, len(frames)) if truth["mouth"][t] > 0.3]
    assert opened
    for t in opened:
        x, y = truth["mouth_center"][t]
        box = np.zeros((FACE, FACE), bool)
        box[int(y - 0.08 * FACE) : int(y + 0.08 * FACE), int(x - 0.1 * FACE) : int(x + 0.1 * FACE)] = True
        dark = np.abs(frames[t].astype(int) - [60, 15, 25]).sum(-1) < 40
        teeth = np.abs(frames[t].astype(int) - [235, 235, 225]).sum(-1) < 40
        inner = cv2.erode((box & (dark | teeth)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert _changed(out[t], frames[t], 25)[inner].mean() < 0.05, f"lipstick on the open mouth at frame {t}"
    # and the lips themselves keep it, where the mouth is (nearly) closed
    calm = [t for t in range(1, len(frames)) if truth["mouth"][t] < 0.05]
    assert calm
    inner_lips = [cv2.erode(lips(t).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for t in calm]
    kept = [_changed(out[t], frames[t], 20)[m].mean() for t, m in zip(calm, inner_lips)]
    assert np.mean(kept) > 0.7, np.round(kept, 2)


def test_progress_reported():
    frames, _, _ = _clip(12)
    calls: list[tuple[float, str]] = []
    _run(frames, _edit(frames[0]), lambda f, s: calls.append((f, s)))
    fractions = [f for f, _ in calls]
    assert len(calls) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(s.startswith("flow: frame ") for _, s in calls)


def test_no_edit_and_single_frame():
    frames, _, _ = _clip(5)
    np.testing.assert_array_equal(_run(frames, frames[0].copy()), frames)
    one = _run(frames[:1], _edit(frames[0]))
    np.testing.assert_array_equal(one[0], _edit(frames[0]))


def test_views_are_accepted():
    """The scheduler may hand in reversed or cropped views; the result must match a plain copy's."""
    frames, _, _ = _clip(8)
    view = frames[::-1, 8:-8, 16:-16]
    edited = _edit(np.ascontiguousarray(view[0]))
    np.testing.assert_array_equal(_run(view, edited), _run(np.ascontiguousarray(view), edited))


def test_too_small_frames_rejected():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(InputError):
        _run(frames, frames[0])


@pytest.mark.parametrize("size", [(512, 512), (1280, 720), (1920, 1080), (1000, 600), (333, 777), (200, 200)])
def test_the_map_is_upsampled_only_where_needed_with_the_full_resize_values(size):
    """The final warp's map and confidence come from a crop of the small map; every box must read what upsampling the
    whole map would have given (same bilinear weights), up to float rounding."""
    from synclora.propagate.flow import _Upsampler

    w, h = size
    s = min(1.0, 256 / max(w, h))
    fw, fh = max(8, round(w * s)), max(8, round(h * s))
    rng = np.random.default_rng(0)
    m = (rng.normal(size=(fh, fw, 2)) * 50).astype(np.float32)
    full = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    up = _Upsampler((fw, fh), (w, h))
    boxes = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, w, h)]
    for _ in range(50):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        boxes.append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
    for x0, y0, x1, y1 in boxes:
        got = up.box(m, (x0, y0, x1, y1))
        assert got.shape == (y1 - y0, x1 - x0, 2)
        np.testing.assert_allclose(got, full[y0:y1, x0:x1], atol=0.01)


def test_opencv_threads_are_restored_after_overlapping_propagations():
    from synclora.propagate.flow import _opencv_serial

    before = cv2.getNumThreads()
    with _opencv_serial():
        with _opencv_serial():
            assert cv2.getNumThreads() == 1  # 0 = run in the calling thread (reported as one)
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before
