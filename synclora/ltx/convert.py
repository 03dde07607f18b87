"""Released LTX-2.3 checkpoints (ltx-core layout) -> diffusers modules, with nothing left unmatched.

Lightricks release LTX-2.3 as one safetensors file per model: ltx-core key names (`model.diffusion_model.*`,
`vae.encoder.*`, `text_embedding_projection.*`, ...) and the model's configuration as JSON in the file's `config`
metadata; the x2 latent upsampler is a separate file with its own `config`. Our backend runs diffusers modules.
diffusers' maintainers convert with `scripts/convert_ltx2_to_diffusers.py` (substring renames plus fixed configs per
version). We convert ourselves, for three reasons:

- the parity harness (benchmarks/parity_ltx.py) must load *the same* random weights into both implementations, from
  a file written the way the released checkpoint is written, so the converter has to follow any config, not three
  fixed ones;
- every key must land exactly once: `convert_component` builds a complete key map first and refuses unmatched or
  doubly matched keys, and loading is strict, so a renamed module upstream fails loudly instead of leaving random
  weights in place;
- the transformer renames are the very table the LoRA loader uses (`ltx.lora.released_to_diffusers`), so full weights
  and LoRAs cannot drift apart.

The mapping, component by component (diffusers' names on the right):
- transformer `model.diffusion_model.X`: dotted components renamed one at a time (`patchify_proj`->`proj_in`,
  `adaln_single`->`time_embed`, `q_norm`->`norm_q`, `prompt_adaln_single`->`prompt_adaln`, ...);
- text connectors `model.diffusion_model.{video,audio}_embeddings_connector.*` and
  `text_embedding_projection.{video,audio}_aggregate_embed.*` -> `{video,audio}_connector.*`, `*_text_proj_in.*`;
- video VAE: ltx-core numbers its encoder/decoder blocks as one flat list (`res_x`, `compress_*`, `res_x`, ...);
  diffusers nests them (`down_blocks.k.resnets` + `down_blocks.k.downsamplers.0`, a `mid_block`). The map is derived
  from the block list in the config, so any depth works; per-channel statistics become `latents_mean/std`;
- audio VAE: same names under `encoder.`/`decoder.`, statistics -> `latents_mean/std`;
- upsampler: identical names; only the config keys differ.
The vocoder is not converted: the Sync-LoRA backend never decodes audio (the source audio is muxed back).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synclora.errors import ModelUnavailableError

TRANSFORMER_PREFIX = "model.diffusion_model."
CONNECTOR_PREFIXES = (TRANSFORMER_PREFIX + "video_embeddings_connector.",
                      TRANSFORMER_PREFIX + "audio_embeddings_connector.")
TEXT_PROJECTION_PREFIX = "text_embedding_projection."
VAE_PREFIX = "vae."
AUDIO_VAE_PREFIX = "audio_vae."
VOCODER_PREFIX = "vocoder."
COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")
# Statistics ltx-core stores but does not use (diffusers' converter drops them too).
_UNUSED_STATISTICS = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds")


class ConversionError(ModelUnavailableError):
    """A checkpoint that does not map one-to-one onto the diffusers modules."""


# --- reading ----------------------------------------------------------------------------------------------------------
def read_config(path: str | Path) -> dict:
    """The JSON `config` a released safetensors file carries in its metadata (empty dict if none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["config"]) if "config" in meta else {}


def split_components(state_dict: dict) -> dict[str, dict]:
    """Group a released checkpoint's tensors by component, prefixes stripped; unknown keys raise."""
    out: dict[str, dict] = {name: {} for name in COMPONENTS}
    for key, value in state_dict.items():
        if key.startswith(CONNECTOR_PREFIXES) or key.startswith(TEXT_PROJECTION_PREFIX):
            out["connectors"][key.removeprefix(TRANSFORMER_PREFIX)] = value
        elif key.startswith(TRANSFORMER_PREFIX):
            out["transformer"][key[len(TRANSFORMER_PREFIX):]] = value
        elif key.startswith(VAE_PREFIX):
            out["vae"][key[len(VAE_PREFIX):]] = value
        elif key.startswith(AUDIO_VAE_PREFIX):
            out["audio_vae"][key[len(AUDIO_VAE_PREFIX):]] = value
        elif key.startswith(VOCODER_PREFIX):
            out["vocoder"][key[len(VOCODER_PREFIX):]] = value
        else:
            raise ConversionError(f"checkpoint key {key!r} belongs to no known LTX-2.3 component")
    return out


