"""`python -m synclora doctor`: what each backend needs, what is here, and the command that fixes each missing piece.

One implementation (`diagnose`) produces a structured `Report`, a section per backend with the checks its record in
`config.BACKENDS` names (`needs`); the CLI prints it as text (or JSON) and the app's backend panel shows it as
Markdown, so both always say the same. Nothing here downloads, loads a model or raises for
a broken file: a missing or corrupt piece is a line in the report, never a traceback.

Exit codes of the command: 0 when Sync-LoRA can run here, 3 when it cannot (the CPU preview still works; the report
says why and what to run), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from synclora import config, runtime
from synclora.config import BackendRecord, PropagationSettings

EXIT_READY, EXIT_NOT_READY = 0, 3
GIB = 2**30
PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface-hub", "av",
            "gradio", "spaces", "opencv-contrib-python", "mediapipe")
BACKEND_PACKAGES = ("torch", "diffusers", "transformers", "peft", "safetensors", "huggingface-hub", "av")
_MARK = {"ok": "ok", "missing": "MISSING", "corrupt": "CORRUPT", "warn": "warn", "info": "info"}


@dataclass
class Check:
    """One fact: what was checked, its state, the detail, and the command that fixes it (if anything is to fix)."""

    what: str
    status: str  # ok | missing | corrupt | warn | info
    detail: str
    fix: str = ""
    items: list[Check] = field(default_factory=list)  # per-file lines under a group

    @property
    def blocking(self) -> bool:
        return self.status in ("missing", "corrupt")


@dataclass
class Section:
    title: str
    ready: bool
    why: str  # empty when ready
    checks: list[Check]
    backend: str = ""  # its record's name


@dataclass
class Report:
    sections: list[Section]
    facts: list[Check]  # not per backend: disk, packages, where this runs

    @property
    def synclora_ready(self) -> bool:
        return self.sections[0].ready

    def fixes(self) -> list[str]:
        out: list[str] = []
        for c in [c for s in self.sections for c in s.checks] + self.facts:
            for f in [c.fix] + [i.fix for i in c.items]:
                if f and f not in out and c.status != "ok":
                    out.append(f)
        return out

    def to_dict(self) -> dict:
        return dict(synclora_ready=self.synclora_ready, sections=[asdict(s) for s in self.sections],
                    facts=[asdict(c) for c in self.facts], fixes=self.fixes())

    def to_text(self) -> str:
        lines = ["synclora doctor: what each backend needs and what is here", ""]
        for s in self.sections:
            lines.append(f"{s.title}: {'ready' if s.ready else 'CANNOT RUN HERE: ' + s.why}")
            lines += [_text_line(c, "  ") for c in s.checks]
            lines.append("")
        lines += [_text_line(c, "") for c in self.facts]
        fixes = self.fixes()
        if fixes:
            lines += ["", "To fix:"] + [f"  {i}. {f}" for i, f in enumerate(fixes, 1)]
        return "\n".join(lines).rstrip() + "\n"

    def to_markdown(self) -> str:
        out = []
        for s in self.sections:
            state = "ready" if s.ready else f"**cannot run here**: {s.why}"
            out.append(f"**{s.title}**: {state}")
            out += [_md_line(c) for c in s.checks]
            out.append("")
        out += [_md_line(c) for c in self.facts]
        fixes = self.fixes()
        if fixes:
            out += ["", "To fix:"] + [f"{i}. `{f}`" if f.startswith(("python ", "pip ", "rm ")) else f"{i}. {f}"
                                      for i, f in enumerate(fixes, 1)]
        return "\n".join(out).strip()


def _text_line(c: Check, indent: str) -> str:
    lines = [f"{indent}[{_MARK[c.status]}] {c.what}: {c.detail}"]
    for i in c.items:  # an "info" item heads the ones after it (a repository and its revision)
        lines.append(f"{indent}    {i.what}" if i.status == "info" else
                     f"{indent}      [{_MARK[i.status]}] {i.what}: {i.detail}")
    return "\n".join(lines)


def _md_line(c: Check) -> str:
    # Words, not emoji: a phone or a headless browser without an emoji font shows empty boxes.
    lines = [f"- **{c.what}** ({_MARK[c.status]}): {c.detail}"]
    for i in c.items:
        lines.append(f"    - `{i.what}`" if i.status == "info" else
                     f"        - {i.what} ({_MARK[i.status]}): {i.detail}")
    return "\n".join(lines)


# --- the checks ---------------------------------------------------------------------------------------------------
def on_space() -> bool:
    """True on a Hugging Face Space (the variables the Spaces runtime sets, as gradio reads them)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


