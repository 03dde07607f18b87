"""LTX-2.3 image-to-video: the generator of the paper's training pairs (one still in, one clip out).

The paper animated an original and an edited portrait still with an image-to-video model, same motion prompt, same
seed, same settings, and kept the pairs that came out in sync (docs/METHOD.md, docs/TRAINING.md). Here the
image-to-video model is LTX-2.3 itself, run with ltx-pipelines' two-stage distilled recipe minus the reference video:

1. stage 1 at half resolution from noise, the still at latent index 0 (strength 1, CRF-33 re-compressed as in
   training), the 8 distilled sigmas, no guidance of any kind;
2. x2 latent upsampling;
3. stage 2 at full resolution from noise scale 0.909375 over 3 sigmas, the still again at index 0;
4. decoding of the video latents (the model's audio is never decoded: pairs are video only, like training).

The modules are the ones the Sync-LoRA backend loads (dev transformer + fused distilled LoRA, VAE, upsampler) and
keeps once per process (`propagate.registry`), with the Sync-LoRA adapter switched off while a clip is made: a process
that both propagates and generates holds one copy. `diffusers.LTX2ConditionPipeline` is built over those modules.

Motion prompts change from pair to pair (unlike Sync-LoRA's constant `3d1t`), so they are encoded here: Gemma 3 once
per prompt, cached on disk under `SYNCLORA_HOME/prompts/` (only needed again for a new prompt), then the text
connectors once per prompt per process; `FrozenConnectors` then hands the pipeline the right context per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synclora.errors import InputError, ModelUnavailableError
from synclora.ltx.prompt import FrozenConnectors
from synclora.ltx.recipe import FRAME_RATE, STAGE_1_SIGMAS, STAGE_2_NOISE_SCALE, STAGE_2_SIGMAS


@dataclass(frozen=True)
class ClipSettings:
    """What every clip of a pair is made with (the same for the source and the target)."""

    width: int = 512
    height: int = 512
    num_frames: int = 81
    quality: str = "full"  # "full": both stages; "preview": stage 1 only, upscaled (smoke runs, not training data)

    def check(self, model: str) -> None:
        from synclora.propagate.ltx import SPEC, TINY_SPEC

        spec = TINY_SPEC if model == "tiny" else SPEC
        if self.width % spec.size_multiple or self.height % spec.size_multiple or min(self.width, self.height) < 64:
            raise InputError(f"the clip size must be a multiple of {spec.size_multiple} (two stages of the VAE's "
                             f"32), got {self.width}x{self.height}")
        if self.num_frames < 9 or (self.num_frames - 1) % spec.frame_step:
            raise InputError(f"--num-frames must be 8k+1 and at least 9 (LTX compresses time 8x), got "
                             f"{self.num_frames}")
        if self.quality not in ("full", "preview"):
            raise InputError(f"quality must be full or preview, got {self.quality!r}")

    def to_dict(self) -> dict:
        return dict(width=self.width, height=self.height, num_frames=self.num_frames, fps=FRAME_RATE,
                    quality=self.quality, stage_1_sigmas=STAGE_1_SIGMAS,
                    stage_2_sigmas=STAGE_2_SIGMAS if self.quality == "full" else None,
                    stage_2_noise_scale=STAGE_2_NOISE_SCALE if self.quality == "full" else None, guidance="none")


# --- motion prompts -----------------------------------------------------------------------------------------------
def _prompt_cache_path(prompt: str) -> Path:
    import hashlib

    from synclora.ltx.weights import home

    return home() / "prompts" / f"{hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:24]}.safetensors"


def _cached_embedding(prompt: str):
    from synclora.ltx.prompt import load_prompt_cache

    path = _prompt_cache_path(prompt)
    if not path.is_file():
        return None
    try:
        embeds, mask, meta = load_prompt_cache(path)
    except ModelUnavailableError:
        return None  # a damaged cache file is simply encoded again
    return (embeds, mask) if meta.get("prompt") == prompt else None


def _gemma_embeddings(prompts: list[str], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Gemma embeddings of the real model, from the disk cache or (for new prompts) by running Gemma once."""

    from synclora.ltx.prompt import encode_prompts, load_gemma, save_prompt_cache
    from synclora.ltx.weights import resolve_weights
    from synclora.memory import free_memory

    found = {p: _cached_embedding(p) for p in prompts}
    missing = [p for p in prompts if found[p] is None]
    if missing:
        base = resolve_weights().base_dir
        if not (base / "text_encoder").is_dir():
            raise ModelUnavailableError(
                f"{len(missing)} motion prompt(s) are not encoded yet and LTX-2.3's Gemma text encoder is not "
                "downloaded; run `python -m synclora fetch-weights --with-text-encoder` once"
            )
        text_encoder, tokenizer = load_gemma(base, str(device), torch.bfloat16)
        for prompt, (embeds, mask) in zip(missing, encode_prompts(text_encoder, tokenizer, missing,
                                                                  device=str(device))):
            # other ranks may write the same file: each write is whole (save_prompt_cache writes atomically)
            save_prompt_cache(_prompt_cache_path(prompt), embeds, mask, prompt=prompt)
            found[prompt] = (embeds, mask)
        del text_encoder
        free_memory()
    return [found[p] for p in prompts]


