"""Edit a frame from a text instruction with FLUX.2 [klein] 4B (diffusers `Flux2KleinPipeline`).

Why this model: it is Apache-2.0 (open for commercial use), step-distilled (4 steps) and small enough (3.9B transformer
+ 4.0B Qwen3 text encoder: 14.9 GiB of bf16 weights, 17.3 GiB peak at 1024²) to stay resident next to the video model
on one GPU. Measured with `benchmarks/bench_instruct.py` (its exact architecture, random weights) on an
H200: 0.25 s per edit at 512², 0.49 s at 768², 0.87 s at 1024². It is loaded once at start-up and reused; without
CUDA or without its weights in the local cache the editor says why instead of failing.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from synclora import runtime
from synclora.errors import InputError, ModelUnavailableError, OutOfMemoryError

DEFAULT_MODEL = "black-forest-labs/FLUX.2-klein-4B"
# The model edits at about this many pixels (its own cap is 1024²); the result is resized back to the frame.
DEFAULT_AREA = 1024 * 1024
# Latent patches are 16 px (VAE factor 8 × patch 2): the working size is a multiple of this, so nothing is cropped.
SIZE_MULTIPLE = 16
MAX_INSTRUCTION_CHARS = 500


@dataclass(frozen=True)
class InstructSettings:
    """What an instruction edit depends on besides the frame and the text (shown next to the result)."""

    seed: int = 0
    steps: int = 4  # the distilled model's schedule
    guidance: float = 1.0  # ignored by the step-distilled model; kept so the base model can be used too
    area: int = DEFAULT_AREA


def model_id() -> str:
    """The repo id or local folder of the instruction model (env SYNCLORA_INSTRUCT_MODEL overrides)."""
    return runtime.current().instruct_model or DEFAULT_MODEL


def working_size(width: int, height: int, area: int = DEFAULT_AREA) -> tuple[int, int]:
    """(w, h), multiples of 16 near `area` pixels at the frame's aspect; small frames are not upscaled past 512²."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}×{height}")
    target = min(area, max(width * height, 512 * 512))
    scale = (target / (width * height)) ** 0.5
    w = max(SIZE_MULTIPLE, int(round(width * scale / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
    h = max(SIZE_MULTIPLE, int(round(height * scale / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
    return w, h


def check_instruction(text: str | None) -> str:
    """The instruction, stripped, or a user error saying what is wrong with it."""
    text = (text or "").strip()
    if not text:
        raise InputError("type an instruction first, for example “give her round sunglasses”")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise InputError(f"the instruction is {len(text)} characters long; keep it under {MAX_INSTRUCTION_CHARS}")
    return text


def _weights_present(repo: str) -> tuple[bool, str]:
    if os.path.isdir(repo):
        ok = os.path.isfile(os.path.join(repo, "model_index.json"))
        return ok, "" if ok else f"{repo} has no model_index.json"
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, local_files_only=True, allow_patterns=["model_index.json"])
    except Exception:  # noqa: BLE001 - any failure means "not in the local cache"
        if runtime.current().allow_download:
            return True, ""
        return False, (
            f"the weights of {repo} are not in the local Hugging Face cache "
            f"(download them with `hf download {repo}` or set SYNCLORA_ALLOW_DOWNLOAD=1)"
        )
    return True, ""


def availability() -> tuple[bool, str]:
    """(can run here, why not) — cheap: no model is loaded and nothing is downloaded."""
    if runtime.current().disable_instruct:
        return False, "instruction editing is switched off on this server (SYNCLORA_DISABLE_INSTRUCT=1)"
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return False, "this server has no CUDA GPU (FLUX.2 [klein] needs about 18 GB of GPU memory)"
    try:
        from diffusers import Flux2KleinPipeline  # noqa: F401
    except ImportError:
        return False, "the installed diffusers has no Flux2KleinPipeline (diffusers ≥ 0.37 is needed)"
    return _weights_present(model_id())


class InstructEditor:
    """One resident FLUX.2 [klein] pipeline; `edit` is safe to call from several threads (calls are serialised)."""

    def __init__(self, pipe=None, device: str = "cuda") -> None:
        self._pipe = pipe  # a ready pipeline (e.g. the tiny one, on the CPU) skips `load`
        self.device = device
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def load(self) -> None:
        """Load the pipeline onto the GPU (once). Raises ModelUnavailableError with the reason when it can't."""
        with self._lock:
            if self._pipe is not None:
                return
            ok, why = availability()
            if not ok:
                raise ModelUnavailableError(f"instruction editing is not available here because {why}")
            import torch
            from diffusers import Flux2KleinPipeline

            t0 = time.perf_counter()
            pipe = Flux2KleinPipeline.from_pretrained(
                model_id(),
                torch_dtype=torch.bfloat16,
                local_files_only=not runtime.current().allow_download,
            )
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe.to("cuda")
            self.load_seconds = time.perf_counter() - t0

    def edit(self, frame: np.ndarray, instruction: str, settings: InstructSettings = InstructSettings()) -> np.ndarray:
        """Return `frame` edited as the instruction says, as (H, W, 3) uint8 at the frame's exact size."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        text = check_instruction(instruction)
        self.load()
        import torch

        h, w = frame.shape[:2]
        ww, wh = working_size(w, h, settings.area)
        image = Image.fromarray(frame).resize((ww, wh), Image.Resampling.LANCZOS)
        with self._lock:
            generator = torch.Generator(self.device).manual_seed(int(settings.seed))
            try:
                out = self._pipe(
                    image=image,
                    prompt=text,
                    height=wh,
                    width=ww,
                    num_inference_steps=int(settings.steps),
                    guidance_scale=float(settings.guidance),
                    generator=generator,
                ).images[0]
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                raise OutOfMemoryError(
                    "the GPU ran out of memory while editing the frame; try again when the video job has finished"
                ) from None
        return np.asarray(out.convert("RGB").resize((w, h), Image.Resampling.LANCZOS))


_editor = InstructEditor()


def shared_editor() -> InstructEditor:
    """The process-wide editor (loaded at app start-up when the model can run)."""
    return _editor
