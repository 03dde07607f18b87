"""IC-LoRA training of the LTX-2.3 transformer on (source, edited target) pairs: the Sync-LoRA recipe.

Each step sees the same token layout as inference (diffusers' `LTX2InContextPipeline`, ltx-trainer's video_to_video
strategy), so what is learnt is exactly what the Sync-LoRA backend uses:

    [ target tokens (noisy; latent frame 0 clean = the edit) | source tokens (clean, timestep 0) ]

- Reference (source) tokens get the target's RoPE grid from the same generator, h/w × `reference_downscale_factor`.
- The target's first latent frame is the edit condition: kept clean with timestep 0 (with probability
  `first_frame_p`; 1.0 by default because Sync-LoRA is always given the edited frame 0).
- Per-token timestep σ·1000 on noisy tokens, 0 on conditioning tokens; σ from a shifted logit-normal.
- Rectified-flow velocity target `noise − x0`, MSE on the non-conditioning target tokens only.
- Text: the constant `3d1t` embedding through the (frozen) connectors, computed once.
- Video only: the transformer's audio stream gets a one-token dummy and `isolate_modalities=True`, the diffusers
  equivalent of ltx-core's video-only training (no audio modality, no cross-modal attention).

Distributed training is accelerate's (DDP, multi-node through `accelerate launch`); randomness is a pure function of
(seed, process rank, step), so a resumed run draws exactly the data, σ and noise an uninterrupted run would.
Checkpoints hold the LoRA in the released key format (loadable by the backend and by LTX-2 tools) and the optimizer
state as safetensors + JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from synclora.errors import InputError, ModelUnavailableError
from synclora.ltx.lora import LORA_TARGETS
from synclora.ltx.prompt import encode_text
from synclora.ltx.vae import decode_normalized, enable_tiling, to_uint8
from synclora.memory import free_memory

REAL_SIZE = (512, 512, 81)  # width, height, frames of the released Sync-LoRA (model card)
TINY_SIZE = (32, 32, 9)
CHECKPOINT_PREFIX = "step-"
LORA_FILE = "lora.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"  # written last: a checkpoint folder without it is incomplete and ignored


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
    targets: tuple[str, ...] = LORA_TARGETS
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

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        for name in ("manifest", "base_dir", "prompt_cache", "cache_dir"):
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
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise InputError("--mixed-precision must be auto, no or bf16")
        if self.save_dtype not in ("bf16", "fp32"):
            raise InputError("--save-dtype must be bf16 or fp32")
        if not self.data.is_dir():
            raise InputError(f"pairs folder not found: {self.data}")
        if self.manifest is not None and not self.manifest.is_file():
            raise InputError(f"manifest not found: {self.manifest}")

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


# --- randomness as a pure function of (seed, rank, step) -------------------------------------------------------------
def _rng(*keys: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(seed)


def sigma_shift(seq_len: int, lo: tuple[int, float] = (1024, 0.95), hi: tuple[int, float] = (4096, 2.05)) -> float:
    """Logit-normal mean as a linear function of the token count (LTX's schedule: more tokens → noisier)."""
    n = min(seq_len, hi[0])
    return lo[1] + (hi[1] - lo[1]) * (n - lo[0]) / (hi[0] - lo[0])


def sample_sigma(g: torch.Generator, seq_len: int, uniform_p: float = 0.1, eps: float = 1e-3) -> float:
    """σ ∈ (0, 1] from a shifted logit-normal stretched to cover [0, 1] between its 0.5 % and 99.9 % points.

    With probability `uniform_p` σ is uniform instead, so the low- and high-noise ends are never starved.
    """
    mu = sigma_shift(seq_len)
    z = torch.randn(1, generator=g).item()
    u, pick = torch.rand(1, generator=g).item(), torch.rand(1, generator=g).item()
    if pick < uniform_p:
        return eps + (1 - eps) * u
    lo, hi = 1 / (1 + math.exp(-(mu - 2.5758))), 1 / (1 + math.exp(-(mu + 3.0902)))
    s = (1 / (1 + math.exp(-(z + mu))) - lo) / (hi - lo)
    s = 2 * eps - s if s < eps else s  # reflect tiny values away from 0
    return float(min(max(s, eps), 1.0))


# --- data ------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    source: Path  # cached latent files
    target: Path
    frames: int


def read_manifest(path: Path) -> dict[str, dict]:
    """{name: record} of a curate manifest (last line per name wins; broken lines are an input error)."""
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name} line {i} is not JSON ({exc})") from None
        if not isinstance(rec, dict) or "name" not in rec:
            raise InputError(f"{path.name} line {i} has no 'name'")
        out[rec["name"]] = rec
    return out


