"""Checkpoints of a training run: the LoRA in the released key format, the optimizer state as safetensors + JSON, and
a state file written last (a folder without it is incomplete and ignored). Nothing is ever unpickled."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from synclora.errors import InputError, ModelUnavailableError
from synclora.paths import atomic_output
from synclora.train.config import TrainConfig

CHECKPOINT_PREFIX = "step-"
LORA_FILE = "lora.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"  # written last: a checkpoint folder without it is incomplete and ignored


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
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={"param_groups": groups, "scalars": json.dumps(scalars)})


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


def save_checkpoint(config: TrainConfig, step: int, transformer, optimizer, lr_scheduler) -> Path:
    """Write checkpoint `step` (LoRA, optimizer, then the state file) and drop all but the newest `keep_checkpoints`."""
    c = config
    folder = c.output / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}"
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        save_lora(folder / LORA_FILE, transformer, c, step, torch.float32)
        save_optimizer(folder / OPTIMIZER_FILE, optimizer)
        state = {"step": step, "lr_scheduler": lr_scheduler.state_dict(), "config": c.to_dict(),
                 "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        with atomic_output(folder / STATE_FILE) as tmp:
            tmp.write_text(json.dumps(state, indent=2, default=str))
    except BaseException:  # a stopped or failed save leaves no incomplete checkpoint folder
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    for _, old in find_checkpoints(c.output)[: -c.keep_checkpoints] if c.keep_checkpoints > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def restore_checkpoint(config: TrainConfig, transformer, optimizer, lr_scheduler) -> int:
    """Load the newest complete checkpoint of `config.output` into the run; its step (0 when there is none)."""
    found = find_checkpoints(config.output)
    if not found:
        return 0
    step, folder = found[-1]
    state = json.loads((folder / STATE_FILE).read_text())
    saved = state.get("config", {})
    for key in ("rank", "alpha", "model", "reference_downscale_factor"):
        if key in saved and saved[key] != config.to_dict()[key]:
            raise InputError(f"checkpoint {folder.name} was trained with {key}={saved[key]}, this run asks "
                             f"{config.to_dict()[key]}; use another --output or the same setting")
    load_lora_into(transformer, folder / LORA_FILE, config)
    load_optimizer(folder / OPTIMIZER_FILE, optimizer)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    return int(state["step"])
