"""The contracts every part of the library meets (``../shared/design.md``, "Contracts").

All are structural (``typing.Protocol``): any object with the right methods plugs in, no subclassing
needed. Tensors are batched with arbitrary leading dimensions ``...``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Constraint", "DensityModel", "RewardShaper"]


@runtime_checkable
class DensityModel(Protocol):
    """A density over ``D``-dimensional points (e.g. concatenated state-action pairs)."""

    def fit(self, x: torch.Tensor, **kwargs) -> DensityModel:
        """Fit to data ``x: Tensor[N, D]`` and return ``self``."""
        ...

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x: Tensor[..., D]`` -> log-density ``Tensor[...]``."""
        ...


@runtime_checkable
class Constraint(Protocol):
    """A per-step constraint ``cost(obs, act) <= threshold`` used by planners and controller wrappers.

    Planners treat constraints as hard when some candidate is feasible and minimise total violation
    ``sum(relu(cost - threshold))`` when none is.
    """

    threshold: float

    def cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]``."""
        ...


@runtime_checkable
class RewardShaper(Protocol):
    """A reward term used inside a planner (and, via a ``gymnasium.RewardWrapper``, by any agent).

    ``mode`` is ``"replace"`` (the shaped reward replaces the task reward) or ``"add"`` (it is added,
    times ``weight`` if the object has one).
    """

    mode: str

    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``obs, next_obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]``."""
        ...
