"""Tiny LTX-2.3 models of the very same diffusers classes, random weights, built from configs in memory.

Why: tests, CPU smoke runs and the trainer's unit tests must exercise the real two-stage code path (IC reference
tokens, LoRA loading, latent upsampling, decoding) without a 40 GB download or a GPU. The switches that make LTX-2.3
differ from LTX-2.0 (gated attention, cross-attention AdaLN, per-modality connector projections, learnable registers,
"split" RoPE, no rational resampler) are all on, so the tiny model takes the same branches as the real one.

Differences from the real model that callers must know: the tiny VAE compresses 2x in time and 4x in space (the real
one 8x and 32x), so any 8k+1 frame count and any size divisible by 64 is valid for both; the tiny prompt embeddings
are random (there is no tiny Gemma), their shape is (1, TINY_TEXT_LEN, TINY_CAPTION_CHANNELS * TINY_TEXT_LAYERS).
"""

from __future__ import annotations

from pathlib import Path

import torch

from synclora.ltx.lora import lora_module_shapes, random_lora_state_dict

# Text side: the connectors consume Gemma's stacked hidden states, (1, L, caption_channels * (layers + 1)).
TINY_TEXT_LEN = 16
TINY_CAPTION_CHANNELS = 16
TINY_TEXT_LAYERS = 3  # text_proj_in_factor: hidden states of all layers + embeddings
TINY_VALID_TOKENS = 4  # "3d1t" tokenizes to a few tokens; the rest is left padding


def tiny_transformer_config() -> dict:
    return dict(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=TINY_CAPTION_CHANNELS,
        rope_double_precision=False,
        rope_type="split",
        gated_attn=True,
        cross_attn_mod=True,
        audio_gated_attn=True,
        audio_cross_attn_mod=True,
        use_prompt_embeddings=False,
        perturbed_attn=True,
    )


def tiny_connectors_config() -> dict:
    return dict(
        caption_channels=TINY_CAPTION_CHANNELS,
        text_proj_in_factor=TINY_TEXT_LAYERS,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=4,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=4,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=4,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
        per_modality_projections=True,
        video_hidden_dim=16,
        audio_hidden_dim=8,
        proj_bias=True,
        video_gated_attn=True,
        audio_gated_attn=True,
    )


