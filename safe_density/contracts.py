"""The contracts every part of the library meets (``docs/design.md``, "Contracts").

All are structural (``typing.Protocol``): any object with the right methods plugs in, no subclassing
needed. Tensors are batched with arbitrary leading dimensions ``...``. The planner's contracts
(``Constraint``, ``RewardShaper``, ``DynamicsModel``, ``TrajectoryOptimizer``, ``Controller``) live in the
package that consumes them, :mod:`mbrl.contracts` (with the hot-path rule), and are re-exported here;
``DensityModel`` is this package's own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from mbrl.contracts import Constraint, Controller, DynamicsModel, RewardShaper, TrajectoryOptimizer

__all__ = ["Constraint", "Controller", "DensityModel", "DynamicsModel", "RewardShaper", "TrajectoryOptimizer"]


@runtime_checkable
class DensityModel(Protocol):
    """A density over ``D``-dimensional points (e.g. concatenated state-action pairs)."""

    def fit(self, x: torch.Tensor, **kwargs) -> DensityModel:
        """Fit to data ``x: Tensor[N, D]`` and return ``self``."""
        ...

    def log_prob(self, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """``x: Tensor[..., D]`` -> log-density ``Tensor[...]``.

        ``validate=False`` is the hot path (mbrl.contracts): no checks, no host sync, NaN rows give NaN."""
        ...
