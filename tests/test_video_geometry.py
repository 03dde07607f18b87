"""Working-size fit and back, any aspect ratio: the result comes back at the source's size and content."""

from __future__ import annotations

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.testing import media as M
from synclora.video.geometry import fit_edited_image, plan_fit

SIZES = {
    "landscape": (320, 180),
    "portrait": (180, 320),
    "square": (200, 200),
    "odd": (203, 117),
    "odd_portrait": (117, 203),
    "tall": (90, 400),
}


def _frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    return M.talking_face_frames(1, size=(w, h), seed=seed, head="still")[0][0]


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("mode", ["pad", "crop"])
@pytest.mark.parametrize("multiple", [8, 64])
def test_fit_unfit_round_trip(name, mode, multiple):
    w, h = SIZES[name]
    frame = _frame(w, h)
    plan = plan_fit(w, h, area=256 * 256, multiple=multiple, mode=mode)
    W, H = plan.work_size
    assert W % multiple == 0 and H % multiple == 0
    # the working aspect follows the source (portrait stays portrait), within what the multiple allows
    if w != h:
        assert (W > H) == (w > h) or W == H and multiple == 64
    assert abs(np.log((W / H) / (w / h))) < np.log(1 + multiple / min(W, H)) + 1e-9
    assert 0.5 < W * H / (256 * 256) < 2
    work = plan.fit(frame)
    assert work.shape == (H, W, 3) and work.dtype == np.uint8
    back = plan.unfit(work, frame)
    assert back.shape == frame.shape
    assert M.psnr(back, frame) > 27  # only resampling blur
    assert str(W) in plan.notice and f"{w}×{h}" in plan.notice


def test_pad_removes_exactly_the_padding():
    plan = plan_fit(1080, 1920, area=384 * 640, multiple=64, mode="pad")
    W, H = plan.work_size
    assert H > W
    left, top, right, bottom = plan.padding
    assert left + right + top + bottom > 0
    assert plan.inner[2] + left + right == W and plan.inner[3] + top + bottom == H
    assert "padded" in plan.notice and "scaled back to 1080×1920" in plan.notice
    # a marker on the working frame's content area lands where it should after unfit
    work = np.zeros((H, W, 3), np.uint8)
    x, y, w, h = plan.inner
    work[y: y + h, x: x + w] = 100
    work[:y], work[y + h:], work[:, :x], work[:, x + w:] = 255, 255, 255, 255  # padding must vanish
    back = plan.unfit(work)
    assert back.shape == (1920, 1080, 3)
    assert abs(float(back.mean()) - 100) < 1.0


def test_crop_keeps_the_source_border_unedited():
    w, h = 320, 180
    frame = _frame(w, h)
    plan = plan_fit(w, h, area=128 * 128, multiple=64, mode="crop")
    x, y, cw, ch = plan.crop
    assert (cw, ch) != (w, h)
    assert "cropped" in plan.notice and "unedited" in plan.notice
    edited = np.full((plan.work_size[1], plan.work_size[0], 3), 7, np.uint8)  # "the edit" paints everything
    out = plan.unfit(edited, frame)
    # outside the crop region: the source, bit for bit
    mask = np.ones((h, w), bool)
    mask[y: y + ch, x: x + cw] = False
    assert np.array_equal(out[mask], frame[mask])
    # inside, away from the feathered seam: the edit
    f = plan.feather
    inner = out[y + f: y + ch - f, x + f: x + cw - f]
    assert np.all(inner == 7)
    # at the seam: in between
    seam = out[y + ch // 2, x] if x > 0 else out[y, x + cw // 2]
    assert not np.array_equal(seam, [7, 7, 7])
    with pytest.raises(ValueError, match="source frame"):
        plan.unfit(edited)


def test_max_side_caps_the_longer_side():
    plan = plan_fit(1080, 1920, area=512 * 512, multiple=32, mode="pad", max_side=640)
    assert max(plan.work_size) <= 640 and plan.work_size[1] > plan.work_size[0]


def test_no_upscale_keeps_small_sources_small():
    plan = plan_fit(96, 64, area=512 * 512, multiple=8, mode="pad", allow_upscale=False)
    assert plan.work_size[0] * plan.work_size[1] <= 96 * 64 * 1.2


def test_fit_frames_batches():
    frames = M.indexed_frames(3, size=(96, 64))
    plan = plan_fit(96, 64, area=64 * 48, multiple=16, mode="pad")
    work = plan.fit_frames(frames)
    back = plan.unfit_frames(work)
    assert back.shape == frames.shape
    assert [M.read_index(f) for f in back] == [0, 1, 2]


def test_edited_image_sizes():
    frame = _frame(320, 180)
    same, note = fit_edited_image(frame, 320, 180)
    assert same is frame and note is None
    big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)  # 640×360: same aspect, other size
    resized, note = fit_edited_image(big, 320, 180)
    assert resized.shape == frame.shape and "resized" in note
    assert M.psnr(resized, frame) > 30
    nearly = np.zeros((181, 320, 3), np.uint8)  # 0.6% off: accepted
    assert fit_edited_image(nearly, 320, 180)[0].shape == (180, 320, 3)
    with pytest.raises(InputError, match="crop or pad"):
        fit_edited_image(np.zeros((320, 320, 3), np.uint8), 320, 180)
