"""Reading and writing clips: exact fps/frame counts, frame identity, rotation, VFR, audio, atomic writes, bad input.

Every clip carries its frame index as a visible bit pattern (`stamp_index`), so a dropped, repeated or reordered
frame anywhere fails a test.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from synclora.errors import InputError
from synclora.testing import media as M
from synclora.video import io

FPS = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60)]
SIZE = (96, 64)


def indices(frames: np.ndarray) -> list[int]:
    return [M.read_index(f) for f in frames]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video_io")


# ---------------------------------------------------------------------------------------------------------------------
# probe facts per container


CONTAINERS = [
    # ext, fps written, fps expected, audio codec expected
    (".mp4", Fraction(30000, 1001), Fraction(30000, 1001), "aac"),
    (".mov", Fraction(24000, 1001), Fraction(24000, 1001), "aac"),
    (".mkv", Fraction(30000, 1001), Fraction(30000, 1001), "flac"),
    (".webm", Fraction(25), Fraction(25), "opus"),
    (".avi", Fraction(30000, 1001), Fraction(30000, 1001), "pcm_s16le"),
    (".gif", Fraction(25), Fraction(25), None),
]


@pytest.mark.parametrize("ext,fps,expected_fps,acodec", CONTAINERS)
def test_probe_and_read_each_container(folder, ext, fps, expected_fps, acodec):
    n = 29
    frames = M.indexed_frames(n, size=SIZE)
    audio = M.noise(n / float(fps) + 0.1) if acodec else None
    path = M.write_clip(folder / f"clip{ext}", frames, fps, audio=audio)
    info = io.probe(path)
    assert info.fps == expected_fps and isinstance(info.fps, Fraction)
    assert info.n_frames == n
    assert info.duration == pytest.approx(n / float(expected_fps))
    assert (info.width, info.height) == SIZE
    assert info.rotation == 0 and not info.vfr
    assert info.has_audio == (acodec is not None)
    assert info.audio_codec == acodec
    if acodec:
        assert info.sample_rate == 48000 and info.channels == 2
    got = io.read_frames(path)
    assert got.shape == (n, SIZE[1], SIZE[0], 3) and got.dtype == np.uint8
    assert indices(got) == list(range(n))
    if ext != ".gif":  # gif is 8-bit palette: only the index pattern survives exactly
        assert M.psnr(got, frames) > 28
    d = info.to_dict()
    assert d["fps"] == f"{expected_fps.numerator}/{expected_fps.denominator}" and d["n_frames"] == n
    assert f"Frames:     {n}" in info.summary()


def test_gif_at_ntsc_rate_is_still_constant_rate(folder):
    # gif delays are centiseconds: 29.97 fps is stored as 3/3/4 cs delays; that is still one frame per slot
    frames = M.indexed_frames(31, size=SIZE)
    path = M.write_clip(folder / "ntsc.gif", frames, Fraction(30000, 1001))
    info = io.probe(path)
    assert info.fps in (30, Fraction(30000, 1001)) and info.n_frames == 31 and not info.vfr
    assert indices(io.read_frames(path)) == list(range(31))


# ---------------------------------------------------------------------------------------------------------------------
# write -> read round trip: fps, count, duration and content for every common rate and counts that are not 8k+1


@pytest.mark.parametrize("fps", FPS, ids=lambda f: f"{float(f):.3f}")
def test_write_read_round_trip(folder, fps):
    n = 38 if fps != 60 else 44  # neither is 8k+1
    frames = M.indexed_frames(n, size=SIZE, seed=3)
    out = io.write_video(folder / f"rt_{float(fps):.3f}.mp4", frames, fps)
    info = io.probe(out)
    assert info.fps == fps
    assert info.n_frames == n
    assert info.duration == pytest.approx(float(n / fps), abs=1e-9)
    assert info.codec == "h264" and not info.has_audio
    got = io.read_frames(out)
    assert indices(got) == list(range(n))
    assert M.psnr(got, frames) > 30


def test_written_file_is_browser_friendly(folder):
    import av

    frames = M.indexed_frames(9, size=SIZE)
    out = io.write_video(folder / "browser.mp4", frames, Fraction(30000, 1001))
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        tb = s.time_base
        pts = sorted(p.pts for p in c.demux(s) if p.size)
    assert [p * tb for p in pts] == [Fraction(i * 1001, 30000) for i in range(9)]  # frame i at exactly i/fps


def test_face_content_round_trip_is_faithful(folder):
    frames, _ = M.talking_face_frames(12, size=(128, 96))
    out = io.write_video(folder / "face.mp4", frames, 25)
    got = io.read_frames(out)
    assert M.psnr(got, frames) > 32
    assert abs(float(got.astype(np.float64).mean() - frames.astype(np.float64).mean())) < 0.3  # no colour shift


def test_rgb_to_yuv420_is_bt709_limited_range_within_a_level():
    """The encoder's conversion against the exact formula (BT.709, limited range, chroma of each 2x2 block's mean):
    every Y, Cb and Cr code within one level, on noise (the worst case for chroma averaging) and on a real face."""
    from synclora.video.colour import rgb_to_yuv420_frame

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 96, 3), np.uint8)
    face, _ = M.talking_face_frames(1, size=(128, 96))
    for img in (noise, face[0]):
        h, w = img.shape[:2]
        rgb = img.astype(np.float64)
        kr, kb = 0.2126, 0.0722
        y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
        cb, cr = (rgb[..., 2] - y) / (2 * (1 - kb)), (rgb[..., 0] - y) / (2 * (1 - kr))
        cb, cr = (c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for c in (cb, cr))  # each 2x2 block's mean
        want = np.concatenate([(16 + 219 / 255 * y).ravel(), (128 + 224 / 255 * cb).ravel(),
                               (128 + 224 / 255 * cr).ravel()])
        got = rgb_to_yuv420_frame(img).to_ndarray().ravel().astype(np.float64)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1.0


def test_odd_size_is_padded_and_reported(folder):
    frames = M.indexed_frames(5, size=(95, 63))
    notes: list[str] = []
    out = io.write_video(folder / "odd.mp4", frames, 25, notices=notes)
    info = io.probe(out)
    assert (info.width, info.height) == io.even_size(95, 63) == (96, 64)
    assert any("odd" in n for n in notes)
    got = io.read_frames(out)
    assert M.psnr(got[:, :63, :95], frames) > 28


def test_iter_frames_range_resize_and_read_frame(folder):
    n = 40
    frames = M.indexed_frames(n, size=SIZE)
    path = M.write_clip(folder / "seek.mp4", frames, 30, gop=6)
    part = io.read_frames(path, start=13, stop=29)
    assert indices(part) == list(range(13, 29))
    small = io.read_frames(path, start=5, stop=9, size=(48, 32))
    assert small.shape == (4, 32, 48, 3) and indices(small) == [5, 6, 7, 8]
    for i in (0, 1, 6, 17, 24, n - 1):
        assert M.read_index(io.read_frame(path, i)) == i
    assert np.array_equal(io.read_frame(path, 17), part[4])
    with pytest.raises(InputError, match="does not exist"):
        io.read_frame(path, n)
    with pytest.raises(InputError, match="outside"):
        io.read_frames(path, start=10, stop=n + 1)


def test_probe_is_cached_by_path_mtime_size(folder):
    path = M.write_clip(folder / "cache.mp4", M.indexed_frames(5, size=SIZE), 25)
    assert io.probe(path) is io.probe(path)
    M.write_clip(path, M.indexed_frames(7, size=SIZE), 25)
    assert io.probe(path).n_frames == 7


def test_edit_list_that_cuts_the_start_is_respected(folder):
    """mp4 edit lists (trimmed phone clips) hide the first frames: they are decoded as references, never shown."""
    import av

    src = M.write_clip(folder / "el_src.mp4", M.indexed_frames(20, size=SIZE), 25)
    cut = folder / "el.mp4"
    with av.open(str(src)) as i, av.open(str(cut), "w") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        shift = int(Fraction(5, 25) / s.time_base)  # frames 0-4 move before time 0
        for p in i.demux(s):
            if p.dts is None:
                continue
            p.pts -= shift
            p.dts -= shift
            p.stream = out
            o.mux(p)
    info = io.probe(cut)
    assert info.n_frames == 15 and info.fps == 25
    assert indices(io.read_frames(cut)) == list(range(5, 20))
    assert M.read_index(io.read_frame(cut, 9)) == 14


# ---------------------------------------------------------------------------------------------------------------------
# rotation


@pytest.mark.parametrize("ext,rotation", [(".mp4", 90), (".mov", 270), (".mp4", 180), (".mkv", 90)])
def test_rotation_metadata_is_honoured(folder, ext, rotation):
    display = M.indexed_frames(12, size=(64, 96))  # portrait, as a phone shows it
    stored = np.stack([np.rot90(f, k=rotation // 90) for f in display])  # how the phone stores it
    path = M.write_clip(folder / f"rot{rotation}{ext}", stored, 30, rotation=rotation)
    info = io.probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == (64, 96)
    assert any("Rotation" in n for n in info.notices)
    got = io.read_frames(path)
    assert got.shape[1:3] == (96, 64)
    assert indices(got) == list(range(12))
    assert M.psnr(got, display) > 28
    assert M.read_index(io.read_frame(path, 7)) == 7


# ---------------------------------------------------------------------------------------------------------------------
# variable frame rate


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_vfr_is_converted_to_cfr_with_a_notice(folder, ext):
    n = 60
    frames = M.indexed_frames(n, size=SIZE)
    path, times = M.write_vfr_clip(folder / f"vfr{ext}", frames, 30, seed=1)
    info = io.probe(path)
    assert info.vfr
    assert any("Variable frame rate" in s for s in info.notices)
    fps = info.fps
    assert fps.denominator in (1, 2) or fps in io.STANDARD_RATES  # a sensible rational
    total = times[-1] + (times[-1] - times[-2])
    assert abs(info.n_frames - total * float(fps)) <= 1.5
    got = io.read_frames(path)
    assert len(got) == info.n_frames
    # frame at CFR time t is the latest source frame whose time <= t
    expected = [int(np.searchsorted(times, i / float(fps) + 1e-6, side="right") - 1) for i in range(info.n_frames)]
    assert indices(got) == expected
    assert len(set(expected)) < n or len(expected) != n  # the clip really needed converting
    # random access agrees with sequential reading
    for i in (3, info.n_frames // 2, info.n_frames - 1):
        assert M.read_index(io.read_frame(path, i)) == expected[i]


def test_jittery_timestamps_of_a_cfr_clip_are_not_vfr(folder):
    frames = M.indexed_frames(30, size=SIZE)
    times = [i / 25 + (0.004 if i % 3 == 1 else 0.0) for i in range(30)]  # 4 ms jitter, ms time base
    path = M.write_clip(folder / "jitter.mkv", frames, 25, pts=times)
    info = io.probe(path)
    assert not info.vfr and info.fps == 25 and info.n_frames == 30
    assert indices(io.read_frames(path)) == list(range(30))


# ---------------------------------------------------------------------------------------------------------------------
# audio


def _lag_and_corr(a: np.ndarray, b: np.ndarray, max_lag: int = 2000) -> tuple[int, float]:
    m = min(a.shape[1], b.shape[1])
    a, b = a[0, :m].astype(np.float64), b[0, :m].astype(np.float64)
    core = b[max_lag: m - max_lag]
    c = np.correlate(a, core, "valid")
    lag = int(np.argmax(c)) - max_lag
    corr = float(np.corrcoef(a[max_lag: m - max_lag], core)[0, 1])
    return lag, corr


@pytest.fixture(scope="module")
def talking_clip(folder):
    n, fps = 50, Fraction(30000, 1001)
    frames = M.indexed_frames(n, size=SIZE)
    audio = M.noise(n / float(fps), seed=7)
    return M.write_clip(folder / "talk.mp4", frames, fps, audio=audio), frames, fps, audio


def test_whole_clip_aac_audio_is_stream_copied(folder, talking_clip):
    src, frames, fps, audio = talking_clip
    notes: list[str] = []
    out = io.write_video(folder / "copy.mp4", frames, fps, audio_from=src, notices=notes)
    assert not notes  # nothing re-encoded
    a_src, sr = io.audio_samples(src)
    a_out, sr2 = io.audio_samples(out)
    assert sr == sr2 == 48000
    assert a_out.shape == a_src.shape
    assert np.array_equal(a_out, a_src)  # packets copied: identical decode
    # and the source audio is the noise we wrote (AAC is lossy; aligned and strongly correlated)
    lag, corr = _lag_and_corr(a_src, audio)
    assert lag == 0 and corr > 0.98


def test_middle_span_audio_is_trimmed_in_sync(folder, talking_clip):
    src, frames, fps, _ = talking_clip
    span = (10, 40)
    notes: list[str] = []
    out = io.write_video(folder / "span.mp4", frames[span[0]: span[1]], fps, audio_from=src, audio_span=span,
                         notices=notes)
    info = io.probe(out)
    assert info.n_frames == 30 and info.fps == fps and info.audio_codec == "aac"
    assert any("re-encoded" in n for n in notes)
    ref, sr = io.audio_samples(src, span)
    got, _ = io.audio_samples(out)
    expected_len = round(30 / float(fps) * sr)
    assert ref.shape[1] == expected_len
    assert expected_len <= got.shape[1] <= expected_len + 1024  # AAC may pad the last packet
    lag, corr = _lag_and_corr(got, ref)
    assert lag == 0 and corr > 0.95
    # the span's audio, not the clip start's
    _, corr_start = _lag_and_corr(got, io.audio_samples(src, (0, 30))[0])
    assert corr_start < 0.3


@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_non_mp4_audio_is_reencoded_to_aac(folder, ext):
    n, fps = 25, Fraction(25)
    frames = M.indexed_frames(n, size=SIZE)
    audio = M.noise(1.0, seed=2)
    src = M.write_clip(folder / f"aud{ext}", frames, fps, audio=audio)
    notes: list[str] = []
    out = io.write_video(folder / f"aud{ext}.mp4", frames, fps, audio_from=src, notices=notes)
    assert io.probe(out).audio_codec == "aac"
    assert any("re-encoded to AAC" in s for s in notes)
    lag, corr = _lag_and_corr(io.audio_samples(out)[0], io.audio_samples(src)[0])
    assert lag == 0 and corr > 0.95


def test_audio_from_a_clip_without_audio_writes_video_only(folder):
    frames = M.indexed_frames(5, size=SIZE)
    silent = M.write_clip(folder / "silent.mp4", frames, 25)
    out = io.write_video(folder / "silent_out.mp4", frames, 25, audio_from=silent)
    assert not io.probe(out).has_audio
    with pytest.raises(InputError, match="no audio"):
        io.audio_samples(out)


# ---------------------------------------------------------------------------------------------------------------------
# atomic writes


class Boom(Exception):
    pass


def _failing(frames, at, exc):
    for i, f in enumerate(frames):
        if i == at:
            raise exc
        yield f


@pytest.mark.parametrize("exc", [Boom("encoder died"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_atomic_write_leaves_nothing_on_failure(tmp_path, exc):
    frames = M.indexed_frames(10, size=SIZE)
    target = tmp_path / "out.mp4"
    with pytest.raises(type(exc)):
        io.write_video(target, _failing(frames, 6, exc), 25)
    assert list(tmp_path.iterdir()) == []
    # an existing file is left untouched by a failed overwrite
    target.write_bytes(b"previous result")
    with pytest.raises(type(exc)):
        io.write_video(target, _failing(frames, 3, exc), 25)
    assert target.read_bytes() == b"previous result"
    assert list(tmp_path.iterdir()) == [target]
    # a bad frame (wrong size) is also a failure that leaves nothing behind
    bad = list(frames[:3]) + [np.zeros((10, 10, 3), np.uint8)]
    with pytest.raises(ValueError, match="differs"):
        io.write_video(tmp_path / "bad.mp4", bad, 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# ---------------------------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_input_error(tmp_path):
    bad = M.write_bad_files(tmp_path)
    for kind, path in bad.items():
        with pytest.raises(InputError) as e:
            io.probe(path)
        msg = str(e.value)
        assert path.name in msg and "\n" not in msg, kind
    assert "audio-only" in _msg(bad["audio_only"])
    assert "empty" in _msg(bad["empty"])
    with pytest.raises(InputError, match="not found"):
        io.probe(tmp_path / "missing.mp4")
    with pytest.raises(InputError):
        io.read_frames(bad["text"])


def test_truncated_faststart_mp4_raises_input_error(tmp_path):
    out = io.write_video(tmp_path / "full.mp4", M.indexed_frames(40, size=SIZE), 25)
    data = out.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        io.probe(cut)


def _msg(path: Path) -> str:
    try:
        io.probe(path)
    except InputError as e:
        return str(e)
    raise AssertionError("no InputError")


# ---------------------------------------------------------------------------------------------------------------------
# side by side


def test_side_by_side_scales_to_same_height_and_labels():
    left = M.indexed_frames(3, size=(96, 64))
    right = M.indexed_frames(3, size=(48, 32), seed=1)
    out = list(io.side_by_side(left, right, labels=("source", "result")))
    assert len(out) == 3
    assert out[0].shape == (64, 96 + 4 + 96, 3)
    assert not np.array_equal(out[0][:12, :40], left[0][:12, :40])  # label drawn
    assert M.read_index(out[1][:, 100:]) == 1
    with pytest.raises(ValueError, match="ended"):
        list(io.side_by_side(left, right[:2]))


def test_side_by_side_shrinks_large_clips_to_a_viewing_size_and_never_enlarges():
    assert io.viewing_size(1920, 1080) == (1280, 720) and io.viewing_size(3840, 2160) == (1280, 720)
    assert io.viewing_size(1080, 1920) == (720, 1280)  # portrait: the long side is the height
    assert io.viewing_size(1280, 720) == (1280, 720) and io.viewing_size(352, 288) == (352, 288)
    big = M.indexed_frames(2, size=(192, 108))
    out = list(io.side_by_side(big, big, max_side=128))
    assert out[0].shape == (72, 128 + 4 + 128, 3) and M.read_index(out[1][:, 132:]) == 1
    small = M.indexed_frames(2, size=(96, 64))
    assert list(io.side_by_side(small, small, max_side=128))[0].shape == (64, 96 + 4 + 96, 3)


def test_sensible_rate():
    assert io.sensible_rate(29.97002997) == Fraction(30000, 1001)
    assert io.sensible_rate(23.976) == Fraction(24000, 1001)
    assert io.sensible_rate(25.0) == 25
    assert io.sensible_rate(29.6, vfr=True) == 30
    assert io.sensible_rate(27.3, vfr=True) == Fraction(55, 2)