# --- configs ----------------------------------------------------------------------------------------------------------
def _vae_compression(vae: dict) -> tuple[int, int]:
    """(temporal, spatial) compression of a video VAE config: patch size times the strides of its blocks."""
    temporal, spatial = 1, int(vae.get("patch_size", 4))
    for name, _ in vae.get("encoder_blocks", []):
        if name.startswith(("compress_time", "compress_all")):
            temporal *= 2
        if name.startswith(("compress_space", "compress_all")):
            spatial *= 2
    return temporal, spatial


def transformer_config(config: dict) -> dict:
    """`LTX2VideoTransformer3DModel` kwargs for a released config (its `transformer` section + the VAE's strides)."""
    t = config.get("transformer", {})
    temporal, spatial = _vae_compression(config.get("vae", {}))
    max_pos = t.get("positional_embedding_max_pos", [20, 2048, 2048])
    gated, adaln = bool(t.get("apply_gated_attention", False)), bool(t.get("cross_attention_adaln", False))
    out = dict(
        in_channels=t.get("in_channels", 128),
        out_channels=t.get("out_channels", 128),
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=t.get("num_attention_heads", 32),
        attention_head_dim=t.get("attention_head_dim", 128),
        cross_attention_dim=t.get("cross_attention_dim", 4096),
        vae_scale_factors=(temporal, spatial, spatial),
        pos_embed_max_pos=max_pos[0],
        base_height=max_pos[1],
        base_width=max_pos[2],
        gated_attn=gated,
        cross_attn_mod=adaln,
        audio_in_channels=t.get("audio_in_channels", 128),
        audio_out_channels=t.get("audio_out_channels", 128),
        audio_patch_size=1,
        audio_patch_size_t=1,
        audio_num_attention_heads=t.get("audio_num_attention_heads", 32),
        audio_attention_head_dim=t.get("audio_attention_head_dim", 64),
        audio_cross_attention_dim=t.get("audio_cross_attention_dim", 2048),
        audio_scale_factor=4,
        audio_pos_embed_max_pos=t.get("audio_positional_embedding_max_pos", [20])[0],
        audio_sampling_rate=16000,
        audio_hop_length=160,
        audio_gated_attn=gated,
        audio_cross_attn_mod=adaln,
        num_layers=t.get("num_layers", 48),
        activation_fn="gelu-approximate",
        qk_norm="rms_norm_across_heads",
        norm_elementwise_affine=False,
        norm_eps=t.get("norm_eps", 1e-6),
        caption_channels=t.get("caption_channels", 3840),
        attention_bias=True,
        attention_out_bias=True,
        rope_theta=t.get("positional_embedding_theta", 10000.0),
        rope_double_precision=t.get("frequencies_precision") == "float64",
        causal_offset=1,
        timestep_scale_multiplier=t.get("timestep_scale_multiplier", 1000),
        cross_attn_timestep_scale_multiplier=t.get("av_ca_timestep_scale_multiplier", 1),
        rope_type=t.get("rope_type", "interleaved"),
        # LTX-2.3 ("22B") projects captions in the text encoder, so the transformer has no caption projection.
        use_prompt_embeddings=not t.get("caption_proj_before_connector", False),
        perturbed_attn=True,  # STG-capable attention processor (diffusers' choice for 2.3); no weights
    )
    for key in ("ff_bias", "audio_ff_bias"):  # later configs; absent for 2.3 (True)
        if key in t:
            out[key] = bool(t[key])
    return out