def select_pairs(data: Path, manifest: Path | None) -> tuple[list, list[tuple[str, str]]]:
    """Pairs to train on: all complete ones, or only those the manifest keeps. Returns (pairs, skipped reasons)."""
    from synclora.data.pairs import discover_pairs

    pairs = discover_pairs(data)
    skipped: list[tuple[str, str]] = []
    if manifest is not None:
        records = read_manifest(manifest)
        kept = []
        for pair in pairs:
            rec = records.get(pair.name)
            if rec is None:
                skipped.append((pair.name, "not in the manifest"))
            elif not rec.get("keep"):
                skipped.append((pair.name, "rejected by curation"))
            else:
                kept.append(pair)
        pairs = kept
    if not pairs:
        raise InputError(f"no pairs to train on in {data}" + (f" kept by {manifest.name}" if manifest else ""))
    return pairs, skipped


# --- model loading ---------------------------------------------------------------------------------------------------
def load_components(config: TrainConfig, dtype: torch.dtype) -> dict:
    """transformer, vae, connectors, and the `3d1t` prompt embedding + mask (before the connectors)."""
    from synclora.ltx.components import TRAINING_PARTS
    from synclora.ltx.components import load_components as load

    comps, embeds, mask = load(
        config.model, dtype, parts=TRAINING_PARTS, base_dir=config.base_dir, prompt_cache=config.prompt_cache,
        seed=config.seed, hint="pass --base with a diffusers LTX-2.3 folder",
    )
    return dict(transformer=comps["transformer"], vae=comps["vae"], connectors=comps["connectors"],
                prompt_embeds=embeds, prompt_mask=mask)


# --- LoRA <-> released file ------------------------------------------------------------------------------------------
def lora_state_dict(transformer: torch.nn.Module, alpha: float, rank: int) -> dict[str, torch.Tensor]:
    """The adapter's tensors with diffusers names, alpha/rank folded into lora_B (released files carry no alpha)."""
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(transformer)
    scale = alpha / rank
    return {k: v.detach().float() * (scale if ".lora_B." in k else 1.0) for k, v in sd.items()}


def save_lora(path: Path, transformer: torch.nn.Module, config: TrainConfig, step: int, dtype: torch.dtype) -> Path:
    from synclora.ltx.lora import save_released_lora

    sd = {k: v.to(dtype) for k, v in lora_state_dict(transformer, config.alpha, config.rank).items()}
    return save_released_lora(
        path, sd, reference_downscale_factor=config.reference_downscale_factor,
        rank=config.rank, alpha=config.rank, step=step, caption="3d1t", trainer="synclora",
        base_model="tiny" if config.model == "tiny" else "LTX-2.3-dev",
    )


def load_lora_into(transformer: torch.nn.Module, path: Path, config: TrainConfig) -> None:
    """Put a released-format file back into the peft adapter (alpha/rank un-folded); every key must match."""
    from peft.utils import set_peft_model_state_dict

    from synclora.ltx.lora import read_lora, released_to_diffusers

    sd = released_to_diffusers(read_lora(path).state_dict)
    scale = config.alpha / config.rank
    sd = {k: (v / scale if ".lora_B." in k and scale != 1.0 else v) for k, v in sd.items()}
    result = set_peft_model_state_dict(transformer, sd)
    unexpected = getattr(result, "unexpected_keys", []) or []
    expected = {k for k in transformer.state_dict() if "lora_" in k}
    if unexpected or len(sd) != len(expected):
        raise ModelUnavailableError(
            f"{path} does not fit this model ({len(sd)} tensors for {len(expected)} LoRA weights"
            + (f", e.g. unexpected {unexpected[0]}" if unexpected else "")
            + "); was it trained with another rank or base?"
        )


