"""Sync-LoRA on LTX-2.3 through diffusers: the released IC-LoRA run as its authors run it, frame for frame.

The recipe (the checkpoint's card + ltx-pipelines' `ICLoraPipeline`; docs/LTX.md says why each step and guard):
1. Stage 1 at half resolution: `LTX2InContextPipeline` with Sync-LoRA on top of the distilled model, the source
   clip as reference video (strength 1, clean tokens on the target's RoPE grid) and the edited frame at latent
   index 0 (strength 1, CRF-33 re-compressed as in training). 8 distilled sigmas, no guidance of any kind.
2. x2 latent upsample (`LTX2LatentUpsamplePipeline`).
3. Stage 2 at full resolution *without* Sync-LoRA: 3 distilled sigmas from noise scale 0.909375, the edited frame
   again at index 0, no reference. The same generator as stage 1.
4. Decode the video latents with the VAE ourselves (the model's audio is never decoded; the I/O layer muxes the
   source audio). `preview` quality stops after stage 1 and decodes that.

What is done once per loaded model (`build_model`; the backend registry keeps one per process): distilled LoRA fused
into the transformer and unloaded (PEFT ignores unfused adapters on a layer once another one is merged), Sync-LoRA
loaded as an adapter, the text connectors run once on the cached `3d1t` embedding and dropped (the prompt never
changes: 5.9 GiB less on the GPU). Weights, LoRA files, the prompt cache, component loading and VAE helpers are the
LTX core's (`synclora.ltx`); this file is the recipe only, including where it follows ICLoraPipeline rather than
diffusers' defaults (section "parity with ICLoraPipeline"; benchmarks/parity_ltx.py proves it, docs/PARITY.md).
Opt-in GPU speed levers (`synclora.ltx.speed`) hook in at the end of `build_model`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from synclora import runtime
from synclora.config import PropagationSettings
from synclora.errors import InputError, ModelUnavailableError, OutOfMemoryError
from synclora.ltx.components import place
from synclora.ltx.lora import load_adapter, released_to_diffusers
from synclora.ltx.prompt import FrozenConnectors, encode_text
from synclora.ltx.vae import decode, disable_tiling, resize_frames, to_uint8
from synclora.memory import free_memory
from synclora.propagate.base import LABELS, BackendSpec, ProgressFn, Propagator, Segment, no_progress

LABEL = LABELS["synclora"]

# Every guidance knob of the LTX-2 pipelines, switched off. `guidance_scale=1` alone still leaves audio CFG 7,
# STG 1 and modality guidance 3 on (4 transformer passes per step); the distilled model was trained without any.
NO_GUIDANCE = dict(
    guidance_scale=1.0,
    stg_scale=0.0,
    modality_scale=1.0,
    guidance_rescale=0.0,
    audio_guidance_scale=1.0,
    audio_stg_scale=0.0,
    audio_modality_scale=1.0,
    audio_guidance_rescale=0.0,
)
# ltx-pipelines' distilled schedules (diffusers omits the trailing 0, the scheduler appends it).
STAGE_1_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]
STAGE_2_SIGMAS = [0.909375, 0.725, 0.421875]
STAGE_2_NOISE_SCALE = 0.909375
FRAME_RATE = 25.0  # Sync-LoRA was trained at 25 fps; RoPE time is frame / fps
DEFAULT_CRF = 33  # LTX-2.3 trains on H.264-compressed first frames
DISTILLED_STRENGTH = 1.0  # the card's value was not recoverable; diffusers' docs use 1.0
SYNC_ADAPTER = "sync"
DISTILLED_ADAPTER = "distilled"

SPEC = BackendSpec(max_frames=81, frame_step=8, size_multiple=64, native_fps=FRAME_RATE, max_side=1024)
# The tiny VAE compresses only 2× (the real one 32× in space, 8× in time), so the tiny model gets short chunks and a
# small working size to keep its token count (and CPU time) small; long clips then exercise the chunked schedule.
TINY_SPEC = BackendSpec(max_frames=17, frame_step=8, size_multiple=64, native_fps=FRAME_RATE, max_side=64)


def spec_for(settings: PropagationSettings) -> BackendSpec:
    """The input constraints for these settings: the tiny model's, also when the real loader runs on the CPU
    (SYNCLORA_ALLOW_CPU, meant for tiny weights in a hub cache: the real sizes would take hours there)."""
    if settings.model == "tiny" or (not torch.cuda.is_available() and runtime.current().allow_cpu):
        return TINY_SPEC
    return SPEC

OOM_HINT = (
    "the GPU ran out of memory; try quality 'preview', memory mode 'fp8' or 'offload', a lower resolution, "
    "or a shorter clip"
)


class Parked:
    """A module whose weights live in pinned host memory and visit the GPU only while it runs.

    Why: in bf16 the transformer + Sync-LoRA + VAE + upsampler (40.1 GiB) would not leave room for activations
    under 40 GiB. The upsampler and the VAE decoder run once per edit, outside the denoising loops, so they wait
    on the host; copying 1.7 GiB from pinned memory takes tens of milliseconds. The host copy is never modified,
    so parking again only swaps pointers.
    """

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device = device
        self.tensors = list(module.parameters()) + list(module.buffers())
        self.host = [t.data.to("cpu").pin_memory() for t in self.tensors]
        self.park()

    def park(self) -> None:
        for t, h in zip(self.tensors, self.host):
            t.data = h

    @contextlib.contextmanager
    def on_device(self):
        for t, h in zip(self.tensors, self.host):
            t.data = h.to(self.device, non_blocking=True)
        try:
            yield
        finally:
            self.park()


def on_device(parked: Parked | None):
    return parked.on_device() if parked is not None else contextlib.nullcontext()


@dataclass
class LoadedModel:
    """One loaded model: the two pipelines, and what the call needs besides them."""

    pipe: object  # LTX2InContextPipeline
    upsample_pipe: object  # LTX2LatentUpsamplePipeline
    reference_downscale_factor: int
    device: torch.device
    dtype: torch.dtype
    memory: str
    crf: int = DEFAULT_CRF
    parked_upsampler: Parked | None = None
    parked_decoder: Parked | None = None
    tiled_decode: bool = False  # decode in VAE tiles (fp8 / offload: memory first), see `decode_latents`
    aot: object | None = None  # synclora.ltx.speed.AotBlocks when AoT-compiled blocks are in use
    speed_notes: list = field(default_factory=list)  # what the speed levers did (or why not)
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_model(
    components: dict,
    prompt_embeds: torch.Tensor,
    prompt_mask: torch.Tensor,
    sync_lora,
    distilled_lora=None,
    distilled_strength: float = 1.0,
    memory: str = "bf16",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    crf: int = DEFAULT_CRF,
    compile: bool = False,
    speed=None,
) -> LoadedModel:
    """Assemble the pipelines from loaded modules (real or tiny) and apply the LoRA recipe and memory mode.

    `sync_lora`/`distilled_lora` are `weights.LoraFile`s (released key format). Modules may still be on the CPU;
    they are moved here, transformer last, so the connectors' one-off run never shares the GPU with it.
    `speed` (`synclora.ltx.speed.SpeedOptions`) turns on GPU speed levers (attention backend, fp8 matmuls, AoT).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2InContextPipeline
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplePipeline

    device = torch.device(device)
    components = dict(components)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(
        components.pop("scheduler").config, use_dynamic_shifting=False, shift_terminal=None
    )
    upsampler = components.pop("latent_upsampler")
    connectors = components.pop("connectors")
    transformer = components.pop("transformer")
    vae = components.pop("vae")

    # 1. The prompt is constant: run the connectors once, keep their output (a few MB), drop their 5.9 GiB.
    frozen = FrozenConnectors(*encode_text(connectors, prompt_embeds, prompt_mask, device, dtype))
    del connectors
    free_memory()

    for module in (vae, upsampler) + ((transformer,) if memory != "offload" else ()):
        place(module, device, dtype)

    pipe = LTX2InContextPipeline(
        scheduler=scheduler,
        vae=vae,
        audio_vae=components.pop("audio_vae"),  # stays on the CPU: only its config and latent statistics are read
        text_encoder=None,
        tokenizer=None,
        connectors=frozen,
        transformer=transformer,
        vocoder=components.pop("vocoder", None),  # never called: audio is not decoded
    )
    pipe.set_progress_bar_config(disable=True)
    upsample_pipe = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=upsampler)
    upsample_pipe.set_progress_bar_config(disable=True)

    # 2. Distilled LoRA: fuse, then unload so the fused weights stay and PEFT holds no merged adapter.
    if distilled_lora is not None:
        load_adapter(pipe, released_to_diffusers(distilled_lora.state_dict), DISTILLED_ADAPTER)
        pipe.fuse_lora(components=["transformer"], lora_scale=distilled_strength, adapter_names=[DISTILLED_ADAPTER])
        pipe.unload_lora_weights()
        free_memory()

    # 3. Sync-LoRA as an adapter (stage 1 on, stage 2 off), then the memory mode. fp8 stores the base weights in
    # float8 and upcasts each layer for its matmul; the LoRA matrices (and norms) stay in the compute dtype, else
    # PEFT would run them in float8.
    load_adapter(pipe, released_to_diffusers(sync_lora.state_dict), SYNC_ADAPTER)
    if memory == "fp8" and not (speed is not None and speed.fp8_matmul):  # else real fp8 matmuls, see speed.py
        transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype, skip_modules_pattern=("norm", "lora_")
        )
    if memory == "offload":
        transformer.enable_group_offload(
            onload_device=device,
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.type == "cuda",
        )
    # VAE tiling off for every encode (as ICLoraPipeline); the final decode tiles only in the memory-saving modes or
    # after running out of memory (`decode_latents`).
    disable_tiling(vae)
    parked_upsampler = parked_decoder = None
    if memory == "bf16" and device.type == "cuda" and not on_zerogpu():
        parked_upsampler, parked_decoder = Parked(upsampler, device), Parked(vae.decoder, device)
        free_memory()
    if compile:  # regional compilation of the 48 identical blocks; dynamic shapes cover both stages
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=True)
    model = LoadedModel(
        pipe=pipe,
        upsample_pipe=upsample_pipe,
        reference_downscale_factor=sync_lora.reference_downscale_factor,
        device=device,
        dtype=dtype,
        memory=memory,
        crf=crf,
        parked_upsampler=parked_upsampler,
        parked_decoder=parked_decoder,
        tiled_decode=memory in ("fp8", "offload"),
    )
    if speed is not None:  # the speed levers live in synclora/ltx/speed.py; this is their only hook
        from synclora.ltx.speed import apply as apply_speed

        model.speed_notes = apply_speed(model, speed, run=_capture_run)
    return model


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space. There the GPU is lent per `spaces.GPU` call: at load time CUDA is emulated (tensors
    stay on the host, pinned memory cannot be allocated), and each call gets its own slice, so nothing is parked."""
    config = sys.modules.get("spaces.config")  # only ever imported by the app, before any model is loaded
    return bool(getattr(getattr(config, "Config", None), "zero_gpu", False))


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
        return False, "no CUDA GPU is visible (the LTX-2.3 model needs about 40 GiB of GPU memory, 24 GiB in fp8)"
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


# --- parity with ICLoraPipeline (benchmarks/parity_ltx.py, docs/PARITY.md) -------------------------------------------
# Each helper below mirrors one step of ltx-pipelines 1.0.0 that diffusers' pipeline would otherwise do differently
# (the fourth, the bytes, is the LTX core's `to_uint8`); tests/test_ltx_parity_recipe.py pins them.
def _reference_pixels(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """The reference clip as ltx-pipelines feeds it: resized in float and never re-quantized to uint8.

    (T, 3, H, W) float in [0, 1] at exactly the pipeline's size, so diffusers' video processor only maps it to
    [-1, 1]. Rounding the resized frames back to uint8 (as PIL input would) moved the reference latents by ~1e-3.
    """
    return resize_frames(frames, height, width)


def condition_image(edited: np.ndarray) -> object:
    """The edited frame at the working size for *both* stages: diffusers then H.264-compresses it at that size and
    resizes afterwards, as ltx-pipelines does with the image file. Resizing first (to stage 1's half size) and
    compressing the small image changed stage 1's first-frame latents by up to 0.3."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(edited))


def decode_latents(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """Decode whole (as ICLoraPipeline does) unless the memory mode asks for tiles; a whole decode that does not fit
    in GPU memory is retried in tiles (`ltx.vae.decode`)."""
    vae = model.pipe.vae
    with on_device(model.parked_decoder):
        return decode(vae, latents.to(device=model.device, dtype=vae.dtype), tiled=model.tiled_decode)


def _capture_run(model: LoadedModel) -> None:
    """One two-stage run on a short synthetic clip: what the AoT lever records the blocks' inputs from (token counts
    are dynamic there, so the clip's size does not matter)."""
    size = 64 if model.device.type == "cpu" else 256
    frames = np.random.default_rng(0).integers(0, 256, (9, size, size, 3), dtype=np.uint8)
    settings = PropagationSettings(backend="synclora", model="real", quality="full", seed=0)
    segment = Segment(frames=frames, edited=frames[0], fps=FRAME_RATE, settings=settings)
    SyncLoRAPropagator(settings, model=model).propagate(segment)


# --- the backend ------------------------------------------------------------------------------------------------------
class SyncLoRAPropagator(Propagator):
    """The generative backend: Sync-LoRA IC-LoRA on LTX-2.3, two-stage distilled (or stage 1 only for previews)."""

    name = "synclora"
    label = LABEL
    spec = SPEC

    def __init__(self, settings: PropagationSettings, model: LoadedModel | None = None):
        self.settings = settings
        self.spec = spec_for(settings)
        try:
            self.model = model if model is not None else load_model(settings)
        except torch.OutOfMemoryError as exc:
            free_memory()
            raise OutOfMemoryError(
                f"the GPU has too little free memory to load LTX-2.3 in {settings.memory}; "
                "try memory mode 'fp8' (about 24 GiB) or 'offload' (about 6 GiB)"
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
                raise OutOfMemoryError(OOM_HINT) from exc

    def _mark(self, name: str, start: float) -> float:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()
            self.last_stats[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            self.last_stats[f"{name}_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        now = time.perf_counter()
        self.last_stats[f"{name}_s"] = now - start
        return now

    @torch.no_grad()
    def _run(self, segment: Segment, progress: ProgressFn) -> np.ndarray:
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

        model, pipe = self.model, self.model.pipe
        settings = segment.settings
        preview = settings.quality == "preview"
        t, h, w, _ = segment.frames.shape
        h1, w1 = h // 2, w // 2
        ds = model.reference_downscale_factor
        self.last_stats = {}
        generator = torch.Generator(device=model.device).manual_seed(int(settings.seed))  # one for both stages
        start = t0 = time.perf_counter()

        # Inputs prepared the ltx-pipelines way (section "parity with ICLoraPipeline" above).
        reference = LTX2ReferenceCondition(frames=_reference_pixels(segment.frames, h1 // ds, w1 // ds), strength=1.0)
        edited = condition_image(segment.edited)
        first = LTX2VideoCondition(frames=edited, index=0, strength=1.0, crf=model.crf)
        # Placeholder text input (FrozenConnectors ignores it); its dtype sets the transformer's input dtype.
        length = pipe.connectors.video.shape[1]  # (the frozen mask may be dropped by the attention lever)
        embeds = pipe.connectors.video.new_zeros(1, length, 1)
        mask = torch.ones(1, length, dtype=torch.long, device=model.device)
        stage1_share = 0.85 if preview else 0.55

        def on_step(stage_from: float, stage_to: float, steps: int, label: str):
            def callback(_pipe, i, _t, _kwargs):
                progress(stage_from + (stage_to - stage_from) * (i + 1) / steps, f"{label} step {i + 1}/{steps}")
                return {}

            return callback

        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        common = dict(
            prompt_embeds=embeds,
            prompt_attention_mask=mask,
            num_frames=t,
            frame_rate=FRAME_RATE,
            generator=generator,
            output_type="latent",
            return_dict=False,
            **NO_GUIDANCE,
        )
        progress(0.0, "stage 1 (half resolution, Sync-LoRA)")
        pipe.enable_lora()
        latents, audio_latents = pipe(
            conditions=[first],
            reference_conditions=[reference],
            reference_downscale_factor=ds,
            height=h1,
            width=w1,
            sigmas=STAGE_1_SIGMAS,
            callback_on_step_end=on_step(0.0, stage1_share, len(STAGE_1_SIGMAS), "stage 1"),
            **common,
        )
        t0 = self._mark("stage1", t0)

        if not preview:
            progress(stage1_share, "x2 latent upsampling")
            with on_device(model.parked_upsampler):
                latents = model.upsample_pipe(
                    latents=latents, latents_normalized=False, output_type="latent", return_dict=False
                )[0]
            t0 = self._mark("upsample", t0)
            progress(0.6, "stage 2 (full resolution)")
            pipe.disable_lora()  # stage 2 runs the distilled model alone
            try:
                first_full = LTX2VideoCondition(frames=edited, index=0, strength=1.0, crf=model.crf)
                latents, _ = pipe(
                    conditions=[first_full],
                    latents=latents,
                    audio_latents=audio_latents,
                    height=h,
                    width=w,
                    sigmas=STAGE_2_SIGMAS,
                    noise_scale=STAGE_2_NOISE_SCALE,
                    callback_on_step_end=on_step(0.6, 0.9, len(STAGE_2_SIGMAS), "stage 2"),
                    **common,
                )
            finally:
                pipe.enable_lora()
            t0 = self._mark("stage2", t0)

        progress(0.9, "decoding")
        video = decode_latents(model, latents)
        frames = to_uint8(video)
        if frames.shape[1:3] != (h, w):  # preview: stage 1 is half size
            up = F.interpolate(video[0].float().permute(1, 0, 2, 3), size=(h, w), mode="bilinear", align_corners=False)
            frames = to_uint8(up.permute(1, 0, 2, 3)[None])
        t0 = self._mark("decode", t0)
        self.last_stats["total_s"] = time.perf_counter() - start
        progress(1.0, "done")
        if frames.shape[0] != t:
            raise RuntimeError(f"model returned {frames.shape[0]} frames for {t}")
        return frames
