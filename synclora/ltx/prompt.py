"""The constant prompt `3d1t`: its Gemma embedding cached on disk, and the text connectors run on it once.

Why: Sync-LoRA is always prompted with `3d1t`, so Gemma 3 (23 GiB) runs once and only its few valid token rows are
stored (LTX-2.3's connectors replace padded rows by learnable registers, so those carry no information): a file of
about 2 MB. At load time the connectors (5.9 GiB) run once on the cached embedding and are dropped: their output is
all the transformer ever needs (`encode_text`, `FrozenConnectors`).

Where the cache comes from, first found first (`find_prompt_cache`; each candidate is validated, a corrupt one is
skipped and reported): shipped in `assets/`, a ready-made file published on the Hub and preloaded
(`SYNCLORA_PROMPT_CACHE_REPO`), persistent storage (`/data` on a Space), `SYNCLORA_HOME`. When none is valid, the app
makes it at start-up on a GPU (`ensure_prompt_cache`: fetch only the text encoder, encode, store, free), or
`python -m synclora cache-prompt` does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from synclora import runtime
from synclora.errors import ModelUnavailableError
from synclora.ltx import hub
from synclora.ltx.weights import home

log = logging.getLogger(__name__)

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

    with atomic_output(path) as tmp:  # never a half-written cache under the real name
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


SHIPPED_PROMPT_CACHE = Path(__file__).resolve().parents[2] / "assets" / PROMPT_CACHE_NAME


def store_path() -> Path:
    """Where a newly made prompt cache is written: persistent storage when it exists (a Space's `/data`, kept across
    restarts), else `SYNCLORA_HOME`."""
    persistent = runtime.current().persistent_dir
    if persistent is not None and persistent.is_dir():
        import os

        if os.access(persistent, os.W_OK):
            return persistent / "synclora" / PROMPT_CACHE_NAME
    return home() / PROMPT_CACHE_NAME


def prompt_cache_candidates() -> list[tuple[str, Path]]:
    """(where, path) of every place a prompt cache may be, in lookup order (paths that may not exist)."""
    out = [("shipped in assets/", SHIPPED_PROMPT_CACHE)]
    published = hub.prompt_cache_files()
    if published is not None:
        found = hub.find(published.repo, published.files[0])
        out.append((f"preloaded from the Hub ({published.repo})",
                    found or hub.cache_dir() / published.repo / published.files[0]))
    stored = store_path()
    out.append(("persistent storage" if stored.parent.name == "synclora" else "SYNCLORA_HOME", stored))
    if stored != home() / PROMPT_CACHE_NAME:
        out.append(("SYNCLORA_HOME", home() / PROMPT_CACHE_NAME))
    return out


def expected_dim(base_dir: Path | None) -> int | None:
    """Width of a prompt-cache row the connectors in `base_dir` take (caption channels x stacked Gemma layers)."""
    try:
        cfg = json.loads((Path(base_dir) / "connectors" / "config.json").read_text(encoding="utf-8"))
        return int(cfg["caption_channels"]) * int(cfg["text_proj_in_factor"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_prompt_cache(path: Path, dim: int | None = None) -> str | None:
    """None if `path` is a usable `3d1t` cache (for connectors taking rows of width `dim`), else what is wrong."""
    from safetensors import safe_open

    problem = hub.file_problem(Path(path))
    if problem:
        return problem
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = set(f.keys())
            if keys != {"embeds", "positions"}:
                return f"unexpected tensors {sorted(keys)}"
            rows, positions = f.get_tensor("embeds"), f.get_tensor("positions")
    except Exception as exc:  # noqa: BLE001  (safetensors raises several types for bad files)
        return f"unreadable ({type(exc).__name__})"
    if meta.get("prompt") != PROMPT:
        return f"made for the prompt {meta.get('prompt')!r}, not {PROMPT!r}"
    if meta.get("seq_len") != str(PROMPT_MAX_LENGTH) or meta.get("padding_side", "left") != "left":
        return f"made with {meta.get('seq_len')} {meta.get('padding_side')}-padded tokens, not {PROMPT_MAX_LENGTH} left"
    if rows.ndim != 2 or positions.ndim != 1 or len(positions) != len(rows) or len(rows) == 0:
        return f"bad shapes {tuple(rows.shape)} / {tuple(positions.shape)}"
    if dim is not None and rows.shape[1] != dim:
        return f"rows of width {rows.shape[1]}, the connectors take {dim}"
    if positions.min() < 0 or positions.max() >= PROMPT_MAX_LENGTH or not torch.all(positions[1:] > positions[:-1]):
        return "token positions out of order or out of range"
    if not torch.isfinite(rows.float()).all():
        return "non-finite values"
    return None


@dataclass
class PromptCacheState:
    """The prompt cache in use (`path`, None if there is none) and what was wrong with the others."""

    path: Path | None
    where: str = ""
    rejected: list[tuple[str, Path, str]] = field(default_factory=list)  # (where, path, problem)

    def why_missing(self) -> str:
        bad = "; ".join(f"{p} ({w}) is {problem}" for w, p, problem in self.rejected)
        return f"the `{PROMPT}` prompt cache is missing" + (f" ({bad})" if bad else "")


def find_prompt_cache(dim: int | None = None) -> PromptCacheState:
    """The first valid prompt cache of `prompt_cache_candidates()`; corrupt ones are reported, never used."""
    rejected = []
    for where, path in prompt_cache_candidates():
        if not path.is_file():
            continue
        problem = check_prompt_cache(path, dim)
        if problem is None:
            return PromptCacheState(path, where, rejected)
        log.debug("ignoring the prompt cache %s: %s", path, problem)  # callers report it (panel, doctor)
        rejected.append((where, path, problem))
    return PromptCacheState(None, "", rejected)


def default_prompt_cache() -> Path:
    """The prompt cache to read (the first valid one found), else where a new one is written."""
    return find_prompt_cache().path or store_path()


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


def encode_and_store(text_dir: str, out: str, device: str, revision: str = "") -> tuple[bool, str]:
    """Encode `3d1t` with the text encoder in `text_dir`, store the cache at `out`, free the encoder.

    Returns (ok, message) and never raises: on ZeroGPU this runs in the GPU worker process and only plain values
    travel back. The encoder exists only inside this call, so returning frees it.
    """
    from synclora.memory import free_memory

    t0 = time.perf_counter()
    try:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        embeds, mask = encode_prompt_with_gemma(Path(text_dir), device=device, dtype=dtype)
        path = save_prompt_cache(out, embeds, mask, prompt=PROMPT, text_encoder=f"{hub.BASE_REPO}@{revision}")
        return True, f"encoded in {time.perf_counter() - t0:.0f} s ({int(mask.sum())} tokens), stored in {path}"
    except Exception as exc:  # out of memory, a broken download, …: the app goes on with the CPU preview
        log.exception("making the prompt cache failed")
        return False, f"encoding failed ({type(exc).__name__}: {exc})"
    finally:
        free_memory()


@dataclass
class PromptStatus:
    """What start-up did about the prompt cache, for the log and the backend panel."""

    ok: bool
    message: str
    path: Path | None = None


def ensure_prompt_cache(
    base_dir: Path | None,
    encode: Callable[[str, str, str, str], tuple[bool, str]] = encode_and_store,
    say: Callable[[str], None] = log.info,
) -> PromptStatus:
    """A valid prompt cache, made now if there is none: fetch only the text encoder (unless it is already cached),
    run `encode` (the app passes `encode_and_store` wrapped in `spaces.GPU` on ZeroGPU), validate the result, and
    delete a text encoder fetched just for this. Needs a GPU (or `SYNCLORA_ALLOW_CPU`); never raises."""
    from synclora.ltx import weights

    dim = expected_dim(base_dir)
    found = find_prompt_cache(dim)
    if found.path is not None:
        return PromptStatus(True, f"prompt cache found ({found.where}): {found.path}", found.path)
    rt = runtime.current()
    if not rt.prepare_prompt:
        return PromptStatus(False, found.why_missing() + "; SYNCLORA_PREPARE_PROMPT=0, so it is not made at start-up")
    if torch.cuda.is_available():  # on ZeroGPU this is True outside GPU calls too, and `encode` gets the GPU
        device = "cuda"
    elif rt.allow_cpu:
        device = "cpu"
    else:
        return PromptStatus(False, found.why_missing() + "; it is made at start-up only on a GPU")
    if found.rejected:
        say(f"{found.why_missing()}: making a new one")
    had_encoder = weights.text_encoder_dir(fetch=False)[0] is not None
    if not had_encoder:
        say(f"making the `{PROMPT}` prompt cache: fetching only the text encoder of {hub.BASE_REPO} "
            f"(about {hub.TEXT_ENCODER_GB:.0f} GB, once)")
    folder, how = weights.text_encoder_dir(fetch=True)
    if folder is None:
        return PromptStatus(False, f"{found.why_missing()}; {how}")
    out = store_path()
    say(f"encoding `{PROMPT}` with the text encoder ({how}) on {device}")
    ok, message = encode(str(folder), str(out), device, weights.read_lock().get("revisions", {}).get(
        hub.BASE_REPO, folder.name))
    if not had_encoder and "snapshots" in folder.parts:
        freed = weights.remove_text_encoder(folder)
        say(f"removed the text encoder fetched for this from the cache ({freed:.1f} GB freed)")
    if not ok:
        return PromptStatus(False, f"{found.why_missing()}; {message}")
    problem = check_prompt_cache(out, dim)
    if problem:
        return PromptStatus(False, f"the prompt cache just made in {out} is {problem}")
    return PromptStatus(True, f"prompt cache made at this start-up: {message}", out)


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
    from synclora.ltx.device import place

    place(connectors, device, dtype)
    return connectors(embeds.to(device=device, dtype=dtype), mask.to(device), padding_side="left")
