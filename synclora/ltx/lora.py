"""The LoRA file format of the released Sync-LoRA (ltx-trainer / ComfyUI), and putting such a LoRA into a model.

Why this exists: released LoRA files carry a `diffusion_model.` prefix and ltx-core module names, optional `.alpha`
keys (which diffusers rejects) and safetensors metadata (`reference_downscale_factor`) that diffusers does not read.
`read_lora` handles all three; `released_to_diffusers`/`diffusers_to_released` convert names both ways (exactly
invertible), so the trainer saves LoRAs the released way and every file we write loads in LTX-2 tools too.
`load_adapter` refuses a LoRA any of whose tensors finds no module: a silent partial load is the failure this
project cannot see in its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from synclora.errors import ModelUnavailableError

# Modules an IC-LoRA of the released kind adapts in every video block (ltx-trainer's defaults, video branch only).
LORA_TARGETS = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
)


@dataclass
class LoraFile:
    """A LoRA read from disk: released-format tensors (alpha folded in), its rank and the IC metadata."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str]
    rank: int

    @property
    def reference_downscale_factor(self) -> int:
        return int(float(self.metadata.get("reference_downscale_factor", 1)))

    @property
    def reference_temporal_scale_factor(self) -> int:
        return int(float(self.metadata.get("reference_temporal_scale_factor", 1)))


def read_lora(path: str | Path, dtype: torch.dtype | None = None) -> LoraFile:
    """Read a LoRA safetensors file, fold `.alpha` (alpha/rank) into `lora_B`, validate, keep the metadata.

    Missing, truncated or non-LoRA files raise `ModelUnavailableError` with the path in the message.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"LoRA file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            raw = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for truncated/garbled headers
        raise ModelUnavailableError(f"LoRA file {path} is unreadable or corrupt ({exc}); download it again") from exc
    return _build_lora(raw, metadata, path, dtype)


def _build_lora(raw: dict, metadata: dict, path: Path, dtype: torch.dtype | None) -> LoraFile:
    alphas = {k[: -len(".alpha")]: v for k, v in raw.items() if k.endswith(".alpha")}
    sd = {k: v for k, v in raw.items() if not k.endswith(".alpha")}
    bad = [k for k in sd if not (k.endswith(".lora_A.weight") or k.endswith(".lora_B.weight"))]
    if bad or not sd:
        raise ModelUnavailableError(f"{path} is not a LoRA file (unexpected key {bad[0] if bad else '<none>'})")
    ranks = set()
    for key_a in [k for k in sd if k.endswith(".lora_A.weight")]:
        module = key_a[: -len(".lora_A.weight")]
        key_b = module + ".lora_B.weight"
        if key_b not in sd:
            raise ModelUnavailableError(f"{path} is incomplete: {module} has lora_A but no lora_B")
        rank = sd[key_a].shape[0]
        ranks.add(rank)
        if module in alphas:
            scale = float(alphas[module]) / rank
            if scale != 1.0:
                sd[key_b] = (sd[key_b].float() * scale).to(sd[key_b].dtype)
    if any(k.endswith(".lora_B.weight") and k.replace(".lora_B.", ".lora_A.") not in sd for k in sd):
        raise ModelUnavailableError(f"{path} is incomplete: a lora_B has no lora_A")
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    return LoraFile(sd, metadata, max(ranks))


# Released (ltx-core) module names -> diffusers names, one dotted component at a time (component-wise so the
# mapping is exactly invertible; diffusers' own converter works on substrings and is only used one way).
_COMPONENT_RENAMES = {
    "patchify_proj": "proj_in",
    "audio_patchify_proj": "audio_proj_in",
    "av_ca_video_scale_shift_adaln_single": "av_cross_attn_video_scale_shift",
    "av_ca_a2v_gate_adaln_single": "av_cross_attn_video_a2v_gate",
    "av_ca_audio_scale_shift_adaln_single": "av_cross_attn_audio_scale_shift",
    "av_ca_v2a_gate_adaln_single": "av_cross_attn_audio_v2a_gate",
    "scale_shift_table_a2v_ca_video": "video_a2v_cross_attn_scale_shift_table",
    "scale_shift_table_a2v_ca_audio": "audio_a2v_cross_attn_scale_shift_table",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
    "audio_prompt_adaln_single": "audio_prompt_adaln",
    "prompt_adaln_single": "prompt_adaln",
    "adaln_single": "time_embed",
    "audio_adaln_single": "audio_time_embed",
}
_COMPONENT_RENAMES_BACK = {v: k for k, v in _COMPONENT_RENAMES.items()}
RELEASED_PREFIX = "diffusion_model."


def released_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`diffusion_model.X.lora_A.weight` -> `X'.lora_A.weight` with diffusers module names (no `transformer.`).

    Keys outside the transformer (e.g. `text_embedding_projection.`) raise: Sync-LoRA adapts the transformer only,
    and a key we cannot place is exactly the silent mismatch this project refuses.
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(RELEASED_PREFIX):
            raise ModelUnavailableError(f"LoRA key {key!r} is not in the released format (diffusion_model.*)")
        parts = key[len(RELEASED_PREFIX):].split(".")
        out[".".join(_COMPONENT_RENAMES.get(p, p) for p in parts)] = value
    return out


def diffusers_to_released(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `released_to_diffusers`; accepts PEFT names with or without a `transformer.` prefix.

    PEFT's `get_peft_model_state_dict` gives `transformer_blocks.0.attn1.to_q.lora_A.weight`; adapter names inside
    keys (`lora_A.default.weight`) are dropped.
    """
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("transformer.")
        parts = key.split(".")
        if len(parts) >= 3 and parts[-3] in ("lora_A", "lora_B"):  # name.lora_A.<adapter>.weight
            parts = parts[:-2] + parts[-1:]
        out[RELEASED_PREFIX + ".".join(_COMPONENT_RENAMES_BACK.get(p, p) for p in parts)] = value
    return out