def tiny_vae_config() -> dict:
    # ("spatiotemporal",) keeps encoder and decoder temporally consistent (9 -> 5 -> 9 frames); the ("spatial",)
    # variant in diffusers' own tests encodes 9 frames to 9 latents, which breaks a reference *video*. patch_size 2
    # (2x2 pixels per input position, as the real VAE patchifies 4x4) makes it 4x in space: a quarter of the tokens,
    # a sixteenth of the attention, where most of a tiny run's CPU time goes.
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatiotemporal",),
        upsample_type=("spatiotemporal",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=2,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


def tiny_audio_vae_config() -> dict:
    return dict(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )


def tiny_vocoder_config() -> dict:
    return dict(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[4, 4],
        upsample_factors=[2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )


def tiny_upsampler_config() -> dict:
    return dict(in_channels=4, mid_channels=32, num_blocks_per_stage=1, use_rational_resampler=False)


def scheduler_config() -> dict:
    """The distilled-sampling scheduler: no dynamic shift, no terminal shift (docs/LTX.md, "Gotchas")."""
    return dict(use_dynamic_shifting=False, shift_terminal=None)


def tiny_components(seed: int = 0) -> dict:
    """All modules an `LTX2InContextPipeline` needs except the text encoder, plus the x2 latent upsampler.

    Keys: transformer, connectors, vae, audio_vae, vocoder, scheduler, latent_upsampler. Deterministic for a seed.
    """
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors, LTX2Vocoder

    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(**tiny_transformer_config())
    connectors = LTX2TextConnectors(**tiny_connectors_config())
    vae = AutoencoderKLLTX2Video(**tiny_vae_config())
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    audio_vae = AutoencoderKLLTX2Audio(**tiny_audio_vae_config())
    vocoder = LTX2Vocoder(**tiny_vocoder_config())
    latent_upsampler = LTX2LatentUpsamplerModel(**tiny_upsampler_config())
    modules = dict(
        transformer=transformer,
        connectors=connectors,
        vae=vae,
        audio_vae=audio_vae,
        vocoder=vocoder,
        latent_upsampler=latent_upsampler,
    )
    for module in modules.values():
        module.eval().requires_grad_(False)
    modules["scheduler"] = FlowMatchEulerDiscreteScheduler(**scheduler_config())
    return modules


def tiny_prompt_embeds(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in for Gemma's `3d1t` embeddings: (1, L, C*layers) float32 and a left-padded (1, L) mask."""
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, TINY_TEXT_LEN, TINY_CAPTION_CHANNELS * TINY_TEXT_LAYERS, generator=g)
    mask = torch.zeros(1, TINY_TEXT_LEN, dtype=torch.long)
    mask[:, -TINY_VALID_TOKENS:] = 1
    return embeds, mask


def write_tiny_lora(
    path: str | Path,
    rank: int = 4,
    seed: int = 0,
    reference_downscale_factor: int = 1,
    with_alpha: bool = False,
    scale: float = 0.5,
) -> Path:
    """Write a Sync-LoRA-shaped file for the tiny transformer, exactly as ltx-trainer writes it.

    Keys `diffusion_model.transformer_blocks.N.<module>.lora_A/lora_B.weight`, safetensors metadata
    `reference_downscale_factor`. `with_alpha=True` adds ComfyUI-style `.alpha` keys (rank), to test their handling.
    """
    from diffusers import LTX2VideoTransformer3DModel
    from safetensors.torch import save_file

    with torch.device("meta"):
        transformer = LTX2VideoTransformer3DModel(**tiny_transformer_config())
    sd = random_lora_state_dict(lora_module_shapes(transformer), rank=rank, seed=seed, scale=scale)
    if with_alpha:
        for key in [k for k in sd if k.endswith(".lora_A.weight")]:
            sd[key.replace(".lora_A.weight", ".alpha")] = torch.tensor(float(rank))
    from synclora.paths import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        save_file(sd, str(tmp), metadata={"reference_downscale_factor": str(reference_downscale_factor)})
    return path


# --- tiny text encoders: Gemma 3 with offline word tokenizers (pair generator's prompts, the prompt cache) ---
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")


def word_tokenizer(texts, *, max_length: int, padding_side: str = "left", chat_template: str | None = None):
    """An offline `PreTrainedTokenizerFast`: one id per lowercase word of `texts` (others are `<unk>`), `<bos>` first.

    Why: the real tokenizers (Gemma's, Qwen's) live on the Hub; a word-level vocabulary built in memory gives
    different prompts different ids, which is all a random tiny text encoder needs. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = sorted({w.lower() for text in texts for w, _ in pre.pre_tokenize_str(str(text))} - set(SPECIAL_TOKENS))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        padding_side=padding_side, model_max_length=max_length, chat_template=chat_template,
    )


def tiny_gemma(vocab_size: int, seed: int = 0, max_positions: int = 128):
    """A tiny Gemma 3 of LTX-2.3's text-encoder class whose stacked hidden states fit the tiny connectors."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    n = vocab_size + 3  # + begin/end-of-image and image tokens, which Gemma 3's config asks for
    text = Gemma3TextConfig(
        vocab_size=n, hidden_size=TINY_CAPTION_CHANNELS, intermediate_size=32, num_hidden_layers=TINY_TEXT_LAYERS - 1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=max_positions,
        sliding_window=16, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8)
    config = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                          boi_token_index=n - 3, eoi_token_index=n - 2, image_token_index=n - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Gemma3ForConditionalGeneration(config).eval().requires_grad_(False)

def tiny_text_encoder(seed: int = 0):
    """The tiny Gemma 3 and its word tokenizer that make the `3d1t` prompt cache: (text_encoder, tokenizer).

    Positions reach the real prompt length (the cache is left-padded to `PROMPT_MAX_LENGTH` tokens, like Gemma's).
    """
    from synclora.ltx.prompt import PROMPT, PROMPT_MAX_LENGTH

    tokenizer = word_tokenizer([PROMPT], max_length=2 * PROMPT_MAX_LENGTH)
    return tiny_gemma(len(tokenizer), seed, max_positions=2 * PROMPT_MAX_LENGTH), tokenizer


# --- a tiny model in a Hugging Face cache, as a Space's `preload_from_hub` would leave it -----------------------------
def _save_part(module, folder: Path, files: tuple[str, ...]) -> None:
    """Save one pipeline part under `folder` with exactly the file names `files` (relative to `folder`'s parent)."""
    import json

    from safetensors.torch import save_file

    from synclora.ltx.hub import WEIGHTS_STEM

    if not isinstance(module, torch.nn.Module):  # the scheduler
        module.save_config(folder)
        return
    module.save_config(folder)
    sd = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    shards = [Path(f).name for f in files if f.endswith(".safetensors") and "-of-" in f]
    if not shards:
        save_file(sd, str(folder / f"{WEIGHTS_STEM}.safetensors"), metadata={"format": "pt"})
        return
    keys = list(sd)
    per = -(-len(keys) // len(shards))
    weight_map = {}
    for i, name in enumerate(shards):
        part = {k: sd[k] for k in keys[i * per:(i + 1) * per]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{WEIGHTS_STEM}.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_snapshot(cache: Path, repo: str, files: dict[str, Path], commit: str) -> Path:
    """Put `files` (name in the repo -> a local file) into `cache` the way huggingface_hub does: content-addressed
    blobs, a snapshot folder of relative links named by the commit, and refs/main naming the commit."""
    import hashlib
    import os
    import shutil

    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap = root / "snapshots" / commit
    for name, src in files.items():
        digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()
        blob = root / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(src, blob)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return snap


def tiny_commit(repo: str) -> str:
    """A fixed fake commit hash per repository (40 hex digits, like the Hub's)."""
    import hashlib

    return hashlib.sha1(f"tiny:{repo}".encode()).hexdigest()


def write_tiny_hub_cache(cache: str | Path, text_encoder: bool = True, seed: int = 0) -> dict[str, str]:
    """Tiny weights of the true architectures in a Hugging Face cache, under the real repository and file names of
    `hub.HUB_FILES` (shards and index included), as a Space's `preload_from_hub` leaves them; with `text_encoder`,
    also a tiny Gemma 3 + tokenizer under the base repository's text_encoder/ and tokenizer/ (what the app fetches
    to make the prompt cache). The real loader builds working tiny models from it. Returns repo -> commit.
    """
    import json
    import tempfile

    from safetensors.torch import save_file

    from synclora.ltx import hub

    cache = Path(cache)
    modules = tiny_components(seed=seed)
    commits = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        for part in hub.PIPELINE_PARTS:
            (base / part).mkdir(parents=True)
            _save_part(modules[part], base / part, tuple(f for f in hub.BASE_FILES.files if f.startswith(part + "/")))
        if text_encoder:
            encoder, tokenizer = tiny_text_encoder(seed)
            encoder.save_pretrained(base / "text_encoder")
            tokenizer.save_pretrained(base / "tokenizer")
        files = {str(p.relative_to(base)): p for p in sorted(base.rglob("*")) if p.is_file()}
        commits[hub.BASE_REPO] = tiny_commit(hub.BASE_REPO)
        _write_snapshot(cache, hub.BASE_REPO, files, commits[hub.BASE_REPO])

        up = modules["latent_upsampler"]
        cfg = dict(tiny_upsampler_config(), dims=3, spatial_upsample=True, temporal_upsample=False)
        cfg["rational_resampler"] = cfg.pop("use_rational_resampler")  # Lightricks' own parameter name
        save_file({k: v.contiguous() for k, v in up.state_dict().items()}, str(tmp / hub.UPSAMPLER_FILE),
                  metadata={"config": json.dumps(cfg)})
        write_tiny_lora(tmp / hub.DISTILLED_LORA_FILE, rank=8, seed=2, scale=0.1)
        write_tiny_lora(tmp / hub.SYNC_LORA_FILE, rank=4, seed=1)
        for h in (hub.LTX_FILES, hub.SYNC_FILES):
            commits[h.repo] = tiny_commit(h.repo)
            _write_snapshot(cache, h.repo, {name: tmp / name for name in h.files}, commits[h.repo])
    return commits
