"""Noise levels for training, and randomness as a pure function of (seed, which draw).

σ comes from a logit-normal whose mean grows with the token count (LTX's schedule: more tokens → noisier), stretched
to cover (0, 1], with a share drawn uniformly so the ends of the schedule are never starved. Every random draw takes
a generator made from its keys (`rng`), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def rng(*keys: int) -> torch.Generator:
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
