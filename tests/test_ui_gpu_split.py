"""ZeroGPU: a clip that needs more GPU time than one call may take runs in several calls, each within the maximum.

`spaces` is replaced by a stand-in that does what ZeroGPU does with a call's duration: refuses a request over the
maximum, and stops a call that runs longer than it asked for. The tiny Sync-LoRA model (17-frame chunks) runs on CPU.
"""

from __future__ import annotations

import sys
import time
import types
from fractions import Fraction
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from synclora.config import PropagationSettings
from synclora.errors import InputError
from synclora.testing import media
from synclora.ui import gpu
from synclora.ui.glue import GradioPipeline
from synclora.ui.session import SessionFiles
from synclora.video import io

N, K = 20, 0
FPS = Fraction(25)
MAX_S = 150  # the longest call in this test's ZeroGPU
PER_CHUNK_S = 90  # what one tiny chunk is taken to need (a preview chunk takes 10–30 s on a busy 2-core machine)
SETTINGS = PropagationSettings(backend="synclora", model="tiny", quality="preview", chunk_overlap=4)


class FakeZeroGPU:
    """`spaces` on ZeroGPU, as far as durations go."""

    def __init__(self, max_s: float):
        self.max_s = max_s
        self.calls: list[tuple[float, float]] = []  # (asked for, took)

    def GPU(self, duration):  # the `spaces` API's name
        def decorate(fn):
            def call(*args, **kwargs):
                asked = duration(*args, **kwargs) if callable(duration) else duration
                if asked > self.max_s:
                    raise RuntimeError(f"ZeroGPU illegal duration: {asked} s > {self.max_s} s")
                t = time.perf_counter()
                out = fn(*args, **kwargs)
                took = time.perf_counter() - t
                self.calls.append((asked, took))
                if took > asked:
                    raise RuntimeError(f"GPU task aborted: ran {took:.1f} s of the {asked} s asked for")
                return out

            return call

        return decorate


class _Req:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("split")
    frames, _ = media.talking_face_frames(N, size=(96, 128), fps=float(FPS), seed=3)
    path = media.write_clip(tmp / "talk.mp4", frames, FPS, audio=media.tone(N / float(FPS) + 0.1))
    img = io.read_frame(path, K).copy()
    img[30:50, 40:70] = (255, 0, 0)
    edited = tmp / "edit.png"
    Image.fromarray(img).save(edited)
    return path, edited


@pytest.fixture(scope="module")
def loaded():
    from synclora.propagate import registry

    registry.preload(SETTINGS)  # as the app does at start-up, outside any GPU call


@pytest.fixture()
def zerogpu(monkeypatch, tmp_path, loaded):
    fake = FakeZeroGPU(MAX_S)
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=fake.GPU))
    monkeypatch.setattr(gpu, "MAX_SECONDS", MAX_S)
    monkeypatch.setenv("SYNCLORA_GPU_S_PER_CHUNK_PREVIEW", str(PER_CHUNK_S))
    app = GradioPipeline(files=SessionFiles(tmp_path / "sessions"), instruct=None, defaults=SETTINGS)
    return app, fake


def _run(app, clip, progress):
    video, edited = clip
    return app.edit_video(str(video), str(edited), K, "synclora", "preview", model="tiny", chunk_overlap=4,
                          request=_Req("s1"), progress=progress)


def test_a_clip_longer_than_one_call_runs_in_calls_within_the_maximum(zerogpu, clip):
    app, fake = zerogpu
    settings = SETTINGS
    assert gpu.estimate_seconds(N, settings) > MAX_S and gpu.split_calls(N, settings)
    seen: list[tuple[float, str]] = []
    out, _, md = _run(app, clip, lambda f, desc="": seen.append((f, desc)))
    # 20 frames from frame 0 in 17-frame chunks overlapping by 4: two chunks, two calls
    assert len(fake.calls) == 2, fake.calls
    assert all(asked <= MAX_S and took <= asked for asked, took in fake.calls)
    assert all(asked == gpu.chunk_seconds(settings) for asked, _ in fake.calls)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one bar across the calls
    assert sum("GPU call" in d for _, d in seen) >= 2
    a, b = io.probe(clip[0]), io.probe(out)
    assert (b.n_frames, b.fps, b.width, b.height, b.has_audio) == (N, a.fps, a.width, a.height, True)
    assert media.psnr(io.read_frame(out, K), np.asarray(Image.open(clip[1]).convert("RGB"))) > 30
    assert "chunks" in md


def test_a_clip_that_fits_one_call_stays_one_call(zerogpu, clip, monkeypatch):
    app, fake = zerogpu
    monkeypatch.setattr(gpu, "MAX_SECONDS", 2 * MAX_S)
    assert not gpu.split_calls(N, SETTINGS)
    whole = []

    def one_call(req, progress):
        whole.append(req)
        raise InputError("stopped here")  # the one call is the propagation as before; not run again here

    monkeypatch.setattr(app, "_gpu_propagate", one_call)
    with pytest.raises(gr.Error, match="Stopped here"):
        _run(app, clip, lambda f, desc="": None)
    assert len(whole) == 1 and not fake.calls
    assert app._gpu_duration(whole[0]) == gpu.gpu_seconds(N, SETTINGS) > MAX_S


def test_a_chunk_longer_than_any_call_is_refused_up_front(zerogpu, clip, monkeypatch):
    app, fake = zerogpu
    monkeypatch.setenv("SYNCLORA_GPU_S_PER_CHUNK_PREVIEW", str(10 * MAX_S))
    with pytest.raises(gr.Error, match=f"more than the {MAX_S} s one GPU call may take"):
        _run(app, clip, lambda f, desc="": None)
    assert not fake.calls