def _fetch_fix() -> str:
    if on_space():
        return ("list it in the README front matter's preload_from_hub (`python -m synclora hub-files` prints the "
                "block) and restart the Space")
    return "python -m synclora fetch-weights"


def gpu_check(record: BackendRecord | None = None) -> Check:
    """The GPU and its free memory against what `record` (default: the first GPU backend) holds in each memory mode,
    without initialising CUDA where that is not allowed (ZeroGPU outside a call)."""
    record = record or next(b for b in config.BACKENDS if b.gpu)
    needs = dict(record.gpu_gib)
    (best, best_gib), (least, least_gib) = record.gpu_gib[0], record.gpu_gib[-1]
    rt = runtime.current()
    if runtime.on_zerogpu():
        name, total = "NVIDIA H200 slice", None
        try:  # the spaces package knows the slice it will lend (no CUDA call)
            from spaces.zero.config import get_config

            cfg = get_config()
            name, total = cfg["model"], cfg["memory"] / GIB
        except Exception:  # noqa: BLE001  (an older or absent spaces package: the generic line is enough)
            pass
        size = f", {total:.0f} GiB" if total else ""
        return Check("GPU", "ok", f"ZeroGPU: {name}{size}, lent per call (only inside `spaces.GPU` functions)")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        return Check("GPU", "missing", "torch is not installed", "pip install -r requirements.txt")
    if not has_cuda:
        if rt.allow_cpu:
            return Check("GPU", "warn", "no CUDA GPU; SYNCLORA_ALLOW_CPU=1 lets the loader use the CPU (tiny test "
                         "weights only: the real model would take hours)")
        modes = ", ".join(f"{gib:g} in {mode}" for mode, gib in record.gpu_gib[1:])
        return Check("GPU", "missing", f"no CUDA GPU visible ({record.title} needs about {best_gib:g} GiB of GPU "
                     f"memory in {best}, {modes})",
                     "run on a machine with an NVIDIA GPU (H100/H200 class), or a ZeroGPU Space")
    try:
        free, total = torch.cuda.mem_get_info()
        name = torch.cuda.get_device_name()
    except RuntimeError as exc:
        return Check("GPU", "missing", f"CUDA is visible but unusable ({exc})", "check the NVIDIA driver (nvidia-smi)")
    fits = [m for m, need in needs.items() if free / GIB >= need]
    detail = f"{name}, {total / GIB:.0f} GiB, {free / GIB:.1f} GiB free"
    if not fits:
        return Check("GPU", "missing", f"{detail}: too little free memory even for memory mode {least} "
                     f"(~{least_gib:g} GiB)", "free GPU memory (nvidia-smi shows who holds it)")
    if fits[0] != best:
        return Check("GPU", "warn", f"{detail}: use memory mode {fits[0]} ({best} needs ~{best_gib:g} GiB)")
    return Check("GPU", "ok", f"{detail} ({best} needs ~{best_gib:g} GiB)")


