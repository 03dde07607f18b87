"""The Hub files the Sync-LoRA backend loads, stated once, and finding them in a Hugging Face cache without a network.

Why one list: a Space's README front matter (`preload_from_hub`) must fetch exactly what the loader reads — a file
missing there means Sync-LoRA is off on every start, an extra one costs disk and build time. The front matter is
rendered from `HUB_FILES` (`python -m synclora hub-files`), and a test parses the README and compares.

What is listed: of `diffusers/LTX-2.3-Diffusers` only the parts the two-stage recipe loads (`PIPELINE_PARTS`: not the
text encoder, which runs once for the `3d1t` prompt cache, nor the vocoder, since audio is never decoded); the
distilled LoRA and the x2 upsampler v1.1 of `Lightricks/LTX-2.3`; the Sync-LoRA file. Shard names follow from how the
diffusers repository was written (`save_pretrained(max_shard_size="5GB")` of the converted pipeline: the transformer's
37.98 GB of bf16 in 8 shards, the connectors' 12.69 GB of fp32 in 3, computed from the true configs' tensor sizes).
`python -m synclora hub-files --verify` (needs the network) checks every name against the Hub.

Finding files never downloads: `find` looks in the cache (`preload_from_hub` and `hf_hub_download` both use the
standard layout `models--org--name/snapshots/<commit>/<file>`, `refs/main` naming the commit) at a given revision.
`safetensors_problem` is the cheap integrity check (header parses, sizes add up) used before anything is loaded.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from synclora import runtime

BASE_REPO = "diffusers/LTX-2.3-Diffusers"
LTX_REPO = "Lightricks/LTX-2.3"
SYNC_REPO = "SagiPolaczek/LTX-2.3-Sync-LoRA"
DISTILLED_LORA_FILE = "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"
UPSAMPLER_FILE = "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"
SYNC_LORA_FILE = "ltx-2.3-sync-lora-3d1t-r256.safetensors"
# What the two-stage recipe loads from the base repository (the upsampler comes from its own file).
PIPELINE_PARTS = ("transformer", "connectors", "vae", "audio_vae", "scheduler")
TEXT_PARTS = ("text_encoder", "tokenizer")  # Gemma 3: only for making the prompt cache, never at run time

WEIGHTS_STEM = "diffusion_pytorch_model"


def _single(part: str) -> tuple[str, ...]:
    return (f"{part}/config.json", f"{part}/{WEIGHTS_STEM}.safetensors")


def _sharded(part: str, n: int) -> tuple[str, ...]:
    shards = tuple(f"{part}/{WEIGHTS_STEM}-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1))
    return (f"{part}/config.json", f"{part}/{WEIGHTS_STEM}.safetensors.index.json", *shards)


@dataclass(frozen=True)
class HubFiles:
    """Files of one Hub repository, at `revision` (None: the branch `main`, pinned to its commit on first use)."""

    repo: str
    files: tuple[str, ...]
    approx_gb: float  # download size, for the disk check (rounded; the Hub has the exact figures)
    revision: str | None = None

    def preload_line(self) -> str:
        """One `preload_from_hub` item: `repo file1,file2[ commit]` (the Spaces configuration reference's format)."""
        return " ".join([self.repo, ",".join(self.files)] + ([self.revision] if self.revision else []))


BASE_FILES = HubFiles(
    BASE_REPO,
    _sharded("transformer", 8) + _sharded("connectors", 3) + _single("vae") + _single("audio_vae")
    + ("scheduler/scheduler_config.json",),
    approx_gb=52.4,  # 37.98 (transformer) + 12.69 (connectors) + 1.45 (vae) + 0.2 (audio vae) + configs
)
# Sizes of the LoRA files and the upsampler from their shapes in bf16: rank 384 on every linear layer (at most 8.2 GB),
# 497.9 M upsampler parameters (1.0 GB), rank 256 on the video blocks' ten target layers (2.6 GB).
LTX_FILES = HubFiles(LTX_REPO, (DISTILLED_LORA_FILE, UPSAMPLER_FILE), approx_gb=9.2)
SYNC_FILES = HubFiles(SYNC_REPO, (SYNC_LORA_FILE,), approx_gb=2.6)
# Everything the Sync-LoRA backend loads; the README front matter is this list (plus a published prompt cache).
HUB_FILES = (BASE_FILES, LTX_FILES, SYNC_FILES)
TEXT_ENCODER_GB = 48.8  # text_encoder/ of the diffusers repo is stored in float32


def prompt_cache_files(rt: runtime.Runtime | None = None) -> HubFiles | None:
    """A ready-made `3d1t` prompt cache published on the Hub (`SYNCLORA_PROMPT_CACHE_REPO`), if one is configured."""
    rt = rt or runtime.current()
    if not rt.prompt_cache_repo:
        return None
    return HubFiles(rt.prompt_cache_repo, (rt.prompt_cache_file,), approx_gb=0.01)


def preload_entries(rt: runtime.Runtime | None = None) -> list[str]:
    """The `preload_from_hub` items for this configuration, in order."""
    extra = prompt_cache_files(rt)
    return [h.preload_line() for h in HUB_FILES + ((extra,) if extra else ())]


def front_matter(rt: runtime.Runtime | None = None) -> str:
    """The YAML block to paste into the Space README's front matter."""
    return "preload_from_hub:\n" + "".join(f"  - {line}\n" for line in preload_entries(rt))


# --- the local cache ---------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now: HF_HUB_CACHE, else HF_HOME/hub, else the default
    (~/.cache/huggingface/hub, where a Space's `preload_from_hub` puts files)."""
    rt = runtime.current()
    if rt.hf_hub_cache:
        return rt.hf_hub_cache
    if rt.hf_home:
        return rt.hf_home / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_commit(repo: str, revision: str = "main") -> str | None:
    """The commit a branch or tag name points to in the cache (or `revision` itself if it is a cached commit)."""
    root = cache_dir() / ("models--" + repo.replace("/", "--"))
    ref = root / "refs" / revision
    if ref.is_file():
        return ref.read_text().strip() or None
    return revision if (root / "snapshots" / revision).is_dir() else None


def find(repo: str, filename: str, revision: str = "main") -> Path | None:
    """The cached file at that revision, or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=str(cache_dir()), revision=revision)
    return Path(found) if isinstance(found, str) else None


def snapshot_dir(repo: str, revision: str = "main") -> Path | None:
    commit = cached_commit(repo, revision)
    if commit is None:
        return None
    path = cache_dir() / ("models--" + repo.replace("/", "--")) / "snapshots" / commit
    return path if path.is_dir() else None


# --- integrity ----------------------------------------------------------------------------------------------------
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
                "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors_problem(path: Path) -> str | None:
    """None if the file looks whole, else what is wrong, in a few words. Reads the header only (milliseconds):
    the 8-byte length, the JSON, and whether the tensors' byte ranges end exactly at the end of the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "empty or truncated file"
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100_000_000):
                return "not a safetensors file (bad header length)"
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"unreadable safetensors header ({type(exc).__name__})"
    if not isinstance(header, dict):
        return "not a safetensors file"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = info["data_offsets"]
            count = 1
            for d in info["shape"]:
                count *= int(d)
        except (KeyError, TypeError, ValueError):
            return f"malformed header entry {name!r}"
        if stop - begin != count * _DTYPE_BYTES.get(info.get("dtype"), 0) and info.get("dtype") in _DTYPE_BYTES:
            return f"tensor {name!r} has the wrong byte size"
        end = max(end, stop)
    if 8 + n + end != size:
        return f"truncated: {_mb(size)} on disk, its header describes {_mb(8 + n + end)}"
    return None


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def file_problem(path: Path) -> str | None:
    """The integrity check for any listed file: safetensors headers, JSON that parses, anything else exists."""
    if not path.is_file():
        return "missing"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"unreadable JSON ({type(exc).__name__})"
    return None


def index_shards(index: Path) -> set[str]:
    """Shard file names a `*.safetensors.index.json` refers to (relative to its folder)."""
    try:
        return set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return set()


def free_bytes(path: Path) -> int:
    """Free disk space where `path` is (or would be created)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
