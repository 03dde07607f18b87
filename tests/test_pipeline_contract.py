"""The edit contract, end to end through the CLI with the CPU backend.

Same fps (exact rational), frame count, duration and audio as the source; frame k is the edited frame; the edit
follows the motion; bad input gives one line on stderr, exit code 2 and nothing at --out.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from synclora.cli import main
from synclora.testing import media
from synclora.video import io

N = 36


def _clip(tmp: Path, fps: Fraction, size=(128, 160), n=N, container="mp4", audio=True):
    frames, truth = media.talking_face_frames(n, size=size, fps=float(fps), seed=3)
    sound = media.tone(n / float(fps) + 0.2) if audio else None
    path = media.write_clip(tmp / f"src.{container}", frames, fps, audio=sound)
    return path, frames, truth


def _edit(tmp: Path, src: Path, k: int, truth) -> tuple[Path, np.ndarray, tuple[int, int]]:
    frame = io.read_frame(src, k)
    ex, ey = (int(v) for v in _cheek(truth, k))
    edited = frame.copy()
    cv2.rectangle(edited, (ex - 7, ey - 5), (ex + 7, ey + 5), (255, 0, 0), -1)  # a red sticker on the cheek
    path = tmp / "edited.png"
    cv2.imwrite(str(path), edited[:, :, ::-1])
    return path, edited, (ex, ey)


def _cheek(truth, i: int) -> np.ndarray:
    """A point on the left cheek: below the left eye, level with the nose tip."""
    eye, mouth = truth["left_eye"][i], truth["mouth_center"][i]
    return np.array([eye[0], (eye[1] + mouth[1]) / 2])


def _red_centroid(frame: np.ndarray, near: tuple[float, float], radius: int = 30) -> tuple[float, float]:
    """Centroid of pure-red pixels within `radius` of `near` (the textured background has red spots elsewhere)."""
    x0, y0 = int(near[0]) - radius, int(near[1]) - radius
    win = frame[max(0, y0): y0 + 2 * radius, max(0, x0): x0 + 2 * radius].astype(int)
    mask = (win[..., 0] > 180) & (win[..., 1] < 90) & (win[..., 2] < 90)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 20, "the red edit vanished"
    return xs.mean() + max(0, x0), ys.mean() + max(0, y0)


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60)])
def test_edit_keeps_timing_audio_and_frame_k(tmp_path, fps):
    src, frames, truth = _clip(tmp_path, fps)
    k = 13
    edited_path, edited, _ = _edit(tmp_path, src, k, truth)
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    rc = main([
        "propagate", str(src), "--edited", str(edited_path), "--edit-index", str(k), "--out", str(out),
        "--side-by-side", str(sbs), "--backend", "flow", "--quiet",
    ])
    assert rc == 0
    a, b = io.probe(src), io.probe(out)
    assert b.fps == a.fps and b.n_frames == a.n_frames == N
    assert b.duration == pytest.approx(a.duration)
    assert (b.width, b.height) == (a.width, a.height)
    assert b.has_audio
    sa, ra = io.audio_samples(src, (0, N))
    sb, rb = io.audio_samples(out, (0, N))
    assert ra == rb and sa.shape == sb.shape
    assert np.abs(sa - sb).max() < 1e-4  # copied, not re-encoded
    result = io.read_frames(out)
    # Frame k is the edit (up to H.264): much closer to it than to the unedited source frame.
    assert media.psnr(result[k], edited) > 32
    assert media.psnr(result[k], edited) > media.psnr(result[k], frames[k]) + 6
    s = io.probe(sbs)
    assert s.n_frames == N and s.fps == a.fps and s.has_audio


def test_a_side_by_side_shown_smaller_than_the_clip_says_so_and_the_result_keeps_its_size(tmp_path, monkeypatch):
    from synclora.config import PropagationRequest, PropagationSettings
    from synclora.pipeline import run_propagation

    monkeypatch.setattr(io, "VIEWING_MAX_SIDE", 80)  # as a 1080p clip meets the real cap, without 1080p's cost
    src, _, truth = _clip(tmp_path, Fraction(25), size=(128, 160), n=8)
    edited_path, edited, _ = _edit(tmp_path, src, 3, truth)
    result = run_propagation(PropagationRequest(source=src, edited=edited_path, out=tmp_path / "out.mp4",
                                                side_by_side=tmp_path / "sbs.mp4", edit_index=3,
                                                settings=PropagationSettings(backend="flow")))
    a, r, s = io.probe(src), io.probe(result.out), io.probe(result.side_by_side)
    assert (r.size, r.n_frames, r.fps) == (a.size, 8, a.fps)
    assert s.height == 80 and s.width == 2 * 64 + 4 and s.n_frames == 8 and s.fps == a.fps and s.has_audio
    assert any("side-by-side video shows source and result at 64×80 each" in n and "128×160" in n
               for n in result.notices), result.notices


def test_edit_follows_motion_and_keeps_the_mouth(tmp_path):
    fps = Fraction(25)
    src, frames, truth = _clip(tmp_path, fps, size=(192, 192), n=40)
    k = 20
    edited_path, _, _ = _edit(tmp_path, src, k, truth)
    out = tmp_path / "out.mp4"
    assert main(["propagate", str(src), "--edited", str(edited_path), "--edit-index", str(k), "--out", str(out),
                 "--backend", "flow", "--quiet"]) == 0
    result = io.read_frames(out)
    source = io.read_frames(src)
    errors = []
    for i in range(0, 40, 3):
        ex, ey = _cheek(truth, i)
        cx, cy = _red_centroid(result[i], (ex, ey))
        errors.append(np.hypot(cx - ex, cy - ey))
    assert max(errors) < 4.0, errors  # the sticker stays on the cheek in every frame, forward and backward
    # The mouth comes from the source itself (it opens and closes as in the source).
    mx, my = (int(v) for v in truth["mouth_center"][k])
    box = np.s_[:, my - 12: my + 12, mx - 16: mx + 16]
    assert np.abs(result[box].astype(int) - source[box].astype(int)).mean() < 6


@pytest.mark.parametrize("size,fit", [((96, 176), "pad"), ((96, 176), "crop"), ((210, 118), "pad")])
def test_any_aspect_comes_back_at_source_size(tmp_path, size, fit):
    src, _, truth = _clip(tmp_path, Fraction(25), size=size, n=12, audio=False)
    edited_path, _, _ = _edit(tmp_path, src, 0, truth)
    out = tmp_path / "out.mp4"
    assert main(["propagate", str(src), "--edited", str(edited_path), "--out", str(out), "--backend", "flow",
                 "--fit", fit, "--quiet"]) == 0
    info = io.probe(out)
    assert (info.width, info.height) == (size[0] + size[0] % 2, size[1] + size[1] % 2) or \
        (info.width, info.height) == size
    assert info.n_frames == 12 and not info.has_audio


def _main_exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors exit from inside parse_args
        return int(exc.code)


def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys):
    src, _, truth = _clip(tmp_path, Fraction(25), n=10, audio=False)
    edited_path, edited, _ = _edit(tmp_path, src, 0, truth)
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.zeros((50, 300, 3), np.uint8))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    out = tmp_path / "out.mp4"
    cases = [
        ("propagate", src, "--edited", edited_path, "--edit-index", "10", "--out", out),  # frame out of range
        ("propagate", src, "--edited", edited_path, "--edit-index", "-1", "--out", out),
        ("propagate", src, "--edited", edited_path, "--edit-index", "two", "--out", out),
        ("propagate", src, "--edited", wide, "--out", out),  # another aspect ratio
        ("propagate", empty, "--edited", edited_path, "--out", out),
        ("propagate", text, "--edited", edited_path, "--out", out),
        ("propagate", tmp_path / "missing.mp4", "--edited", edited_path, "--out", out),
        ("propagate", src, "--edited", text, "--out", out),  # not an image
        ("info", empty),
        ("propagate", src, "--edited", edited_path, "--out", out, "--backend", "nonsense"),
    ]
    for case in cases:
        code = _main_exit_code([str(c) for c in case])
        err = capsys.readouterr().err
        assert code == 2, (case, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in err, (case, err)
        assert not out.exists(), case
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_own_lora_file_is_used_and_a_corrupt_one_is_refused(tmp_path, capsys):
    src, _, truth = _clip(tmp_path, Fraction(25), size=(64, 64), n=9, audio=False)
    edited_path, _, _ = _edit(tmp_path, src, 0, truth)
    out = tmp_path / "out.mp4"
    base = ["propagate", str(src), "--edited", str(edited_path), "--out", str(out), "--backend", "synclora",
            "--model", "tiny", "--quiet"]
    missing = _main_exit_code(base + ["--lora", str(tmp_path / "nope.safetensors")])
    assert missing == 2 and "LoRA file not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert _main_exit_code(base + ["--lora", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_generative_backend_in_chunks_keeps_the_contract(tmp_path):
    """The tiny Sync-LoRA model (17-frame chunks) on a 29.97 fps clip longer than one chunk, edited mid-clip.

    26 frames edited at 7: one call back to frame 0 and, forward, one full chunk plus a short one (19 frames in two
    chunks), the fewest model calls that still cross a chunk seam on both sides of the edit."""
    from synclora.config import PropagationRequest, PropagationSettings
    from synclora.pipeline import run_propagation

    n = 26
    src, _, truth = _clip(tmp_path, Fraction(30000, 1001), size=(64, 48), n=n)
    k = 7
    edited_path, edited, _ = _edit(tmp_path, src, k, truth)
    settings = PropagationSettings(backend="synclora", model="tiny", chunk_overlap=4)
    result = run_propagation(PropagationRequest(source=src, edited=edited_path, out=tmp_path / "out.mp4", edit_index=k,
                                                settings=settings))
    assert any("chunks" in n for n in result.notices)
    a, b = io.probe(src), io.probe(result.out)
    assert (b.fps, b.n_frames, b.width, b.height) == (a.fps, n, a.width, a.height) and b.has_audio
    assert media.psnr(io.read_frame(result.out, k), edited) > 30
