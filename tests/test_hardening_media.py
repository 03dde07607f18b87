"""Media that once crashed native code or cost more than it should: audio of many channels (PyAV miscounts the planes
of a planar frame of 8 or more channels and crashes the process), and deep (16-bit, float) edited frames.

Every CLI run here is a separate process (`hostile.run_bounded`), so a native crash shows as a negative exit code,
not as a test runner that vanished. The served app's side of the same inputs is in test_hardening_served.py.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from synclora.cli import main
from synclora.edit.image import load_image
from synclora.testing import media
from synclora.video import io
from synclora.video.audio import audio_samples, stereo_downmix

from support import hostile

# (layout, codec, container, channels the result's AAC keeps)
MANY = [
    ("7.1", "pcm_s16le", ".mkv", 8),  # Matroska PCM: an unnamed "8 channels" layout, taken as 7.1
    ("7.1", "aac", ".mp4", 8),  # decodes to planar float: the frames that crashed
    ("7.1", "libopus", ".mkv", 8),  # planar too, and re-encoded (Opus cannot go into mp4 unchanged)
    ("6.1", "pcm_s24le", ".mov", 7),
    ("5.1.4", "pcm_f32le", ".mkv", 2),  # 10 channels: more than AAC carries, downmixed with a notice
    ("hexadecagonal", "pcm_s16le", ".mkv", 2),  # 16
]
IDS = [f"{lay}-{codec}" for lay, codec, _, _ in MANY]


@pytest.fixture(scope="module")
def many(tmp_path_factory, base) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("many")
    return {i: hostile.many_channels(d, lay, codec, ext, frames=base["frames"]) for i, (lay, codec, ext, _) in
            zip(IDS, MANY)}


def _channel_of(samples: np.ndarray, ref: np.ndarray) -> list[int]:
    """For each channel of `samples`, the channel of `ref` it follows best (each test channel is its own tone)."""
    n = min(samples.shape[1], ref.shape[1])
    return [int(np.argmax([abs(float(np.dot(s[:n], r[:n]))) for r in ref])) for s in samples]


@pytest.mark.parametrize("case", IDS)
def test_info_reads_many_channel_audio(many, case):
    r = hostile.run_bounded(main, ["info", str(many[case])], limit_mb=1024, timeout=60)
    assert r.rc == 0, (r.rc, r.err)
    channels = len(av.AudioLayout(MANY[IDS.index(case)][0]).channels)
    assert f"{channels} channel(s)" in r.out


@pytest.mark.parametrize("case", IDS)
def test_many_channel_audio_is_read_in_order(many, case):
    """Every channel comes back as itself, whatever the count (the planar 7.1 frames once crashed here)."""
    layout = MANY[IDS.index(case)][0]
    channels = len(av.AudioLayout(layout).channels)
    samples, rate = audio_samples(many[case])
    ref = media.tone(samples.shape[1] / rate, channels=channels)
    assert samples.shape[0] == channels and rate == 48000
    assert samples.shape[1] == pytest.approx(len(io.read_frames(many[case])) / 25 * rate, abs=1024)
    if "aac" not in case and "opus" not in case:  # lossless: every channel is its own tone
        assert _channel_of(samples, ref) == list(range(channels))


@pytest.mark.parametrize("case", [IDS[1], IDS[2], IDS[4], IDS[5]])
def test_propagate_keeps_or_downmixes_many_channels_and_says_so(many, base, tmp_path, case):
    layout, _, _, kept = MANY[IDS.index(case)]
    out, sbs = tmp_path / "r.mp4", tmp_path / "sbs.mp4"
    r = hostile.run_bounded(main, ["propagate", str(many[case]), "--edited", str(base["edited"]), "--out", str(out),
                                   "--side-by-side", str(sbs), "--backend", "flow", "--quiet"],
                            limit_mb=4096, timeout=300)
    assert r.rc == 0, (r.rc, r.err[-2000:])
    for p in (out, sbs):
        info = io.probe(p)
        assert info.channels == kept and info.n_frames == len(base["frames"])
        assert abs(info.duration - len(base["frames"]) / 25) < 1 / 25
    channels = len(av.AudioLayout(layout).channels)
    if kept == 2:
        assert f"downmixed from {channels} channels" in r.err and "stereo" in r.err
    else:
        assert "downmixed" not in r.err
        samples, rate = audio_samples(out)
        ref = media.tone(samples.shape[1] / rate, channels=channels)
        follows = _channel_of(samples, ref)
        lfe = [i for i, c in enumerate(av.AudioLayout(f"{channels}c").channels) if c.name == "LFE"]
        assert [c for i, c in enumerate(follows) if i not in lfe] == [i for i in range(channels) if i not in lfe]


def test_stereo_downmix_never_clips_and_drops_no_side():
    for layout in ("5.1.4", "hexadecagonal", "22.2", "16 channels"):
        m = stereo_downmix(layout)
        assert m.shape == (2, len(av.AudioLayout(layout).channels))
        assert np.allclose(m.sum(axis=1), 1) and (m >= 0).all()  # full-scale input stays within full scale
    m = stereo_downmix("5.1.4")
    names = [c.name for c in av.AudioLayout("5.1.4").channels]
    assert m[0, names.index("FL")] > 0 and m[1, names.index("FL")] == 0
    assert m[1, names.index("TBR")] > 0 and m[:, names.index("LFE")].sum() == 0


# ------------------------------------------------------------------------------------------------ deep images
def _deep_pngs(folder: Path, side: tuple[int, int]) -> dict[str, Path]:
    """The same picture as 8-bit and 16-bit greyscale PNG (a few hundred KB however large)."""
    w, h = side
    ramp = (np.arange(w, dtype=np.uint32) * 65535 // max(1, w - 1)).astype(np.uint16)
    img16 = np.broadcast_to(ramp, (h, w)).copy()
    img16[:: 9] = 40000
    folder.mkdir(parents=True, exist_ok=True)
    out = {"8": folder / "g8.png", "16": folder / "g16.png"}
    Image.fromarray((img16 >> 8).astype(np.uint8)).save(out["8"], compress_level=9)
    Image.fromarray(img16).save(out["16"], compress_level=9)
    return out


def test_a_16_bit_image_converts_exactly(tmp_path):
    p = _deep_pngs(tmp_path, (300, 200))
    assert Image.open(p["16"]).mode.startswith("I")
    rgb, notices = load_image(p["16"])
    want = np.clip(np.asarray(Image.open(p["16"]), np.float64) / 65535 * 255 + 0.5, 0, 255).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (200, 300, 3)
    assert np.array_equal(rgb[..., 0], want) and np.array_equal(rgb[..., 2], want)
    assert "16-bit image converted to 8-bit" in notices
    # 16-bit values that stay under 256 are 8-bit values stored wide: kept as they are
    Image.fromarray(np.full((10, 10), 200, np.uint16)).save(tmp_path / "low.png")
    assert (load_image(tmp_path / "low.png")[0] == 200).all()


def _load_main(argv: list[str]) -> int:
    load_image(argv[0])
    return 0


@pytest.mark.slow
def test_a_16_bit_image_costs_what_the_8_bit_one_costs(tmp_path):
    """Measured in separate processes (peak resident memory the load adds): a 40-megapixel 16-bit PNG once took twice
    what the 8-bit one did (a float64 copy of the whole image)."""
    p = _deep_pngs(tmp_path, (8000, 5000))
    peaks = {}
    for bits in ("8", "16"):
        r = hostile.run_bounded(_load_main, [str(p[bits])], limit_mb=3000, timeout=120)
        assert r.rc == 0, r.err
        peaks[bits] = r.peak_mb
    assert peaks["16"] <= peaks["8"] * 1.1 + 20, peaks


def test_propagate_with_a_16_bit_edit_under_the_8_bit_memory(base, tmp_path):
    """The CLI end to end: the 16-bit edit of the base frame runs within the memory the 8-bit edit needs."""
    frame = base["frame0"].astype(np.uint16) * 257
    Image.fromarray(frame[..., 0]).save(tmp_path / "edit16.png")
    Image.fromarray(base["frame0"][..., 0]).save(tmp_path / "edit8.png")
    for bits in ("8", "16"):
        out = tmp_path / f"r{bits}.mp4"
        r = hostile.run_bounded(main, ["propagate", str(base["src"]), "--edited", str(tmp_path / f"edit{bits}.png"),
                                       "--out", str(out), "--backend", "flow", "--quiet"], limit_mb=4096, timeout=300)
        assert r.rc == 0, r.err[-2000:]
        assert io.probe(out).n_frames == len(base["frames"])
        if bits == "16":
            assert "16-bit image converted to 8-bit" in r.err


# ------------------------------------------------------------------------------------------ stored out of order
def _blocks_moved_back(n: int) -> list[int]:
    """Frames 12–15 stored before 5–11: timestamps jump ahead, then back (an edit)."""
    return list(range(5)) + list(range(12, 16)) + list(range(5, 12)) + list(range(16, n))


def _windows_shuffled(n: int, w: int = 6, seed: int = 4) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(k) for a in range(0, n, w) for k in rng.permutation(np.arange(a, min(a + w, n)))]


ORDERS = {
    "one-pair": lambda n: [0, 1, 2, 5, 3, 4] + list(range(6, n)),
    "b-frame-like": lambda n: [k for a in range(0, n, 3) for k in (a + 2, a, a + 1) if k < n],
    "block-moved-back": _blocks_moved_back,
    "shuffled-windows": _windows_shuffled,
    "reversed-pairs": lambda n: [k ^ 1 for k in range(n)],
}


@pytest.mark.parametrize("name", list(ORDERS))
@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_frames_stored_out_of_order_come_out_in_presentation_order_once(tmp_path, name, codec):
    """`info`, the sequential reader, the by-index reader and the lazy reader agree: every frame once, in order."""
    from synclora.video.lazy import iter_lazy_frames

    n = 24
    order = ORDERS[name](n)
    clip = hostile.reordered(tmp_path / f"{name}.mkv", order, codec=codec)
    info = io.probe(clip)
    assert info.n_frames == n and not info.vfr
    assert [media.read_index(f) for f in io.iter_frames(clip)] == list(range(n))
    assert [media.read_index(io.read_frame(clip, k)) for k in (0, 3, 4, 5, 9, 13, n - 1)] == [0, 3, 4, 5, 9, 13, n - 1]
    assert [media.read_index(f) for f in io.iter_frames(clip, start=7, stop=15)] == list(range(7, 15))
    assert [media.read_index(f.rgb()) for f in iter_lazy_frames(clip, start=3, stop=11)] == list(range(3, 11))


def test_a_file_stored_too_far_out_of_order_is_refused_in_a_sentence(tmp_path):
    from synclora import limits

    n = limits.MAX_REORDER_FRAMES + 12
    clip = hostile.reordered(tmp_path / "far.mkv", [n - 1] + list(range(n - 1)))
    r = hostile.run_bounded(main, ["info", str(clip)], limit_mb=1024, timeout=60)
    assert r.rc == 2 and "out of presentation order" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_propagate_keeps_every_frame_of_a_reordered_clip(base, tmp_path):
    """The CLI end to end: a talking-face clip stored out of order comes out with every frame once, in order (the
    result's frames outside the edit are the source's own)."""
    order = _windows_shuffled(len(base["frames"]), w=4)
    clip = hostile.reordered(tmp_path / "talking.mkv", order, frames=base["frames"])  # intra frames, out of order
    assert io.probe(clip).n_frames == len(order)
    out = tmp_path / "r.mp4"
    r = hostile.run_bounded(main, ["propagate", str(clip), "--edited", str(base["edited"]), "--out", str(out),
                                   "--backend", "flow", "--quiet", "--span", "0:1", "--fade", "0"],
                            limit_mb=4096, timeout=300)
    assert r.rc == 0, r.err[-2000:]
    got = [media.read_index(f) for f in io.iter_frames(out)][2:]  # outside the edit: the source's frames
    assert got == list(range(2, len(order)))
