"""Sync-LoRA on LTX-2.3 through diffusers as a backend: the released IC-LoRA run as its authors run it, frame for frame.

The two-stage run itself, the model assembly and the constants are the LTX core's (`synclora.ltx.recipe`, shared
with pair generation and the parity harness); weights, LoRA files, the prompt cache, component loading and VAE helpers
are `synclora.ltx` too. This file is the backend: its input constraints, loading the model for the settings, whether
it can run here, and turning a segment into frames.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from synclora import runtime
from synclora.config import PropagationSettings, backend_record
from synclora.errors import OOM_HINT, InputError, ModelUnavailableError, OutOfMemoryError
from synclora.ltx.recipe import (
    DEFAULT_CRF,
    DISTILLED_STRENGTH,
    FRAME_RATE,
    LoadedModel,
    build_model,
    run_two_stages,
)
from synclora.memory import free_memory
from synclora.propagate.base import LABELS, BackendSpec, ProgressFn, Propagator, Segment, no_progress

LABEL = LABELS["synclora"]

SPEC = BackendSpec(max_frames=81, frame_step=8, size_multiple=64, native_fps=FRAME_RATE, max_side=1024)
# The tiny VAE compresses only 4× in space and 2× in time (the real one 32× and 8×), so the tiny model gets short
# chunks and a small working size to keep its token count (and CPU time) small; long clips then exercise the chunked
# schedule.
TINY_SPEC = BackendSpec(max_frames=17, frame_step=8, size_multiple=64, native_fps=FRAME_RATE, max_side=64)


def spec_for(settings: PropagationSettings) -> BackendSpec:
    """The input constraints for these settings: the tiny model's, also when the real loader runs on the CPU
    (SYNCLORA_ALLOW_CPU, meant for tiny weights in a hub cache: the real sizes would take hours there)."""
    if settings.model == "tiny" or (not torch.cuda.is_available() and runtime.current().allow_cpu):
        return TINY_SPEC
    return SPEC


def _device() -> tuple[str, torch.dtype] | None:
    """Where the real model runs: ("cuda", bf16), ("cpu", float32) when SYNCLORA_ALLOW_CPU says so, else None."""
    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    if runtime.current().allow_cpu:
        return "cpu", torch.float32
    return None


# --- loading ----------------------------------------------------------------------------------------------------------
def load_model(settings: PropagationSettings) -> LoadedModel:
    """Build the model for `settings.model` + `settings.memory` (+ `settings.lora`). Not cached here: the backend
    registry keeps one loaded backend per such key for the process (`propagate.registry.get`)."""
    return _load_tiny(settings) if settings.model == "tiny" else _load_real(settings)


def _load_tiny(settings: PropagationSettings) -> LoadedModel:
    import tempfile

    from synclora.ltx.components import load_components
    from synclora.ltx.lora import read_lora
    from synclora.ltx.tiny import write_tiny_lora

    with tempfile.TemporaryDirectory() as tmp:
        sync = read_lora(settings.lora or write_tiny_lora(f"{tmp}/sync.safetensors", rank=4, seed=1))
        distilled = read_lora(write_tiny_lora(f"{tmp}/distilled.safetensors", rank=8, seed=2, scale=0.1))
    components, embeds, mask = load_components("tiny", torch.float32, seed=0)
    # float32 on the CPU: bf16 matmuls are slow there and the tiny model exists to test the code path.
    return build_model(
        components, embeds, mask, sync, distilled, memory="bf16", device="cpu", dtype=torch.float32, crf=0,
    )


def _load_real(settings: PropagationSettings) -> LoadedModel:
    from synclora.ltx.components import load_components
    from synclora.ltx.lora import read_lora
    from synclora.ltx.speed import SpeedOptions
    from synclora.ltx.weights import resolve_weights

    where = _device()
    if where is None:
        raise ModelUnavailableError("Sync-LoRA needs a CUDA GPU and none is visible")
    device, dtype = where
    paths = resolve_weights()
    components, embeds, mask = load_components(
        "real", dtype, base_dir=paths.base_dir, upsampler=paths.upsampler,
        hint="check the files with `python -m synclora doctor`",
    )
    sync = read_lora(settings.lora or paths.sync_lora, dtype=dtype)
    distilled = read_lora(paths.distilled_lora, dtype=dtype)
    if sync.reference_temporal_scale_factor != 1:
        raise ModelUnavailableError("this Sync-LoRA asks for a temporal reference scale, which diffusers lacks")
    # Knobs for people who know why (docs/CONFIG.md): distilled-LoRA strength, first-frame CRF (0 disables),
    # regional torch.compile (about 2 minutes once per process, then ~1.5x faster) and the speed levers.
    rt = runtime.current()
    return build_model(
        components, embeds, mask, sync, distilled,
        distilled_strength=DISTILLED_STRENGTH if rt.distilled_strength is None else rt.distilled_strength,
        memory=settings.memory if device == "cuda" else "bf16", device=device, dtype=dtype,
        crf=DEFAULT_CRF if rt.image_crf is None else rt.image_crf,
        compile=rt.compile,
        speed=SpeedOptions.from_runtime(rt),
    )


def availability(settings: PropagationSettings) -> tuple[bool, str]:
    """Whether the Sync-LoRA backend can run here, and if not, one sentence why."""
    import importlib.util

    # find_spec, not import: importing diffusers costs seconds, and this runs at app start-up even on a CPU.
    for package in ("diffusers", "peft"):
        if importlib.util.find_spec(package) is None:
            return False, f"the Python package {package} is not installed"
    if settings.model == "tiny":
        return True, ""
    if _device() is None:
        gib = dict(backend_record("synclora").gpu_gib)
        return False, (f"no CUDA GPU is visible (the LTX-2.3 model needs about {gib['bf16']:g} GiB of GPU memory, "
                       f"{gib['fp8']:g} GiB in fp8)")
    from synclora.ltx.prompt import expected_dim, find_prompt_cache
    from synclora.ltx.weights import resolve_weights

    try:
        paths = resolve_weights()
    except ModelUnavailableError as exc:
        return False, str(exc)
    found = find_prompt_cache(expected_dim(paths.base_dir))
    if found.path is None:
        return False, (f"{found.why_missing()}; the app makes it at start-up on a GPU, or build it once with "
                       "`python -m synclora cache-prompt`")
    return True, ""


# --- the backend ------------------------------------------------------------------------------------------------------
class SyncLoRAPropagator(Propagator):
    """The generative backend: Sync-LoRA IC-LoRA on LTX-2.3, two-stage distilled (or stage 1 only for previews)."""

    name = "synclora"
    label = LABEL
    spec = SPEC

    @classmethod
    def availability(cls, settings: PropagationSettings) -> tuple[bool, str]:
        return availability(settings)

    @classmethod
    def spec_for(cls, settings: PropagationSettings) -> BackendSpec:
        return spec_for(settings)

    def __init__(self, settings: PropagationSettings, model: LoadedModel | None = None):
        self.settings = settings
        self.spec = spec_for(settings)
        try:
            self.model = model if model is not None else load_model(settings)
        except torch.OutOfMemoryError as exc:
            free_memory()
            gib = dict(backend_record(self.name).gpu_gib)
            raise OutOfMemoryError(
                f"the GPU has too little free memory to load LTX-2.3 in {settings.memory}; "
                f"try memory mode 'fp8' (about {gib['fp8']:g} GiB) or 'offload' (about {gib['offload']:g} GiB)"
            ) from exc
        self.last_stats: dict[str, float] = {}  # per-stage seconds and peak GiB of the last call (benchmarks)

    def check_inputs(self, segment: Segment) -> None:
        t, h, w, _ = segment.frames.shape
        spec = self.spec
        if (t - 1) % spec.frame_step != 0 or (spec.max_frames and t > spec.max_frames):
            raise InputError(f"Sync-LoRA needs 8k+1 frames, at most {spec.max_frames}; got {t}")
        if h % spec.size_multiple or w % spec.size_multiple:
            raise InputError(f"Sync-LoRA needs height and width divisible by {spec.size_multiple}; got {h}x{w}")

    def propagate(self, segment: Segment, progress: ProgressFn = no_progress) -> np.ndarray:
        self.check_inputs(segment)
        model = self.model
        with model.lock:
            try:
                return self._run(segment, progress)
            except torch.OutOfMemoryError as exc:
                free_memory()
                raise OutOfMemoryError(f"the GPU ran out of memory; {OOM_HINT}") from exc

    def _run(self, segment: Segment, progress: ProgressFn) -> np.ndarray:
        model = self.model
        t, h, w, _ = segment.frames.shape
        self.last_stats = {}
        start = t0 = time.perf_counter()
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def mark(stage: str) -> None:
            nonlocal t0
            if model.device.type == "cuda":
                torch.cuda.synchronize()
                self.last_stats[f"{stage}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                self.last_stats[f"{stage}_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            now = time.perf_counter()
            self.last_stats[f"{stage}_s"] = now - t0
            t0 = now

        frames = run_two_stages(model, segment.edited, num_frames=t, height=h, width=w, seed=segment.settings.seed,
                                quality=segment.settings.quality, reference=segment.frames, progress=progress,
                                mark=mark)
        self.last_stats["total_s"] = time.perf_counter() - start
        return frames
