"""Flicker and preservation (synclora.metrics.pixels) on real moving faces: they rank what a viewer would."""

from __future__ import annotations

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.metrics.pixels import edit_region, pixel_scores
from synclora.testing.cases import repaint_background, shimmer
from synclora.testing.faces import talking_clip

N = 40


@pytest.fixture(scope="module")
def clips():
    clean = talking_clip("grace_hopper", N)
    edited = talking_clip("grace_hopper", N, edit="lipstick")
    return clean.frames, edited.frames


def test_flicker_ranks_per_frame_noise_worse(clips):
    src, res = clips
    clean = pixel_scores(src, res)
    noisy = pixel_scores(src, shimmer(res, sigma=6.0))
    assert noisy.flicker > clean.flicker + 2.0
    # a result that moves like its source scores about what the source itself scores
    assert clean.flicker == pytest.approx(clean.source_flicker, abs=0.5)
    # more shimmer, more flicker
    assert pixel_scores(src, shimmer(res, sigma=12.0)).flicker > noisy.flicker


def test_flicker_sees_a_frozen_picture(clips):
    src, res = clips
    frozen = np.repeat(res[:1], N, axis=0)  # nothing moves where the source moves
    assert pixel_scores(src, frozen).flicker > pixel_scores(src, res).flicker


def test_preservation_ranks_a_repainted_background_worse(clips):
    src, res = clips
    k = 10
    kept = pixel_scores(src, res, edited=res[k], edit_index=k)
    repainted = pixel_scores(src, repaint_background(res, src), edited=res[k], edit_index=k)
    assert kept.preservation_psnr > 35
    assert repainted.preservation_psnr < kept.preservation_psnr - 10
    assert 0.5 < kept.preserved_share < 0.99  # the lips and a margin around them are left out
    # identical videos: the cap, not infinity
    same = pixel_scores(src, src.copy(), edited=res[k], edit_index=k)
    assert same.preservation_psnr == 100.0 and np.isfinite(same.flicker)


def test_edit_region_covers_the_edit_only(clips):
    src, res = clips
    mask = edit_region(src[10], res[10], (256, 256))
    diff = np.abs(src[10].astype(int) - res[10].astype(int)).max(axis=2) > 30
    assert mask[diff].mean() > 0.99
    assert mask.mean() < 0.3


def test_other_sizes_and_ranges(clips):
    import cv2

    src, res = clips
    big = np.stack([cv2.resize(f, (384, 384)) for f in res])
    scored = pixel_scores(src, big)
    assert any("resized" in n for n in scored.notes)
    assert scored.flicker == pytest.approx(pixel_scores(src, res).flicker, abs=0.6)
    wide = np.stack([cv2.resize(f, (384, 256)) for f in res])
    with pytest.raises(InputError, match="aspect"):
        pixel_scores(src, wide)
    with pytest.raises(InputError, match="frames"):
        pixel_scores(src, res[:-3])
    part = pixel_scores(src, res[:-3], frame_range=(5, N - 3))
    assert part.frames == N - 8
