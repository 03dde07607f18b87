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
(seed, global draw index), so a resumed run draws exactly the data, σ and noise an uninterrupted run would.
Checkpoints hold the LoRA in the released key format (loadable by the backend and by LTX-2 tools) and the optimizer
state as safetensors + JSON: nothing is ever unpickled.

This module is the loop; the pieces live beside it: `config` (TrainConfig), `sigmas` (σ and randomness),
`checkpoint` (LoRA, optimizer and state files), `sampling` (the preview denoiser). Pairs and curation manifests are
`synclora.data`'s, the model core `synclora.ltx`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synclora.data.manifest import select_pairs
from synclora.errors import InputError, ModelUnavailableError
from synclora.ltx.prompt import encode_text
from synclora.ltx.vae import decode_normalized, enable_tiling, to_uint8
from synclora.memory import free_memory
from synclora.paths import atomic_output
from synclora.train.checkpoint import (
    CHECKPOINT_PREFIX,
    LORA_FILE,
    find_checkpoints,
    restore_checkpoint,
    save_checkpoint,
    save_lora,
)
from synclora.train.config import TrainConfig, TrainResult
from synclora.train.sampling import euler_sample, sampling_sigmas
from synclora.train.sigmas import rng, sample_sigma


# --- data ------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    source: Path  # cached latent files
    target: Path
    frames: int


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
        # cpu=True without CUDA: otherwise accelerate ignores torchrun's ranks on a CPU machine and every process
        # trains alone, all writing the same run folder.
        self.accelerator = Accelerator(mixed_precision=mp, gradient_accumulation_steps=c.grad_accum,
                                       cpu=not torch.cuda.is_available())
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
        """Data, σ, noise and condition mask of one micro-step: a pure function of (seed, global draw index).

        The global index counts draws across processes (micro_step × processes + rank), so how the batch is split
        does not change what is drawn: N processes with accumulation A see exactly the pairs, σ and noise of one
        process with accumulation N·A (tests/test_train_distributed.py holds the two runs to each other)."""
        acc, c = self.accelerator, self.config
        n = len(self.samples)
        g_index = micro_step * acc.num_processes + acc.process_index
        epoch, pos = divmod(g_index, n)
        order = torch.randperm(n, generator=rng(c.seed, 1, epoch))
        sample = self.samples[int(order[pos])]
        tok = self._tokens(sample)
        g = rng(c.seed, 2, g_index)
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
            g = rng(seed, i)
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
        noise = torch.randn(x0.shape, generator=rng(seed, 3)).to(self.device)

        def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
            with self.accelerator.autocast():
                return self._velocity(self.transformer_raw, x, tok["ref"], sigma, cond, tok["coords"])

        x = euler_sample(velocity, x0, cond, noise, sampling_sigmas(steps, x0.shape[1]))
        f, h, w = tok["shape"]
        tr = self.transformer_raw
        lat = LTX2InContextPipeline._unpack_latents(x, f, h, w, tr.config.patch_size, tr.config.patch_size_t)
        return to_uint8(decode_normalized(self.vae, lat))

    # -- checkpoints --
    def _save_checkpoint(self, step: int) -> Path:
        return save_checkpoint(self.config, step, self.transformer_raw, self.optimizer, self.lr_scheduler)

    def _resume(self) -> int:
        return restore_checkpoint(self.config, self.transformer_raw, self.optimizer, self.lr_scheduler)

    def _log_line(self, record: dict) -> None:
        with open(self.config.output / "loss.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self, step: int) -> None:
        """After a resume, drop log lines past the checkpoint so the log reads as one uninterrupted run."""
        path = self.config.output / "loss.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
            with atomic_output(path) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in lines))

    def _write_sample(self, step: int) -> Path | None:
        from synclora.video import io

        frames = self.sample_video()
        path = self.config.output / "samples" / f"{CHECKPOINT_PREFIX}{step:08d}.mp4"
        return io.write_video(path, frames, self.config.fps)

    def _evaluate(self, step: int) -> dict:
        """The evaluation table of the LoRA as it is now (synclora.evaluate; the step's checkpoint LoRA when one was
        just saved), logged to loss.jsonl as `eval` and plotted over the steps in RUN/eval/summary.png."""
        from synclora.config import PropagationSettings
        from synclora.evaluate.training import evaluate_step, step_folder

        c = self.config
        eval_dir = c.output / "eval"
        lora = c.output / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}" / LORA_FILE
        exported = None
        if not lora.is_file():  # no checkpoint at this step: export the adapter for the backend to load
            lora = exported = step_folder(eval_dir, step) / LORA_FILE
            save_lora(lora, self.transformer_raw, c, step, torch.float32)
        was_training = self.transformer.training
        self.transformer.eval()
        try:
            settings = PropagationSettings(backend="synclora", model=c.model, quality="preview", seed=c.seed)
            line = evaluate_step(c.eval_cases, eval_dir, step, lora, settings)
        finally:
            if exported is not None:
                exported.unlink(missing_ok=True)
            self.transformer.train(was_training)
            free_memory()
        self._log_line({"step": step, "eval": line})
        self.log(f"step {step}: evaluation in {step_folder(eval_dir, step)} (in sync {line.get('in_sync')}, "
                 f"r {line.get('corr')})")
        return line

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
            with atomic_output(c.output / "config.json") as tmp:
                tmp.write_text(json.dumps(c.to_dict(), indent=2))
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
            if c.eval_cases is not None and (step % c.eval_every == 0 or step == c.steps):
                acc.wait_for_everyone()
                if acc.is_main_process:
                    self._evaluate(step)
                acc.wait_for_everyone()
        acc.wait_for_everyone()
        out = c.output / LORA_FILE
        if acc.is_main_process:
            save_lora(out, self.transformer_raw, c, step, torch.bfloat16 if c.save_dtype == "bf16" else torch.float32)
        acc.wait_for_everyone()
        return TrainResult(lora=out, step=step, start_step=start, losses=losses, skipped=list(self.skipped))
