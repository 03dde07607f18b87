"""Subcommands of the LTX core: `fetch-weights` (download and pin), `cache-prompt` (the `3d1t` embedding) and
`hub-files` (the Space front matter that preloads what the loader reads).

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
        help="encode the constant prompt `3d1t` with Gemma once and store it (needs a GPU; fetches the text encoder)",
        description="Fetch only the text encoder and tokenizer of LTX-2.3 (unless cached), run Gemma 3 on `3d1t` and "
        "store the valid token rows of its embedding in a small safetensors file; at run time the text encoder is "
        "never loaded. The app does the same by itself at start-up on a GPU when the cache is missing.",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="where to write it (default: persistent storage /data if present, else SYNCLORA_HOME)")
    p.add_argument("--device", default="cuda")
    p.set_defaults(func=run_cache_prompt)

    p = subparsers.add_parser(
        "hub-files",
        help="print the Space front matter block that preloads exactly the files Sync-LoRA loads",
        description="Print the `preload_from_hub` block for the README front matter of a Hugging Face Space, from "
        "the one list of files the loader reads (synclora/ltx/hub.py). --verify checks every name against the Hub "
        "(needs the network).",
    )
    p.add_argument("--verify", action="store_true", help="check the listed files against the Hub (network)")
    p.set_defaults(func=run_hub_files)


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

    from synclora.errors import ModelUnavailableError
    from synclora.ltx.hub import BASE_REPO
    from synclora.ltx.prompt import encode_and_store, store_path
    from synclora.ltx.weights import read_lock, text_encoder_dir
    from synclora.paths import Output, check_outputs

    if args.out is not None:
        check_outputs([Output(args.out, "--out (the prompt cache)", (".safetensors",), make_parents=True)])
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("cache-prompt runs Gemma 3 12B and needs a CUDA GPU; pass --device cpu to run it slowly")
    folder, how = text_encoder_dir(fetch=True)  # only text_encoder/ and tokenizer/, at the pinned revision
    if folder is None:
        raise ModelUnavailableError(how)
    revision = read_lock().get("revisions", {}).get(BASE_REPO, folder.name)
    ok, message = encode_and_store(str(folder), str(args.out or store_path()), args.device, revision)
    if not ok:
        raise ModelUnavailableError(message)
    print(message)
    return 0


def run_hub_files(args: argparse.Namespace) -> int:
    from synclora.ltx import hub

    if not args.verify:
        print(hub.front_matter(), end="")
        return 0
    from huggingface_hub import HfApi

    from synclora.errors import ModelUnavailableError

    problems = 0
    for h in hub.HUB_FILES:
        try:
            listed = set(HfApi().list_repo_files(h.repo, revision=h.revision or "main"))
        except Exception as exc:  # offline, no network, a typo: one sentence either way
            raise ModelUnavailableError(f"could not list {h.repo} on the Hub ({type(exc).__name__}); --verify needs "
                                        "the network") from exc
        missing = [f for f in h.files if f not in listed]
        folders = {f.rsplit("/", 1)[0] for f in h.files if "/" in f}
        extra = sorted(f for f in listed if "/" in f and f.rsplit("/", 1)[0] in folders and f not in h.files)
        for f in missing:
            print(f"not on the Hub: {h.repo}/{f}")
        for f in extra:
            print(f"on the Hub but not preloaded: {h.repo}/{f}")
        problems += len(missing) + len(extra)
        print(f"{h.repo}: {len(h.files) - len(missing)} of {len(h.files)} listed files found")
    if problems:
        print("update synclora/ltx/hub.py, then the README front matter (python -m synclora hub-files)")
    return 1 if problems else 0
