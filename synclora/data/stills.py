"""Training pairs the paper's way: portrait still → instruction edit → image-to-video twice, same motion.

For each portrait still: FLUX.2 [klein] edits it from an instruction (the app's instruction editor); LTX-2.3
image-to-video then animates the original still and the edited still with the same motion prompt, seed and settings
(`data.i2v`). The clip from the original is the pair's source, the clip from the edit its target:

    PAIRS/<still stem>__eNN/{source.mp4, target.mp4, edit.png, meta.json}

The two clips share a seed and a prompt, so they *tend* to move alike; `curate` keeps the pairs that truly do (the
paper generated 24,577 pairs and kept 512).

At cluster scale (docs/TRAINING.md): every process builds the same sorted job list from the same inputs and takes
every world-th job from its rank on (`cluster.Ranks`), so each pair is made exactly once with no coordination. A pair
is written into a hidden folder and renamed into place when complete (`pairs.begin_pair`/`commit_pair`): a crash or a
preemption never leaves a visible half pair, and rerunning the same command skips every finished pair. At the end
rank 0 gathers every rank's report (a barrier) and writes one `PAIRS/generate-summary.json`.

Bad input fails only its own job, with one sentence (an unreadable still, a still without a face, an unusable line
of the instructions or prompts file); a missing or empty stills folder, or a file with no usable line at all, stops
the run before any model is loaded.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from synclora.data.cluster import Ranks, stable_int, write_json_atomic
from synclora.data.i2v import ClipSettings
from synclora.data.pairs import (
    EDIT_NAME,
    SOURCE_NAME,
    TARGET_NAME,
    Pair,
    begin_pair,
    commit_pair,
    discard_pair,
    pair_dir,
    safe_name,
    write_meta,
)
from synclora.errors import InputError, ModelUnavailableError, SyncloraError
from synclora.ltx.recipe import FRAME_RATE

STILL_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
MAX_PROMPT_CHARS = 2000  # LTX prompts are long descriptions; anything longer is not a prompt
SUMMARY_NAME = "generate-summary.json"


# --- instructions and motion prompts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextList:
    """The lines of an instructions or prompts list. Unusable lines stay in the list with the reason, so the jobs that
    draw them fail visibly instead of the list silently shrinking."""

    kind: str  # "instructions" | "prompts"
    source: str  # "default" or the file's path
    items: tuple[str, ...]
    where: tuple[str, ...]  # "prompts.txt line 7", per item
    problems: tuple[str | None, ...]  # why an item cannot be used, per item

    def __len__(self) -> int:
        return len(self.items)


def _check_line(kind: str, text: str) -> str | None:
    from synclora.edit.instruct import MAX_INSTRUCTION_CHARS

    limit = MAX_INSTRUCTION_CHARS if kind == "instructions" else MAX_PROMPT_CHARS
    if len(text) > limit:
        return f"it is {len(text)} characters long (at most {limit})"
    if any(ord(c) < 32 and c != "\t" for c in text):
        return "it holds control characters"
    return None


MAX_TEXT_LIST_BYTES = 16_000_000  # an instructions or prompts file is read whole: this bounds it (~100k lines)


def read_text_list(path: str | Path | None, kind: str) -> TextList:
    """One item per line ('#' comments and blank lines skipped); `path` None reads the shipped defaults."""
    if path is None:
        ref = resources.files("synclora.data") / "defaults" / f"{kind}.txt"
        text, source, label = ref.read_text(encoding="utf-8"), "default", f"default {kind}"
    else:
        from synclora.paths import check_input

        path = check_input(path, f"{kind} file")  # a folder, pipe or device is said as such (a pipe never ends)
        if path.stat().st_size > MAX_TEXT_LIST_BYTES:
            raise InputError(f"the {kind} file {path.name} is {path.stat().st_size / 1e6:.0f} MB; lists of at most "
                             f"{MAX_TEXT_LIST_BYTES // 1_000_000} MB are read")
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"the {kind} file {path.name} is not readable UTF-8 text ({type(exc).__name__})") from None
        if "\x00" in text:
            raise InputError(f"the {kind} file {path.name} is not a text file")
        source, label = str(path), path.name
    items, where, problems = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        items.append(line)
        where.append(f"{label} line {number}")
        problems.append(_check_line(kind, line))
    if not items:
        raise InputError(f"the {kind} file {label} lists no {kind} (one per line; '#' starts a comment)")
    if all(problems):
        raise InputError(f"no line of the {kind} file {label} is usable: line {where[0].rsplit(' ', 1)[1]}: "
                         f"{problems[0]}")
    return TextList(kind, source, tuple(items), tuple(where), tuple(problems))


# --- the plan ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StillJob:
    """One pair to make. Everything random about it is fixed here, from the run's seed and the pair's name."""

    name: str
    still: Path
    instruction: str
    instruction_from: str  # where the instruction came from, e.g. "instructions.txt line 7"
    prompt: str
    prompt_from: str
    seed: int
    problem: str | None = None  # set when the job drew an unusable line: it fails with this sentence


def find_stills(folder: str | Path) -> list[Path]:
    """The still images directly in `folder`, sorted by name (every rank sees the same list)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"stills folder not found: {folder}")
    stills = sorted(p for p in folder.iterdir()
                    if p.suffix.lower() in STILL_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not stills:
        raise InputError(f"no still images ({', '.join(sorted(STILL_SUFFIXES))}) in {folder}")
    return stills


def _still_names(stills: list[Path]) -> list[str]:
    """Pair-name stems: the file stem, or stem + extension where two stills share a stem (a.png and a.jpg)."""
    from collections import Counter

    stems = [safe_name(p.stem) for p in stills]
    seen = Counter(stems)
    return [safe_name(f"{p.stem}_{p.suffix.lstrip('.')}") if seen[s] > 1 else s for p, s in zip(stills, stems)]


def plan_jobs(stills: list[Path], instructions: TextList, prompts: TextList, seed: int = 0,
              edits_per_still: int = 1) -> list[StillJob]:
    """Every pair of the run, sorted by name. Still k's edits draw distinct instructions (while the list lasts),
    each pair one prompt and its own seed, all from `seed` and names only: the same inputs give the same plan in
    every process, and adding stills leaves the other pairs' draws unchanged."""
    if edits_per_still < 1:
        raise InputError("--edits-per-still must be at least 1")
    jobs = []
    for still, stem in zip(stills, _still_names(stills)):
        rng = random.Random(stable_int(seed, "instructions", stem))
        order = [i for _ in range(-(-edits_per_still // len(instructions)))
                 for i in rng.sample(range(len(instructions)), len(instructions))]
        for k in range(edits_per_still):
            name = f"{stem}__e{k:02d}"
            i = order[k]
            p = random.Random(stable_int(seed, "prompt", name)).randrange(len(prompts))
            problem = None
            if instructions.problems[i]:
                problem = f"{instructions.where[i]} cannot be used: {instructions.problems[i]}"
            elif prompts.problems[p]:
                problem = f"{prompts.where[p]} cannot be used: {prompts.problems[p]}"
            jobs.append(StillJob(
                name=name, still=still, instruction=instructions.items[i], instruction_from=instructions.where[i],
                prompt=prompts.items[p], prompt_from=prompts.where[p], seed=stable_int(seed, "seed", name) % 2**32,
                problem=problem,
            ))
    return sorted(jobs, key=lambda j: j.name)


# --- one still -----------------------------------------------------------------------------------------------------
def prepare_still(path: Path, width: int, height: int) -> tuple[np.ndarray, dict]:
    """The still cropped around its face to the clip's aspect and resized to (height, width), with what was done.

    Raises InputError for an unreadable file or a still in which no face is found (the pair would teach nothing
    about portraits, and curation could not judge it)."""
    from synclora.edit.image import load_image
    from synclora.face.mesh import FaceMeshTracker
    from synclora.ltx.vae import resize_frames

    rgb, notices = load_image(path, what="still")
    with FaceMeshTracker(static=True) as tracker:  # a new one per still: its scale is fixed by the first face
        pts = tracker.landmarks(rgb)
    if pts is None:
        raise InputError(f"no face found in the still {path.name}")
    ih, iw = rgb.shape[:2]
    x0, y0 = pts[:, 0].min(), pts[:, 1].min()
    x1, y1 = pts[:, 0].max(), pts[:, 1].max()
    # The largest crop of the clip's aspect that fits, centred on the face as far as the borders allow.
    scale = min(iw / width, ih / height)
    cw, ch = int(round(width * scale)), int(round(height * scale))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - cw / 2), 0, iw - cw))
    top = int(np.clip(round(cy - ch / 2), 0, ih - ch))
    crop = np.array(rgb[top : top + ch, left : left + cw])  # a writable copy
    image = (resize_frames(crop[None], height, width)[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    info = {"still_size": [iw, ih], "crop": [left, top, cw, ch],
            "face_box": [round(float(v), 1) for v in (x0, y0, x1, y1)], "notices": notices}
    return image, info


@dataclass(frozen=True)
class PairOptions:
    """How every pair of a run is made (recorded in each meta.json)."""

    model: str = "real"  # "real" (FLUX.2 [klein] + LTX-2.3 on a GPU) | "tiny" (random tiny models, CPU)
    memory: str = "bf16"  # the video model's memory mode (bf16, fp8, offload), as for propagation
    seed: int = 0
    edits_per_still: int = 1
    clip: ClipSettings = field(default_factory=ClipSettings)
    edit_steps: int = 4  # FLUX.2 [klein] 4B is step-distilled to 4

    @classmethod
    def for_model(cls, model: str, *, resolution: int | None = None, num_frames: int | None = None,
                  quality: str | None = None, **kw) -> PairOptions:
        """Defaults per model: 512×512×81 for the real one (the release's training bucket), 64×64×9 for tiny."""
        size, frames = (64, 9) if model == "tiny" else (512, 81)
        clip = ClipSettings(width=resolution or size, height=resolution or size, num_frames=num_frames or frames,
                            quality=quality or "full")
        options = cls(model=model, clip=clip, **kw)
        options.check()
        return options

    def check(self) -> None:
        if self.model not in ("real", "tiny"):
            raise InputError(f"--model must be real or tiny, got {self.model!r}")
        self.clip.check(self.model)


def tiny_editor(texts):
    """The instruction editor of `--model tiny`: a tiny FLUX.2 [klein] on the CPU whose offline tokenizer knows the
    words of `texts` (the instructions it will be given)."""
    from synclora.edit.instruct import InstructEditor
    from synclora.edit.tiny_instruct import CHAT_TEMPLATE, MAX_TOKENS, tiny_instruct_pipeline
    from synclora.ltx.tiny import word_tokenizer

    tokenizer = word_tokenizer(list(texts) + ["user assistant"], max_length=MAX_TOKENS, padding_side="right",
                               chat_template=CHAT_TEMPLATE)
    return InstructEditor(tiny_instruct_pipeline(tokenizer), device="cpu")


class PairMaker:
    """The models of one process (loaded at the first pair that needs them) and how one pair is made."""

    def __init__(self, options: PairOptions, instructions: TextList, prompts: TextList):
        from synclora.data.i2v import ImageToVideo
        from synclora.edit.instruct import model_id, shared_editor

        self.options = options
        usable = [p for p, bad in zip(prompts.items, prompts.problems) if not bad]
        self.video = ImageToVideo.load(options.model, options.memory, usable)
        if options.model == "tiny":
            self.editor = tiny_editor(instructions.items)
            self.models = {"edit": "tiny FLUX.2 [klein] (random weights)", "video": "tiny LTX-2.3 (random weights)"}
        else:
            self.editor = shared_editor()
            self.editor.load()
            from synclora.ltx.weights import resolve_weights

            self.models = {"edit": model_id(), "video": "LTX-2.3 dev + distilled LoRA (fused), Sync-LoRA adapter off",
                           "video_revisions": resolve_weights().revisions}

    def make(self, job: StillJob, folder: Path) -> dict:
        """Write source.mp4, target.mp4 and edit.png of `job` into `folder`; return the meta record."""
        from PIL import Image

        from synclora.edit.instruct import InstructSettings
        from synclora.video import io

        o, clip = self.options, self.options.clip
        seconds = {}
        t0 = time.perf_counter()
        still, info = prepare_still(job.still, clip.width, clip.height)
        seconds["still"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        area = clip.width * clip.height if o.model == "tiny" else InstructSettings().area
        edit_settings = InstructSettings(seed=job.seed, steps=o.edit_steps, area=area)
        edited = self.editor.edit(still, job.instruction, edit_settings)
        seconds["edit"] = time.perf_counter() - t0
        Image.fromarray(edited).save(folder / EDIT_NAME)
        # The source clip's mp4 is encoded (CPU, ~1.8 CPU-s at 512²×81) while the GPU makes the target clip.
        with ThreadPoolExecutor(1) as writer:
            t0 = time.perf_counter()
            source = self.video(still, job.prompt, job.seed, clip)
            seconds["source"] = time.perf_counter() - t0
            written = writer.submit(io.write_video, folder / SOURCE_NAME, source, FRAME_RATE)
            t0 = time.perf_counter()
            target = self.video(edited, job.prompt, job.seed, clip)
            seconds["target"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            io.write_video(folder / TARGET_NAME, target, FRAME_RATE)
            written.result()
            seconds["write"] = time.perf_counter() - t0
        return {
            "origin": "stills",
            "still": str(job.still),
            "instruction": job.instruction,
            "instruction_from": job.instruction_from,
            "prompt": job.prompt,
            "prompt_from": job.prompt_from,
            "seed": job.seed,
            "edit_index": 0,
            "models": self.models,
            "settings": {**clip.to_dict(), "model": o.model, "memory": o.memory,
                         "crf": self.video.model.crf, "edit_steps": o.edit_steps, "edit_area": area,
                         "run_seed": o.seed},
            **info,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        }


# --- the run ---------------------------------------------------------------------------------------------------------
@dataclass
class RankReport:
    """What one rank did in this run (also what the merged summary is made of)."""

    rank: int
    world: int
    made: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete on disk
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, one sentence)
    seconds: float = 0.0
    host: str = ""

    def to_dict(self) -> dict:
        return {"rank": self.rank, "world": self.world, "made": self.made, "skipped": self.skipped,
                "failed": [{"name": n, "reason": r} for n, r in self.failed], "seconds": round(self.seconds, 1),
                "host": self.host}

    @classmethod
    def from_dict(cls, d: dict) -> RankReport:
        return cls(d["rank"], d["world"], list(d["made"]), list(d["skipped"]),
                   [(f["name"], f["reason"]) for f in d["failed"]], d["seconds"], d.get("host", ""))


@dataclass
class StillsSummary:
    """The run as the main process reports it (all ranks merged), or one rank's own share elsewhere."""

    made: list[str]
    skipped: list[str]
    failed: list[tuple[str, str]]
    ranks: list[RankReport]
    path: Path | None = None  # the merged summary file (main process only)

    def text(self) -> str:
        who = f" by {len(self.ranks)} ranks" if len(self.ranks) > 1 else ""
        lines = [f"{len(self.made)} pairs made{who}, {len(self.skipped)} already there, {len(self.failed)} failed"]
        lines += [f"  failed {name}: {why}" for name, why in self.failed]
        if self.path is not None:
            lines.append(f"summary: {self.path}")
        return "\n".join(lines)


Progress = Callable[[str, str, str], None]  # (event "made"|"skipped"|"failed", pair name, detail)


def generate_from_stills(
    jobs: list[StillJob],
    out: str | Path,
    options: PairOptions,
    instructions: TextList,
    prompts: TextList,
    *,
    ranks: Ranks | None = None,
    progress: Progress | None = None,
    maker_factory: Callable[[], PairMaker] | None = None,
) -> StillsSummary:
    """Make this rank's share of `jobs` under `out`, then (rank 0) merge every rank's report into one summary."""
    ranks = ranks or Ranks()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = RankReport(ranks.rank, ranks.world, host=socket.gethostname())
    factory = maker_factory or (lambda: PairMaker(options, instructions, prompts))
    maker = None
    start = time.perf_counter()

    def note(event: str, name: str, detail: str = "") -> None:
        if progress:
            progress(event, name, detail)

    for job in ranks.mine(jobs):
        folder = pair_dir(out, job.name)
        if folder.exists():
            if Pair(job.name, folder).is_complete():
                report.skipped.append(job.name)
                note("skipped", job.name)
            else:
                report.failed.append((job.name, f"{folder} exists but is not a complete pair; remove it to remake it"))
                note("failed", job.name, report.failed[-1][1])
            continue
        if job.problem:
            report.failed.append((job.name, job.problem))
            note("failed", job.name, job.problem)
            continue
        tmp = begin_pair(out, job.name)
        try:
            if maker is None:
                maker = factory()  # a model that cannot load stops the run (every pair would fail the same way)
            meta = maker.make(job, tmp)
            write_meta(tmp, {**meta, "rank": ranks.rank, "made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            commit_pair(tmp, out, job.name)
        except ModelUnavailableError:
            discard_pair(tmp)
            raise
        except (SyncloraError, OSError) as exc:  # bad input or a failed write fails this pair only
            discard_pair(tmp)
            report.failed.append((job.name, str(exc)))
            note("failed", job.name, str(exc))
            continue
        except BaseException:
            discard_pair(tmp)  # interrupted: nothing half-made is left (a kill -9 leaves the hidden folder only)
            raise
        report.made.append(job.name)
        note("made", job.name, f"{time.perf_counter() - start:.1f} s")
    report.seconds = time.perf_counter() - start
    reports = [RankReport.from_dict(d) for d in ranks.gather_json(report.to_dict())]  # waits for every rank
    if not ranks.is_main:
        return StillsSummary(report.made, report.skipped, report.failed, [report])
    return _merge(reports, jobs, out, options, instructions, prompts)


def _merge(reports: list[RankReport], jobs: list[StillJob], out: Path, options: PairOptions,
           instructions: TextList, prompts: TextList) -> StillsSummary:
    order = {j.name: i for i, j in enumerate(jobs)}

    def by_plan(names):
        return sorted(names, key=lambda n: order.get(n if isinstance(n, str) else n[0], 0))

    made = by_plan([n for r in reports for n in r.made])
    skipped = by_plan([n for r in reports for n in r.skipped])
    failed = by_plan([f for r in reports for f in r.failed])
    complete = sum(1 for j in jobs if Pair(j.name, pair_dir(out, j.name)).is_complete())
    path = write_json_atomic(out / SUMMARY_NAME, {
        "pairs_planned": len(jobs),
        "pairs_complete": complete,
        "made": made,
        "skipped": skipped,
        "failed": [{"name": n, "reason": r} for n, r in failed],
        "ranks": [r.to_dict() | {"made": len(r.made), "skipped": len(r.skipped), "failed": len(r.failed)}
                  for r in reports],
        "options": {"model": options.model, "memory": options.memory, "seed": options.seed,
                    "edits_per_still": options.edits_per_still, "clip": options.clip.to_dict()},
        "instructions": instructions.source,
        "prompts": prompts.source,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return StillsSummary(made, skipped, failed, reports, path)


def stderr_progress(ranks: Ranks) -> Progress:
    """One line per pair on stderr, prefixed with the rank when there are several (a bar per rank would garble)."""
    prefix = f"[rank {ranks.rank}/{ranks.world}] " if ranks.world > 1 else ""

    def progress(event: str, name: str, detail: str) -> None:
        if event == "skipped":
            return
        print(f"{prefix}{event} {name}" + (f": {detail}" if event == "failed" else f" ({detail})"),
              file=sys.stderr, flush=True)

    return progress