def connectors_config(config: dict) -> dict:
    """`LTX2TextConnectors` kwargs (LTX-2.3: per-modality projections of all 49 Gemma layers, 128 registers)."""
    t = config.get("transformer", {})
    if not t.get("caption_proj_before_connector", False):
        raise ConversionError("only LTX-2.3-style text connectors (caption_proj_before_connector) are supported")
    video_heads = t.get("connector_num_attention_heads", 30)
    video_dim = t.get("connector_attention_head_dim", 128)
    audio_heads = t.get("audio_connector_num_attention_heads", video_heads)
    audio_dim = t.get("audio_connector_attention_head_dim", video_dim)
    layers = t.get("connector_num_layers", 2)
    gated = bool(t.get("connector_apply_gated_attention", False))
    # ltx-core's text feature extractor is fixed to Gemma 3 12B: 3840 channels, 48 layers + embeddings.
    return dict(
        caption_channels=3840,
        text_proj_in_factor=49,
        video_connector_num_attention_heads=video_heads,
        video_connector_attention_head_dim=video_dim,
        video_connector_num_layers=layers,
        video_connector_num_learnable_registers=128,
        video_gated_attn=gated,
        audio_connector_num_attention_heads=audio_heads,
        audio_connector_attention_head_dim=audio_dim,
        audio_connector_num_layers=t.get("audio_connector_num_layers", layers),
        audio_connector_num_learnable_registers=128,
        audio_gated_attn=gated,
        connector_rope_base_seq_len=t.get("connector_positional_embedding_max_pos", [1])[0],
        rope_theta=t.get("positional_embedding_theta", 10000.0),
        rope_double_precision=t.get("frequencies_precision") == "float64",
        causal_temporal_positioning=False,
        rope_type=t.get("rope_type", "interleaved"),
        per_modality_projections=True,
        video_hidden_dim=video_heads * video_dim,
        audio_hidden_dim=audio_heads * audio_dim,
        proj_bias=True,
    )


_DOWNSAMPLE_TYPES = {"compress_space": "spatial", "compress_time": "temporal", "compress_all": "spatiotemporal"}


def _check_alternating(blocks: list, side: str) -> None:
    names = [name for name, _ in blocks]
    ok = len(names) % 2 == 1 and all(n == "res_x" for n in names[::2])
    ok = ok and all(n.removesuffix("_res") in _DOWNSAMPLE_TYPES for n in names[1::2])
    if not ok:
        raise ConversionError(f"unsupported VAE {side} block layout {names}: expected res_x / compress_* alternating")


def vae_config(config: dict) -> dict:
    """`AutoencoderKLLTX2Video` kwargs derived from ltx-core's `encoder_blocks`/`decoder_blocks` lists."""
    vae = config.get("vae", {})
    enc, dec = vae.get("encoder_blocks", []), vae.get("decoder_blocks", [])
    _check_alternating(enc, "encoder")
    _check_alternating(dec, "decoder")
    if vae.get("timestep_conditioning", True):
        raise ConversionError("VAE decoders with timestep conditioning (LTX-2.0) are not supported")
    latent = vae.get("latent_channels", 128)
    block_out, channels = [], latent
    for _, params in enc[1::2]:
        channels *= params.get("multiplier", 1)
        block_out.append(channels)
    # ltx-core's decoder starts at base_channels * 8 and divides by each multiplier from the low-res end.
    channels, dec_out, factors = vae.get("decoder_base_channels", 128) * 8, [], []
    for _, params in reversed(dec[1::2]):
        dec_out.append(channels)
        factors.append(params.get("multiplier", 1))
        channels //= params.get("multiplier", 1)
    temporal, spatial = _vae_compression(vae)
    padding = vae.get("spatial_padding_mode", "zeros")
    n_dec = len(dec[1::2])
    return dict(
        in_channels=vae.get("in_channels", 3),
        out_channels=vae.get("out_channels", 3),
        latent_channels=latent,
        block_out_channels=tuple(block_out),
        down_block_types=("LTX2VideoDownBlock3D",) * len(block_out),
        decoder_block_out_channels=tuple(reversed(dec_out)),
        layers_per_block=tuple(p["num_layers"] for _, p in enc[::2]),
        decoder_layers_per_block=tuple(p["num_layers"] for _, p in dec[::2]),
        spatio_temporal_scaling=(True,) * len(block_out),
        decoder_spatio_temporal_scaling=(True,) * n_dec,
        decoder_inject_noise=tuple(bool(p.get("inject_noise", False)) for _, p in dec[::2]),
        downsample_type=tuple(_DOWNSAMPLE_TYPES[n.removesuffix("_res")] for n, _ in enc[1::2]),
        upsample_type=tuple(_DOWNSAMPLE_TYPES[n] for n, _ in reversed(dec[1::2])),
        upsample_residual=tuple(bool(p.get("residual", False)) for _, p in reversed(dec[1::2])),
        upsample_factor=tuple(reversed(factors)),
        timestep_conditioning=False,
        patch_size=vae.get("patch_size", 4),
        patch_size_t=1,
        resnet_norm_eps=1e-6,
        encoder_causal=True,
        decoder_causal=bool(vae.get("causal_decoder", False)),
        encoder_spatial_padding_mode=padding,
        decoder_spatial_padding_mode=padding,
        spatial_compression_ratio=spatial,
        temporal_compression_ratio=temporal,
    )


