"""Putting a module where it runs: the one helper the recipe, the prompt encoder and the loaders share (kept apart
from them so none of them imports another for it)."""

from __future__ import annotations

import torch


def place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move to `device` and cast to `dtype`, each only if needed (a 19 B-parameter no-op cast still costs)."""
    param = next(module.parameters())
    if param.device != torch.device(device):
        module.to(device)
    if param.dtype != dtype:
        module.to(dtype)
