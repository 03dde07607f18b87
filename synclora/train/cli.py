"""`python -m synclora train --data PAIRS --manifest manifest.jsonl --out RUN …` (also under `accelerate launch`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from dataclasses import MISSING, fields
    from types import SimpleNamespace

    from synclora.train.config import TrainConfig

    # The defaults without making a config (that would import torch, and `--help` or `info` must stay light).
    d = SimpleNamespace(**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING})
    p = subparsers.add_parser(
        "train",
        help="train an in-context Sync-LoRA on curated pairs (LTX-2.3; --model tiny runs on CPU)",
        description="IC-LoRA training: source video as clean reference tokens, edited target denoised with its "
        "first frame as condition, rectified-flow loss on the target tokens. Resumes from the newest checkpoint in "
        "--out. Multi-GPU / multi-node: `accelerate launch [--multi_gpu --num_machines N …] -m synclora train …` "
        "(see docs/TRAINING.md).",
    )
    p.add_argument("--data", required=True, type=Path, help="PAIRS folder")
    p.add_argument("--manifest", type=Path, default=None, help="curate's manifest.jsonl (train on kept pairs only)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, samples, loss.jsonl, lora)")
    p.add_argument("--model", default=d.model, choices=["real", "tiny"])
    p.add_argument("--base", type=Path, default=None, help="diffusers-layout LTX-2.3 folder (default: pinned weights)")
    p.add_argument("--prompt-cache", type=Path, default=None, help="the `3d1t` embedding cache (default: the app's)")
    p.add_argument("--rank", type=int, default=d.rank, help=f"LoRA rank (default {d.rank}, as released)")
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha (default {d.alpha:g})")
    p.add_argument("--lr", type=float, default=d.learning_rate, help=f"learning rate (default {d.learning_rate:g})")
    p.add_argument("--lr-scheduler", default=d.lr_scheduler, choices=["constant", "linear", "cosine"])
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--width", type=int, default=None, help="training width (default 512; tiny 32)")
    p.add_argument("--height", type=int, default=None, help="training height (default 512; tiny 32)")
    p.add_argument("--num-frames", type=int, default=None, help="frames per clip, 8k+1 (default 81; tiny 9)")
    p.add_argument("--fps", type=float, default=d.fps)
    p.add_argument("--reference-downscale-factor", type=int, default=d.reference_downscale_factor)
    p.add_argument("--first-frame-p", type=float, default=d.first_frame_p,
                   help="probability that the target's first frame is given as condition (default 1.0)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--sample-every", type=int, default=None, help="sample video every N steps (0: never)")
    p.add_argument("--sample-steps", type=int, default=d.sample_steps)
    p.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-gradient-checkpointing", action="store_true")
    p.add_argument("--mixed-precision", default=d.mixed_precision, choices=["auto", "no", "bf16"])
    p.add_argument("--save-dtype", default=d.save_dtype, choices=["bf16", "fp32"])
    p.add_argument("--no-resume", action="store_true", help="start from step 0 even if checkpoints exist")
    p.add_argument("--cache-dir", type=Path, default=None, help="latent cache (default: OUT/latents)")
    p.add_argument("--eval", type=Path, default=None, metavar="CASES",
                   help="an evaluate cases file: judge the LoRA on it every --eval-every steps and at the end "
                   "(RUN/eval/step-N/ tables, RUN/eval/summary.png over the steps; docs/EVALUATE.md)")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="steps between evaluations (default: with every checkpoint)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from synclora.train.config import TrainConfig

    return TrainConfig(
        data=args.data, output=args.out, manifest=args.manifest, model=args.model, base_dir=args.base,
        prompt_cache=args.prompt_cache, rank=args.rank, alpha=args.alpha, learning_rate=args.lr,
        lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup_steps, steps=args.steps, grad_accum=args.grad_accum,
        width=args.width, height=args.height, num_frames=args.num_frames, fps=args.fps,
        reference_downscale_factor=args.reference_downscale_factor, first_frame_p=args.first_frame_p,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, sample_steps=args.sample_steps,
        keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        gradient_checkpointing=not args.no_gradient_checkpointing, mixed_precision=args.mixed_precision,
        save_dtype=args.save_dtype, resume=not args.no_resume, cache_dir=args.cache_dir, eval_cases=args.eval,
        eval_every=args.eval_every,
    )


def check_paths(args: argparse.Namespace) -> None:
    """The run folder (and latent cache) can be created and written, and is none of the inputs — before any model
    loads."""
    from synclora.paths import Output, check_input, check_outputs

    if args.manifest is not None:
        check_input(args.manifest, "manifest")
    if args.prompt_cache is not None:
        check_input(args.prompt_cache, "prompt cache")
    if args.eval is not None:
        check_input(args.eval, "evaluation cases file (--eval)")
    outputs = [Output(args.out, "--out (the run folder)", folder=True)]
    if args.cache_dir is not None:
        outputs.append(Output(args.cache_dir, "--cache-dir", folder=True))
    check_outputs(outputs, [(args.data, "the pairs folder (--data)"), (args.manifest, "the manifest"),
                            (args.base, "the base model folder"), (args.prompt_cache, "the prompt cache")])


def run(args: argparse.Namespace) -> int:
    check_paths(args)  # before torch and the models load
    from synclora.train.trainer import ICLoRATrainer

    trainer = ICLoRATrainer(config_from_args(args), log=lambda s: print(s, file=sys.stderr))
    trainer.prepare()
    bar = None
    if not args.quiet and trainer.accelerator.is_main_process:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, desc="train", unit="step", file=sys.stderr)

    def progress(step: int, total: int, loss: float) -> None:
        if bar is not None:
            bar.n = step
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.refresh()

    try:
        result = trainer.train(progress)
    finally:
        if bar is not None:
            bar.close()
    if trainer.accelerator.is_main_process:
        print(f"trained steps {result.start_step}→{result.step}; LoRA: {result.lora}")
        print(f"loss log: {args.out / 'loss.jsonl'}; checkpoints: {args.out / 'checkpoints'}")
    return 0
