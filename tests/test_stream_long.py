"""A long clip in bounded memory: 90 s of 640×360 propagated by the CLI under an address-space limit that holding the
clip would exceed many times over (1,350 frames: 0.9 GB of frames, several GB for a whole-clip propagation), and the
result checked frame by frame against the edit, the source's frame count and its audio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from synclora.cli import main
from synclora.testing import media
from synclora.video import io

from support import hostile

pytestmark = pytest.mark.slow

SECONDS, FPS, SIZE = 90, 15, (640, 360)
CYCLE = 40  # frames of motion, played forward and back
LIMIT_MB = 1024  # address space the propagation may grow by
PATCH = (slice(150, 175), slice(290, 350))  # rows, columns of the red patch painted on the edited frame


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("long")
    cycle, _ = media.talking_face_frames(CYCLE, size=SIZE, fps=FPS, seed=5)
    n = SECONDS * FPS

    def at(i: int) -> int:
        j = i % (2 * CYCLE - 2)
        return j if j < CYCLE else 2 * CYCLE - 2 - j

    src = media.write_clip(d / "long.mp4", (cycle[at(i)] for i in range(n)), FPS, audio=media.tone(SECONDS + 0.1),
                           gop=2 * FPS)
    k = n // 2
    edited = io.read_frame(src, k)
    edited[PATCH] = (255, 0, 0)
    Image.fromarray(edited).save(d / "edited.png")
    return {"src": src, "edited": d / "edited.png", "k": k, "n": n, "dir": d}


def test_ninety_seconds_stream_under_a_memory_limit(long_clip):
    src, d = long_clip["src"], long_clip["dir"]
    out = d / "out.mp4"
    info = io.probe(src)
    whole_clip = info.n_frames * info.width * info.height * 3
    assert whole_clip > 0.8 * LIMIT_MB * 1024**2  # the frames alone nearly fill the limit; a whole-clip design needs
    # them at least twice (working frames and result) besides the model and the encoder
    r = hostile.run_bounded(main, ["propagate", str(src), "--edited", str(long_clip["edited"]), "--out", str(out),
                                   "--edit-index", str(long_clip["k"]), "--backend", "flow", "--quiet"],
                            limit_mb=LIMIT_MB, timeout=1800)
    assert r.rc == 0, r.err[-2000:]
    got = io.probe(out)
    assert got.n_frames == info.n_frames and got.fps == info.fps and got.has_audio
    a_src, rate_src = io.audio_samples(src)
    a_out, rate_out = io.audio_samples(out)
    # the source's audio, copied, up to the end of the video (the result never plays longer than its video)
    n_audio = a_out.shape[1]
    assert rate_out == rate_src and abs(n_audio - SECONDS * rate_src) <= 1024, (n_audio, SECONDS * rate_src)
    assert np.allclose(a_out, a_src[:, :n_audio], atol=1e-3)
    # frame by frame: the patch is carried (as many red pixels as were painted, where the face has them: at the same
    # point of the face's motion cycle as a frame next to the edited one, so nothing drifts over the 90 s) and far
    # from it the frame is the source's, up to H.264
    k, period = long_clip["k"], 2 * CYCLE - 2
    far = np.ones(SIZE[::-1], bool)
    far[PATCH[0].start - 40:PATCH[0].stop + 40, PATCH[1].start - 40:PATCH[1].stop + 40] = False
    area = (PATCH[0].stop - PATCH[0].start) * (PATCH[1].stop - PATCH[1].start)
    counts, centres, outside = [], [], []
    for s, o in zip(io.iter_frames(src), io.iter_frames(out), strict=True):
        ys, xs = np.nonzero(o[..., 0].astype(int) - o[..., 1] > 150)
        counts.append(len(ys))
        centres.append((ys.mean(), xs.mean()) if len(ys) else (np.nan, np.nan))
        outside.append(media.psnr(s[far], o[far]))
    assert len(counts) == info.n_frames
    counts, centres, outside = np.array(counts), np.array(centres), np.array(outside)
    assert (counts > 0.8 * area).all() and (counts < 1.4 * area).all(), (counts.min(), counts.max(), area)
    near = {i % period: centres[i] for i in range(k, k + period)}  # one whole cycle next to the edited frame
    drift = np.array([np.abs(centres[i] - near[i % period]).max() for i in range(info.n_frames)])
    assert drift.max() < 4.0, (drift.max(), int(np.argmax(drift)))
    assert np.median(outside) > 38 and outside.min() > 30, (outside.min(), np.argmin(outside))
