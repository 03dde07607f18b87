"""Runtime settings from the environment: every `SYNCLORA_*` variable (and the one hub variable we honour), read in
one place into one typed, frozen object.

Why the environment: a Hugging Face Space is configured without code, and an offline machine points the weights
lookup at a folder. Every variable is a field here with its doc (docs/CONFIG.md lists the same, a test keeps the two
equal); no other module reads them. `current()` is what the code calls: it re-reads only when the environment changed,
so a process whose environment is set at start pays once, and tests that set a variable see it at once.
A value that cannot be parsed is an `InputError` naming the variable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from synclora.errors import InputError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space, by the rule the `spaces` package itself applies (`spaces.config`): there the GPU is
    lent per `spaces.GPU` call, CUDA is emulated at load time and each call gets its own slice. The one test the app,
    the recipe and `doctor` share, so they cannot disagree."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def _var(env: str, doc: str, default: Any = None) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Runtime:
    """What the environment says; `None` means "not set: the code's own default applies"."""

    # --- the app's defaults and limits (a Space's configuration)
    backend: str | None = _var("SYNCLORA_BACKEND", "default backend shown in the app: auto, synclora or flow")
    quality: str | None = _var("SYNCLORA_QUALITY", "default quality in the app: full or preview")
    model: str | None = _var("SYNCLORA_MODEL", "default model in the app: real, or tiny (random weights, tests)")
    max_upload_mb: float = _var("SYNCLORA_MAX_UPLOAD_MB", "largest upload the app accepts, in MB", 200.0)
    queue_size: int = _var("SYNCLORA_QUEUE_SIZE", "jobs the app's queue holds before it turns visitors away", 16)
    memory_gb: float | None = _var(
        "SYNCLORA_MEMORY_GB", "memory all propagations at once may hold in the app, in GB (default: 75 % of RAM)")
    preload: bool = _var("SYNCLORA_PRELOAD", "load the models at start-up (0: on first use)", True)
    cache_examples: bool = _var("SYNCLORA_CACHE_EXAMPLES", "cache the examples' results (0: run them on click)", True)
    gpu_s_per_chunk_full: float | None = _var(
        "SYNCLORA_GPU_S_PER_CHUNK_FULL", "ZeroGPU seconds asked per 81-frame chunk at 512², quality full")
    gpu_s_per_chunk_preview: float | None = _var(
        "SYNCLORA_GPU_S_PER_CHUNK_PREVIEW", "the same for quality preview")
    # --- the instruction editor
    instruct_model: str | None = _var(
        "SYNCLORA_INSTRUCT_MODEL", "repo id or local folder of the instruction model")
    disable_instruct: bool = _var("SYNCLORA_DISABLE_INSTRUCT", "switch instruction editing off", False)
    allow_download: bool = _var(
        "SYNCLORA_ALLOW_DOWNLOAD", "let the instruction editor download its weights on first use", False)
    # --- weights and the Sync-LoRA recipe
    home: Path = _var("SYNCLORA_HOME", "where the weights lock file and the prompt cache live",
                      Path.home() / ".cache" / "synclora")
    weights_dir: Path | None = _var(
        "SYNCLORA_WEIGHTS_DIR", "a folder filled by `fetch-weights --to DIR`, used instead of the hub cache")
    hub_offline: bool = _var("HF_HUB_OFFLINE", "Hugging Face's offline switch: `fetch-weights` only looks in the cache",
                             False)
    hf_hub_cache: Path | None = _var("HF_HUB_CACHE", "the Hugging Face cache the weights are looked up in")
    hf_home: Path | None = _var(
        "HF_HOME", "Hugging Face's home; its hub/ folder is the cache unless HF_HUB_CACHE is set")
    allow_cpu: bool = _var(
        "SYNCLORA_ALLOW_CPU", "let the real Sync-LoRA loader run on the CPU in float32 (start-up tests, tiny weights)",
        False)
    # --- the `3d1t` prompt cache
    prepare_prompt: bool = _var(
        "SYNCLORA_PREPARE_PROMPT", "make a missing prompt cache at start-up on a GPU (fetches only the text encoder)",
        True)
    persistent_dir: Path | None = _var(
        "SYNCLORA_PERSISTENT_DIR", "persistent storage; a prompt cache made at start-up is kept there if it exists",
        Path("/data"))
    prompt_cache_repo: str | None = _var(
        "SYNCLORA_PROMPT_CACHE_REPO", "a Hub repository with a ready-made prompt cache (preloaded: Gemma never runs)")
    prompt_cache_file: str = _var(
        "SYNCLORA_PROMPT_CACHE_FILE", "the prompt cache's file name in that repository", "prompt-3d1t.safetensors")
    distilled_strength: float | None = _var(
        "SYNCLORA_DISTILLED_STRENGTH", "strength the distilled LoRA is fused with")
    image_crf: int | None = _var(
        "SYNCLORA_IMAGE_CRF", "H.264 CRF the edited frame is re-compressed with, as in LTX-2.3 training (0: off)")
    compile: bool = _var("SYNCLORA_COMPILE", "regional torch.compile of the transformer (~2 min once, then faster)",
                         False)
    # --- opt-in GPU speed levers of the Sync-LoRA backend (synclora/ltx/speed.py)
    attention: str | None = _var(
        "SYNCLORA_ATTENTION", "a diffusers attention backend for the transformer, e.g. _flash_3 (text mask dropped)")
    fp8_matmul: bool = _var("SYNCLORA_FP8_MATMUL", "memory mode fp8 with real fp8 matmuls instead of upcasting",
                            False)
    aot: str | None = _var("SYNCLORA_AOT", "ahead-of-time compiled transformer blocks: compile, load or off")
    aot_dir: Path | None = _var("SYNCLORA_AOT_DIR", "where AoT packages are saved, and loaded from by later processes")
    # --- benchmarks only
    parity_site: Path | None = _var(
        "SYNCLORA_PARITY_SITE", "where benchmarks/parity_ltx.py installs ltx-core and ltx-pipelines")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        """Parse the variables that are set; the rest keep their defaults."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = _parse(f.metadata["env"], raw.strip(), f.type)
        return cls(**values)


def env_names() -> list[str]:
    """Every variable `Runtime` reads, in field order."""
    return [f.metadata["env"] for f in fields(Runtime)]


def _parse(name: str, raw: str, kind: str) -> Any:
    if kind.startswith("bool"):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise InputError(f"{name} must be 1 or 0 (true or false), got {raw!r}")
    if kind.startswith(("int", "float")):
        try:
            return int(raw) if kind.startswith("int") else float(raw)
        except ValueError:
            what = "a whole number" if kind.startswith("int") else "a number"
            raise InputError(f"{name} must be {what}, got {raw!r}") from None
    if kind.startswith("Path"):
        return Path(raw).expanduser() if raw else None
    return raw or None


_cache: dict[tuple, Runtime] = {}
_lock = threading.Lock()


def current() -> Runtime:
    """The runtime settings of this process's environment as it is now (parsed once per distinct environment)."""
    key = tuple(os.environ.get(name) for name in env_names())
    with _lock:
        if key not in _cache:
            if len(_cache) > 8:
                _cache.clear()
            _cache[key] = Runtime.from_env()
        return _cache[key]
