"""What a training run depends on (`TrainConfig`, saved in every checkpoint) and what it returns (`TrainResult`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synclora.errors import InputError


def _lora_targets() -> tuple[str, ...]:
    # Imported when a config is made, not when this module is: the CLI's parser reads TrainConfig's defaults, and
    # `python -m synclora info` must not pay for importing torch.
    from synclora.ltx.lora import LORA_TARGETS

    return LORA_TARGETS

REAL_SIZE = (512, 512, 81)  # width, height, frames of the released Sync-LoRA (model card)
TINY_SIZE = (32, 32, 9)


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint so a run can be audited and resumed."""

    data: Path  # PAIRS folder
    output: Path  # run folder: checkpoints/, samples/, loss.jsonl, lora.safetensors
    manifest: Path | None = None  # curate's manifest.jsonl: only `keep: true` pairs are used
    model: str = "real"  # "real" (LTX-2.3 dev, GPU) or "tiny" (random tiny model, CPU)
    base_dir: Path | None = None  # diffusers-layout LTX-2.3 folder (default: the backend's pinned weights)
    prompt_cache: Path | None = None  # the `3d1t` Gemma embedding cache (default: the backend's)
    rank: int = 256  # released Sync-LoRA: rank = alpha = 256
    alpha: float = 256.0
    targets: tuple[str, ...] = field(default_factory=_lora_targets)
    learning_rate: float = 1e-4
    lr_scheduler: str = "linear"  # constant | linear | cosine (diffusers.optimization names)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    steps: int = 5000  # optimizer steps (the released checkpoint is step 5000)
    grad_accum: int = 1
    width: int | None = None  # None: 512 (real) / 32 (tiny)
    height: int | None = None
    num_frames: int | None = None  # None: 81 (real) / 9 (tiny); shorter pairs use their longest 8k+1 prefix
    fps: float = 25.0  # RoPE time axis: frame / fps (the release trained at 25 fps)
    reference_downscale_factor: int = 1
    first_frame_p: float = 1.0
    uniform_sigma_p: float = 0.1  # share of σ drawn uniformly (keeps the ends of the schedule trained)
    checkpoint_every: int = 250
    sample_every: int | None = None  # None: with every checkpoint; 0: never
    sample_steps: int = 30
    keep_checkpoints: int = 3
    seed: int = 0
    gradient_checkpointing: bool = True
    mixed_precision: str = "auto"  # auto (bf16 on GPU, no on CPU) | no | bf16
    save_dtype: str = "bf16"  # dtype of the exported lora.safetensors (checkpoints keep fp32 for exact resume)
    resume: bool = True
    cache_dir: Path | None = None  # latent cache (default: <output>/latents)
    eval_cases: Path | None = None  # an evaluate cases file: judge the LoRA on it every `eval_every` steps
    eval_every: int | None = None  # None: with every checkpoint

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        for name in ("manifest", "base_dir", "prompt_cache", "cache_dir", "eval_cases"):
            value = getattr(self, name)
            setattr(self, name, Path(value) if value is not None else None)
        self.targets = tuple(self.targets)
        w, h, f = TINY_SIZE if self.model == "tiny" else REAL_SIZE
        self.width = self.width or w
        self.height = self.height or h
        self.num_frames = self.num_frames or f
        if self.sample_every is None:
            self.sample_every = self.checkpoint_every
        if self.cache_dir is None:
            self.cache_dir = self.output / "latents"
        if self.eval_every is None:
            self.eval_every = self.checkpoint_every

    def check(self) -> None:
        if self.model not in ("real", "tiny"):
            raise InputError(f"--model must be real or tiny, got {self.model!r}")
        if self.rank < 1 or self.alpha <= 0:
            raise InputError("LoRA rank must be ≥ 1 and alpha > 0")
        if self.steps < 1 or self.grad_accum < 1 or self.checkpoint_every < 1:
            raise InputError("--steps, --grad-accum and --checkpoint-every must be ≥ 1")
        if not 0.0 <= self.first_frame_p <= 1.0 or not 0.0 <= self.uniform_sigma_p <= 1.0:
            raise InputError("probabilities must lie in [0, 1]")
        if self.reference_downscale_factor < 1:
            raise InputError("--reference-downscale-factor must be ≥ 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InputError(f"--lr must be a positive number, got {self.learning_rate}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise InputError(f"--fps must be a frame rate from above 0 to 1000, got {self.fps}")
        if min(self.width, self.height, self.num_frames) < 1 or self.warmup_steps < 0 or self.keep_checkpoints < 0:
            raise InputError("--width, --height and --num-frames must be ≥ 1; --warmup-steps and "
                             "--keep-checkpoints ≥ 0")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise InputError("--mixed-precision must be auto, no or bf16")
        if self.save_dtype not in ("bf16", "fp32"):
            raise InputError("--save-dtype must be bf16 or fp32")
        if not self.data.is_dir():
            raise InputError(f"pairs folder not found: {self.data}")
        if self.manifest is not None and not self.manifest.is_file():
            raise InputError(f"manifest not found: {self.manifest}")
        if self.eval_cases is not None and not self.eval_cases.is_file():
            raise InputError(f"the evaluation cases file (--eval) is not found: {self.eval_cases}")
        if self.eval_every < 1:
            raise InputError("--eval-every must be ≥ 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class TrainResult:
    lora: Path  # the exported LoRA (released format)
    step: int
    start_step: int  # 0 for a fresh run, the checkpoint's step when resumed
    losses: list[float] = field(default_factory=list)  # per optimizer step, this process, this invocation
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (pair name, why)
