"""The one source of propagation settings: their types, defaults, allowed values, checks, labels and help.

Every face is derived from the `PropagationSettings` fields and their metadata, so a setting is stated once: the CLI
flags (`add_arguments`/`from_args`), the app's widgets and their mapping back (`ui.layout`, `ui.glue`), the API
description (`api_description`, docs/API.md's table) and the line that reproduces a result (`cli_args`). A settings
object always validates itself: a bad value is an `InputError` with one sentence, whichever face it came from.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from synclora.errors import InputError, brief

Backend = Literal["auto", "synclora", "flow"]


@dataclass(frozen=True)
class BackendRecord:
    """One backend as the settings, the app, `doctor` and the GPU sizing know it (its code: `propagate/`, built by
    the registry)."""

    name: str  # the value of `--backend` and of the API's `backend`
    title: str  # its short name in the app and the settings' choices
    choice: str  # what the choice says after the title
    gpu: bool  # runs on a GPU: the app queues it for one and sizes the ZeroGPU request
    generative: bool  # seed, model, memory and LoRA apply: they key its loaded model and its reproduce line
    label: str  # what it is and is good for, in one line (the app's backend panel)
    # Its `propagate.base.Propagator` class, as "module:Class": built with the settings, asked whether it can run here
    # and for its input constraints (the registry imports it when first asked).
    code: str = ""
    # What `doctor` checks before it can run here, in the order it reports them: "gpu", "weights" (the LTX-2.3 and
    # Sync-LoRA files), "prompt cache", "packages" (the model's), "opencv".
    needs: tuple[str, ...] = ()
    # GPU memory it holds, in GiB per memory mode, best first (what `doctor` compares with the free memory).
    gpu_gib: tuple[tuple[str, float], ...] = ()
    # Seconds of GPU per model chunk at 512² working size, per quality (how long a ZeroGPU call asks for;
    # SYNCLORA_GPU_S_PER_CHUNK_FULL / _PREVIEW override them).
    seconds_per_chunk: tuple[tuple[str, float], ...] = ()

    @property
    def heading(self) -> str:
        """How `doctor` and the backend panel head its section."""
        return f"{self.title} ({self.choice})"


# In order of preference ("auto" takes the first that can run here).
BACKENDS = (
    BackendRecord("synclora", "Sync-LoRA", "LTX-2.3 IC-LoRA, generative, GPU", gpu=True, generative=True,
                  label="Sync-LoRA (LTX-2.3 IC-LoRA): generative propagation that keeps lips, pose, gaze and blinks in "
                  "sync; handles shape, style and accessory edits; needs a GPU",
                  code="synclora.propagate.ltx:SyncLoRAPropagator",
                  needs=("gpu", "weights", "prompt cache", "packages"),
                  # resident memory of the LTX recipe per memory mode (docs/LTX.md; measured on an H200, README)
                  gpu_gib=(("bf16", 40), ("fp8", 24), ("offload", 6)),
                  # from H100 forward passes of the full-size transformer (stage 1 ≈ 0.6 s × 8 steps, stage 2 ≈
                  # 0.8 s × 3 steps, plus VAE encode/decode and upsampling) with a 1.5× margin for the slower
                  # ZeroGPU slice
                  seconds_per_chunk=(("full", 24.0), ("preview", 10.0))),
    BackendRecord("flow", "CPU preview", "optical flow", gpu=False, generative=False,
                  label="fast CPU preview (optical flow, face mesh inside faces): carries local appearance edits "
                  "(glasses, make-up, colour, accessories) along the source's own motion, lips and lids; not for "
                  "changes of shape, style or expression",
                  code="synclora.propagate.flow:FlowPropagator",
                  needs=("opencv",)),
)
BACKEND_TITLES = {b.name: b.title for b in BACKENDS}


def backend_record(name: str) -> BackendRecord | None:
    """The record of backend `name` (None for "auto" or an unknown name)."""
    return next((b for b in BACKENDS if b.name == name), None)
Quality = Literal["full", "preview"]
FitMode = Literal["pad", "crop"]
TimeMode = Literal["exact", "resample"]
ModelSize = Literal["real", "tiny"]
MemoryMode = Literal["bf16", "fp8", "offload"]

# Seeds go to torch.Generator.manual_seed, which takes exactly this range.
SEED_RANGE = (-(2**63), 2**64 - 1)
# What `--span` accepts (parsed and resolved in `synclora.video.timing`, which says the same in its errors).
SPAN_SYNTAX_HELP = (
    "START:END in frame indices, both inclusive (12:40), or in seconds (2s:5.5s: from the frame on screen at 2 s to "
    "the last frame that starts before 5.5 s); an open end runs to the clip's edge (:120, 2s:)"
)


def setting(
    default: Any,
    *,
    label: str,
    help: str,
    choices: tuple[tuple[str, str], ...] = (),
    bounds: tuple[int, int] | None = None,
    step: int | None = None,
    info: str = "",
    ui: bool = True,
    generative_only: bool = False,
    text: bool = False,
    api: str = "",
) -> Any:
    """A settings field with what every face needs to know about it.

    label: the app's widget label; help: the CLI's help text; choices: (value, label in the app), in display order;
    bounds: inclusive range of a whole-number setting — what the CLI, the API and the app's widget all accept, so what
    docs/API.md states is what each takes; step: the app shows the setting as a slider over `bounds` in these steps
    (else a number box); info: a hint under the widget; ui: shown in the app (and a parameter of
    its API); generative_only: matters only for the Sync-LoRA backend (left out of the reproduce line otherwise);
    text: free text (a text box in the app); api: how docs/API.md states its values.
    """
    meta = dict(label=label, help=help, choices=choices, bounds=bounds, step=step, info=info, ui=ui,
                generative_only=generative_only, text=text, api=api)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PropagationSettings:
    """How to propagate; every field is shown next to a result so it can be reproduced."""

    backend: Backend = setting(
        "auto", label="Backend", help="which backend propagates the edit ('auto': Sync-LoRA when it can run here, "
        "else the CPU preview)",
        choices=(("auto", "Auto — best available here"), *((b.name, f"{b.title} — {b.choice}") for b in BACKENDS)),
        info="Sync-LoRA for any edit; the CPU preview for local colour or accessory edits",
    )
    quality: Quality = setting(
        "full", label="Quality", help="Sync-LoRA: both stages, or the first stage only (about 2x faster)",
        choices=(("full", "Full (two stages)"), ("preview", "Preview (first stage, about 2× faster)")),
    )
    seed: int = setting(0, label="Seed", help="random seed of the generative backend (same seed, same video)",
                        bounds=SEED_RANGE)
    fit: FitMode = setting(
        "pad", label="Fit to the model's size", help="how the working size meets the clip's aspect ratio",
        choices=(("pad", "Pad (keep everything)"), ("crop", "Crop (fill the frame)")),
    )
    # Working resolution: the backend works at about resolution**2 pixels, at the source's aspect ratio.
    resolution: int = setting(
        512, label="Working resolution", help="working size of the generative backend, about N×N pixels",
        bounds=(64, 4096), step=64, info="Sync-LoRA works at about N×N pixels",
    )
    # "exact": source frame i is model frame i (no frame dropped or repeated; the model sees the clip at its own fps).
    # "resample": the clip is resampled to the backend's native fps and mapped back to source frames by nearest time.
    time_mode: TimeMode = setting(
        "exact", label="Timing", help="'exact': source frame i is model frame i; 'resample': resample to the model's "
        "fps and map back by nearest time",
        choices=(("exact", "Exact frames"), ("resample", "Resample to model fps")),
    )
    # Frames shared by consecutive chunks of a backend with a frame limit; blended so no seam shows.
    chunk_overlap: int = setting(
        8, label="Chunk overlap", help="frames shared by consecutive chunks of long clips (cross-faded)",
        bounds=(0, 40), step=1, info="frames shared between chunks of long clips",
    )
    model: ModelSize = setting(
        "real", label="Model", help="'tiny': a random-weight model of the true architecture, for smoke tests",
        choices=(("real", "Real weights"), ("tiny", "Tiny test model")), generative_only=True,
    )
    memory: MemoryMode = setting(
        "bf16", label="GPU memory mode", help="Sync-LoRA weights on the GPU: bf16 (about 40 GiB), fp8 (about 24 GiB) "
        "or offload (about 6 GiB, slower)",
        choices=(("bf16", "bf16"), ("fp8", "fp8"), ("offload", "offload")), generative_only=True,
    )
    # Which frames carry the edit (text, resolved against the probed clip by `video.timing.resolve_span`; None: the
    # whole clip), and how many frames the edit fades in and out over just outside it (None: about 1/3 s).
    span: str | None = setting(
        None, label="Edited span", help="frames that carry the edit: " + SPAN_SYNTAX_HELP + " (default: the whole "
        "clip)", info="frames 12:40 or seconds 2s:5.5s; empty: the whole clip", text=True,
        api="text: `12:40` (frames, inclusive), `2s:5.5s` (seconds), open ends `:120` / `2s:`; empty = whole clip",
    )
    fade: int | None = setting(
        None, label="Fade (frames)", help="frames over which the edit fades in before the span and out after it "
        "(default: about a third of a second at the clip's fps; 0: hard cuts)", bounds=(0, 1000),
        info="empty: about ⅓ s; 0: hard cuts", api="int, 0–1000; empty = about ⅓ s",
    )
    # A Sync-LoRA file of your own (released key format, e.g. from `python -m synclora train`) instead of the
    # released one; None uses the released weights (or the tiny model's own LoRA).
    lora: str | None = setting(None, label="Own Sync-LoRA", help="your own Sync-LoRA .safetensors (e.g. from "
                               "`train`) instead of the released one", ui=False, generative_only=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f, getattr(self, f.name))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_values(cls, values: dict[str, Any], defaults: PropagationSettings | None = None) -> PropagationSettings:
        """Settings from loosely typed values (CLI strings, widget floats, API JSON): None or a missing name keeps
        the default; whole numbers may come as 3, 3.0 or "3". Anything else is an `InputError` sentence."""
        base = defaults or cls()
        known = {f.name: f for f in fields(cls)}
        out = {}
        for name, value in values.items():
            if name not in known:
                raise TypeError(f"PropagationSettings has no field {name!r}")
            if value is None or value == "":
                continue
            out[name] = _whole(known[name], value) if _is_int(known[name]) else value
        return cls(**{**base.to_dict(), **out})


# --- checks -----------------------------------------------------------------------------------------------------------
def _name(f: Field) -> str:
    return f.name.replace("_", " ")


def _is_int(f: Field) -> bool:
    return f.metadata.get("bounds") is not None


def _whole(f: Field, value: Any) -> int:
    """3, 3.0 or "3" -> 3; anything else a sentence."""
    if isinstance(value, bool):
        raise InputError(f"{_name(f)} must be a whole number, got {brief(value)}")
    if isinstance(value, int):
        return value
    try:
        number = float(value)
        if number == int(number):
            return int(number)
    except (TypeError, ValueError, OverflowError):
        pass
    raise InputError(f"{_name(f)} must be a whole number, got {brief(value)}")


def _check(f: Field, value: Any) -> None:
    meta = f.metadata
    if meta.get("choices"):
        allowed = [v for v, _ in meta["choices"]]
        if value not in allowed:
            raise InputError(f"unknown {_name(f)} {brief(value)}; choose one of: {', '.join(allowed)}")
    elif value is None and f.default is None:
        return  # an optional setting left unset (resolved later, e.g. against the clip)
    elif f.name == "span":
        from synclora.video.timing import parse_span

        parse_span(value)  # its one sentence when the form is wrong
    elif _is_int(f):
        lo, hi = meta["bounds"]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise InputError(f"{_name(f)} must be a whole number from {lo} to {hi}, got {brief(value)}")
    elif f.name == "lora" and value is not None and not isinstance(value, (str, Path)):
        raise InputError(f"lora must be the path of a .safetensors file, got {brief(value)}")


# --- faces ------------------------------------------------------------------------------------------------------------
def setting_fields(*, ui_only: bool = False) -> list[Field]:
    """The settings fields in their order (the order of the app's API parameters, after video, edited, frame)."""
    return [f for f in fields(PropagationSettings) if f.metadata.get("ui", True) or not ui_only]


def choices(name: str) -> list[str]:
    """The allowed values of a choice setting, in display order."""
    return [v for v, _ in _field(name).metadata["choices"]]


def metadata(name: str) -> dict:
    return dict(_field(name).metadata)


def _field(name: str) -> Field:
    for f in fields(PropagationSettings):
        if f.name == name:
            return f
    raise KeyError(name)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting as a CLI flag (values are checked by the dataclass, so the CLI and the app say the same)."""
    d = PropagationSettings()
    for f in fields(PropagationSettings):
        meta = f.metadata
        default = getattr(d, f.name)
        text = meta["help"] + (f" (default {default})" if default is not None else "")
        metavar = "N" if _is_int(f) else ("START:END" if f.name == "span" else None)
        if meta["choices"]:
            metavar = "{" + ",".join(v for v, _ in meta["choices"]) + "}"
        parser.add_argument(flag(f.name), dest=f.name, default=None, metavar=metavar, help=text.replace("%", "%%"))


def from_args(args: argparse.Namespace) -> PropagationSettings:
    return PropagationSettings.from_values({f.name: getattr(args, f.name) for f in fields(PropagationSettings)})


def cli_args(settings: PropagationSettings, backend: str) -> list[str]:
    """The flags that reproduce `settings` with `backend` (generative-only settings only for Sync-LoRA)."""
    out = []
    for f in fields(PropagationSettings):
        value = backend if f.name == "backend" else getattr(settings, f.name)
        record = backend_record(backend)
        if value is None or (f.metadata["generative_only"] and not (record and record.generative)):
            continue
        out += [flag(f.name), str(value)]
    return out


def api_parameters() -> str:
    """The optional parameters of the app's `/edit_video` endpoint with their allowed values (docs/API.md)."""
    parts = []
    for f in setting_fields(ui_only=True):
        meta = f.metadata
        if meta["choices"]:
            parts.append(f"`{f.name}` (" + " \\| ".join(f"`{v}`" for v, _ in meta["choices"]) + ")")
        elif meta["api"]:
            parts.append(f"`{f.name}` ({meta['api']})")
        else:
            lo, hi = meta["bounds"]
            parts.append(f"`{f.name}` (int" + ("" if f.name == "seed" else f", {lo}–{hi}") + ")")
    return ", ".join(parts)


def api_description() -> str:
    """The app's description of `/edit_video` (shown on its API page)."""
    names = ", ".join(f.name for f in setting_fields(ui_only=True))
    return ("Propagate an edited frame through a video: (source video, edited frame image, edit index"
            f"[, {names}]) -> (result video, side-by-side video, settings Markdown).")


def keyframes_api_description() -> str:
    """The app's description of `/edit_keyframes` (shown on its API page)."""
    names = ", ".join(f.name for f in setting_fields(ui_only=True))
    return ("Propagate several edited frames through a video: (source video, edited frame image or None, its index, "
            "keyframe images, keyframe lines (one per image: INDEX, or INDEX SPAN for a look of its own)"
            f"[, {names}]) -> (result video, side-by-side video, settings Markdown).")


def _edit_index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the edit index must be a whole number, got {text!r}") from None


def add_edit_index_argument(parser: argparse.ArgumentParser, help: str, *, default: int | None = 0) -> None:
    """`--edit-index K`: the index of the edited frame, one spelling for every command."""
    parser.add_argument("--edit-index", dest="edit_index", type=_edit_index, default=default, metavar="K", help=help)


@dataclass(frozen=True)
class Keyframe:
    """One edited frame: `image` is an edited copy of frame `index`; `span` (as `--span` takes it) the frames its
    look covers, or None: the same look as the other keyframes, pinned at this frame as well."""

    index: int
    image: Path
    span: str | None = None

    def __post_init__(self) -> None:
        k = self.index
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise InputError(f"a keyframe's index (frame number) must be a whole number, got {k!r}")
        object.__setattr__(self, "index", int(k))
        if not isinstance(self.image, (str, Path)):
            raise InputError(f"a keyframe's image must be the path of a PNG or JPEG, got {self.image!r}")
        if self.span is not None:
            from synclora.video.timing import parse_span

            parse_span(self.span)

    @property
    def text(self) -> str:
        """As `--keyframe` takes it (the reproduce line): INDEX IMAGE [SPAN]."""
        return f"{self.index} {self.image}" + (f" {self.span}" if self.span else "")


def parse_keyframe(values: list[str]) -> Keyframe:
    """`--keyframe INDEX IMAGE [SPAN]` → a Keyframe; a wrong form is one sentence."""
    if not 2 <= len(values) <= 3:
        raise InputError(f"--keyframe takes INDEX IMAGE [SPAN], got {' '.join(values)!r}")
    try:
        index = int(values[0])
    except ValueError:
        raise InputError(f"--keyframe {' '.join(values)}: the index must be a whole number, got {values[0]!r}") \
            from None
    return Keyframe(index, Path(values[1]), values[2] if len(values) == 3 else None)


@dataclass
class PropagationRequest:
    """One propagation: the source clip, its keyframes (edited copies of some of its frames), where to write.

    `edited` with `edit_index` is the one-keyframe spelling: it becomes `keyframes` (one code path); give one or the
    other."""

    source: Path
    edited: Path | None
    out: Path
    edit_index: int = 0
    side_by_side: Path | None = None
    settings: PropagationSettings = field(default_factory=PropagationSettings)
    keyframes: tuple[Keyframe, ...] = ()

    def __post_init__(self) -> None:
        if self.keyframes and self.edited is not None:
            raise InputError("give the edited frame either as --edited/--edit-index or as keyframes, not both")
        if not self.keyframes:
            if self.edited is None:
                raise InputError("no edited frame was given; edit a frame of the clip first")
            k = self.edit_index
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
                raise InputError(f"the edit index (frame number) must be a whole number, got {k!r}")
            self.keyframes = (Keyframe(int(k), Path(self.edited)),)
        self.keyframes = tuple(self.keyframes)
        if len(self.keyframes) == 1:  # one keyframe reads the same either way (e.g. the report tap reads these)
            self.edited, self.edit_index = self.keyframes[0].image, self.keyframes[0].index
