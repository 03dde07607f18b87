"""Loading the LTX-2.3 modules, real or tiny, for the Sync-LoRA recipe and for training alike.

Both need the same things: modules from a diffusers-layout folder (or the tiny ones built in memory) and the `3d1t`
prompt embedding with its mask (the cache `cache-prompt` writes, or the tiny stand-in). What each then does with
them (LoRAs, memory modes, adapters to train) is theirs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synclora.errors import ModelUnavailableError
from synclora.ltx import hub

# x2 spatial upsampler v1.1 of LTX-2.3 (diffusers' conversion values; no diffusers repo ships v1.1).
UPSAMPLER_CONFIG = dict(
    in_channels=128,
    mid_channels=1024,
    num_blocks_per_stage=4,
    dims=3,
    spatial_upsample=True,
    temporal_upsample=False,
    use_rational_resampler=False,
)
# What training needs of the base folder (the recipe loads `hub.PIPELINE_PARTS`, listed with the Hub files, which
# must preload exactly these; the upsampler comes from its own file).
TRAINING_PARTS = ("transformer", "connectors", "vae")


def load_components(
    model: str,
    dtype: torch.dtype,
    *,
    parts: tuple[str, ...] = hub.PIPELINE_PARTS,
    base_dir: Path | None = None,
    upsampler: Path | None = None,
    prompt_cache: Path | None = None,
    seed: int = 0,
    hint: str = "run `python -m synclora fetch-weights`",
) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(modules, prompt embedding, prompt mask) for `model` "real" or "tiny".

    Real: `parts` from `base_dir` (default: the pinned weights) in `dtype`, plus the x2 latent upsampler from its file
    when `upsampler` is given, and the cached prompt embedding. Tiny: every module of the tiny model (deterministic for
    `seed`) and its random prompt stand-in; `dtype` is left to the caller. Missing or broken files raise
    `ModelUnavailableError` ending in `hint`.
    """
    if model == "tiny":
        from synclora.ltx.tiny import tiny_components, tiny_prompt_embeds

        embeds, mask = tiny_prompt_embeds(seed=seed)
        return tiny_components(seed=seed), embeds, mask
    from synclora.ltx.prompt import expected_dim, find_prompt_cache, load_prompt_cache
    from synclora.ltx.weights import resolve_weights

    base = Path(base_dir) if base_dir is not None else resolve_weights().base_dir
    for sub in parts:
        if not (base / sub).is_dir():
            raise ModelUnavailableError(f"{base} has no {sub}/ folder; {hint}")
    if prompt_cache is None:
        found = find_prompt_cache(expected_dim(base))
        if found.path is None:
            raise ModelUnavailableError(f"{found.why_missing()}; build it once with `python -m synclora cache-prompt`")
        prompt_cache = found.path
    embeds, mask, _ = load_prompt_cache(prompt_cache)
    try:
        modules = {name: _load_part(name, base / name, dtype) for name in parts}
        if upsampler is not None:
            modules["latent_upsampler"] = _load_upsampler(Path(upsampler), dtype)
    except MemoryError:
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":
            raise
        raise ModelUnavailableError(f"the LTX-2.3 weights could not be loaded ({type(exc).__name__}: {exc}); "
                                    f"{hint}") from exc
    return modules, embeds, mask


def _load_part(name: str, folder: Path, dtype: torch.dtype):
    import diffusers
    from diffusers.pipelines import ltx2

    if name == "scheduler":
        return diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder)
    cls = {
        "transformer": diffusers.LTX2VideoTransformer3DModel,
        "connectors": ltx2.LTX2TextConnectors,
        "vae": diffusers.AutoencoderKLLTX2Video,
        "audio_vae": diffusers.AutoencoderKLLTX2Audio,
        "vocoder": ltx2.LTX2Vocoder,
    }[name]
    return cls.from_pretrained(folder, torch_dtype=dtype)


def upsampler_config(path: Path) -> dict:
    """The upsampler's constructor arguments: from the file's own safetensors metadata (`config`, written by
    Lightricks' tools with their parameter names) when present, else the LTX-2.3 v1.1 values. `load_state_dict(
    strict=True)` then proves the two agree."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("config")
    if not raw:
        return dict(UPSAMPLER_CONFIG)
    cfg = json.loads(raw)
    renames = {"spatial_scale": "rational_spatial_scale", "rational_resampler": "use_rational_resampler"}
    known = set(UPSAMPLER_CONFIG) | set(renames.values())
    out = {renames.get(k, k): v for k, v in cfg.items() if renames.get(k, k) in known}
    return {**UPSAMPLER_CONFIG, **out}


def _load_upsampler(path: Path, dtype: torch.dtype):
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel
    from safetensors.torch import load_file

    upsampler = LTX2LatentUpsamplerModel(**upsampler_config(path))
    upsampler.load_state_dict(load_file(str(path)), strict=True)
    return upsampler.to(dtype)

