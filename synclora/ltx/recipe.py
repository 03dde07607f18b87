"""The two-stage LTX-2.3 run, written once: the constants, the model assembly and one runner that the Sync-LoRA
backend (`propagate/ltx.py`), pair generation (`data/i2v.py`) and the parity harness (benchmarks/parity_ltx.py) share.

The recipe (the checkpoint's card + ltx-pipelines' `ICLoraPipeline`; docs/LTX.md says why each step and guard):
1. Stage 1 at half resolution, 8 distilled sigmas, no guidance of any kind: with Sync-LoRA and the source clip as
   reference video (strength 1, clean tokens on the target's RoPE grid) when propagating an edit; without both when
   animating a still. The conditioning image at latent index 0 (strength 1, CRF-33 re-compressed as in training).
2. x2 latent upsample (`LTX2LatentUpsamplePipeline`).
3. Stage 2 at full resolution *without* Sync-LoRA: 3 distilled sigmas from noise scale 0.909375, the image again at
   index 0, no reference. The same generator as stage 1.
4. Decode the video latents with the VAE ourselves (the model's audio is never decoded). `preview` quality stops
   after stage 1 and decodes that, upscaled.

What is done once per loaded model (`build_model`): distilled LoRA fused into the transformer and unloaded (PEFT
ignores unfused adapters on a layer once another one is merged), Sync-LoRA loaded as an adapter, the text connectors
run once on the cached `3d1t` embedding and dropped (the prompt never changes: 5.9 GiB less on the GPU). Where the
recipe follows ICLoraPipeline rather than diffusers' defaults is marked (section "parity with ICLoraPipeline";
benchmarks/parity_ltx.py proves it, docs/PARITY.md). Opt-in GPU speed levers (`synclora.ltx.speed`) hook in at the
end of `build_model`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from synclora import runtime
from synclora.ltx.device import place
from synclora.ltx.lora import load_adapter, released_to_diffusers
from synclora.ltx.prompt import FrozenConnectors, encode_text
from synclora.ltx.vae import decode, disable_tiling, resize_frames, to_uint8
from synclora.memory import free_memory
from synclora.progress import ProgressFn, no_progress

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
    if memory == "bf16" and device.type == "cuda" and not runtime.on_zerogpu():
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


# --- parity with ICLoraPipeline (benchmarks/parity_ltx.py, docs/PARITY.md) -------------------------------------------
# Each helper below mirrors one step of ltx-pipelines 1.0.0 that diffusers' pipeline would otherwise do differently:
# the reference clip resized in float and never re-quantized (`ltx.vae.resize_frames`; rounding it to uint8 as PIL
# input would moved the reference latents by ~1e-3), the conditioning image, the decode, and the bytes
# (`ltx.vae.to_uint8`); tests/test_ltx_parity_recipe.py pins them.
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
    with model.lock:
        run_two_stages(model, frames[0], num_frames=9, height=size, width=size, seed=0, reference=frames)


@torch.no_grad()
def run_two_stages(
    model: LoadedModel,
    image: np.ndarray,
    *,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    quality: str = "full",
    reference: np.ndarray | None = None,
    pipe=None,
    prompt_mask: torch.Tensor | None = None,
    progress: ProgressFn = no_progress,
    mark: Callable[[str], None] | None = None,
) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 frames made from `image` (height, width, 3) at latent index 0.

    With `reference` (the source clip at the working size) stage 1 runs Sync-LoRA with the clip as in-context
    reference (`model.pipe`, an `LTX2InContextPipeline`); without it the adapter stays off in both stages (`pipe`: an
    `LTX2ConditionPipeline` sharing the model's modules, whose connectors hold the motion prompt). The caller holds
    `model.lock`. `mark(stage)` is called after each stage ("stage1", "upsample", "stage2", "decode") for timings.
    """
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
    from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

    pipe = pipe if pipe is not None else model.pipe
    mark = mark or (lambda stage: None)
    preview = quality == "preview"
    t, h, w = num_frames, height, width
    h1, w1 = h // 2, w // 2
    generator = torch.Generator(device=model.device).manual_seed(int(seed))  # one for both stages
    extra = {}
    if reference is not None:
        ds = model.reference_downscale_factor
        extra = dict(reference_conditions=[LTX2ReferenceCondition(frames=resize_frames(reference, h1 // ds, w1 // ds),
                                                                  strength=1.0)],
                     reference_downscale_factor=ds)
    # The image at the working size for both stages, compressed there and resized by the pipeline.
    still = condition_image(image)
    # Placeholder text input (FrozenConnectors ignores it); its dtype sets the transformer's input dtype.
    length = pipe.connectors.video.shape[1]  # (the frozen mask may be dropped by the attention lever)
    embeds = pipe.connectors.video.new_zeros(1, length, 1)
    if prompt_mask is None:
        prompt_mask = torch.ones(1, length, dtype=torch.long, device=model.device)
    stage1_share = 0.85 if preview else 0.55

    def on_step(stage_from: float, stage_to: float, steps: int, label: str):
        def callback(_pipe, i, _t, _kwargs):
            progress(stage_from + (stage_to - stage_from) * (i + 1) / steps, f"{label} step {i + 1}/{steps}")
            return {}

        return callback

    common = dict(
        prompt_embeds=embeds,
        prompt_attention_mask=prompt_mask,
        num_frames=t,
        frame_rate=FRAME_RATE,
        generator=generator,
        output_type="latent",
        return_dict=False,
        **NO_GUIDANCE,
    )
    progress(0.0, "stage 1 (half resolution" + (", Sync-LoRA)" if reference is not None else ")"))
    if reference is not None:
        model.pipe.enable_lora()
    else:
        model.pipe.disable_lora()  # the transformer is shared: a still is animated by the distilled model alone
    try:
        latents, audio_latents = pipe(
            conditions=[LTX2VideoCondition(frames=still, index=0, strength=1.0, crf=model.crf)],
            height=h1,
            width=w1,
            sigmas=STAGE_1_SIGMAS,
            callback_on_step_end=on_step(0.0, stage1_share, len(STAGE_1_SIGMAS), "stage 1"),
            **extra,
            **common,
        )
        mark("stage1")
        if not preview:
            progress(stage1_share, "x2 latent upsampling")
            with on_device(model.parked_upsampler):
                latents = model.upsample_pipe(
                    latents=latents, latents_normalized=False, output_type="latent", return_dict=False
                )[0]
            mark("upsample")
            progress(0.6, "stage 2 (full resolution)")
            model.pipe.disable_lora()  # stage 2 runs the distilled model alone
            latents, _ = pipe(
                conditions=[LTX2VideoCondition(frames=still, index=0, strength=1.0, crf=model.crf)],
                latents=latents,
                audio_latents=audio_latents,
                height=h,
                width=w,
                sigmas=STAGE_2_SIGMAS,
                noise_scale=STAGE_2_NOISE_SCALE,
                callback_on_step_end=on_step(0.6, 0.9, len(STAGE_2_SIGMAS), "stage 2"),
                **common,
            )
            mark("stage2")
    finally:
        model.pipe.enable_lora()
    progress(0.9, "decoding")
    video = decode_latents(model, latents)
    if video.shape[-2:] != (h, w):  # preview: stage 1 is half size
        video = F.interpolate(video[0].float().permute(1, 0, 2, 3), size=(h, w), mode="bilinear",
                              align_corners=False).permute(1, 0, 2, 3)[None]
    frames = to_uint8(video)
    mark("decode")
    progress(1.0, "done")
    if frames.shape[0] != t:
        raise RuntimeError(f"the model returned {frames.shape[0]} frames for {t}")
    return frames
