"""Lightricks' reference implementation (ltx-core + ltx-pipelines from PyPI), set up beside the project and driven
on random weights written the way the released LTX-2.3 checkpoint is written.

Used by benchmarks/parity_ltx.py and benchmarks/gpu_suite.py; never imported by the app or the tests' default path.

Side environment: ltx-core/ltx-pipelines 1.0.0 pin `torch~=2.7`, but run unchanged on the project's torch (measured:
2.14.1). So they are installed with `pip install --no-deps --target <dir>` together with the two packages they need
that the project lacks (einops, torchaudio; torchaudio only for an import the IC-LoRA path never calls), and <dir>
is *appended* to sys.path, so the project's torch, transformers, safetensors and av always win. The directory is
`SYNCLORA_PARITY_SITE`, default `$SYNCLORA_HOME/parity/site` (~/.cache/synclora/parity/site). Offline machines install
from a folder of wheels (`--wheels DIR`, filled by `pip download --no-deps` with the pins below). Where the two are
installed already (requirements-test.txt pins them for the converter tests), that installation is used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

# Pinned: the parity figures are about exactly this code.
SIDE_REQUIREMENTS = ("ltx-core==1.0.0", "ltx-pipelines==1.0.0", "einops==0.8.2", "torchaudio==2.11.1")

# --- released configs -------------------------------------------------------------------------------------------------
# LTX-2.3 as its checkpoint metadata describes it (ltx-core's configurators read these keys; values from the
# released 22B model). Audio VAE and vocoder sections are what the official pipeline needs to decode audio.
TRUE_CONFIG = {
    "transformer": {
        "_class_name": "AVTransformer3DModel", "num_attention_heads": 32, "attention_head_dim": 128,
        "in_channels": 128, "out_channels": 128, "num_layers": 48, "cross_attention_dim": 4096,
        "caption_channels": 3840, "norm_eps": 1e-6, "audio_num_attention_heads": 32, "audio_attention_head_dim": 64,
        "audio_in_channels": 128, "audio_out_channels": 128, "audio_cross_attention_dim": 2048,
        "audio_positional_embedding_max_pos": [20], "attention_type": "default", "attention_bias": True,
        "dropout": 0.0, "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000,
        "use_linear_projection": False, "only_cross_attention": False, "cross_attention_norm": True,
        "double_self_attention": False, "upcast_attention": False, "standardization_norm": "rms_norm",
        "norm_elementwise_affine": False, "qk_norm": "rms_norm", "positional_embedding_type": "rope",
        "use_audio_video_cross_attention": True, "share_ff": False, "av_cross_ada_norm": True,
        "use_middle_indices_grid": True, "num_vector_embeds": None, "apply_gated_attention": True,
        "cross_attention_adaln": True, "caption_proj_before_connector": True,
        "caption_projection_first_linear": False, "caption_proj_input_norm": False,
        "caption_projection_second_linear": False, "use_embeddings_connector": True,
        "connector_num_attention_heads": 32, "connector_attention_head_dim": 128, "connector_num_layers": 8,
        "connector_positional_embedding_max_pos": [4096], "connector_num_learnable_registers": 128,
        "connector_apply_gated_attention": True, "audio_connector_num_attention_heads": 32,
        "audio_connector_attention_head_dim": 64, "text_encoder_norm_type": "per_token_rms", "rope_type": "split",
        "frequencies_precision": "float64", "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048], "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000,
    },
    "vae": {
        "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
        "latent_channels": 128, "patch_size": 4, "norm_layer": "pixel_norm", "spatial_padding_mode": "zeros",
        "latent_log_var": "uniform", "causal_decoder": False, "timestep_conditioning": False,
        "decoder_base_channels": 128,
        "encoder_blocks": [["res_x", {"num_layers": 4}], ["compress_space_res", {"multiplier": 2}],
                           ["res_x", {"num_layers": 6}], ["compress_time_res", {"multiplier": 2}],
                           ["res_x", {"num_layers": 4}], ["compress_all_res", {"multiplier": 2}],
                           ["res_x", {"num_layers": 2}], ["compress_all_res", {"multiplier": 1}],
                           ["res_x", {"num_layers": 2}]],
        "decoder_blocks": [["res_x", {"num_layers": 4}], ["compress_space", {"multiplier": 2}],
                           ["res_x", {"num_layers": 6}], ["compress_time", {"multiplier": 2}],
                           ["res_x", {"num_layers": 4}], ["compress_all", {"multiplier": 1}],
                           ["res_x", {"num_layers": 2}], ["compress_all", {"multiplier": 2}],
                           ["res_x", {"num_layers": 2}]],
    },
    "audio_vae": {"model": {"params": {"ddconfig": {
        "double_z": True, "mel_bins": 64, "z_channels": 8, "resolution": 256, "in_channels": 2, "out_ch": 2,
        "ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "dropout": 0.0, "mid_block_add_attention": False,
        "norm_type": "pixel", "causality_axis": "height", "attn_resolutions": []}, "sampling_rate": 16000}}},
    "vocoder": {
        "vocoder": {"upsample_initial_channel": 1536, "resblock": "AMP1", "upsample_rates": [5, 2, 2, 2, 2, 2],
                    "resblock_kernel_sizes": [3, 7, 11], "upsample_kernel_sizes": [11, 4, 4, 4, 4, 4],
                    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "stereo": True,
                    "use_tanh_at_final": False, "activation": "snakebeta", "use_bias_at_final": False},
        "bwe": {"upsample_initial_channel": 512, "resblock": "AMP1", "upsample_rates": [6, 5, 2, 2, 2],
                "resblock_kernel_sizes": [3, 7, 11], "upsample_kernel_sizes": [12, 11, 4, 4, 4],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "stereo": True,
                "use_tanh_at_final": False, "activation": "snakebeta", "use_bias_at_final": False,
                "apply_final_activation": False, "input_sampling_rate": 16000, "output_sampling_rate": 48000,
                "hop_length": 80, "n_fft": 512, "win_size": 512, "num_mels": 64},
    },
}
TRUE_UPSAMPLER = {"in_channels": 128, "mid_channels": 1024, "num_blocks_per_stage": 4, "dims": 3,
                  "spatial_upsample": True, "temporal_upsample": False, "spatial_scale": 2.0,
                  "rational_resampler": False}


def tiny_config(layers: int = 2) -> tuple[dict, dict]:
    """A small LTX-2.3 that ltx-pipelines still accepts as is.

    What cannot shrink: ltx-pipelines hard-codes 128 latent channels, the (8, 32, 32) VAE strides, 8x16 audio
    latents and Gemma 3's 49x3840 hidden states, so those stay. Everything else (widths, depths, heads) is small;
    every LTX-2.3 switch (gated attention, cross-attention AdaLN, per-modality text projections, split RoPE in
    float64, VAE multipliers of the real decoder) is on, so the code takes the real model's branches.
    """
    cfg = json.loads(json.dumps(TRUE_CONFIG))
    t = cfg["transformer"]
    t.update(num_attention_heads=2, attention_head_dim=8, num_layers=layers, cross_attention_dim=16,
             audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8,
             connector_num_attention_heads=2, connector_attention_head_dim=8, connector_num_layers=1,
             audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=4)
    v = cfg["vae"]
    v["decoder_base_channels"] = 16
    v["encoder_blocks"] = [[n, {"num_layers": 1} if n == "res_x" else {"multiplier": 1}]
                           for n, _ in v["encoder_blocks"]]
    v["decoder_blocks"] = [[n, {"num_layers": 1} if n == "res_x" else p] for n, p in v["decoder_blocks"]]
    cfg["audio_vae"]["model"]["params"]["ddconfig"].update(ch=128, ch_mult=[1, 1, 1], num_res_blocks=1)
    cfg["vocoder"]["vocoder"].update(upsample_initial_channel=64, resblock_kernel_sizes=[3],
                                     resblock_dilation_sizes=[[1, 3, 5]])
    cfg["vocoder"]["bwe"].update(upsample_initial_channel=32, resblock_kernel_sizes=[3],
                                 resblock_dilation_sizes=[[1, 3, 5]])
    ups = dict(TRUE_UPSAMPLER, mid_channels=32, num_blocks_per_stage=1)
    return cfg, ups


# --- side environment -------------------------------------------------------------------------------------------------
def side_dir() -> Path:
    from synclora import runtime

    rt = runtime.current()
    return rt.parity_site or rt.home / "parity" / "site"


def ensure_side_env(wheels: str | Path | None = None, log=print) -> Path:
    """Make ltx_core/ltx_pipelines importable, installing them beside the project on first use (cached)."""
    import importlib.util

    if _installed():
        return Path(importlib.util.find_spec("ltx_core").origin).resolve().parents[1]
    site = side_dir()
    if not (site / "ltx_pipelines" / "ic_lora.py").is_file():
        # einops/torchaudio only where the environment lacks them (a GPU image usually has both)
        wanted = [r for r in SIDE_REQUIREMENTS
                  if r.startswith("ltx") or importlib.util.find_spec(r.split("==")[0]) is None]
        log(f"installing {' '.join(wanted)} into {site} (no dependencies; uses this torch)")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), *wanted]
        if wheels:
            cmd[5:5] = ["--no-index", "--find-links", str(wheels)]
        subprocess.run(cmd, check=True)
    if str(site) not in sys.path:
        sys.path.append(str(site))  # appended: the project's own packages keep precedence
    import ltx_core  # noqa: F401
    import ltx_pipelines  # noqa: F401

    return site


def _installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("ltx_core", "ltx_pipelines"))


def side_env_available() -> bool:
    return _installed() or (side_dir() / "ltx_pipelines" / "ic_lora.py").is_file()


# --- official modules with random weights -----------------------------------------------------------------------------
def build_official(config: dict, ups_config: dict, seed: int, device="cpu", dtype=torch.float32) -> dict:
    """Every module of a released LTX-2.3 checkpoint, built by ltx-core's own configurators, random weights."""
    from ltx_core.model.audio_vae import AudioDecoderConfigurator, AudioEncoderConfigurator, VocoderConfigurator
    from ltx_core.model.transformer import LTXModelConfigurator
    from ltx_core.model.upsampler import LatentUpsamplerConfigurator
    from ltx_core.model.video_vae import VideoDecoderConfigurator, VideoEncoderConfigurator
    from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            modules = dict(
                transformer=LTXModelConfigurator.from_config(config),
                embeddings=EmbeddingsProcessorConfigurator.from_config(config),
                encoder=VideoEncoderConfigurator.from_config(config),
                decoder=VideoDecoderConfigurator.from_config(config),
                audio_encoder=AudioEncoderConfigurator.from_config(config),
                audio_decoder=AudioDecoderConfigurator.from_config(config),
                vocoder=VocoderConfigurator.from_config(config),
                upsampler=LatentUpsamplerConfigurator.from_config(ups_config),
            )
    finally:
        torch.set_default_dtype(previous)
    if str(device) == "meta":
        return modules
    g = torch.Generator(device=device).manual_seed(seed)
    for module in modules.values():
        randomize(module, g)
    # The release stores one set of latent statistics per VAE, shared by its encoder and decoder.
    for a, b in (("encoder", "decoder"), ("audio_encoder", "audio_decoder")):
        for key, value in modules[a].per_channel_statistics.state_dict().items():
            getattr(modules[b].per_channel_statistics, key).copy_(value)
    for m in modules.values():
        m.eval().requires_grad_(False)
    return modules


