"""Where the Sync-LoRA weights come from: hub download with pinned revisions, local folders, offline mode,
LoRA files in the released (`diffusion_model.`) key format, and the cached `3d1t` prompt embedding.

Why each piece exists:
- Loading never downloads. `python -m synclora fetch-weights` downloads once and writes a lock file with the exact
  commit of every repository, so later runs (and offline machines) load the very same bytes.
- A folder given by `SYNCLORA_WEIGHTS_DIR` (same layout as `WeightPaths`) replaces the hub cache entirely.
- LoRA files come from ltx-trainer/ComfyUI: `diffusion_model.` prefix, optional `.alpha` keys (which diffusers
  rejects) and safetensors metadata (`reference_downscale_factor`) that diffusers does not read. `read_lora` handles
  all three; `released_to_diffusers`/`diffusers_to_released` convert names both ways so the trainer saves LoRAs the
  released way.
- The prompt is always `3d1t`, so Gemma (23 GiB) is run once by `cache-prompt`; only its few valid token rows are
  stored (LTX-2.3's connector replaces padded rows by learnable registers, so they carry no information).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from synclora.errors import ModelUnavailableError

# --- what the released checkpoint expects -------------------------------------------------------------------------
BASE_REPO = "diffusers/LTX-2.3-Diffusers"
LTX_REPO = "Lightricks/LTX-2.3"
SYNC_REPO = "SagiPolaczek/LTX-2.3-Sync-LoRA"
DISTILLED_LORA_FILE = "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"
UPSAMPLER_FILE = "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"
SYNC_LORA_FILE = "ltx-2.3-sync-lora-3d1t-r256.safetensors"
BASE_SUBFOLDERS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "scheduler")
TEXT_SUBFOLDERS = ("text_encoder", "tokenizer")
PROMPT = "3d1t"
PROMPT_MAX_LENGTH = 1024  # the connector's register layout depends on it
PROMPT_CACHE_NAME = "prompt-3d1t.safetensors"
LOCK_NAME = "weights.lock.json"

# Default revisions before anything is fetched: "main" is resolved to a commit by `fetch-weights` and recorded in
# the lock file; from then on only the locked commit is used. A commit can be forced with `--revision REPO=SHA`.
DEFAULT_REVISIONS = {BASE_REPO: "main", LTX_REPO: "main", SYNC_REPO: "main"}

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


def home() -> Path:
    """Where locks, prompt caches and downloaded-file links live (`SYNCLORA_HOME`, default ~/.cache/synclora)."""
    return Path(os.environ.get("SYNCLORA_HOME", Path.home() / ".cache" / "synclora"))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class WeightPaths:
    """Local paths of everything the real backend loads."""

    base_dir: Path  # diffusers layout: transformer/, connectors/, vae/, audio_vae/, vocoder/, scheduler/
    distilled_lora: Path
    upsampler: Path
    sync_lora: Path
    revisions: dict = field(default_factory=dict)

    def missing(self) -> list[str]:
        out = [str(self.base_dir / sub) for sub in BASE_SUBFOLDERS if not (self.base_dir / sub).is_dir()]
        out += [str(p) for p in (self.distilled_lora, self.upsampler, self.sync_lora) if not p.is_file()]
        return out


def _local_layout(root: Path) -> WeightPaths:
    return WeightPaths(
        base_dir=root / "LTX-2.3-Diffusers",
        distilled_lora=root / DISTILLED_LORA_FILE,
        upsampler=root / UPSAMPLER_FILE,
        sync_lora=root / SYNC_LORA_FILE,
    )


def read_lock(path: Path | None = None) -> dict:
    path = path or home() / LOCK_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def fetch_weights(
    revisions: dict | None = None, include_text_encoder: bool = False, local_dir: Path | None = None
) -> WeightPaths:
    """Download (or find in the hub cache) every file, pin the commits in the lock file, return the local paths."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    revs = {**DEFAULT_REVISIONS, **read_lock().get("revisions", {}), **(revisions or {})}
    try:
        return _fetch(revs, include_text_encoder, local_dir)
    except LocalEntryNotFoundError as exc:
        raise ModelUnavailableError(
            "the weights are not in the local Hugging Face cache and HF_HUB_OFFLINE is set; fetch them on a machine "
            "with internet access (`fetch-weights --to DIR`) and point SYNCLORA_WEIGHTS_DIR at the copy"
        ) from exc


