"""The GPU speed levers (synclora/ltx/speed.py) run their real code paths on the tiny model, on the CPU.

Speed itself is measured by benchmarks/gpu_suite.py on a GPU; here each lever must run end to end and keep the
result: the attention switch and AoT blocks exactly, fp8 within fp8's error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synclora.config import PropagationSettings
from synclora.ltx import speed
from synclora.propagate.base import Segment

TINY = PropagationSettings(backend="synclora", model="tiny", quality="full", seed=0)


def _model(memory="bf16", options=None):
    from synclora.ltx.lora import LoraFile, lora_module_shapes, random_lora_state_dict
    from synclora.ltx.recipe import build_model
    from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds

    comps = tiny_components(seed=0)
    shapes = lora_module_shapes(comps["transformer"])
    sync = LoraFile(random_lora_state_dict(shapes, rank=2, seed=1, scale=0.5), {}, 2)
    distilled = LoraFile(random_lora_state_dict(shapes, rank=2, seed=2, scale=0.1), {}, 2)
    return build_model(comps, *tiny_prompt_embeds(), sync, distilled, memory=memory, dtype=torch.float32, crf=0,
                       speed=options)


@pytest.fixture(scope="module")
def segment():
    frames = np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    return Segment(frames=frames, edited=255 - frames[0], fps=25.0, settings=TINY)


@pytest.fixture(scope="module")
def baseline(segment):
    from synclora.propagate.ltx import SyncLoRAPropagator

    return SyncLoRAPropagator(TINY, model=_model()).propagate(segment).astype(int)


def _run(model, segment):
    from synclora.propagate.ltx import SyncLoRAPropagator

    return SyncLoRAPropagator(TINY, model=model).propagate(segment).astype(int)


def test_options_from_the_runtime(tmp_path):
    """The levers' variables are read by `synclora.runtime.Runtime` (the one reader) and turned into options here."""
    from synclora.errors import InputError
    from synclora.runtime import Runtime

    def options(**env) -> speed.SpeedOptions:
        return speed.SpeedOptions.from_runtime(Runtime.from_env(env))

    assert options() == speed.SpeedOptions()
    assert speed.SpeedOptions().label() == "default"
    env = dict(SYNCLORA_ATTENTION="_flash_3", SYNCLORA_FP8_MATMUL="1", SYNCLORA_AOT_DIR=str(tmp_path))
    opts = options(**env)
    assert (opts.attention, opts.fp8_matmul, opts.aot) == ("_flash_3", True, "")  # no packages there yet
    (tmp_path / speed.AOT_MANIFEST).write_text("{}")
    assert options(**env).aot == "load"  # saved packages are picked up: no warm-up
    assert options(**env, SYNCLORA_AOT="off").aot == ""
    assert options(**env, SYNCLORA_AOT="compile").aot == "compile"
    with pytest.raises(InputError, match="SYNCLORA_AOT must be"):
        options(SYNCLORA_AOT="fast")
    with pytest.raises(InputError, match="SYNCLORA_AOT_DIR"):
        options(SYNCLORA_AOT="load")
    with pytest.raises(InputError, match="SYNCLORA_FP8_MATMUL"):
        options(SYNCLORA_FP8_MATMUL="maybe")


# --- attention --------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_attention_backend_drops_the_all_ones_text_mask_and_keeps_the_result(segment, baseline):
    model = _model(options=speed.SpeedOptions(attention="_native_math"))
    assert model.pipe.connectors.mask is None
    assert any("_native_math" in n for n in model.speed_notes)
    assert np.abs(_run(model, segment) - baseline).max() <= 1


def test_attention_backend_refuses_a_real_mask():
    model = _model()
    model.pipe.connectors.mask[:, 0] = 0
    with pytest.raises(RuntimeError, match="not all ones"):
        speed.set_attention(model, "_native_math")


# --- fp8 --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scaled_mm", [True, False])
def test_fp8_linear_is_a_linear_within_fp8_error(scaled_mm):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48).to(torch.bfloat16)
    x = torch.randn(3, 7, 64, dtype=torch.bfloat16)
    fp8 = speed.Fp8Linear(linear, use_scaled_mm=scaled_mm)
    assert fp8.weight.dtype == torch.float8_e4m3fn and fp8.use_scaled_mm == scaled_mm
    with torch.no_grad():
        ref, out = linear(x).float(), fp8(x).float()
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert float((out - ref).norm() / ref.norm()) < 0.06  # e4m3 keeps 3 mantissa bits on both operands


def test_fp8_activations_are_clamped_not_overflowed():
    linear = torch.nn.Linear(32, 16).to(torch.bfloat16)
    x = torch.randn(4, 32, dtype=torch.bfloat16) * 1e4  # past e4m3's range before scaling
    x[0, 0] = 3e38
    out = speed.Fp8Linear(linear, use_scaled_mm=True)(x)
    assert torch.isfinite(out).all()