@torch.no_grad()
def randomize(module: torch.nn.Module, g: torch.Generator) -> None:
    """Deterministic, well-scaled random weights: every parameter and buffer is overwritten (none left empty)."""
    tensors = dict(module.named_parameters())
    tensors.update({k: v for k, v in module.named_buffers() if "per_channel_statistics" in k})
    for name, t in sorted(tensors.items()):
        if not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=g, device=t.device, dtype=torch.float32)
        if name.endswith("std-of-means"):
            value = 0.75 + 0.5 * torch.rand(t.shape, generator=g, device=t.device)
        elif name.endswith("mean-of-means"):
            value = 0.2 * noise
        elif "learnable_registers" in name:
            value = 2 * torch.rand(t.shape, generator=g, device=t.device) - 1
        elif t.ndim == 1 and "norm" in name and name.endswith("weight"):
            value = 1.0 + 0.1 * noise
        elif t.ndim == 1:
            value = 0.05 * noise
        else:
            value = noise / (t[0].numel() ** 0.5)  # fan-in scaling keeps activations O(1)
        t.copy_(value.to(t.dtype))


# The release's key layout (inverse of ltx-core's SDOps for each builder).
def released_items(modules: dict):
    """(released key, tensor) for every tensor of the modules, under the names the released checkpoint uses."""
    def under(prefix: str, module, skip_stats: bool = False):
        for k, v in module.state_dict().items():
            if not (skip_stats and k.startswith("per_channel_statistics.")):
                yield prefix + k, v

    yield from under("model.diffusion_model.", modules["transformer"])
    for k, v in modules["embeddings"].state_dict().items():
        head, rest = k.split(".", 1)
        if head == "feature_extractor":
            yield "text_embedding_projection." + rest, v
        else:  # video_connector / audio_connector
            yield f"model.diffusion_model.{head.replace('_connector', '_embeddings_connector')}.{rest}", v
    yield from under("vae.encoder.", modules["encoder"], skip_stats=True)
    yield from under("vae.decoder.", modules["decoder"], skip_stats=True)
    yield from under("vae.per_channel_statistics.", modules["encoder"].per_channel_statistics)
    yield from under("audio_vae.encoder.", modules["audio_encoder"], skip_stats=True)
    yield from under("audio_vae.decoder.", modules["audio_decoder"], skip_stats=True)
    yield from under("audio_vae.per_channel_statistics.", modules["audio_encoder"].per_channel_statistics)
    yield from under("vocoder.", modules["vocoder"])