def weights_check() -> tuple[Check, float, Path | None]:
    """The weights (one line per part folder or file, with its revision), the GB still to download, and the base
    folder when it is complete. Read-only: nothing is pinned or downloaded."""
    from synclora.ltx import hub
    from synclora.ltx.weights import inspect_weights, read_lock

    state = inspect_weights()
    pins = read_lock().get("revisions", {})
    items, missing_gb = [], 0.0
    for h in hub.HUB_FILES:
        files = [f for f in state.files if f.repo == h.repo]
        bad = [f for f in files if f.problem]
        rev = state.revisions.get(h.repo)
        rev_text = f"@ {rev[:10]}" + (" (pinned)" if pins.get(h.repo) == rev else "") if rev else "(not in the cache)"
        if bad:
            missing_gb += h.approx_gb if len(bad) == len(files) else sum(
                _approx_file_gb(h, f.name) for f in bad)
        items.append(Check(f"{h.repo} {rev_text}", "info", ""))
        for group, members in _groups(files):
            problems = [f for f in members if f.problem]
            size = sum(_size(f.path) for f in members if not f.problem)
            if len(members) > 1 and len(problems) == len(members) and all(f.problem == "missing" for f in members):
                items.append(Check(group, "missing", f"all {len(members)} files missing", _fetch_fix()))
            elif problems:
                for f in problems:
                    status = "missing" if f.problem == "missing" else "corrupt"
                    items.append(Check(f.name, status, f.problem, _fetch_fix()))
            else:
                count = f"{len(members)} files, " if len(members) > 1 else ""
                items.append(Check(group, "ok", f"{count}{_human(size)}"))
    status = "ok" if not state.problems else (
        "missing" if any(f.problem == "missing" for f in state.problems) else "corrupt")
    n_bad = len(state.problems)
    detail = (f"all {len(state.files)} files found and whole in {state.source}" if not n_bad
              else f"{n_bad} of {len(state.files)} files missing or corrupt in {state.source}")
    detail += "".join(f"; {n}" for n in state.notes)
    base = None if n_bad else state.path(hub.BASE_REPO, hub.BASE_FILES.files[0]).parent.parent
    return Check("weights", status, detail, _fetch_fix() if n_bad else "", items), missing_gb, base


def _groups(files) -> list[tuple[str, list]]:
    """Files by part folder (transformer/, connectors/, …) or alone (LoRA files)."""
    out: dict[str, list] = {}
    for f in files:
        key = f.name.split("/", 1)[0] + "/" if "/" in f.name else f.name
        out.setdefault(key, []).append(f)
    return list(out.items())


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path else 0
    except OSError:
        return 0