def test_fp8_keeps_ltx_cores_bf16_layers():
    assert speed.fp8_excluded("proj_in", 48) and speed.fp8_excluded("time_embed.linear", 48)
    assert speed.fp8_excluded("transformer_blocks.0.attn1.to_q", 48)
    assert speed.fp8_excluded("transformer_blocks.43.ff.net.2", 48)
    assert not speed.fp8_excluded("transformer_blocks.1.attn1.to_q", 48)
    assert not speed.fp8_excluded("transformer_blocks.42.ff.net.2", 48)
    assert not speed.fp8_excluded("transformer_blocks.1.attn1.to_q", 2)  # tiny: every block


@pytest.mark.slow
def test_fp8_mode_with_real_fp8_matmuls_runs_and_keeps_sync_lora(segment, baseline):
    model = _model("fp8", speed.SpeedOptions(fp8_matmul=True))
    transformer = model.pipe.transformer
    layers = [m for m in transformer.modules() if isinstance(m, speed.Fp8Linear)]
    assert layers and not any(m.use_scaled_mm for m in layers)  # no CUDA here: dequantized, and it says so
    assert any("no CUDA GPU" in n for n in model.speed_notes)
    lora_layer = transformer.transformer_blocks[0].attn1.to_q
    assert isinstance(lora_layer.base_layer, speed.Fp8Linear) and "sync" in lora_layer.lora_A
    assert not any(getattr(m, "_diffusers_hook", None) for m in transformer.modules()
                   if isinstance(m, speed.Fp8Linear)), "layerwise casting must not wrap real fp8 layers"
    # Run the very arithmetic the GPU runs: torch._scaled_mm also exists on the CPU (slowly).
    for m in layers:
        m.use_scaled_mm = True
    out = _run(model, segment)
    assert out.shape == baseline.shape
    assert np.abs(out - baseline).mean() < 2.0  # fp8 rounding, not a different video


def test_fp8_matmul_outside_fp8_mode_is_ignored_with_a_note():
    model = _model("bf16", speed.SpeedOptions(fp8_matmul=True))
    assert not any(isinstance(m, speed.Fp8Linear) for m in model.pipe.transformer.modules())
    assert any("fp8 only" in n for n in model.speed_notes)


# --- ahead-of-time compiled blocks ------------------------------------------------------------------------------------
def _has_cxx() -> bool:
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.slow  # two AOTInductor packages compiled with g++: about a minute of CPU
@pytest.mark.skipif(not _has_cxx(), reason="AOTInductor needs a C++ compiler on the CPU (apt-get install g++)")
def test_aot_blocks_compile_save_load_and_match_eager(segment, baseline, tmp_path):
    """Stage 1 (Sync-LoRA on) and stage 2 (off) each get a package shared by every block; a second model loads the
    saved packages without compiling and makes the same video."""
    from synclora.propagate.ltx import SyncLoRAPropagator

    model = _model()
    prop = SyncLoRAPropagator(TINY, model=model)
    # Plain-torch packaging: what a GPU box without gradio/spaces runs (the spaces route is checked below). Scalar
    # C++ kernels (no SIMD): packaging, dispatch and loading are the same, and the compile costs a quarter less CPU.
    aot = speed.compile_aot(model, lambda: prop.propagate(segment), tmp_path, inductor={"cpp.vec_isa_ok": False},
                            log=lambda *_: None, use_spaces=False)
    assert {p.name for p in tmp_path.iterdir()} == set(speed.AOT_FILES.values()) | {speed.AOT_MANIFEST}
    blocks = model.pipe.transformer.transformer_blocks
    assert all(isinstance(b.forward, speed._Dispatch) for b in blocks)
    assert set(aot.models) == {"stage1", "stage2"}
    calls = []

    def counting(package, stage):
        def call(weights, *a, **k):
            calls.append(stage)
            return package(weights, *a, **k)
        return call

    for b in blocks:  # count which package each block call runs
        for stage, (package, weights) in list(b.forward.calls.items()):
            b.forward.calls[stage] = (counting(package, stage), weights)
    out = prop.propagate(segment).astype(int)
    assert np.abs(out - baseline).max() <= 1
    n_blocks = len(blocks)
    assert calls.count("stage1") == 8 * n_blocks and calls.count("stage2") == 3 * n_blocks

    fresh = _model(options=speed.SpeedOptions(aot="load", aot_dir=str(tmp_path)))
    assert isinstance(fresh.aot, speed.AotBlocks)
    assert np.abs(_run(fresh, segment) - baseline).max() <= 1
    fresh.aot.remove()
    assert not isinstance(fresh.pipe.transformer.transformer_blocks[0].forward, speed._Dispatch)

    manifest = json.loads((tmp_path / speed.AOT_MANIFEST).read_text())
    manifest["torch"] = "0.0"
    (tmp_path / speed.AOT_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError, match="another setup"):
        speed.load_aot(fresh, tmp_path)  # the same setup as a new model's, now that its packages are removed


def test_aot_packages_through_spaces_when_it_is_installed(monkeypatch):
    import io

    aoti = pytest.importorskip("spaces.zero.torch.aoti")

    class Compiled:
        archive_file = io.BytesIO(b"package")

    seen = []
    monkeypatch.setattr(aoti, "aoti_compile", lambda exported, configs: seen.append(configs) or Compiled())
    assert speed._package("exported", {"max_autotune": True}) == b"package"
    assert seen == [{"max_autotune": True}]