def released_state_dict(modules: dict, dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", dtype).contiguous() for k, v in released_items(modules)}


def key_fixture(config: dict, ups_config: dict) -> dict:
    """Released key names and shapes of a config, built on the meta device (no memory): a test fixture that lets
    the converter be checked against ltx-core's real layout where ltx-core is not installed."""
    mods = build_official(config, ups_config, seed=0, device="meta")
    return {
        "config": config,
        "upsampler_config": ups_config,
        "checkpoint": {k: list(v.shape) for k, v in released_items(mods)},
        "upsampler": {k: list(v.shape) for k, v in mods["upsampler"].state_dict().items()},
    }


def write_checkpoint(path: Path, modules: dict, config: dict, dtype=torch.bfloat16) -> Path:
    from safetensors.torch import save_file

    save_file(released_state_dict(modules, dtype), str(path),
              metadata={"config": json.dumps(config), "model_version": "2.3.0"})
    return path


def write_upsampler(path: Path, modules: dict, ups_config: dict, dtype=torch.bfloat16) -> Path:
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in modules["upsampler"].state_dict().items()}
    save_file(sd, str(path), metadata={"config": json.dumps(ups_config)})
    return path


SYNC_TARGETS = ("attn1.to_k", "attn1.to_q", "attn1.to_v", "attn1.to_out.0", "attn2.to_k", "attn2.to_q",
                "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2")  # ltx-trainer's v2v IC-LoRA targets