def audio_vae_config(config: dict) -> dict:
    """`AutoencoderKLLTX2Audio` kwargs from the `audio_vae` section (ltx-core's `ddconfig` + STFT settings)."""
    audio = config.get("audio_vae", {})
    params = audio.get("model", {}).get("params", {})
    dd = params.get("ddconfig", {})
    stft = audio.get("preprocessing", {}).get("stft", {})
    return dict(
        base_channels=dd.get("ch", 128),
        output_channels=dd.get("out_ch", 2),
        ch_mult=tuple(dd.get("ch_mult", (1, 2, 4))),
        num_res_blocks=dd.get("num_res_blocks", 2),
        attn_resolutions=tuple(dd["attn_resolutions"]) if dd.get("attn_resolutions") else None,
        in_channels=dd.get("in_channels", 2),
        resolution=dd.get("resolution", 256),
        latent_channels=dd.get("z_channels", 8),
        norm_type=dd.get("norm_type", "pixel"),
        causality_axis=dd.get("causality_axis", "height"),
        dropout=dd.get("dropout", 0.0),
        mid_block_add_attention=dd.get("mid_block_add_attention", False),
        sample_rate=params.get("sampling_rate", 16000),
        mel_hop_length=stft.get("hop_length", 160),
        is_causal=stft.get("causal", True),
        mel_bins=dd.get("mel_bins", 64),
        double_z=dd.get("double_z", True),
    )


def upsampler_config(config: dict) -> dict:
    """`LTX2LatentUpsamplerModel` kwargs from the upsampler file's own `config` metadata."""
    return dict(
        in_channels=config.get("in_channels", 128),
        mid_channels=config.get("mid_channels", 512),
        num_blocks_per_stage=config.get("num_blocks_per_stage", 4),
        dims=config.get("dims", 3),
        spatial_upsample=config.get("spatial_upsample", True),
        temporal_upsample=config.get("temporal_upsample", False),
        rational_spatial_scale=float(config.get("spatial_scale", 2.0)),
        use_rational_resampler=bool(config.get("rational_resampler", False)),
    )


# --- key maps ---------------------------------------------------------------------------------------------------------
def transformer_key(key: str) -> str:
    """One transformer key (prefix stripped) -> diffusers; the LoRA loader's component table, applied to weights."""
    from synclora.ltx.lora import released_to_diffusers

    return next(iter(released_to_diffusers({"diffusion_model." + key: None})))


_CONNECTOR_RENAMES = {
    "video_embeddings_connector": "video_connector",
    "audio_embeddings_connector": "audio_connector",
    "transformer_1d_blocks": "transformer_blocks",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}


def connectors_key(key: str) -> str:
    """`video_embeddings_connector.*` / `text_embedding_projection.video_aggregate_embed.*` -> diffusers names."""
    for side in ("video", "audio"):
        prefix = f"{TEXT_PROJECTION_PREFIX}{side}_aggregate_embed."
        if key.startswith(prefix):
            return f"{side}_text_proj_in." + key[len(prefix):]
    if key.startswith(TEXT_PROJECTION_PREFIX):
        raise ConversionError(f"text projection {key!r} is not LTX-2.3's per-modality layout")
    return ".".join(_CONNECTOR_RENAMES.get(part, part) for part in key.split("."))


def _statistics_key(key: str) -> str | None:
    if key.startswith(_UNUSED_STATISTICS):
        return None
    return {"per_channel_statistics.mean-of-means": "latents_mean",
            "per_channel_statistics.std-of-means": "latents_std"}.get(key, key)


