"""Where the LTX-2.3 and Sync-LoRA weights come from: the Hugging Face cache (filled by a Space's `preload_from_hub`
or by `fetch-weights`), a local folder, offline; pinned revisions.

Why each piece exists:
- Loading never downloads. The loader looks the files of `hub.HUB_FILES` up in the local Hugging Face cache, so
  weights a Space preloaded (or any earlier download) are found without a manual step; the commits it found are
  written to a lock file, so later runs load the very same bytes even after `main` moves on.
- `python -m synclora fetch-weights` downloads what is missing and pins the commits the same way.
- A folder given by `SYNCLORA_WEIGHTS_DIR` (filled by `fetch-weights --to DIR`) replaces the hub cache entirely.
- Every file is checked before it is loaded (safetensors headers, sizes): a truncated download is a sentence that
  names the file and the command that fixes it, not a stack trace from deep inside a loader.
LoRA files are read by `synclora.ltx.lora`, the cached `3d1t` prompt embedding by `synclora.ltx.prompt`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from synclora import runtime
from synclora.errors import ModelUnavailableError
from synclora.ltx import hub
from synclora.ltx.hub import (
    BASE_REPO,
    DISTILLED_LORA_FILE,
    LTX_REPO,
    PIPELINE_PARTS,
    SYNC_LORA_FILE,
    SYNC_REPO,
    UPSAMPLER_FILE,
)
from synclora.paths import atomic_output

log = logging.getLogger(__name__)

TEXT_SUBFOLDERS = hub.TEXT_PARTS  # Gemma 3: fetched only to make the prompt cache
LOCK_NAME = "weights.lock.json"
LOCAL_BASE = "LTX-2.3-Diffusers"  # the base repository's folder inside SYNCLORA_WEIGHTS_DIR
FETCH_HINT = "run `python -m synclora fetch-weights`"

# Default revisions before anything is pinned: "main" (or the revision `hub.HUB_FILES` names) is resolved to a commit
# by the first `fetch-weights` or the first load from the cache and recorded in the lock file; from then on only the
# locked commit is used. A commit can be forced with `fetch-weights --revision REPO=SHA`.
DEFAULT_REVISIONS = {h.repo: h.revision or "main" for h in hub.HUB_FILES}


def home() -> Path:
    """Where locks, prompt caches and downloaded-file links live (`SYNCLORA_HOME`, default ~/.cache/synclora)."""
    return runtime.current().home


def offline() -> bool:
    return runtime.current().hub_offline


@dataclass(frozen=True)
class WeightPaths:
    """Local paths of everything the real backend loads."""

    base_dir: Path  # diffusers layout: transformer/, connectors/, vae/, audio_vae/, scheduler/
    distilled_lora: Path
    upsampler: Path
    sync_lora: Path
    revisions: dict = field(default_factory=dict)

    def missing(self) -> list[str]:
        out = [str(self.base_dir / sub) for sub in PIPELINE_PARTS if not (self.base_dir / sub).is_dir()]
        out += [str(p) for p in (self.distilled_lora, self.upsampler, self.sync_lora) if not p.is_file()]
        return out


@dataclass(frozen=True)
class FileState:
    """One file the backend needs, as found here."""

    repo: str
    name: str  # path inside the repository
    path: Path | None  # where it is (None: nowhere)
    commit: str | None  # the revision it was found at (None outside the hub cache)
    problem: str | None  # None when it is there and whole; else "missing", "truncated: …", …


@dataclass(frozen=True)
class WeightsState:
    """Every needed file, where the lookup went, and the revisions in use. `doctor` shows it; `resolve` needs it ok."""

    source: str  # "the Hugging Face cache /…" or "SYNCLORA_WEIGHTS_DIR=/…"
    files: list[FileState]
    revisions: dict[str, str]  # repo -> commit in use (the lock's pin, or what the cache has)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[FileState]:
        return [f for f in self.files if f.problem]

    def path(self, repo: str, name: str) -> Path:
        return next(f.path for f in self.files if f.repo == repo and f.name == name)


def _local_layout(root: Path) -> WeightPaths:
    return WeightPaths(
        base_dir=root / LOCAL_BASE,
        distilled_lora=root / DISTILLED_LORA_FILE,
        upsampler=root / UPSAMPLER_FILE,
        sync_lora=root / SYNC_LORA_FILE,
    )


def read_lock(path: Path | None = None) -> dict:
    path = path or home() / LOCK_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("ignoring the unreadable lock file %s", path)
        return {}


def _write_lock(pinned: dict, path: Path | None = None) -> None:
    path = path or home() / LOCK_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"revisions": pinned}, indent=2))
    except OSError as exc:  # a read-only home only loses the pin, not the run
        log.warning("could not write the weights lock file %s (%s)", path, exc)


def _needed(h: hub.HubFiles, locate) -> list[tuple[str, Path | None]]:
    """(name, path) of each file of `h`; a sharded part's shards are the ones its cached index names."""
    out, done = [], set()
    for name in h.files:
        if name in done:
            continue
        if name.endswith(".safetensors.index.json"):
            folder = name.rsplit("/", 1)[0]
            index = locate(name)
            listed = sorted(n for n in h.files if n.startswith(folder + "/") and n.endswith(".safetensors"))
            shards = sorted(f"{folder}/{s}" for s in hub.index_shards(index)) if index is not None else listed
            for n in [name, *shards]:
                out.append((n, locate(n)))
                done.add(n)
            done.update(listed)  # the preload list's guess is superseded by the index
        else:
            out.append((name, locate(name)))
            done.add(name)
    return out