def lora_targets(transformer: torch.nn.Module, which: str) -> dict[str, tuple[int, int]]:
    """{official module name: (in, out)}: 'sync' = the video IC-LoRA targets; 'all' = every Linear of the model."""
    out = {}
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if which == "all" or (name.startswith("transformer_blocks.") and name.split(".", 2)[2] in SYNC_TARGETS):
            out[name] = (module.in_features, module.out_features)
    return out


def write_lora(path: Path, targets: dict, rank: int, seed: int, gain: float, metadata: dict,
               dtype=torch.bfloat16, device="cpu") -> Path:
    """A LoRA in the released format: `diffusion_model.<module>.lora_A/B.weight`, safetensors metadata as given."""
    from safetensors.torch import save_file

    g = torch.Generator(device=device).manual_seed(seed)
    sd = {}
    for name, (fan_in, fan_out) in sorted(targets.items()):
        a = torch.randn(rank, fan_in, generator=g, device=device) / fan_in ** 0.5
        b = torch.randn(fan_out, rank, generator=g, device=device) * gain / rank ** 0.5
        sd[f"diffusion_model.{name}.lora_A.weight"] = a.to("cpu", dtype).contiguous()
        sd[f"diffusion_model.{name}.lora_B.weight"] = b.to("cpu", dtype).contiguous()
    save_file(sd, str(path), metadata={k: str(v) for k, v in metadata.items()})
    return path


