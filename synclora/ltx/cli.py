"""Subcommands of the LTX core: `fetch-weights` (download and pin) and `cache-prompt` (the `3d1t` embedding).

Heavy imports stay inside `run_*` so `python -m synclora --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synclora.errors import InputError


def _revision(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected REPO=COMMIT, got {text!r}")
    repo, rev = text.split("=", 1)
    return repo, rev


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fetch-weights",
        help="download the LTX-2.3 + Sync-LoRA weights once and pin their commits",
        description="Download diffusers/LTX-2.3-Diffusers (without the text encoder), the LTX-2.3 distilled LoRA and "
        "x2 upsampler v1.1, and the Sync-LoRA file into the Hugging Face cache; record the exact commits in a lock "
        "file so later (offline) runs load the same bytes.",
    )
    p.add_argument("--revision", type=_revision, action="append", default=[], metavar="REPO=COMMIT",
                   help="force a commit of one repository (repeatable)")
    p.add_argument("--with-text-encoder", action="store_true",
                   help="also fetch Gemma 3 (needed only by cache-prompt, ~23 GiB)")
    p.add_argument("--to", type=Path, default=None,
                   help="also copy everything into this folder (use it with SYNCLORA_WEIGHTS_DIR offline)")
    p.set_defaults(func=run_fetch)

    p = subparsers.add_parser(
        "cache-prompt",
        help="encode the constant prompt `3d1t` with Gemma once and store it (needs a GPU and the text encoder)",
        description="Run LTX-2.3's Gemma 3 text encoder on `3d1t` and store the valid token rows of its embedding in "
        "a small safetensors file; at run time the text encoder is never loaded.",
    )
    p.add_argument("--out", type=Path, default=None, help="where to write it (default: the runtime lookup path)")
    p.add_argument("--device", default="cuda")
    p.set_defaults(func=run_cache_prompt)


def run_fetch(args: argparse.Namespace) -> int:
    from synclora.ltx.weights import LOCK_NAME, fetch_weights, home
    from synclora.paths import Output, check_outputs

    if args.to is not None:
        check_outputs([Output(args.to, "--to (the weights folder)", folder=True)])
    paths = fetch_weights(dict(args.revision), include_text_encoder=args.with_text_encoder, local_dir=args.to)
    for repo, rev in paths.revisions.items():
        print(f"{repo}@{rev}")
    print(f"lock file: {home() / LOCK_NAME}")
    return 0


def run_cache_prompt(args: argparse.Namespace) -> int:
    import torch

    from synclora.ltx.prompt import PROMPT, default_prompt_cache, encode_prompt_with_gemma, save_prompt_cache
    from synclora.ltx.weights import BASE_REPO, fetch_weights
    from synclora.paths import Output, check_outputs

    if args.out is not None:
        check_outputs([Output(args.out, "--out (the prompt cache)", (".safetensors",), make_parents=True)])
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("cache-prompt runs Gemma 3 12B and needs a CUDA GPU; pass --device cpu to run it slowly")
    paths = fetch_weights(include_text_encoder=True)
    embeds, mask = encode_prompt_with_gemma(paths.base_dir, device=args.device)
    out = save_prompt_cache(
        args.out or default_prompt_cache(), embeds, mask, prompt=PROMPT,
        text_encoder=f"{BASE_REPO}@{paths.revisions.get(BASE_REPO, '')}",
    )
    print(f"wrote {out} ({int(mask.sum())} tokens of {mask.shape[1]})")
    return 0
