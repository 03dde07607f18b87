"""Pairs made by propagation (`generate --from-backend`): (source clip, edited frame) → PAIRS/<name>/{source.mp4,
target.mp4, edit.png, meta.json}.

Not the paper's way of making training data: the paper animates an original and an edited *still* with an
image-to-video model (`generate --stills`, `data/stills.py`; docs/METHOD.md, docs/TRAINING.md). A pair made here has a
target produced by one of this project's backends, so a LoRA trained on it learns that backend's output, artefacts
included: use it for smoke runs, for distilling a backend, or for pairs from clips you already have. The target is
made by `pipeline.run_propagation`, the same call the CLI and the app use; `curate` decides which pairs are in sync
enough to train on.

Matching sources with edits: an edit named `<clip stem>.png` or `<clip stem>__<tag>.png` belongs to that clip (one
clip may have several edits; the pair is named `<clip stem>` or `<clip stem>__<tag>`). With exactly one source and
one edit they are paired whatever their names.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from synclora.config import PropagationRequest, PropagationSettings
from synclora.data.pairs import EDIT_NAME, META_NAME, SOURCE_NAME, TARGET_NAME, pair_dir, safe_name, write_meta
from synclora.errors import InputError, user_error
from synclora.paths import Output, atomic_output, check_input, check_outputs

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class GenerateJob:
    name: str
    source: Path
    edit: Path
    edit_index: int = 0


@dataclass
class GenerateSummary:
    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete (resumable)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, one-line reason)

    def text(self) -> str:
        lines = [f"{len(self.made)} pairs made, {len(self.skipped)} already there, {len(self.failed)} failed"]
        lines += [f"  failed {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


def _collect(paths: list[Path], suffixes: set[str], what: str) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes and not q.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{what} not found: {p}")
    if not out:
        raise InputError(f"no {what} found in {', '.join(str(p) for p in paths)}")
    return out


def plan_jobs(sources: list[Path], edits: list[Path], edit_index: int = 0) -> list[GenerateJob]:
    """Match edited frames to source clips by name (see the module docstring)."""
    clips = _collect(sources, VIDEO_SUFFIXES, "source clips")
    images = _collect(edits, IMAGE_SUFFIXES, "edited frames")
    if len(clips) == 1 and len(images) == 1:
        return [GenerateJob(safe_name(clips[0].stem), clips[0], images[0], edit_index)]
    by_stem = {c.stem: c for c in clips}
    jobs, unmatched = [], []
    for img in images:
        stem, _, tag = img.stem.partition("__")
        clip = by_stem.get(stem)
        if clip is None:
            unmatched.append(img.name)
            continue
        jobs.append(GenerateJob(safe_name(f"{stem}__{tag}" if tag else stem), clip, img, edit_index))
    if unmatched:
        raise InputError(f"edited frame(s) {', '.join(unmatched[:3])} match no source clip; name an edit "
                         "<clip stem>.png or <clip stem>__<tag>.png")
    names = [j.name for j in jobs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise InputError(f"two edits give the same pair name {sorted(dupes)[0]!r}; rename one")
    return jobs


def _copy_source(src: Path, dst: Path) -> None:
    """mp4 sources are copied byte for byte; other containers are rewritten frame for frame at the same fps."""
    from synclora.video import io

    info = io.probe(src)  # a copied file must be a readable video within the limits, like any other source
    if src.suffix.lower() == ".mp4":
        with atomic_output(dst) as tmp:
            shutil.copyfile(src, tmp)
        return
    io.write_video(dst, io.iter_frames(src), info.fps, audio_from=src if info.has_audio else None)


def _save_edit(src: Path, dst: Path) -> None:
    """The edited frame as PNG (checked like any edited image: no bombs, no animations)."""
    from PIL import Image

    from synclora.edit.image import load_image

    rgb, _ = load_image(src)
    with atomic_output(dst) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def _pair_outputs(job: GenerateJob, folder: Path) -> None:
    """The pair's files are none of the job's inputs (a source clip that *is* PAIRS/x/target.mp4, say)."""
    check_outputs([Output(folder / n, f"the pair's {n}") for n in (SOURCE_NAME, EDIT_NAME, TARGET_NAME, META_NAME)],
                  [(job.source, "the source clip"), (job.edit, "the edited frame")])


def generate_pairs(
    jobs: list[GenerateJob],
    out: str | Path,
    settings: PropagationSettings,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    edit_progress: Callable[[float, str], None] | None = None,
) -> GenerateSummary:
    """Make each job's pair folder with `run_propagation`; finished pairs are skipped (resumable), failures recorded."""
    from synclora.pipeline import run_propagation

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = GenerateSummary()
    for i, job in enumerate(jobs):
        if progress:
            progress(i, len(jobs), job.name)
        folder = pair_dir(out, job.name)
        if (folder / TARGET_NAME).is_file() and not overwrite:
            summary.skipped.append(job.name)
            continue
        created = not folder.exists()
        t0 = time.time()
        try:
            check_input(job.source, "source clip")
            check_input(job.edit, "edited frame")
            folder.mkdir(parents=True, exist_ok=True)
            _pair_outputs(job, folder)
            _copy_source(job.source, folder / SOURCE_NAME)
            _save_edit(job.edit, folder / EDIT_NAME)
            request = PropagationRequest(
                source=folder / SOURCE_NAME, edited=folder / EDIT_NAME, out=folder / TARGET_NAME,
                edit_index=job.edit_index, settings=replace(settings),
            )
            result = run_propagation(request, edit_progress) if edit_progress else run_propagation(request)
        except BaseException as exc:
            if created:  # leave no half-made pair folder behind (a stop signal included)
                shutil.rmtree(folder, ignore_errors=True)
            error = user_error(exc) if isinstance(exc, Exception) else None
            if error is None:
                raise
            summary.failed.append((job.name, str(error)))  # one bad job is reported, the others still run
            continue
        write_meta(folder, {
            "origin": "generate",
            "source": str(job.source),
            "edit": str(job.edit),
            "edit_index": job.edit_index,
            "backend": result.backend,
            "settings": settings.to_dict(),
            "working_size": list(result.working_size),
            "notices": list(result.notices),
            "seconds": round(time.time() - t0, 2),
        })
        summary.made.append(job.name)
    if progress:
        progress(len(jobs), len(jobs), "done")
    return summary