# --- running ICLoraPipeline -------------------------------------------------------------------------------------------
class Captured:
    """What the official run produced at each stage boundary (normalized latents, as ltx-core keeps them)."""

    def __init__(self):
        self.stage1 = self.stage2 = self.frames = self.audio = None


def make_pipeline(checkpoint: Path, upsampler: Path, sync_lora: Path, distilled_lora: Path | None,
                  distilled_strength: float, device, dtype=torch.bfloat16, registry: bool = False):
    """`ICLoraPipeline` over our files; the distilled LoRA, when given, goes into *both* stages' model ledgers.

    Why: ICLoraPipeline expects a distilled checkpoint and builds stage 2 with no LoRA at all. Sync-LoRA's card
    stacks the distilled LoRA on the dev checkpoint instead; passed in `loras` as the card suggests, it would leave
    stage 2 undistilled. Adding it to the stage-2 ledger (ltx-core's own `with_loras`) gives what a distilled
    checkpoint gives: stage 1 = dev + distilled + Sync-LoRA, stage 2 = dev + distilled.
    """
    from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP, LoraPathStrengthAndSDOps
    from ltx_pipelines.ic_lora import ICLoraPipeline

    sync = LoraPathStrengthAndSDOps(str(sync_lora), 1.0, LTXV_LORA_COMFY_RENAMING_MAP)
    loras = [sync]
    if distilled_lora is not None:
        loras.append(LoraPathStrengthAndSDOps(str(distilled_lora), distilled_strength, LTXV_LORA_COMFY_RENAMING_MAP))
    pipe = ICLoraPipeline(distilled_checkpoint_path=str(checkpoint), spatial_upsampler_path=str(upsampler),
                          gemma_root=None, loras=loras, device=torch.device(device))
    set_dtype(pipe, dtype)
    if registry:
        # ltx-core's caching registry. Needed beyond bfloat16: with its default (no) registry, `apply_loras` fuses in
        # place and leaves every tensor without a LoRA delta in the file's dtype (bf16) whatever dtype was asked for,
        # so a float32/float64 model would be part bf16. With a registry it builds a fresh state dict in that dtype.
        from ltx_core.loader.registry import StateDictRegistry

        shared = StateDictRegistry()
        for ledger in (pipe.stage_1_model_ledger, pipe.stage_2_model_ledger):
            ledger.registry = shared
            ledger.build_model_builders()
    if distilled_lora is not None:
        pipe.stage_2_model_ledger = pipe.stage_2_model_ledger.with_loras(tuple(loras[1:]))
    return pipe


