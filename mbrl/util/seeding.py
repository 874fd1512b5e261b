"""Seeding: every stochastic public function accepts a seed or a ``torch.Generator``."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["make_generator", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int | torch.Generator | None, device: torch.device | str | None = None) -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded by ``seed`` (a fresh random seed if ``None``)."""
    if isinstance(seed, torch.Generator):
        return seed
    dev = torch.device(device) if device is not None else torch.device("cpu")
    g = torch.Generator(device=dev)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g.manual_seed(int(seed))
    return g
