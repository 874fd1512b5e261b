"""Gaussian kernel density estimate (docs/design.md, "Contracts": a ``DensityModel`` implementation).

On standardised data ``z_i`` (``safe_density.density.base``) with an isotropic bandwidth ``h``:

    log p(z) = logsumexp_i( -||z - z_i||^2 / (2 h^2) ) - log N - (D/2) log(2 pi h^2)

Bandwidth rules (for standardised data, unit variance per feature):
Scott ``h = N^(-1/(D+4))``, Silverman ``h = (N (D+2) / 4)^(-1/(D+4))``; or a float.
The sum runs batched over query chunks (``chunk_size`` queries x all ``N`` kernels at a time), so memory
stays ``O(chunk_size * N)``; ``max_points`` sub-samples huge data sets (seeded).
"""

from __future__ import annotations

import math

import torch

from mbrl.common.seeding import make_generator
from mbrl.common.validation import INT_MAX, check_int, check_threshold
from safe_density.density.base import DensityBase

__all__ = ["GaussianKDE", "kde_bandwidth"]


def kde_bandwidth(rule: str | float, n: int, d: int) -> float:
    """Bandwidth ``h`` (in standardised units) for ``n`` points in ``d`` dimensions."""
    if isinstance(rule, str):
        if rule == "scott":
            return float(n ** (-1.0 / (d + 4)))
        if rule == "silverman":
            return float((n * (d + 2) / 4.0) ** (-1.0 / (d + 4)))
        raise ValueError(f"bandwidth must be 'scott', 'silverman' or a positive float, got {rule!r}")
    return check_threshold("bandwidth", rule, low=0.0, high=math.inf, inclusive=False)


class GaussianKDE(DensityBase):
    """Gaussian KDE with Scott/Silverman/fixed bandwidth on standardised data.

    Args:
        bandwidth: ``"scott"`` (default), ``"silverman"`` or a positive float (standardised units).
        chunk_size: queries evaluated at once (memory ``chunk_size x N``).
        max_points: keep at most this many (random, seeded) training points; ``None`` keeps all.
        device, dtype, seed: placement and reproducibility.
    """

    def __init__(
        self,
        bandwidth: str | float = "scott",
        *,
        chunk_size: int = 4096,
        max_points: int | None = 20000,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = 0,
    ) -> None:
        super().__init__(device=device, dtype=dtype, seed=seed)
        if not isinstance(bandwidth, str):
            kde_bandwidth(bandwidth, 1, 1)
        elif bandwidth not in ("scott", "silverman"):
            raise ValueError(f"bandwidth must be 'scott', 'silverman' or a positive float, got {bandwidth!r}")
        self.bandwidth = bandwidth
        self.chunk_size = check_int("chunk_size", chunk_size, low=1, high=INT_MAX)
        self.max_points = None if max_points is None else check_int("max_points", max_points, low=1, high=2**62)
        self.points: torch.Tensor | None = None
        self.h: float | None = None

    def _fit_standardised(self, z: torch.Tensor, progress: bool = False, **kwargs) -> None:
        del progress  # a few seconds at most: no bar
        if kwargs:
            raise TypeError(f"unexpected fit arguments {sorted(kwargs)}")
        if self.max_points is not None and z.shape[0] > self.max_points:
            g = make_generator(self.seed, "cpu")
            idx = torch.randperm(z.shape[0], generator=g)[: self.max_points].to(z.device)
            z = z[idx]
        self.points = z
        self.h = kde_bandwidth(self.bandwidth, z.shape[0], z.shape[1])

    def _log_prob_standardised(self, z: torch.Tensor) -> torch.Tensor:
        n, d = self.points.shape
        h = self.h
        const = -math.log(n) - 0.5 * d * math.log(2 * math.pi * h * h)
        out = []
        for start in range(0, z.shape[0], self.chunk_size):
            q = z[start : start + self.chunk_size]
            d2 = torch.cdist(q, self.points).square()  # [chunk, N]
            out.append(torch.logsumexp(-d2 / (2 * h * h), dim=1) + const)
        if not out:
            return z.new_zeros(0)
        return torch.cat(out)

    # ------------------------------------------------------------------ persistence
    # persistence (DensityBase.save / load)
    @classmethod
    def _config_keys(cls) -> tuple[str, ...]:
        return ("bandwidth", "chunk_size", "max_points")

    def _config(self) -> dict:
        return super()._config() | {"h": self.h}

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"points": self.points}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.points = tensors["points"].to(self.device, self.dtype)
        self.h = float(meta["h"])
