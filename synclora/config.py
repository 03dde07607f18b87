"""Typed settings shared by the CLI and the app, so both build the very same request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Backend = Literal["auto", "flow", "synclora"]
Quality = Literal["preview", "full"]
FitMode = Literal["pad", "crop"]
TimeMode = Literal["exact", "resample"]
ModelSize = Literal["real", "tiny"]
MemoryMode = Literal["bf16", "fp8", "offload"]


@dataclass(frozen=True)
class PropagationSettings:
    """How to propagate; every field is shown next to a result so it can be reproduced."""

    backend: Backend = "auto"
    quality: Quality = "full"
    seed: int = 0
    fit: FitMode = "pad"
    # Working resolution: the backend works at about resolution**2 pixels, at the source's aspect ratio.
    resolution: int = 512
    # "exact": source frame i is model frame i (no frame dropped or repeated; the model sees the clip at its own fps).
    # "resample": the clip is resampled to the backend's native fps and mapped back to source frames by nearest time.
    time_mode: TimeMode = "exact"
    # Frames shared by consecutive chunks of a backend with a frame limit; blended so no seam shows.
    chunk_overlap: int = 8
    model: ModelSize = "real"
    memory: MemoryMode = "bf16"
    # A Sync-LoRA file of your own (released key format, e.g. from `python -m synclora train`) instead of the
    # released one; None uses the released weights (or the tiny model's own LoRA).
    lora: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EditRequest:
    """One propagation job: source clip, an edited copy of frame `frame`, where to write the result."""

    source: Path
    edited: Path
    out: Path
    frame: int = 0
    side_by_side: Path | None = None
    settings: PropagationSettings = field(default_factory=PropagationSettings)
