"""Seeding: every stochastic public function accepts a seed or a ``torch.Generator``."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["check_seed", "make_generator", "seed_everything"]

#: Seeds ``torch.Generator.manual_seed`` accepts (a signed or unsigned 64-bit integer).
_SEED_LOW, _SEED_HIGH = -(2**63), 2**64 - 1


def check_seed(name: str, seed) -> int:
    """Validate a seed: an integer in ``[-2**63, 2**64)`` (what torch generators accept).

    Raises ``ValueError`` naming ``name`` otherwise (booleans, floats with a fraction, strings, ...).
    """
    from mbrl.common.validation import check_int

    return check_int(name, seed, low=_SEED_LOW, high=_SEED_HIGH)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeding the legacy global generator is the point
    torch.manual_seed(seed)


def make_generator(
    seed: int | torch.Generator | None, device: torch.device | str | None = None
) -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded by ``seed`` (a fresh random seed if ``None``)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is not None:
        seed = check_seed("seed", seed)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    g = torch.Generator(device=dev)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    g.manual_seed(int(seed))
    return g