def motion_contexts(model: str, prompts: list[str], device: torch.device, dtype: torch.dtype
                    ) -> dict[str, FrozenConnectors]:
    """{prompt: the text connectors' output for it}, computed once; the connectors are dropped afterwards."""
    from synclora.ltx.prompt import encode_prompts, encode_text
    from synclora.memory import free_memory

    prompts = list(dict.fromkeys(prompts))
    if model == "tiny":
        from synclora.ltx.tiny import TINY_TEXT_LEN, tiny_components, tiny_gemma, word_tokenizer

        tokenizer = word_tokenizer(prompts, max_length=TINY_TEXT_LEN)
        embeddings = encode_prompts(tiny_gemma(len(tokenizer)), tokenizer, prompts, max_length=TINY_TEXT_LEN,
                                    device="cpu")
        connectors = tiny_components(seed=0)["connectors"]  # the tiny backend's own (same seed)
    else:
        from synclora.ltx.components import load_components

        embeddings = _gemma_embeddings(prompts, device)
        connectors = load_components("real", dtype, parts=("connectors",))[0]["connectors"]
    contexts = {p: FrozenConnectors(*encode_text(connectors, e, m, device, dtype))
                for p, (e, m) in zip(prompts, embeddings)}
    del connectors
    free_memory()
    return contexts


# --- the generator --------------------------------------------------------------------------------------------------
class ImageToVideo:
    """Still + motion prompt + seed → clip, on a loaded Sync-LoRA model with its adapter switched off."""

    def __init__(self, model, contexts: dict[str, FrozenConnectors]):
        from diffusers import FlowMatchEulerDiscreteScheduler, LTX2ConditionPipeline

        if not contexts:
            raise ValueError("no motion prompt was encoded")
        self.model = model  # ltx.recipe.LoadedModel
        self.contexts = contexts
        shared = model.pipe
        self.pipe = LTX2ConditionPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(shared.scheduler.config),  # own state, same config
            vae=shared.vae,
            audio_vae=shared.audio_vae,
            text_encoder=None,
            tokenizer=None,
            connectors=next(iter(contexts.values())),
            transformer=shared.transformer,
            vocoder=shared.vocoder,
        )
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def load(cls, model: str, memory: str, prompts: list[str]) -> ImageToVideo:
        """Encode the prompts (first: Gemma must not share the GPU with the video model), then take the backend's
        loaded model for `model`/`memory` (loading it if this process has none yet)."""
        from synclora.config import PropagationSettings
        from synclora.propagate import registry

        if model == "real" and not torch.cuda.is_available():
            raise ModelUnavailableError("generating pairs with LTX-2.3 needs a CUDA GPU; --model tiny runs on the CPU")
        device, dtype = (torch.device("cpu"), torch.float32) if model == "tiny" else (
            torch.device("cuda", torch.cuda.current_device()), torch.bfloat16)
        contexts = motion_contexts(model, prompts, device, dtype)
        backend = registry.get(PropagationSettings(backend="synclora", model=model, memory=memory))
        return cls(backend.model, contexts)

    def __call__(self, image: np.ndarray, prompt: str, seed: int, clip: ClipSettings) -> np.ndarray:
        """(num_frames, height, width, 3) uint8; `image` is (height, width, 3) uint8 at the clip's size."""
        from synclora.ltx.recipe import run_two_stages

        h, w = clip.height, clip.width
        if image.shape != (h, w, 3):
            raise ValueError(f"image is {image.shape}, the clip {h}x{w}")
        context = self.contexts[prompt]
        with self.model.lock:  # the transformer is shared with the Sync-LoRA backend: one call at a time
            self.pipe.connectors = context
            # A writable copy of the still (an edit may come back as a read-only view); the adapter stays off.
            return run_two_stages(self.model, np.array(image), num_frames=clip.num_frames, height=h, width=w,
                                  seed=seed, quality=clip.quality, pipe=self.pipe, prompt_mask=context.mask)