def _human(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _approx_file_gb(h, name: str) -> float:
    n = max(1, sum(1 for f in h.files if f.endswith(".safetensors")))
    return h.approx_gb / n if name.endswith(".safetensors") else 0.0


def prompt_check(base_dir: Path | None) -> Check:
    from synclora.ltx.prompt import PROMPT, expected_dim, find_prompt_cache, store_path

    found = find_prompt_cache(expected_dim(base_dir) if base_dir else None)
    if found.path is not None:
        return Check(f"`{PROMPT}` prompt cache", "ok", f"{found.where}: {found.path}")
    status = "corrupt" if found.rejected else "missing"
    fix = ("restart on a GPU: the app makes it at start-up (fetches only the text encoder, about 49 GB, once), "
           "or run `python -m synclora cache-prompt`" if on_space() else "python -m synclora cache-prompt")
    return Check(f"`{PROMPT}` prompt cache", status, f"{found.why_missing()}; a new one goes to {store_path()}", fix)


def packages_check() -> tuple[Check, bool]:
    versions, missing = [], []
    for dist in PACKAGES:
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            if dist in BACKEND_PACKAGES:
                missing.append(dist)
            versions.append(f"{dist} (not installed)")
    status = "missing" if missing else "ok"
    return Check("packages", status, ", ".join(versions), "pip install -r requirements.txt" if missing else ""), \
        not missing


def disk_check(missing_gb: float, prompt_missing: bool) -> Check:
    from synclora.ltx import hub
    from synclora.ltx.prompt import store_path

    cache = hub.cache_dir()
    free = hub.free_bytes(cache) / 1e9
    need = missing_gb + (hub.TEXT_ENCODER_GB if prompt_missing else 0.0)
    detail = f"{free:.0f} GB free at {cache}"
    if need:
        detail += f"; still to download: about {missing_gb:.0f} GB of weights"
        if prompt_missing:
            detail += f" + {hub.TEXT_ENCODER_GB:.0f} GB of text encoder (deleted after the prompt cache is made)"
    persistent = runtime.current().persistent_dir
    if persistent is not None and persistent.is_dir():
        detail += f"; persistent storage {persistent} ({hub.free_bytes(persistent) / 1e9:.0f} GB free)"
    detail += f"; the prompt cache is stored in {store_path().parent}"
    if need and free < need:
        return Check("disk", "warn", detail, f"free about {need - free:.0f} GB at {cache} (or point HF_HUB_CACHE at "
                     "a bigger disk)")
    return Check("disk", "ok", detail)


def diagnose(settings: PropagationSettings | None = None) -> Report:
    """Everything the report says, gathered now (a second or two: file headers are read, nothing is loaded)."""
    settings = settings or PropagationSettings()
    checks = _Checks()
    sections = [_section(record, settings, checks) for record in config.BACKENDS]
    prompt = checks.done.get("prompt cache")
    facts = [disk_check(checks.missing_gb, prompt is not None and prompt.status != "ok"), checks.get("packages")]
    if on_space():
        space = f"Hugging Face Space {os.environ.get('SPACE_ID')}" + (" on ZeroGPU" if runtime.on_zerogpu() else "")
        facts.insert(0, Check("where", "info", space))
    return Report(sections, facts)


class _Checks:
    """Each check a backend's record may need (`BackendRecord.needs`), run once however many backends need it."""

    def __init__(self) -> None:
        self.done: dict[str, Check] = {}
        self.missing_gb, self.base_dir = 0.0, None

    def get(self, need: str, record: BackendRecord | None = None) -> Check:
        if need not in self.done:
            self.done[need] = self._run(need, record)
        return self.done[need]

    def _run(self, need: str, record: BackendRecord | None) -> Check:
        packages_ok = need == "packages" or not self.get("packages").blocking
        if need == "packages":
            return packages_check()[0]
        if need == "gpu":
            return gpu_check(record)
        if need == "weights":
            if not packages_ok:
                return Check("weights", "missing", "not checked: packages missing")
            check, self.missing_gb, self.base_dir = weights_check()
            return check
        if need == "prompt cache":
            if not packages_ok:
                return Check("prompt cache", "missing", "not checked: packages missing")
            self.get("weights")  # the cache must match the text encoder's width the weights give
            return prompt_check(self.base_dir)
        if need == "opencv":
            ok, detail = _flow()
            return Check("OpenCV", "ok" if ok else "missing", detail, "" if ok else "pip install -r requirements.txt")
        raise ValueError(f"unknown need {need!r} of backend {record.name if record else '?'}")


def _section(record: BackendRecord, settings: PropagationSettings, checks: _Checks) -> Section:
    """What `record`'s backend needs, each need a line (packages are a fact of their own, below the sections, and
    block the backends that need them)."""
    lines = [checks.get(need, record) for need in record.needs if need != "packages"]
    blocking = [c for c in lines if c.blocking]
    if "packages" in record.needs and checks.get("packages").blocking:
        blocking.append(checks.get("packages"))
    loaded = record.generative and _loaded(settings, record.name)
    if loaded:
        lines.insert(0, Check("model", "ok", "loaded in this process"))
    why = "" if loaded or not blocking else f"{blocking[0].what}: {blocking[0].detail}"
    return Section(record.heading, loaded or not blocking, why, lines, record.name)


def _loaded(settings: PropagationSettings, backend: str) -> bool:
    if "synclora.propagate.registry" not in sys.modules:  # the CLI: nothing is loaded in this process
        return False
    from dataclasses import replace

    from synclora.propagate import registry

    return registry.loaded(replace(settings, backend=backend))


def _flow() -> tuple[bool, str]:
    try:
        import cv2

        return True, f"OpenCV {cv2.__version__}: nothing to download"
    except ImportError:
        return False, "OpenCV (cv2) is not installed"


# --- the command ----------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="say what each backend needs, what is here, and how to fix what is missing",
        description="One screen: GPU and free memory, each weight file with its revision (found, missing or "
        "corrupt), the `3d1t` prompt cache, disk space, package versions, and the command that fixes each missing "
        f"piece. Exit code {EXIT_READY} when Sync-LoRA can run here, {EXIT_NOT_READY} when it cannot (the CPU "
        "preview still works).",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = diagnose()
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.to_text(), end="")
    return EXIT_READY if report.synclora_ready else EXIT_NOT_READY
