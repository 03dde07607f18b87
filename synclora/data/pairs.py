"""The pair folder layout: one folder per training pair, the same on disk for generated, imported and curated data.

    PAIRS/<name>/source.mp4   the reference (motion and identity to follow): the model sees it as clean tokens
    PAIRS/<name>/target.mp4   the edited version that moves identically: what the model learns to produce
    PAIRS/<name>/edit.png     optional: the edited frame the target was made from (frame `meta["edit_index"]`)
    PAIRS/<name>/meta.json    optional: how the pair was made (backend, settings, seed, origin paths, …)

Why folders and not one table: a pair is the unit everything works on (generate writes one, curate scores one,
the latent cache encodes one), a folder can be copied, inspected or deleted by hand, and a half-written pair is
recognisable (no target yet). Names are folder names, so they are unique by construction and safe in a manifest.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from synclora.errors import InputError

SOURCE_NAME = "source.mp4"
TARGET_NAME = "target.mp4"
EDIT_NAME = "edit.png"
META_NAME = "meta.json"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Pair:
    """One pair folder. `edit` is None when the folder has no edit.png; `meta` is {} without meta.json."""

    name: str
    root: Path
    meta: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return self.root / SOURCE_NAME

    @property
    def target(self) -> Path:
        return self.root / TARGET_NAME

    @property
    def edit(self) -> Path | None:
        path = self.root / EDIT_NAME
        return path if path.is_file() else None

    @property
    def meta_path(self) -> Path:
        return self.root / META_NAME

    def is_complete(self) -> bool:
        """Both videos are present (a generate run that was interrupted leaves a folder without target.mp4)."""
        return self.source.is_file() and self.target.is_file()


def check_name(name: str) -> str:
    """Pair names become folder names and manifest keys: letters, digits, `.`, `_`, `-`; no path separators."""
    if not _NAME_OK.match(name or ""):
        raise InputError(
            f"pair name {name!r} is not usable as a folder name; use letters, digits, '.', '_' and '-' only"
        )
    return name


def safe_name(text: str) -> str:
    """Turn any file stem into a valid pair name (other characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "pair"
    return name if name[0].isalnum() else f"p{name}"


def read_meta(folder: Path) -> dict:
    """meta.json of a pair folder ({} when absent). A broken file is an input error, not a crash."""
    path = Path(folder) / META_NAME
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


def write_meta(folder: Path, meta: dict) -> Path:
    """Write meta.json atomically (a reader never sees half a file; an interrupted write leaves nothing)."""
    from synclora.paths import atomic_output

    path = Path(folder) / META_NAME
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def discover_pairs(root: str | Path, include_incomplete: bool = False) -> list[Pair]:
    """All pair folders directly under `root`, sorted by name (so every run visits them in the same order).

    A folder counts as a pair when it holds source.mp4 or target.mp4; incomplete ones (one video missing) are left
    out unless `include_incomplete`, so curate can report them. meta.json problems do not hide a pair: its `meta`
    gets `{"meta_error": "..."}` instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"pairs folder not found: {root}")
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((folder / SOURCE_NAME).exists() or (folder / TARGET_NAME).exists()):
            continue
        try:
            meta = read_meta(folder)
        except InputError as exc:
            meta = {"meta_error": str(exc)}
        pair = Pair(name=folder.name, root=folder, meta=meta)
        if include_incomplete or pair.is_complete():
            pairs.append(pair)
    return pairs


def pair_dir(root: str | Path, name: str) -> Path:
    return Path(root) / check_name(name)


# --- writing a pair folder all at once ------------------------------------------------------------------------------
# A pair is written into a hidden `.partial-<name>` folder beside its final place and renamed into place when every
# file is there: rename is atomic on one filesystem, so no reader (curate, train, another rank, a rerun) ever sees
# half a pair, and a crash leaves only a hidden folder that the next attempt at that pair clears.
PARTIAL_PREFIX = ".partial-"


def begin_pair(root: str | Path, name: str) -> Path:
    """An empty hidden folder to write pair `name` into (a leftover of an interrupted attempt is cleared)."""
    import shutil

    tmp = Path(root) / f"{PARTIAL_PREFIX}{check_name(name)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_pair(tmp: Path, root: str | Path, name: str) -> Path:
    """Rename the finished folder into place; refuses (OSError) to replace an existing, non-empty pair folder."""
    final = pair_dir(root, name)
    os.rename(tmp, final)
    return final


def discard_pair(tmp: Path) -> None:
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


# --- importing a dataset that lists (reference, target) videos in a metadata file -------------------------------

# ltx-trainer's IC-LoRA datasets (the public Sync-LoRA dataset is one, "for training LTX-2 IC-LoRAs") list each
# sample as a row with the target video, the reference video and a caption. The column names are configurable
# because the public card could not be read past its first paragraph (see docs/TRAINING.md).
DEFAULT_TARGET_COLUMN = "media_path"
DEFAULT_REFERENCE_COLUMN = "reference_path"


def _read_rows(metadata: Path) -> list[dict]:
    suffix = metadata.suffix.lower()
    try:
        text = metadata.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {metadata}: {exc}") from None
    try:
        if suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = json.loads(text)
    except (json.JSONDecodeError, csv.Error) as exc:
        raise InputError(f"{metadata} is not valid {suffix.lstrip('.') or 'JSON'} ({exc})") from None
    if isinstance(rows, dict):  # {"data": [...]} or {"name": row}
        rows = rows.get("data", rows.get("samples", list(rows.values())))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{metadata} must hold a list of rows (objects with the video paths)")
    return rows


def import_dataset(
    metadata: str | Path,
    out: str | Path,
    target_column: str = DEFAULT_TARGET_COLUMN,
    reference_column: str = DEFAULT_REFERENCE_COLUMN,
    copy: bool = False,
) -> list[Pair]:
    """Lay out a (reference, target) dataset as pair folders, linking (or copying) the videos, never re-encoding.

    Paths in the metadata are taken relative to the metadata file's folder. Each pair is named after its target
    file's stem; meta.json records where it came from and the row's other fields (e.g. the caption).
    """
    import shutil

    from synclora.paths import atomic_output, check_input, temp_path

    metadata = check_input(metadata, "dataset listing")
    rows = _read_rows(metadata)
    if not rows:
        raise InputError(f"{metadata} lists no samples")
    missing = [c for c in (target_column, reference_column) if c not in rows[0]]
    if missing:
        raise InputError(
            f"{metadata.name} has no column {missing[0]!r} (columns: {', '.join(rows[0])}); "
            "pass --target-column/--reference-column"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = metadata.parent
    pairs, used = [], set()
    for i, row in enumerate(rows):
        if target_column not in row or reference_column not in row:
            raise InputError(f"{metadata.name} row {i} has no {target_column!r} or {reference_column!r}")
        target = (base / str(row[target_column])).resolve()
        reference = (base / str(row[reference_column])).resolve()
        for video, what in ((target, "target"), (reference, "reference")):
            check_input(video, f"{metadata.name} row {i}: the {what} video")
        name = safe_name(target.stem)
        if name in used:
            name = f"{name}-{i:05d}"
        used.add(name)
        folder = pair_dir(out, name)
        folder.mkdir(exist_ok=True)
        for src, dst_name in ((reference, SOURCE_NAME), (target, TARGET_NAME)):
            dst = folder / dst_name
            own = dst.parent.resolve() / dst.name  # where dst itself is (a link to src is fine: it is replaced)
            if own == src or (dst.exists() and not dst.is_symlink() and os.path.samefile(dst, src)):
                raise InputError(f"{metadata.name} row {i}: {dst} would replace the {dst_name} it lists; lay the "
                                 "pairs out in another folder (--out)")
            if copy:
                with atomic_output(dst) as tmp:
                    shutil.copyfile(src, tmp)
            else:  # a new link under a temp name, then renamed over the old one: never a moment without one
                tmp = temp_path(dst)
                tmp.symlink_to(src)
                try:
                    os.replace(tmp, dst)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
        extra = {k: v for k, v in row.items() if k not in (target_column, reference_column)}
        write_meta(folder, {"origin": "import", "metadata": str(metadata), "row": i,
                            "reference": str(reference), "target": str(target), **extra})
        pairs.append(Pair(name=name, root=folder, meta=read_meta(folder)))
    return pairs