def vae_key_map(keys, config: dict) -> dict[str, str | None]:
    """Map every released VAE key (prefix `vae.` stripped) to its diffusers name (None: dropped on purpose)."""
    vae = config.get("vae", {})
    enc, dec = vae.get("encoder_blocks", []), vae.get("decoder_blocks", [])
    _check_alternating(enc, "encoder")
    _check_alternating(dec, "decoder")
    enc_blocks = {}
    for i in range(len(enc)):
        k = i // 2
        enc_blocks[str(i)] = "mid_block" if i == len(enc) - 1 else (
            f"down_blocks.{k}" if i % 2 == 0 else f"down_blocks.{k}.downsamplers.0")
    # ltx-core builds the decoder from the reversed list: block 0 is the low-res res_x (diffusers' mid_block).
    dec_blocks = {"0": "mid_block"}
    for i in range(1, len(dec)):
        k = (i - 1) // 2
        dec_blocks[str(i)] = f"up_blocks.{k}.upsamplers.0" if i % 2 == 1 else f"up_blocks.{k}"
    out = {}
    for key in keys:
        stats = _statistics_key(key)
        if stats != key:
            out[key] = stats
            continue
        parts = key.split(".")
        if parts[0] not in ("encoder", "decoder"):
            raise ConversionError(f"VAE key {key!r} is neither encoder nor decoder")
        if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
            table = enc_blocks if parts[0] == "encoder" else dec_blocks
            if parts[2] not in table:
                raise ConversionError(f"VAE key {key!r} points past the configured block list")
            parts = [parts[0], table[parts[2]], *parts[3:]]
        out[key] = ".".join("resnets" if p == "res_blocks" else p for p in parts)
    return out


def key_map(component: str, keys, config: dict) -> dict[str, str | None]:
    """released key (component prefix stripped) -> diffusers key, for every key; None means dropped on purpose."""
    if component == "transformer":
        return {k: transformer_key(k) for k in keys}
    if component == "connectors":
        return {k: connectors_key(k) for k in keys}
    if component == "vae":
        return vae_key_map(keys, config)
    if component in ("audio_vae", "latent_upsampler"):
        return {k: _statistics_key(k) for k in keys}
    raise ConversionError(f"no diffusers conversion for {component!r}")


def convert_component(component: str, state_dict: dict, config: dict) -> dict:
    """Rename one component's tensors; raises if two keys collide."""
    mapping = key_map(component, state_dict, config)
    out = {}
    for key, new in mapping.items():
        if new is None:
            continue
        if new in out:
            raise ConversionError(f"{component}: two checkpoint keys map to {new!r}")
        out[new] = state_dict[key]
    return out


# --- building modules -------------------------------------------------------------------------------------------------
def diffusers_class(component: str):
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors

    return {
        "transformer": LTX2VideoTransformer3DModel,
        "connectors": LTX2TextConnectors,
        "vae": AutoencoderKLLTX2Video,
        "audio_vae": AutoencoderKLLTX2Audio,
        "latent_upsampler": LTX2LatentUpsamplerModel,
    }[component]


def component_config(component: str, config: dict) -> dict:
    return {
        "transformer": transformer_config,
        "connectors": connectors_config,
        "vae": vae_config,
        "audio_vae": audio_vae_config,
        "latent_upsampler": upsampler_config,
    }[component](config)


def build_component(component: str, state_dict: dict, config: dict, dtype: torch.dtype | None = None):
    """A diffusers module for `component` holding exactly the checkpoint's tensors (strict; nothing random left)."""
    converted = convert_component(component, state_dict, config)
    with torch.device("meta"):
        module = diffusers_class(component)(**component_config(component, config))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ConversionError(f"{component}: the checkpoint does not match diffusers' module ({detail})")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ConversionError(f"{component}: {key} has shape {tuple(value.shape)}, expected "
                                  f"{tuple(expected[key].shape)}")
    if dtype is not None:
        converted = {k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()}
    module.load_state_dict(converted, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def load_released(checkpoint: str | Path, upsampler: str | Path | None = None, dtype: torch.dtype | None = None,
                  device: str | torch.device = "cpu") -> dict:
    """The `components` dict `ltx.recipe.build_model` takes, from released single-file checkpoints.

    Keys: transformer, connectors, vae, audio_vae, scheduler (+ latent_upsampler when `upsampler` is given).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler
    from safetensors.torch import load_file

    config = read_config(checkpoint)
    if not config:
        raise ConversionError(f"{checkpoint} carries no `config` metadata; is it a released LTX-2.3 checkpoint?")
    parts = split_components(load_file(str(checkpoint), device=str(device)))
    modules = {name: build_component(name, parts[name], config, dtype)
               for name in ("transformer", "connectors", "vae", "audio_vae")}
    if upsampler is not None:
        modules["latent_upsampler"] = build_component(
            "latent_upsampler", load_file(str(upsampler), device=str(device)), read_config(upsampler), dtype)
    modules["scheduler"] = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift_terminal=None)
    return modules