def set_dtype(pipe, dtype) -> None:
    """The pipeline's model dtype (its constructor hard-codes bf16; the ledgers read this attribute when building)."""
    pipe.dtype = dtype
    pipe.pipeline_components.dtype = dtype
    for ledger in (pipe.stage_1_model_ledger, pipe.stage_2_model_ledger):
        ledger.dtype = dtype


def prompt_context(pipe, hidden_states: tuple, mask: torch.Tensor):
    """The embeddings processor of the checkpoint (ltx-core's own) on given Gemma hidden states.

    Stands in for `encode_prompts`, whose only other work is running Gemma 3 12B on the prompt; both sides of the
    comparison get the same Gemma hidden states (the project caches them), so Gemma itself is the one substitution.
    """
    proc = pipe.stage_1_model_ledger.gemma_embeddings_processor()
    with torch.inference_mode():
        return proc.process_hidden_states(hidden_states, mask.to(proc.video_connector.learnable_registers.device))


def run_as_shipped(pipe, ctx, *, seed, height, width, num_frames, frame_rate, image, reference, crf) -> Captured:
    """`ICLoraPipeline.__call__` itself. Observed, not changed: stage-1/2 latents are read where they are handed to
    the upsampler and the decoder. Substituted: `encode_prompts` (see `prompt_context`) and, on a CPU-only machine,
    `torch.cuda.synchronize` (a no-op there; ltx-pipelines calls it unconditionally)."""
    import ltx_pipelines.ic_lora as ic
    from ltx_pipelines.utils.args import ImageConditioningInput

    cap = Captured()
    real = dict(upsample_video=ic.upsample_video, vae_decode_video=ic.vae_decode_video,
                encode_prompts=ic.encode_prompts)

    def upsample(latent, video_encoder, upsampler):
        cap.stage1 = latent.detach().clone()
        return real["upsample_video"](latent=latent, video_encoder=video_encoder, upsampler=upsampler)

    def decode(latent, decoder, tiling_config=None, generator=None):
        cap.stage2 = latent.detach().clone()
        return real["vae_decode_video"](latent, decoder, tiling_config, generator)

    ic.upsample_video, ic.vae_decode_video = upsample, decode
    ic.encode_prompts = lambda *a, **k: [ctx]
    sync = torch.cuda.synchronize
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None
    try:
        with torch.inference_mode():
            video, audio = pipe(prompt="3d1t", seed=seed, height=height, width=width, num_frames=num_frames,
                                frame_rate=frame_rate, images=[ImageConditioningInput(str(image), 0, 1.0, crf)],
                                video_conditioning=[(str(reference), 1.0)])
            cap.frames = torch.cat(list(video), dim=0).cpu().numpy()
            cap.audio = audio
    finally:
        ic.upsample_video, ic.vae_decode_video, ic.encode_prompts = (
            real["upsample_video"], real["vae_decode_video"], real["encode_prompts"])
        torch.cuda.synchronize = sync
    return cap


def resident_models(pipe) -> dict:
    """The models ICLoraPipeline builds on every call, built once (for timing it with the model resident)."""
    return dict(encoder=pipe.stage_1_model_ledger.video_encoder(), stage1=pipe.stage_1_model_ledger.transformer(),
                stage2=pipe.stage_2_model_ledger.transformer(), upsampler=pipe.stage_2_model_ledger.spatial_upsampler(),
                decoder=pipe.stage_2_model_ledger.video_decoder())


