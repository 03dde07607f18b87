"""A tiny FLUX.2 [klein] of the real classes, random weights, built from configs in memory (`--model tiny`).

Why: pair generation edits every still with the instruction model; tests and CPU smoke runs must go through the very
same `Flux2KleinPipeline` call (chat-templated Qwen3 prompt, hidden states of layers 9/18/27, reference image
tokens, 4 distilled steps) without a 15 GB download or a GPU. Its edits are noise: it exists to test the path.
"""

from __future__ import annotations

import torch

# Qwen3's chat format, reduced to what `Flux2KleinPipeline` renders (one user turn + the generation prompt).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)
TEXT_HIDDEN = 16
TEXT_LAYERS = 28  # the pipeline reads hidden states 9, 18 and 27, as of the real 36-layer Qwen3-4B
MAX_TOKENS = 512  # the pipeline pads every prompt to 512 tokens


def tiny_instruct_pipeline(tokenizer, seed: int = 0):
    """`Flux2KleinPipeline` (distilled, 4 steps) with a tiny transformer, VAE and Qwen3 over `tokenizer`: an offline
    one of MAX_TOKENS, right padding and CHAT_TEMPLATE (`data.stills.tiny_editor` builds both)."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = Qwen3ForCausalLM(Qwen3Config(
            hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=TEXT_LAYERS, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8, vocab_size=len(tokenizer), tie_word_embeddings=True,
            max_position_embeddings=MAX_TOKENS,
        ))
        vae = AutoencoderKLFlux2(
            block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            mid_block_add_attention=False, sample_size=64,
        )
        transformer = Flux2Transformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=3 * TEXT_HIDDEN, mlp_ratio=3.0, axes_dims_rope=(4, 4, 4, 4),
            guidance_embeds=False,
        )
    for module in (text_encoder, vae, transformer):
        module.eval().requires_grad_(False)
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift=3.0), vae=vae,
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, is_distilled=True,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe

