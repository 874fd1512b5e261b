"""Per-feature standardisation with statistics stored as module buffers.

PETS (docs/design.md, "PETS") standardises the model inputs (obs, act) and the regression targets (state deltas)
with the mean and standard deviation of the training data, and sets any standard deviation below ``1e-12``
to 1 so that constant features do not blow up. Keeping the statistics as buffers makes ``.to(device)``,
``state_dict`` and save/load carry them with the weights.

The statistics stay in at least float32 when the owning module is cast to a half-precision dtype
(``.to(torch.bfloat16)``): the planner's fast bf16 copy then still standardises raw observations (which
can have a large mean relative to their spread) without bf16 rounding of the shift.
"""

from __future__ import annotations

import torch
from torch import nn

from mbrl.common.validation import as_tensor

__all__ = ["Normalizer"]

_MIN_STD = 1e-12
_HALF = (torch.float16, torch.bfloat16)


class Normalizer(nn.Module):
    """Standardise features: ``normalize(x) = (x - mean) / std`` over the last dimension.

    Args:
        dim: number of features ``D``.
        dtype: dtype of the statistics (half dtypes are stored as float32, see module docstring).
        device: device of the statistics.

    Buffers ``mean`` and ``std`` have shape ``[D]`` (identity transform until :meth:`fit` is called).
    """

    def __init__(
        self, dim: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ):
        super().__init__()
        if int(dim) != dim or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        sdtype = torch.float32 if dtype in _HALF else dtype
        self.register_buffer("mean", torch.zeros(self.dim, dtype=sdtype, device=device))
        self.register_buffer("std", torch.ones(self.dim, dtype=sdtype, device=device))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Normalizer:
        """Set ``mean``/``std`` from data ``x`` of shape ``[N, D]`` (population std; std < 1e-12 -> 1)."""
        x = as_tensor("x", x, min_ndim=2, last_dim=self.dim, nonempty=True)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        x64 = x.to(device=self.mean.device, dtype=torch.float64)
        mean = x64.mean(0)
        std = x64.std(0, unbiased=False)
        std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` for ``x[..., D]``; computed in the promoted dtype of ``x`` and the stats."""
        return (x - self.mean) / self.std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: ``z * std + mean`` for ``z[..., D]``."""
        return z * self.std + self.mean

    def _apply(self, fn, recurse=True):
        # Keep statistics in float32 when cast to a half dtype (see module docstring); device moves and
        # casts to float32/float64 pass through unchanged.
        saved = {k: getattr(self, k) for k in ("mean", "std")}
        out = super()._apply(fn, recurse)
        for k, old in saved.items():
            new = getattr(self, k)
            if new.dtype in _HALF:
                self._buffers[k] = old.to(device=new.device, dtype=torch.float32)
        return out

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