def run_stages(pipe, ctx, *, seed, height, width, num_frames, frame_rate, image, reference, crf,
               dtype, models: dict | None = None, marks: dict | None = None) -> Captured:
    """ICLoraPipeline's two stages in `dtype`, through its own methods and ltx-pipelines' own helpers.

    `__call__` hard-codes bfloat16 for its latent states; this is its body (ltx-pipelines 1.0.0, ic_lora.py,
    `__call__`) line for line with that one constant made a parameter, and the stage outputs kept. `parity_ltx.py`
    checks that in bfloat16 it reproduces `run_as_shipped` bit for bit. `models` (from `resident_models`) reuses
    built models instead of building them per call; `marks` receives per-stage seconds.
    """
    import time

    models = models or {}
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    t = [time.perf_counter()]

    def mark(name):
        if marks is not None:
            sync()
            now = time.perf_counter()
            marks[name] = now - t[0]
            t[0] = now

    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.video_vae import decode_video as vae_decode_video
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines.utils import (
        combined_image_conditionings,
        denoise_audio_video,
        euler_denoising_loop,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.args import ImageConditioningInput
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

    cap = Captured()
    images = [ImageConditioningInput(str(image), 0, 1.0, crf)]
    with torch.inference_mode():
        generator = torch.Generator(device=pipe.device).manual_seed(seed)
        noiser = GaussianNoiser(generator=generator)
        stepper = EulerDiffusionStep()
        video_context, audio_context = ctx.video_encoding, ctx.audio_encoding
        shape1 = VideoPixelShape(batch=1, frames=num_frames, width=width // 2, height=height // 2, fps=frame_rate)
        video_encoder = models.get("encoder") or pipe.stage_1_model_ledger.video_encoder()
        conditionings = pipe._create_conditionings(images=images, video_conditioning=[(str(reference), 1.0)],
                                                   height=shape1.height, width=shape1.width,
                                                   video_encoder=video_encoder, num_frames=num_frames)
        transformer = models.get("stage1") or pipe.stage_1_model_ledger.transformer()

        def loop(tr):
            def run(sigmas, video_state, audio_state, stepper):
                return euler_denoising_loop(sigmas=sigmas, video_state=video_state, audio_state=audio_state,
                                            stepper=stepper, denoise_fn=simple_denoising_func(
                                                video_context=video_context, audio_context=audio_context,
                                                transformer=tr))
            return run

        video_state, audio_state = denoise_audio_video(
            output_shape=shape1, conditionings=conditionings, noiser=noiser,
            sigmas=torch.Tensor(DISTILLED_SIGMA_VALUES).to(pipe.device), stepper=stepper,
            denoising_loop_fn=loop(transformer), components=pipe.pipeline_components, dtype=dtype,
            device=pipe.device)
        del transformer
        cap.stage1 = video_state.latent[:1].clone()
        mark("stage1_s")
        upscaled = upsample_video(latent=video_state.latent[:1], video_encoder=video_encoder,
                                  upsampler=models.get("upsampler") or pipe.stage_2_model_ledger.spatial_upsampler())
        mark("upsample_s")
        transformer = models.get("stage2") or pipe.stage_2_model_ledger.transformer()
        sigmas2 = torch.Tensor(STAGE_2_DISTILLED_SIGMA_VALUES).to(pipe.device)
        shape2 = VideoPixelShape(batch=1, frames=num_frames, width=width, height=height, fps=frame_rate)
        conditionings2 = combined_image_conditionings(images=images, height=height, width=width,
                                                      video_encoder=video_encoder, dtype=pipe.dtype,
                                                      device=pipe.device)
        video_state, audio_state = denoise_audio_video(
            output_shape=shape2, conditionings=conditionings2, noiser=noiser, sigmas=sigmas2, stepper=stepper,
            denoising_loop_fn=loop(transformer), components=pipe.pipeline_components, dtype=dtype,
            device=pipe.device, noise_scale=sigmas2[0], initial_video_latent=upscaled,
            initial_audio_latent=audio_state.latent)
        del transformer
        cap.stage2 = video_state.latent.clone()
        mark("stage2_s")
        decoder = models.get("decoder") or pipe.stage_2_model_ledger.video_decoder()
        decoded = vae_decode_video(video_state.latent, decoder, None, generator)
        cap.frames = torch.cat(list(decoded), dim=0).cpu().numpy()
        mark("decode_s")
    return cap