# --- optimizer state as safetensors + JSON (no pickle) ---------------------------------------------------------------
def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{key}"] = value
    groups = json.dumps(sd["param_groups"], default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    save_file(tensors, str(path), metadata={"param_groups": groups, "scalars": json.dumps(scalars)})


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state: dict[int, dict] = {}
        for key in f.keys():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = f.get_tensor(key)
    for key, value in json.loads(meta["scalars"]).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = json.loads(meta["param_groups"])
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def find_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (state.json present), oldest first."""
    root = output / "checkpoints"
    found = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith(CHECKPOINT_PREFIX) and (d / STATE_FILE).is_file():
                try:
                    found.append((int(d.name[len(CHECKPOINT_PREFIX):]), d))
                except ValueError:
                    continue
    return sorted(found)


# --- the trainer -----------------------------------------------------------------------------------------------------
class ICLoRATrainer:
    """Build once (`prepare`), then `train()`; `eval_loss()` gives a fixed-noise loss to compare checkpoints."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] = print):
        config.check()
        self.config = config
        self.log = log
        self.samples: list[Sample] = []
        self.skipped: list[tuple[str, str]] = []
        self._prepared = False

    # -- setup --
    def prepare(self) -> ICLoRATrainer:
        from accelerate import Accelerator
        from peft import LoraConfig

        c = self.config
        mp = c.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() else "no"
        self.accelerator = Accelerator(mixed_precision=mp, gradient_accumulation_steps=c.grad_accum)
        acc = self.accelerator
        self.device = acc.device
        self.weight_dtype = torch.bfloat16 if mp == "bf16" else torch.float32
        comps = load_components(c, self.weight_dtype)
        transformer, vae, connectors = comps["transformer"], comps["vae"], comps["connectors"]
        self.vae = vae.to(self.device).eval().requires_grad_(False)
        if c.model == "real":  # 81 frames at 512²: encode/decode in tiles (the tiny VAE must not: see ltx/tiny.py)
            enable_tiling(self.vae)
        self.temporal_ratio = int(vae.temporal_compression_ratio)
        self.spatial_ratio = int(vae.spatial_compression_ratio)
        self._check_size()

        # Text: the constant prompt through the frozen connectors, once; then the connectors can go.
        self.text = encode_text(connectors, comps["prompt_embeds"], comps["prompt_mask"], self.device,
                                self.weight_dtype)
        del connectors, comps
        free_memory()

        self._cache_latents()

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=c.rank, lora_alpha=c.alpha, target_modules=list(c.targets),
                                           lora_dropout=0.0, init_lora_weights=True))
        lora_params = [p for n, p in transformer.named_parameters() if "lora_" in n]
        if not lora_params:
            raise ModelUnavailableError("no LoRA target module matched the transformer; check --targets")
        for p in lora_params:  # trainable weights in fp32; the frozen base stays in weight_dtype
            p.data = p.data.float()
            p.requires_grad_(True)
        if c.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.to(self.device)
        self.transformer_raw = transformer

        from diffusers.optimization import get_scheduler

        optimizer = torch.optim.AdamW(lora_params, lr=c.learning_rate, weight_decay=c.weight_decay)
        self.lr_scheduler = get_scheduler(c.lr_scheduler, optimizer, num_warmup_steps=c.warmup_steps,
                                          num_training_steps=c.steps)
        self.transformer, self.optimizer = acc.prepare(transformer, optimizer)
        self.lora_params = lora_params
        self._prepared = True
        return self

    def _check_size(self) -> None:
        c = self.config
        step = self.spatial_ratio * c.reference_downscale_factor
        if c.width % step or c.height % step:
            raise InputError(f"--width/--height must be multiples of {step} (VAE ×{self.spatial_ratio}"
                             f" × reference downscale {c.reference_downscale_factor})")
        if (c.num_frames - 1) % self.temporal_ratio:
            raise InputError(f"--num-frames must be {self.temporal_ratio}k+1, got {c.num_frames}")

    def _cache_latents(self) -> None:
        from synclora.train.latents import ClipSize, LatentCache, usable_frames
        from synclora.video import io

        c = self.config
        pairs, self.skipped = select_pairs(c.data, c.manifest)
        cache = LatentCache(c.cache_dir, self.vae)
        ds = c.reference_downscale_factor
        todo = []
        for pair in pairs:
            try:
                src, tgt = io.probe(pair.source), io.probe(pair.target)
            except Exception as exc:  # noqa: BLE001 - unreadable file: skip the pair, say why
                self.skipped.append((pair.name, f"unreadable: {exc}"))
                continue
            if src.n_frames != tgt.n_frames:
                self.skipped.append((pair.name, f"frame counts differ ({src.n_frames} vs {tgt.n_frames})"))
                continue
            frames = usable_frames(src.n_frames, c.num_frames, self.temporal_ratio)
            if frames < self.temporal_ratio + 1:
                self.skipped.append((pair.name, f"only {src.n_frames} frames"))
                continue
            todo.append((pair, frames))
        acc = self.accelerator
        # The main process encodes (others wait), then every process finds everything cached.
        with acc.main_process_first():
            for pair, frames in todo:
                try:
                    s = cache.get(pair.source, ClipSize(c.width // ds, c.height // ds, frames))
                    t = cache.get(pair.target, ClipSize(c.width, c.height, frames))
                except torch.OutOfMemoryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a damaged video skips its pair, with the reason in the log
                    self.skipped.append((pair.name, f"unreadable: {exc}"))
                    continue
                self.samples.append(Sample(pair.name, s, t, frames))
        if not self.samples:
            raise InputError("no usable pairs: " + "; ".join(f"{n}: {why}" for n, why in self.skipped[:3]))
        if acc.is_main_process:
            self.log(f"{len(self.samples)} pairs cached in {c.cache_dir}; {len(self.skipped)} skipped")
            for name, why in self.skipped:
                self.log(f"  skipped {name}: {why}")

    # -- one batch --
    def _tokens(self, sample: Sample) -> dict:
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2InContextPipeline

        from synclora.train.latents import load_latents

        tr = self.transformer_raw
        p, pt = tr.config.patch_size, tr.config.patch_size_t
        src = load_latents(sample.source)[None].to(self.device)
        tgt = load_latents(sample.target)[None].to(self.device)
        _, _, f, h, w = tgt.shape
        _, _, fr, hr, wr = src.shape
        coords_t = tr.rope.prepare_video_coords(1, f, h, w, self.device, fps=self.config.fps)
        coords_r = tr.rope.prepare_video_coords(1, fr, hr, wr, self.device, fps=self.config.fps)
        ds = self.config.reference_downscale_factor
        if ds != 1:
            coords_r[:, 1:3] = coords_r[:, 1:3] * ds
        return dict(
            x0=LTX2InContextPipeline._pack_latents(tgt, p, pt),
            ref=LTX2InContextPipeline._pack_latents(src, p, pt),
            coords=torch.cat([coords_t, coords_r], dim=2),
            per_frame=(h // p) * (w // p),
            shape=(f, h, w),
        )

    def _velocity(self, model, noisy: torch.Tensor, ref: torch.Tensor, sigma: float, cond: torch.Tensor,
                  coords: torch.Tensor) -> torch.Tensor:
        """The transformer's velocity for the target tokens, given [target | reference] and per-token timesteps."""
        tr = self.transformer_raw
        n = noisy.shape[1]
        video_text, audio_text, text_mask = self.text
        t = torch.full((1, n), sigma * 1000.0, device=self.device)
        t = torch.where(cond, torch.zeros_like(t), t)
        timestep = torch.cat([t, torch.zeros(1, ref.shape[1], device=self.device)], dim=1)
        audio = torch.zeros(1, 1, tr.config.audio_in_channels, device=self.device, dtype=self.weight_dtype)
        zero = torch.zeros(1, device=self.device)
        out = model(
            hidden_states=torch.cat([noisy, ref], dim=1).to(self.weight_dtype),
            audio_hidden_states=audio,
            encoder_hidden_states=video_text,
            audio_encoder_hidden_states=audio_text,
            timestep=timestep,
            audio_timestep=zero,
            sigma=torch.full((1,), sigma * 1000.0, device=self.device),
            audio_sigma=zero,
            encoder_attention_mask=text_mask,
            audio_encoder_attention_mask=text_mask,
            video_coords=coords,
            audio_coords=tr.audio_rope.prepare_audio_coords(1, 1, self.device),
            audio_num_frames=1,
            isolate_modalities=True,
            use_cross_timestep=True,
            return_dict=False,
        )[0]
        return out[:, :n].float()

    def _loss(self, model, tok: dict, sigma: float, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x0 = tok["x0"]
        noisy = torch.where(cond[..., None], x0, (1 - sigma) * x0 + sigma * noise)
        pred = self._velocity(model, noisy, tok["ref"], sigma, cond, tok["coords"])
        per_token = ((pred - (noise - x0)) ** 2).mean(dim=-1)
        keep = (~cond).float()
        return (per_token * keep).sum() / keep.sum().clamp(min=1.0)

    def _draw(self, micro_step: int) -> tuple[Sample, float, torch.Tensor, torch.Tensor, dict]:
        """Data, σ, noise and condition mask of one micro-step: a pure function of (seed, rank, micro_step)."""
        acc, c = self.accelerator, self.config
        n = len(self.samples)
        g_index = micro_step * acc.num_processes + acc.process_index
        epoch, pos = divmod(g_index, n)
        order = torch.randperm(n, generator=_rng(c.seed, 1, epoch))
        sample = self.samples[int(order[pos])]
        tok = self._tokens(sample)
        g = _rng(c.seed, 2, acc.process_index, micro_step)
        sigma = sample_sigma(g, tok["x0"].shape[1], c.uniform_sigma_p)
        noise = torch.randn(tok["x0"].shape, generator=g).to(self.device)
        cond = torch.zeros(1, tok["x0"].shape[1], dtype=torch.bool, device=self.device)
        if torch.rand(1, generator=g).item() < c.first_frame_p:
            cond[:, : tok["per_frame"]] = True
        return sample, sigma, noise, cond, tok

    @torch.no_grad()
    def eval_loss(self, sigmas: tuple[float, ...] = (0.25, 0.5, 0.75), max_pairs: int = 4, seed: int = 12345) -> float:
        """Loss on the first pairs at fixed σ and fixed noise: a low-variance number to compare steps by."""
        losses = []
        for i, sample in enumerate(self.samples[:max_pairs]):
            tok = self._tokens(sample)
            g = _rng(seed, i)
            cond = torch.zeros(1, tok["x0"].shape[1], dtype=torch.bool, device=self.device)
            cond[:, : tok["per_frame"]] = True
            for sigma in sigmas:
                noise = torch.randn(tok["x0"].shape, generator=g).to(self.device)
                with self.accelerator.autocast():
                    losses.append(self._loss(self.transformer_raw, tok, sigma, noise, cond).item())
        return float(np.mean(losses))

    @torch.no_grad()
    def sample_video(self, sample: Sample | None = None, steps: int | None = None, seed: int = 0) -> np.ndarray:
        """Denoise a pair's target from noise with the current LoRA (edit frame + source as conditions) → frames.

        Euler over a shifted linear σ schedule, conditioning tokens re-pinned every step: the training layout run
        forwards, so the sample shows what this LoRA has learnt, independent of the inference backend's tricks.
        """
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2InContextPipeline

        sample = sample or self.samples[0]
        steps = steps or self.config.sample_steps
        tok = self._tokens(sample)
        x0 = tok["x0"]
        cond = torch.zeros(1, x0.shape[1], dtype=torch.bool, device=self.device)
        cond[:, : tok["per_frame"]] = True
        g = _rng(seed, 3)
        x = torch.randn(x0.shape, generator=g).to(self.device)
        x = torch.where(cond[..., None], x0, x)
        shift = math.exp(sigma_shift(x0.shape[1]))
        lin = torch.linspace(1.0, 0.0, steps + 1)
        sigmas = (shift * lin / (1 + (shift - 1) * lin)).tolist()
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            with self.accelerator.autocast():
                v = self._velocity(self.transformer_raw, x, tok["ref"], s, cond, tok["coords"])
            x = torch.where(cond[..., None], x0, x + (s_next - s) * v)
        f, h, w = tok["shape"]
        tr = self.transformer_raw
        lat = LTX2InContextPipeline._unpack_latents(x, f, h, w, tr.config.patch_size, tr.config.patch_size_t)
        return to_uint8(decode_normalized(self.vae, lat))

    # -- checkpoints --
    def _save_checkpoint(self, step: int) -> Path:
        c = self.config
        folder = c.output / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        save_lora(folder / LORA_FILE, self.transformer_raw, c, step, torch.float32)
        save_optimizer(folder / OPTIMIZER_FILE, self.optimizer)
        state = {"step": step, "lr_scheduler": self.lr_scheduler.state_dict(), "config": c.to_dict(),
                 "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = folder / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2, default=str))
        os.replace(tmp, folder / STATE_FILE)
        for _, old in find_checkpoints(c.output)[: -c.keep_checkpoints] if c.keep_checkpoints > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def _resume(self) -> int:
        found = find_checkpoints(self.config.output)
        if not found:
            return 0
        step, folder = found[-1]
        state = json.loads((folder / STATE_FILE).read_text())
        saved = state.get("config", {})
        for key in ("rank", "alpha", "model", "reference_downscale_factor"):
            if key in saved and saved[key] != self.config.to_dict()[key]:
                raise InputError(f"checkpoint {folder.name} was trained with {key}={saved[key]}, this run asks "
                                 f"{self.config.to_dict()[key]}; use another --output or the same setting")
        load_lora_into(self.transformer_raw, folder / LORA_FILE, self.config)
        load_optimizer(folder / OPTIMIZER_FILE, self.optimizer)
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        return int(state["step"])

    def _log_line(self, record: dict) -> None:
        with open(self.config.output / "loss.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self, step: int) -> None:
        """After a resume, drop log lines past the checkpoint so the log reads as one uninterrupted run."""
        path = self.config.output / "loss.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
            path.write_text("".join(ln + "\n" for ln in lines))

    def _write_sample(self, step: int) -> Path | None:
        from synclora.video import io

        frames = self.sample_video()
        path = self.config.output / "samples" / f"{CHECKPOINT_PREFIX}{step:08d}.mp4"
        return io.write_video(path, frames, self.config.fps)

    # -- the loop --
    def train(self, progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
        """Run until `config.steps` optimizer steps; resumes from the newest checkpoint when `config.resume`."""
        if not self._prepared:
            self.prepare()
        c, acc = self.config, self.accelerator
        c.output.mkdir(parents=True, exist_ok=True)
        start = self._resume() if c.resume else 0
        if acc.is_main_process and not c.resume and find_checkpoints(c.output):
            # Starting over: set the old run's checkpoints aside, so a later resume cannot pick one of them up.
            old = c.output / "checkpoints"
            old.rename(old.with_name(f"checkpoints.old-{time.strftime('%Y%m%d-%H%M%S')}"))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (c.output / "config.json").write_text(json.dumps(c.to_dict(), indent=2))
            if start:
                self.log(f"resuming from step {start}")
            self._trim_log(start)
        losses: list[float] = []
        step = start
        self.transformer.train()
        t0 = time.time()
        while step < c.steps:
            accum = 0.0
            for k in range(c.grad_accum):
                micro = step * c.grad_accum + k
                sample, sigma, noise, cond, tok = self._draw(micro)
                with acc.accumulate(self.transformer):
                    with acc.autocast():
                        loss = self._loss(self.transformer, tok, sigma, noise, cond)
                    acc.backward(loss)
                    if acc.sync_gradients and c.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.lora_params, c.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                accum += loss.detach().float().item() / c.grad_accum
            self.lr_scheduler.step()
            step += 1
            mean_loss = acc.reduce(torch.tensor(accum, device=self.device), reduction="mean").item()
            losses.append(mean_loss)
            if acc.is_main_process:
                self._log_line({"step": step, "loss": mean_loss, "lr": self.lr_scheduler.get_last_lr()[0],
                                "sigma": sigma, "pair": sample.name, "seconds": round(time.time() - t0, 3)})
            if progress:
                progress(step, c.steps, mean_loss)
            if step % c.checkpoint_every == 0 or step == c.steps:
                acc.wait_for_everyone()
                if acc.is_main_process:
                    self._save_checkpoint(step)
                    record = {"step": step, "eval_loss": self.eval_loss()}
                    if c.sample_every and (step % c.sample_every == 0 or step == c.steps):
                        record["sample"] = str(self._write_sample(step))
                    self._log_line(record)
                acc.wait_for_everyone()
        acc.wait_for_everyone()
        out = c.output / LORA_FILE
        if acc.is_main_process:
            save_lora(out, self.transformer_raw, c, step, torch.bfloat16 if c.save_dtype == "bf16" else torch.float32)
        acc.wait_for_everyone()
        return TrainResult(lora=out, step=step, start_step=start, losses=losses, skipped=list(self.skipped))
