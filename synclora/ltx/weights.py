"""Where the LTX-2.3 and Sync-LoRA weights come from: hub download with pinned revisions, local folders, offline mode.

Why each piece exists:
- Loading never downloads. `python -m synclora fetch-weights` downloads once and writes a lock file with the exact
  commit of every repository, so later runs (and offline machines) load the very same bytes.
- A folder given by `SYNCLORA_WEIGHTS_DIR` (same layout as `WeightPaths`) replaces the hub cache entirely.
LoRA files are read by `synclora.ltx.lora`, the cached `3d1t` prompt embedding by `synclora.ltx.prompt`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from synclora import runtime
from synclora.errors import ModelUnavailableError

# --- what the released checkpoint expects -------------------------------------------------------------------------
BASE_REPO = "diffusers/LTX-2.3-Diffusers"
LTX_REPO = "Lightricks/LTX-2.3"
SYNC_REPO = "SagiPolaczek/LTX-2.3-Sync-LoRA"
DISTILLED_LORA_FILE = "ltx-2.3-22b-distilled-lora-384-1.1.safetensors"
UPSAMPLER_FILE = "ltx-2.3-spatial-upscaler-x2-1.1.safetensors"
SYNC_LORA_FILE = "ltx-2.3-sync-lora-3d1t-r256.safetensors"
BASE_SUBFOLDERS = ("transformer", "connectors", "vae", "audio_vae", "vocoder", "scheduler")
TEXT_SUBFOLDERS = ("text_encoder", "tokenizer")  # Gemma 3: fetched only for `cache-prompt`
LOCK_NAME = "weights.lock.json"

# Default revisions before anything is fetched: "main" is resolved to a commit by `fetch-weights` and recorded in
# the lock file; from then on only the locked commit is used. A commit can be forced with `--revision REPO=SHA`.
DEFAULT_REVISIONS = {BASE_REPO: "main", LTX_REPO: "main", SYNC_REPO: "main"}


def home() -> Path:
    """Where locks, prompt caches and downloaded-file links live (`SYNCLORA_HOME`, default ~/.cache/synclora)."""
    return runtime.current().home


def offline() -> bool:
    return runtime.current().hub_offline


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
    from synclora.paths import atomic_output

    lock = home() / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(lock) as tmp:
        tmp.write_text(json.dumps({"revisions": pinned}, indent=2))
    paths = WeightPaths(base, files[DISTILLED_LORA_FILE], files[UPSAMPLER_FILE], files[SYNC_LORA_FILE], pinned)
    if local_dir is not None:  # a self-contained folder, e.g. to copy to an offline machine
        import shutil

        target = _local_layout(Path(local_dir))
        shutil.copytree(base, target.base_dir, dirs_exist_ok=True)
        for src, dst in zip(
            (paths.distilled_lora, paths.upsampler, paths.sync_lora),
            (target.distilled_lora, target.upsampler, target.sync_lora),
        ):
            with atomic_output(dst) as tmp:
                shutil.copyfile(src, tmp)
        with atomic_output(Path(local_dir) / LOCK_NAME) as tmp:
            tmp.write_text(json.dumps({"revisions": pinned}, indent=2))
    return paths


def resolve_weights() -> WeightPaths:
    """Local paths of the pinned weights, never downloading; `ModelUnavailableError` says how to get them."""
    root = runtime.current().weights_dir
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