def save_released_lora(
    path: str | Path, state_dict: dict[str, torch.Tensor], reference_downscale_factor: int = 1, **metadata: str
) -> Path:
    """Save PEFT/diffusers LoRA tensors as a released-format file (what `read_lora` and the app load)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().cpu() for k, v in diffusers_to_released(state_dict).items()}
    meta = {"reference_downscale_factor": str(reference_downscale_factor), **{k: str(v) for k, v in metadata.items()}}
    from synclora.paths import atomic_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # a LoRA file is complete or absent, never half-written
        save_file(sd, str(tmp), metadata=meta)
    return path


def load_adapter(pipe, state_dict: dict, adapter_name: str) -> None:
    """Load a LoRA (diffusers names) into `pipe.transformer`; fail loudly unless every tensor found its module."""
    from peft.utils import get_peft_model_state_dict

    transformer = pipe.transformer
    transformer.load_lora_adapter(state_dict, adapter_name=adapter_name, prefix=None)
    loaded = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    unmatched = sorted(set(state_dict) - set(loaded))
    if unmatched:
        pipe.delete_adapters(adapter_name)
        raise ModelUnavailableError(
            f"the {adapter_name} LoRA does not fit this model: {len(unmatched)} tensors match no module "
            f"(first: {unmatched[0]})"
        )


def lora_module_shapes(transformer: torch.nn.Module, targets: tuple[str, ...] = LORA_TARGETS) -> dict[str, tuple]:
    """`{diffusers module name: (in_features, out_features)}` for every video-block Linear a LoRA adapts."""
    shapes = {}
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.startswith("transformer_blocks."):
            continue
        local = name.split(".", 2)[2]
        if local in targets:
            shapes[name] = (module.in_features, module.out_features)
    return shapes


def random_lora_state_dict(
    shapes: dict[str, tuple], rank: int, seed: int = 0, scale: float = 0.02, dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """A LoRA in the released key format (`diffusion_model.<module>.lora_A/B.weight`), random but non-zero.

    `lora_B` is random too (a trained LoRA's is), so loading it really changes the output.
    """
    g = torch.Generator(device=device).manual_seed(seed)
    sd = {}
    for name, (fan_in, fan_out) in sorted(shapes.items()):
        sd[f"{RELEASED_PREFIX}{name}.lora_A.weight"] = (
            torch.randn(rank, fan_in, generator=g, device=device) * scale
        ).to(dtype)
        sd[f"{RELEASED_PREFIX}{name}.lora_B.weight"] = (
            torch.randn(fan_out, rank, generator=g, device=device) * scale
        ).to(dtype)
    return sd