def inspect_weights(pin: bool = False) -> WeightsState:
    """Look every needed file up (never downloading) and check it. With `pin`, a complete set found in the cache is
    pinned in the lock file (the commits not pinned yet), so the next start loads the same bytes."""
    root = runtime.current().weights_dir
    if root:
        return _inspect_folder(Path(root))
    pins = read_lock().get("revisions", {})
    files, revisions, notes = [], {}, []
    for h in hub.HUB_FILES:
        wanted = pins.get(h.repo) or DEFAULT_REVISIONS[h.repo]
        commit = hub.cached_commit(h.repo, wanted)
        if commit is not None:
            revisions[h.repo] = commit
        for name, path in _needed(h, lambda n, rev=commit or wanted, repo=h.repo: hub.find(repo, n, rev)):
            files.append(FileState(h.repo, name, path, commit, hub.file_problem(path) if path else "missing"))
        if h.repo in pins and commit is None:
            other = hub.cached_commit(h.repo, "main")
            if other:
                notes.append(f"{h.repo}: the lock file pins {pins[h.repo][:10]}, the cache has {other[:10]}; "
                             f"`python -m synclora fetch-weights` fetches the pinned one, or delete "
                             f"{home() / LOCK_NAME} to use the cached one")
    state = WeightsState(f"the Hugging Face cache {hub.cache_dir()}", files, revisions, notes)
    if pin and not state.problems and set(revisions) != set(pins) and revisions:
        _write_lock({**pins, **revisions})
    return state


def _inspect_folder(root: Path) -> WeightsState:
    layout = _local_layout(root)
    files = []
    for h in hub.HUB_FILES:
        base = layout.base_dir if h.repo == BASE_REPO else root
        for name, path in _needed(h, lambda n, base=base: (base / n) if (base / n).is_file() else None):
            files.append(FileState(h.repo, name, path or base / name, None,
                                   hub.file_problem(path) if path else "missing"))
    revisions = read_lock(root / LOCK_NAME).get("revisions", {})
    return WeightsState(f"SYNCLORA_WEIGHTS_DIR={root}", files, revisions)


def resolve_weights() -> WeightPaths:
    """Local paths of the pinned weights, never downloading; `ModelUnavailableError` says what is wrong and how to
    fix it."""
    state = inspect_weights(pin=True)
    if state.problems:
        first = state.problems[0]
        others = len(state.problems) - 1
        more = f" (and {others} more file{'s' if others > 1 else ''})" if others else ""
        where = state.source
        fix = ("fill it with `python -m synclora fetch-weights --to DIR`" if where.startswith("SYNCLORA_WEIGHTS_DIR")
               else FETCH_HINT)
        note = f"; {state.notes[0]}" if state.notes else ""
        raise ModelUnavailableError(
            f"the Sync-LoRA weights are incomplete: {first.repo}/{first.name} is {first.problem}{more} in {where}; "
            f"{fix}{note}"
        )
    return WeightPaths(
        base_dir=state.path(BASE_REPO, hub.BASE_FILES.files[0]).parent.parent,
        distilled_lora=state.path(LTX_REPO, DISTILLED_LORA_FILE),
        upsampler=state.path(LTX_REPO, UPSAMPLER_FILE),
        sync_lora=state.path(SYNC_REPO, SYNC_LORA_FILE),
        revisions=dict(state.revisions),
    )