def _fetch(revs: dict, include_text_encoder: bool, local_dir: Path | None) -> WeightPaths:
    from huggingface_hub import hf_hub_download, snapshot_download

    patterns = [f"{sub}/*" for sub in BASE_SUBFOLDERS + (TEXT_SUBFOLDERS if include_text_encoder else ())]
    patterns.append("model_index.json")
    kw = dict(local_files_only=offline())
    base = Path(snapshot_download(BASE_REPO, revision=revs[BASE_REPO], allow_patterns=patterns, **kw))
    files = {
        name: Path(hf_hub_download(repo, name, revision=revs[repo], **kw))
        for repo, name in ((LTX_REPO, DISTILLED_LORA_FILE), (LTX_REPO, UPSAMPLER_FILE), (SYNC_REPO, SYNC_LORA_FILE))
    }
    # The hub cache path is .../snapshots/<commit>/<file>: that commit is what we pin.
    pinned = {
        BASE_REPO: base.name,
        LTX_REPO: files[DISTILLED_LORA_FILE].parent.name,
        SYNC_REPO: files[SYNC_LORA_FILE].parent.name,
    }
    lock = home() / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"revisions": pinned}, indent=2))
    paths = WeightPaths(base, files[DISTILLED_LORA_FILE], files[UPSAMPLER_FILE], files[SYNC_LORA_FILE], pinned)
    if local_dir is not None:  # a self-contained folder, e.g. to copy to an offline machine
        import shutil

        target = _local_layout(Path(local_dir))
        shutil.copytree(base, target.base_dir, dirs_exist_ok=True)
        for src, dst in zip(
            (paths.distilled_lora, paths.upsampler, paths.sync_lora),
            (target.distilled_lora, target.upsampler, target.sync_lora),
        ):
            shutil.copy2(src, dst)
        (Path(local_dir) / LOCK_NAME).write_text(json.dumps({"revisions": pinned}, indent=2))
    return paths


def resolve_weights() -> WeightPaths:
    """Local paths of the pinned weights, never downloading; `ModelUnavailableError` says how to get them."""
    root = os.environ.get("SYNCLORA_WEIGHTS_DIR")
    if root:
        paths = _local_layout(Path(root))
        paths = WeightPaths(**{**paths.__dict__, "revisions": read_lock(Path(root) / LOCK_NAME).get("revisions", {})})
        if paths.missing():
            raise ModelUnavailableError(
                f"SYNCLORA_WEIGHTS_DIR={root} lacks {paths.missing()[0]}; "
                "fill it with `python -m synclora fetch-weights --to DIR`"
            )
        return paths
    pinned = read_lock().get("revisions")
    if not pinned:
        raise ModelUnavailableError(
            "the Sync-LoRA weights are not downloaded yet; run `python -m synclora fetch-weights` once (about 50 GB)"
        )
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        base = Path(
            snapshot_download(
                BASE_REPO,
                revision=pinned[BASE_REPO],
                allow_patterns=[f"{s}/*" for s in BASE_SUBFOLDERS] + ["model_index.json"],
                local_files_only=True,
            )
        )
        get = lambda repo, name: Path(hf_hub_download(repo, name, revision=pinned[repo], local_files_only=True))  # noqa: E731
        paths = WeightPaths(
            base,
            get(LTX_REPO, DISTILLED_LORA_FILE),
            get(LTX_REPO, UPSAMPLER_FILE),
            get(SYNC_REPO, SYNC_LORA_FILE),
            dict(pinned),
        )
    except (LocalEntryNotFoundError, FileNotFoundError, KeyError) as exc:
        raise ModelUnavailableError(
            f"part of the pinned Sync-LoRA weights is not in the local cache ({exc}); "
            "run `python -m synclora fetch-weights`"
        ) from exc
    if paths.missing():
        raise ModelUnavailableError(f"weights incomplete: {paths.missing()[0]}; run `python -m synclora fetch-weights`")
    return paths


