"""The four places where our backend had to follow ICLoraPipeline instead of diffusers' defaults (docs/PARITY.md),
pinned on the tiny model so a refactor cannot quietly undo them. The end-to-end proof is benchmarks/parity_ltx.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synclora.config import PropagationSettings
from synclora.propagate.base import Segment

TINY = PropagationSettings(backend="synclora", model="tiny", quality="full", seed=0)


@pytest.fixture(scope="module")
def prop():
    from synclora.propagate.ltx import SyncLoRAPropagator

    return SyncLoRAPropagator(TINY)


def _segment(n=9, size=64, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Segment(frames=frames, edited=255 - frames[0], fps=25.0, settings=TINY)


def test_conditions_reach_the_pipeline_as_ltx_pipelines_prepares_them(prop):
    """Edited frame at the working size in both stages (CRF first, resize after); reference as float pixels."""
    from synclora.ltx.vae import resize_frames

    seg = _segment()
    calls, vae_state = [], []
    pipe = prop.model.pipe
    real_call = type(pipe).__call__

    def spy(self, *a, **kw):
        calls.append(kw)
        vae_state.append((self.vae.use_framewise_decoding, self.vae.use_framewise_encoding, self.vae.use_tiling))
        return real_call(self, *a, **kw)

    type(pipe).__call__ = spy
    try:
        prop.propagate(seg)
    finally:
        type(pipe).__call__ = real_call
    assert len(calls) == 2
    for kw in calls:  # stage 1 (half size) and stage 2 (full size) both get the full-size edited frame
        (first,) = kw["conditions"]
        assert np.array_equal(np.asarray(first.frames), seg.edited)
    (ref,) = calls[0]["reference_conditions"]
    assert torch.is_tensor(ref.frames) and ref.frames.dtype == torch.float32
    h1 = seg.frames.shape[1] // 2
    assert torch.equal(ref.frames, resize_frames(seg.frames, h1, h1))
    assert not torch.equal(ref.frames, (ref.frames * 255).round() / 255), "reference was re-quantized to uint8"
    assert vae_state == [(False, False, False)] * 2, "the VAE must encode untiled (as ICLoraPipeline does)"


@pytest.mark.parametrize("on", [False, True])
def test_vae_tiling_is_scoped_to_the_decode(on):
    from synclora.ltx.tiny import tiny_components
    from synclora.ltx.vae import enable_tiling, tiling

    vae = tiny_components()["vae"]
    with tiling(vae, on):
        assert (vae.use_framewise_decoding, vae.use_tiling) == (on, on)
    assert (vae.use_framewise_decoding, vae.use_framewise_encoding, vae.use_tiling) == (False, False, False)
    enable_tiling(vae)  # training's VAE tiles for good: a scoped decode gives that state back
    with tiling(vae, False):
        assert not (vae.use_framewise_decoding or vae.use_tiling)
    assert (vae.use_framewise_decoding, vae.use_framewise_encoding, vae.use_tiling) == (True, True, True)


@pytest.mark.parametrize("memory", ["bf16", "fp8"])
def test_tiled_decode_only_in_the_memory_saving_modes(memory):
    from synclora.ltx.lora import LoraFile, lora_module_shapes, random_lora_state_dict
    from synclora.ltx.recipe import build_model
    from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds

    comps = tiny_components()
    lora = LoraFile(random_lora_state_dict(lora_module_shapes(comps["transformer"]), rank=2), {}, 2)
    model = build_model(comps, *tiny_prompt_embeds(), lora, memory=memory, dtype=torch.float32, crf=0)
    assert model.tiled_decode == (memory == "fp8")
    assert not (model.pipe.vae.use_framewise_encoding or model.pipe.vae.use_framewise_decoding)


def test_a_whole_decode_that_runs_out_of_memory_is_retried_in_tiles():
    from synclora.ltx.lora import LoraFile, lora_module_shapes, random_lora_state_dict
    from synclora.ltx.recipe import build_model, decode_latents
    from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds

    comps = tiny_components()
    lora = LoraFile(random_lora_state_dict(lora_module_shapes(comps["transformer"]), rank=2), {}, 2)
    model = build_model(comps, *tiny_prompt_embeds(), lora, dtype=torch.float32, crf=0)
    vae = model.pipe.vae
    real, tiled = vae.decode, []

    def decode(latents, *a, **k):
        tiled.append(vae.use_framewise_decoding)
        if not vae.use_framewise_decoding:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(latents, *a, **k)

    vae.decode = decode
    video = decode_latents(model, torch.zeros(1, 4, 5, 8, 8))
    assert tiled == [False, True] and video.shape[2] == 9
    assert not vae.use_framewise_decoding


def test_uint8_conversion_is_ltx_cores():
    """Truncation after clamping, in the decoder's dtype: what ltx-core's decode_video writes."""
    from synclora.ltx.vae import to_uint8

    values = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 0.99, 1.0, 2.0])
    video = values.view(1, 1, 1, 1, -1).expand(1, 3, 1, 1, -1)
    got = to_uint8(video)[0, 0, :, 0]
    expected = (((values + 1.0) / 2.0).clamp(0, 1) * 255.0).to(torch.uint8).numpy()
    assert np.array_equal(got, expected)
    assert got.tolist() == [0, 0, 0, 127, 191, 253, 255, 255]  # 127.5 -> 127, not 128