# --- downloading (fetch-weights only) -------------------------------------------------------------------------------
def fetch_weights(
    revisions: dict | None = None, include_text_encoder: bool = False, local_dir: Path | None = None
) -> WeightPaths:
    """Download (or find in the hub cache) every file, pin the commits in the lock file, return the local paths."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    revs = {**DEFAULT_REVISIONS, **read_lock().get("revisions", {}), **(revisions or {})}
    try:
        _repair(revs)
        return _fetch(revs, include_text_encoder, local_dir)
    except LocalEntryNotFoundError as exc:
        raise ModelUnavailableError(
            "the weights are not in the local Hugging Face cache and HF_HUB_OFFLINE is set; fetch them on a machine "
            "with internet access (`fetch-weights --to DIR`) and point SYNCLORA_WEIGHTS_DIR at the copy"
        ) from exc


def _repair(revs: dict) -> None:
    """Download again the cached files that fail the integrity check (a download cut short, a bad disk): the
    ordinary download would take a file that is present as done."""
    if runtime.current().weights_dir or offline():
        return
    from huggingface_hub import hf_hub_download

    for f in inspect_weights().problems:
        if f.problem != "missing" and f.commit:
            log.warning("downloading %s/%s again: %s", f.repo, f.name, f.problem)
            hf_hub_download(f.repo, f.name, revision=f.commit, force_download=True, cache_dir=str(hub.cache_dir()))


def _fetch(revs: dict, include_text_encoder: bool, local_dir: Path | None) -> WeightPaths:
    from huggingface_hub import hf_hub_download, snapshot_download

    # Whole subfolders, so the shards come whatever their names (the loader follows each part's index).
    parts = PIPELINE_PARTS + (TEXT_SUBFOLDERS if include_text_encoder else ())
    kw = dict(local_files_only=offline(), cache_dir=str(hub.cache_dir()))
    base = Path(snapshot_download(BASE_REPO, revision=revs[BASE_REPO], allow_patterns=[f"{p}/*" for p in parts],
                                  **kw))
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
    _write_lock(pinned)
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
        _write_lock(pinned, Path(local_dir) / LOCK_NAME)
    return paths


def text_encoder_dir(fetch: bool) -> tuple[Path | None, str]:
    """A folder with `text_encoder/` and `tokenizer/` of the pinned base revision: (folder, how it was found).

    Looks in the hub cache first; with `fetch` (and not offline) downloads only those two subfolders. Returns
    (None, why) when neither works. Used once, to make the prompt cache.
    """
    pins = read_lock().get("revisions", {})
    rev = pins.get(BASE_REPO) or DEFAULT_REVISIONS[BASE_REPO]
    commit = hub.cached_commit(BASE_REPO, rev)
    snap = hub.snapshot_dir(BASE_REPO, commit) if commit else None
    if snap is not None and _text_parts_complete(snap):
        return snap, "found in the Hugging Face cache"
    if not fetch:
        return None, "the text encoder is not in the Hugging Face cache"
    if offline():
        return None, "the text encoder is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(BASE_REPO, revision=commit or rev, cache_dir=str(hub.cache_dir()),
                                      allow_patterns=[f"{p}/*" for p in TEXT_SUBFOLDERS]))
    except Exception as exc:  # noqa: BLE001  (network, quota, disk: all end in the same sentence)
        return None, f"downloading the text encoder failed ({type(exc).__name__}: {exc})"
    if not _text_parts_complete(path):
        return None, f"the downloaded text encoder in {path} is incomplete"
    return path, f"downloaded from {BASE_REPO}"


def _text_parts_complete(folder: Path) -> bool:
    enc, tok = folder / "text_encoder", folder / "tokenizer"
    if not (enc / "config.json").is_file() or not tok.is_dir() or not any(tok.iterdir()):
        return False
    index = enc / "model.safetensors.index.json"
    if index.is_file():
        shards = hub.index_shards(index)
        return bool(shards) and all((enc / s).is_file() for s in shards)
    return (enc / "model.safetensors").is_file()


def remove_text_encoder(folder: Path) -> float:
    """Delete `text_encoder/` and `tokenizer/` from a hub-cache snapshot (links and the blobs they point to), after the
    prompt cache is made: about 49 GB a Space's disk needs for the weights. Returns the GB freed."""
    freed = 0
    for part in TEXT_SUBFOLDERS:
        for link in sorted((folder / part).rglob("*")):
            if not (link.is_file() or link.is_symlink()):
                continue
            target = link.resolve()
            if target != link and target.is_file() and "blobs" in target.parts:
                freed += target.stat().st_size
                target.unlink(missing_ok=True)
            elif not link.is_symlink():
                freed += link.stat().st_size
            link.unlink(missing_ok=True)
        for sub in sorted((folder / part).rglob("*"), reverse=True) + [folder / part]:
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
    return freed / 1e9
