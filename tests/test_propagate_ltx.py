"""The Sync-LoRA backend on the tiny LTX-2.3 model: the real two-stage code path, offline, on the CPU.

One tiny model is built per process (the backend registry keeps it, as the app does) and shared by all tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synclora.config import PropagationSettings
from synclora.errors import InputError, ModelUnavailableError, OutOfMemoryError
from synclora.propagate.base import Segment

ROOT = Path(__file__).resolve().parents[1]
TINY = PropagationSettings(backend="synclora", model="tiny", quality="full", seed=0)


@pytest.fixture(scope="module")
def prop():
    from synclora.propagate import registry

    return registry.get(TINY)


def _segment(n: int = 9, size: int = 64, seed: int = 0, **settings) -> Segment:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    edited = 255 - frames[0]
    s = PropagationSettings(**{**TINY.to_dict(), **settings})
    return Segment(frames=frames, edited=edited, fps=25.0, settings=s)


@pytest.mark.slow
def test_cli_edit_end_to_end_keeps_the_video_contract(tmp_path):
    """`python -m synclora edit … --backend synclora --model tiny`: frames, fps, duration and audio survive."""
    from PIL import Image

    from synclora.testing.media import tone, write_clip
    from synclora.video.io import audio_samples, probe

    n = 9  # one backend call (frame 0 forward); chunking and reversal are the scheduler's, tested there
    frames = np.random.default_rng(1).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    src = write_clip(tmp_path / "src.mp4", frames, 25, audio=tone(n / 25))
    Image.fromarray(255 - frames[0]).save(tmp_path / "edit.png")
    out = tmp_path / "out.mp4"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "synclora", "propagate", str(src), "--edited", str(tmp_path / "edit.png"),
           "--edit-index", "0", "--out", str(out), "--backend", "synclora", "--model", "tiny", "--resolution", "64",
           "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = probe(src), probe(out)
    assert (b.n_frames, b.fps, b.width, b.height) == (a.n_frames, a.fps, a.width, a.height)
    assert abs(b.duration - a.duration) < 1e-6
    assert b.has_audio
    sa, ra = audio_samples(src)
    sb, rb = audio_samples(out)
    assert ra == rb and abs(sa.shape[1] - sb.shape[1]) <= ra // 25  # within one frame of audio


def test_one_forward_per_step_with_the_distilled_sigmas(prop):
    """Guidance really off (batch 1, one call per step) and exactly the distilled sigma lists, stage 1 then 2."""
    from synclora.ltx.recipe import STAGE_1_SIGMAS, STAGE_2_SIGMAS

    calls = []

    def hook(_module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        calls.append((hidden.shape[0], float(kwargs["sigma"][0]) / 1000.0, kwargs["timestep"].detach().clone()))

    handle = prop.model.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = prop.propagate(_segment())
    finally:
        handle.remove()
    assert out.shape == (9, 64, 64, 3) and out.dtype == np.uint8
    assert len(calls) == len(STAGE_1_SIGMAS) + len(STAGE_2_SIGMAS)
    assert all(batch == 1 for batch, _, _ in calls)
    sigmas = [s for _, s, _ in calls]
    np.testing.assert_allclose(sigmas, STAGE_1_SIGMAS + STAGE_2_SIGMAS, atol=1e-6)
    # Stage 1: target (5 latent frames at half the 64 px side) + reference tokens; the first latent frame and the
    # whole reference are clean (timestep 0), the rest is at the current sigma.
    side = 64 // prop.model.pipe.vae.spatial_compression_ratio  # latent side at full resolution
    t1 = calls[0][2][0]
    per_frame = (side // 2) ** 2
    assert t1.numel() == 2 * 5 * per_frame
    assert torch.all(t1[:per_frame] == 0) and torch.all(t1[5 * per_frame:] == 0)
    assert torch.all(t1[per_frame: 5 * per_frame] == 1000.0)
    # Stage 2: no reference tokens at full resolution (5 latent frames of side x side).
    assert calls[-1][2].shape[1] == 5 * side * side


@pytest.mark.slow
def test_same_seed_same_video_other_seed_other_video(prop):
    a = prop.propagate(_segment(quality="preview", seed=3))
    b = prop.propagate(_segment(quality="preview", seed=3))
    c = prop.propagate(_segment(quality="preview", seed=4))
    assert a.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 0.5


def test_progress_is_reported_per_stage_and_step(prop):
    seen = []
    prop.propagate(_segment(quality="preview"), lambda f, label: seen.append((f, label)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("stage 1 step" in label for _, label in seen) == 8


def test_sync_lora_loads_without_unmatched_keys_and_changes_the_output(prop, tmp_path):
    from peft.utils import get_peft_model_state_dict

    from synclora.ltx.lora import load_adapter, read_lora, released_to_diffusers
    from synclora.ltx.recipe import SYNC_ADAPTER
    from synclora.ltx.tiny import write_tiny_lora

    pipe = prop.model.pipe
    transformer = pipe.transformer
    expected = released_to_diffusers(read_lora(write_tiny_lora(tmp_path / "s.safetensors", rank=4, seed=1)).state_dict)
    loaded = get_peft_model_state_dict(transformer, adapter_name=SYNC_ADAPTER)
    assert set(loaded) == set(expected)

    g = torch.Generator().manual_seed(0)
    kw = dict(
        hidden_states=torch.randn(1, 64, 4, generator=g),
        audio_hidden_states=torch.randn(1, 9, 4, generator=g),
        encoder_hidden_states=pipe.connectors.video,
        audio_encoder_hidden_states=pipe.connectors.audio,
        encoder_attention_mask=pipe.connectors.mask,
        audio_encoder_attention_mask=pipe.connectors.mask,
        timestep=torch.full((1, 64), 500.0),
        audio_timestep=torch.tensor([500.0]),
        sigma=torch.tensor([500.0]),
        audio_sigma=torch.tensor([500.0]),
        num_frames=1, height=8, width=8, fps=25.0, audio_num_frames=9, return_dict=False,
    )
    with torch.no_grad():
        on = transformer(**kw)[0]
        pipe.disable_lora()
        try:
            off = transformer(**kw)[0]
        finally:
            pipe.enable_lora()
    assert (on - off).abs().max() > 1e-3

    # A tensor without a module is refused, not silently dropped.
    bad = dict(expected)
    bad["transformer_blocks.0.attn1.to_nowhere.lora_A.weight"] = torch.zeros(4, 16)
    bad["transformer_blocks.0.attn1.to_nowhere.lora_B.weight"] = torch.zeros(16, 4)
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        load_adapter(pipe, bad, "bad")
    assert "bad" not in transformer.peft_config


def test_availability_and_input_checks(prop, monkeypatch, tmp_path):
    from synclora.propagate import ltx

    assert ltx.availability(TINY) == (True, "")
    monkeypatch.setenv("SYNCLORA_HOME", str(tmp_path))
    monkeypatch.delenv("SYNCLORA_WEIGHTS_DIR", raising=False)
    ok, why = ltx.availability(PropagationSettings(backend="synclora", model="real"))
    assert not ok and why.endswith(("fetch-weights` once (about 50 GB)", "GiB in fp8)"))
    with pytest.raises(InputError, match="8k\\+1"):
        prop.propagate(_segment(n=10))
    bad = _segment(size=64)
    bad = Segment(frames=np.zeros((9, 64, 96 + 4, 3), np.uint8), edited=np.zeros((64, 100, 3), np.uint8), fps=25.0,
                  settings=bad.settings)
    with pytest.raises(InputError, match="divisible by 64"):
        prop.propagate(bad)


def test_out_of_memory_becomes_a_user_error(prop, monkeypatch):
    def boom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(prop, "_run", boom)
    with pytest.raises(OutOfMemoryError, match="preview.*fp8.*offload"):
        prop.propagate(_segment())
    assert not prop.model.lock.locked()


def test_fp8_mode_stores_float8_weights_and_keeps_lora_in_compute_dtype():
    import tempfile

    from synclora.ltx.lora import read_lora
    from synclora.ltx.recipe import build_model
    from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds, write_tiny_lora
    from synclora.propagate.ltx import SyncLoRAPropagator

    with tempfile.TemporaryDirectory() as tmp:
        sync = read_lora(write_tiny_lora(f"{tmp}/s.safetensors", rank=4, seed=1))
    embeds, mask = tiny_prompt_embeds()
    model = build_model(tiny_components(), embeds, mask, sync, None, memory="fp8", device="cpu",
                        dtype=torch.float32, crf=0)
    block = model.pipe.transformer.transformer_blocks[0].attn1.to_q
    assert block.base_layer.weight.dtype == torch.float8_e4m3fn
    assert block.lora_A["sync"].weight.dtype == torch.float32
    out = SyncLoRAPropagator(TINY, model=model).propagate(_segment(quality="preview"))
    assert out.shape == (9, 64, 64, 3) and out.std() > 0


def test_the_model_is_loaded_once_per_process(prop):
    """One cache (the registry): per-call settings (seed, quality, fit, …) reuse the loaded model."""
    from synclora.propagate import registry

    assert registry.get(TINY) is prop
    other = PropagationSettings(**{**TINY.to_dict(), "seed": 9, "quality": "preview", "chunk_overlap": 4})
    assert registry.get(other).model is prop.model