# --- LoRA files -----------------------------------------------------------------------------------------------------
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path), metadata=meta)
    return path


# --- prompt-embedding cache -----------------------------------------------------------------------------------------
def save_prompt_cache(
    path: str | Path, embeds: torch.Tensor, mask: torch.Tensor, prompt: str = PROMPT, **metadata: str
) -> Path:
    """Store only the valid (mask == 1) rows of a left-padded `(1, L, D)` Gemma embedding, plus L and the prompt."""
    from safetensors.torch import save_file

    if embeds.ndim != 3 or embeds.shape[0] != 1 or mask.shape != embeds.shape[:2]:
        raise ValueError(f"expected (1, L, D) embeds and (1, L) mask, got {tuple(embeds.shape)} {tuple(mask.shape)}")
    valid = mask[0].bool()
    meta = {"prompt": prompt, "seq_len": str(embeds.shape[1]), "padding_side": "left"}
    meta.update({k: str(v) for k, v in metadata.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = embeds[0, valid].detach().contiguous().cpu()
    save_file({"embeds": rows, "positions": valid.nonzero()[:, 0].to(torch.int64).cpu()}, str(path), metadata=meta)
    return path


def load_prompt_cache(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Rebuild `(embeds (1, L, D), mask (1, L), metadata)` from `save_prompt_cache`'s file (zeros in padding)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(
            f"the `{PROMPT}` prompt cache {path} is missing; build it once with `python -m synclora cache-prompt`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            rows, positions = f.get_tensor("embeds"), f.get_tensor("positions")
    except Exception as exc:
        raise ModelUnavailableError(f"prompt cache {path} is corrupt ({exc}); rebuild it with cache-prompt") from exc
    seq_len = int(meta["seq_len"])
    embeds = torch.zeros(1, seq_len, rows.shape[-1], dtype=rows.dtype)
    embeds[0, positions] = rows
    mask = torch.zeros(1, seq_len, dtype=torch.long)
    mask[0, positions] = 1
    return embeds, mask, meta


def default_prompt_cache() -> Path:
    """The shipped cache (`assets/`) if present, else the one `cache-prompt` writes under `home()`."""
    shipped = Path(__file__).resolve().parents[2] / "assets" / PROMPT_CACHE_NAME
    return shipped if shipped.is_file() else home() / PROMPT_CACHE_NAME


def encode_prompt_with_gemma(base_dir: Path, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """Run LTX-2.3's Gemma 3 text encoder on `3d1t` exactly as the pipeline would (left pad to 1024, all layers)."""
    import transformers
    from diffusers import LTX2Pipeline

    base_dir = Path(base_dir)
    config = json.loads((base_dir / "text_encoder" / "config.json").read_text())
    encoder_cls = getattr(transformers, config["architectures"][0])  # the class the repo was saved with
    text_encoder = encoder_cls.from_pretrained(base_dir / "text_encoder", torch_dtype=dtype).to(device).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir / "tokenizer")
    pipe = LTX2Pipeline(
        scheduler=None, vae=None, audio_vae=None, text_encoder=text_encoder, tokenizer=tokenizer, connectors=None,
        transformer=None, vocoder=None,
    )
    with torch.no_grad():
        embeds, mask, _, _ = pipe.encode_prompt(
            PROMPT, do_classifier_free_guidance=False, max_sequence_length=PROMPT_MAX_LENGTH, device=device
        )
    return embeds.cpu(), mask.cpu()
