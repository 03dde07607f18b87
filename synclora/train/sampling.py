"""Sample videos during training: the training layout run forwards with Euler steps, so a sample shows what the
LoRA has learnt, independent of the inference backend's tricks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from synclora.train.sigmas import sigma_shift


def sampling_sigmas(steps: int, seq_len: int) -> list[float]:
    """A linear 1 → 0 schedule shifted like the training σ for this token count (steps + 1 values)."""
    shift = math.exp(sigma_shift(seq_len))
    lin = torch.linspace(1.0, 0.0, steps + 1)
    return (shift * lin / (1 + (shift - 1) * lin)).tolist()


def euler_sample(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    x0: torch.Tensor,
    cond: torch.Tensor,
    noise: torch.Tensor,
    sigmas: list[float],
) -> torch.Tensor:
    """Denoise from `noise` along `sigmas`; conditioning tokens (`cond`) are pinned to `x0` at every step."""
    x = torch.where(cond[..., None], x0, noise)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = torch.where(cond[..., None], x0, x + (s_next - s) * velocity(x, s))
    return x
