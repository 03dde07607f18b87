"""The constant prompt `3d1t`: its Gemma embedding cached on disk, and the text connectors run on it once.

Why: Sync-LoRA is always prompted with `3d1t`, so Gemma 3 (23 GiB) runs once (`python -m synclora cache-prompt`) and
only its few valid token rows are stored (LTX-2.3's connectors replace padded rows by learnable registers, so those
carry no information). At load time the connectors (5.9 GiB) run once on the cached embedding and are dropped: their
output is all the transformer ever needs (`encode_text`, `FrozenConnectors`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from synclora.errors import ModelUnavailableError
from synclora.ltx.weights import home

PROMPT = "3d1t"
PROMPT_MAX_LENGTH = 1024  # the connector's register layout depends on it
PROMPT_CACHE_NAME = "prompt-3d1t.safetensors"


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
    from synclora.paths import atomic_output

    with atomic_output(path) as tmp:
        save_file({"embeds": rows, "positions": valid.nonzero()[:, 0].to(torch.int64).cpu()}, str(tmp), metadata=meta)
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


def load_gemma(base_dir: Path, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """LTX-2.3's Gemma 3 text encoder and tokenizer from a diffusers-layout folder (fetched `--with-text-encoder`)."""
    import transformers

    base_dir = Path(base_dir)
    config = json.loads((base_dir / "text_encoder" / "config.json").read_text())
    encoder_cls = getattr(transformers, config["architectures"][0])  # the class the repo was saved with
    text_encoder = encoder_cls.from_pretrained(base_dir / "text_encoder", torch_dtype=dtype).to(device).eval()
    return text_encoder, transformers.AutoTokenizer.from_pretrained(base_dir / "tokenizer")


@torch.no_grad()
def encode_prompts(
    text_encoder, tokenizer, prompts: list[str], *, max_length: int = PROMPT_MAX_LENGTH, device: str = "cuda"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(embeds (1, L, D), mask (1, L)) of each prompt on the CPU, exactly as LTX-2's pipelines encode a prompt (left
    padded to `max_length`, the hidden states of all layers stacked). Works for Gemma and for the tiny stand-in."""
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline(
        scheduler=None, vae=None, audio_vae=None, text_encoder=text_encoder, tokenizer=tokenizer, connectors=None,
        transformer=None, vocoder=None,
    )
    out = []
    for prompt in prompts:
        embeds, mask, _, _ = pipe.encode_prompt(
            prompt, do_classifier_free_guidance=False, max_sequence_length=max_length, device=device
        )
        out.append((embeds.cpu(), mask.cpu()))
    return out


def encode_prompt_with_gemma(base_dir: Path, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    """Run LTX-2.3's Gemma 3 text encoder on `3d1t` exactly as the pipeline would (left pad to 1024, all layers)."""
    text_encoder, tokenizer = load_gemma(base_dir, device, dtype)
    return encode_prompts(text_encoder, tokenizer, [PROMPT], device=device)[0]


class FrozenConnectors(torch.nn.Module):
    """Stands in for `LTX2TextConnectors`: returns its output for the constant prompt, computed once."""

    def __init__(self, video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("video", video, persistent=False)
        self.register_buffer("audio", audio, persistent=False)
        self.register_buffer("mask", mask, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.video.device

    @property
    def dtype(self) -> torch.dtype:
        return self.video.dtype

    def forward(self, prompt_embeds, attention_mask, padding_side: str = "left"):  # the prompt is fixed
        return self.video, self.audio, self.mask


@torch.no_grad()
def encode_text(
    connectors: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the text connectors once on the cached embedding: (video context, audio context, context mask)."""
    from synclora.ltx.components import place

    place(connectors, device, dtype)
    return connectors(embeds.to(device=device, dtype=dtype), mask.to(device), padding_side="left")
