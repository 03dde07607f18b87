"""ZeroGPU glue: how long a job will hold the GPU, and the `spaces.GPU` decorator when it exists.

ZeroGPU admits a call only if the visitor's quota covers the *requested* duration and queues shorter requests first,
so asking for a fixed 5 minutes would lock out visitors with a few seconds left, and asking too little kills long
jobs mid-way. We ask for what this clip needs: chunks × the backend's seconds per chunk (its record in
`config.BACKENDS`) at the chosen resolution and quality.
One call may ask for at most `MAX_SECONDS`: a clip that needs more is propagated in several calls, one per model
chunk (`split_calls`; the chunks are independent model calls, each starting from the previous one's frame), each
asking for what its chunk needs. Outside a Space `spaces.GPU` returns the function unchanged, so this costs nothing
locally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from synclora import config, runtime
from synclora.config import BackendRecord, PropagationSettings
from synclora.errors import InputError

F = TypeVar("F", bound=Callable)

# Frames one Sync-LoRA call covers (LTX-2.3 at 8k+1 frames) and new frames per chunk after the shared overlap.
CHUNK_FRAMES = 81
# Model warm-up per call (LoRA state, prompt embeddings to GPU), writing the result and the side-by-side.
FIXED_SECONDS = 20.0
# Per call when a clip is split into one call per chunk: the model state to the GPU (the writing is done outside).
CALL_SECONDS = 10.0
MIN_SECONDS, MAX_SECONDS = 30, 600
# One 4-step FLUX.2 [klein] 4B edit at 1024² took 0.87 s on an H200 (benchmarks/bench_instruct.py, random weights);
# the rest is slack for a slower ZeroGPU slice and the first call's kernel warm-up.
INSTRUCT_SECONDS = 20
# Making the `3d1t` prompt cache once at start-up: read Gemma 3 12B (49 GB of float32 files) into the GPU in bf16 and
# run it on one prompt. Reading dominates; 5 minutes leaves room for a slow disk.
PROMPT_SECONDS = 300


def _record(settings: PropagationSettings) -> BackendRecord:
    """The GPU backend these settings run ("auto" as resolved here; the first GPU backend where it resolves to none)."""
    from synclora.propagate import registry

    try:
        record = config.backend_record(registry.resolve(settings))
    except Exception:  # noqa: BLE001 - no backend resolvable here: size for the first GPU backend
        record = None
    return record if record is not None and record.gpu else next(b for b in config.BACKENDS if b.gpu)


def _per_chunk(settings: PropagationSettings) -> float:
    rt = runtime.current()
    override = rt.gpu_s_per_chunk_preview if settings.quality == "preview" else rt.gpu_s_per_chunk_full
    if override is not None:
        return override
    seconds = dict(_record(settings).seconds_per_chunk)
    return seconds.get(settings.quality, seconds["full"])


def estimate_seconds(n_frames: int, settings: PropagationSettings) -> float:
    """Seconds of GPU propagating `n_frames` in one call needs (no clamping)."""
    if n_frames <= 0:
        return 0.0
    size = _chunk_frames(settings)
    step = max(1, size - max(0, settings.chunk_overlap))
    chunks = max(1, math.ceil(max(0, n_frames - size) / step) + 1)
    return FIXED_SECONDS + chunks * chunk_estimate(settings)


def _chunk_frames(settings: PropagationSettings) -> int:
    """Frames one model chunk covers for these settings (81 for LTX-2.3; the tiny test model's are shorter)."""
    from synclora.propagate import registry

    try:
        return registry.spec(settings).max_frames or CHUNK_FRAMES
    except Exception:  # noqa: BLE001 - no backend resolvable here: the full model's chunks
        return CHUNK_FRAMES


def chunk_estimate(settings: PropagationSettings) -> float:
    """Seconds of GPU one model chunk needs at these settings."""
    # Token count grows with the pixel area; attention makes the cost grow a little faster than linearly.
    scale = (max(settings.resolution, 64) / 512) ** 3
    return _per_chunk(settings) * scale


def gpu_seconds(n_frames: int, settings: PropagationSettings) -> int:
    """Seconds of GPU to request for propagating `n_frames` with `settings` in one call (clamped to [30, 600])."""
    if n_frames <= 0:
        return MIN_SECONDS
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(estimate_seconds(n_frames, settings)))))


def split_calls(n_frames: int, settings: PropagationSettings) -> bool:
    """Whether this clip needs more GPU time than one call may ask for, and so runs one call per chunk."""
    return estimate_seconds(n_frames, settings) > MAX_SECONDS


def chunk_seconds(settings: PropagationSettings) -> int:
    """Seconds of GPU to request for one chunk's call when a clip is split (clamped to [30, 600])."""
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(CALL_SECONDS + chunk_estimate(settings)))))


def check_chunk_fits(settings: PropagationSettings) -> None:
    """One chunk is the smallest piece of work a call can take: refuse settings whose chunk needs more than a call."""
    need = CALL_SECONDS + chunk_estimate(settings)
    if need > MAX_SECONDS:
        raise InputError(f"at working resolution {settings.resolution} with quality '{settings.quality}' one chunk "
                         f"of {_chunk_frames(settings)} frames needs about {need:.0f} s of GPU, more than the "
                         f"{MAX_SECONDS} s one GPU call may take here; choose a lower resolution or quality 'preview'")


def gpu(duration: int | Callable[..., int]) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` when the `spaces` package is installed; otherwise a no-op decorator."""
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)
