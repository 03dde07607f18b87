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
    # frame by frame: the patch is carried (red where it was painted; the drawn face's motion is small there) and
    # the rest of the frame is the source's, up to H.264
    inside, outside = [], []
    mask = np.ones(SIZE[::-1], bool)
    mask[PATCH] = False
    for s, o in zip(io.iter_frames(src), io.iter_frames(out), strict=True):
        red = o[PATCH].astype(int)
        inside.append((red[..., 0] - red[..., 1]).mean())
        outside.append(media.psnr(s[mask], o[mask]))
    assert len(inside) == info.n_frames
    inside, outside = np.array(inside), np.array(outside)
    assert (inside > 150).mean() > 0.97 and inside.min() > 60, (inside.min(), np.argmin(inside))
    assert np.median(outside) > 38 and outside.min() > 30, (outside.min(), np.argmin(outside))
