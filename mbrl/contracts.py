"""The contracts the planner consumes (design.md, "Contracts"); ``safe_density.contracts`` re-exports them.

All are structural (``typing.Protocol``, runtime-checkable): any object with the right members plugs in,
no subclassing needed. Tensors are batched with arbitrary leading dimensions ``...``.

**One rule for the planner's inner loop.** Calls made on every imagined step or candidate (``Constraint.cost``,
a ``RewardShaper``'s ``__call__``, ``DynamicsModel.predict``) are the hot path: they do no input validation and
no host synchronisation (so a rollout can be captured in a CUDA graph), accept any float dtype, and map NaN
to "worst" (an infinite or very large cost, the lowest reward) instead of raising. Public query methods
(e.g. ``LyapunovDensityModel.value``, ``MuralReward.reward``, ``DensityModel.log_prob``) validate their inputs
and raise ``ValueError`` naming the argument. :class:`mbrl.MPCAgent` checks every plug-in once, at
construction, on a small batch (shapes and sizes), so that mistakes surface there and not at the first ``act``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = [
    "Constraint", "Controller", "DynamicsModel", "RewardShaper", "TrajectoryOptimizer", "as_controller",
]


@runtime_checkable
class DynamicsModel(Protocol):
    """An ensemble dynamics model (e.g. :class:`mbrl.models.ProbabilisticEnsemble`)."""

    ensemble_size: int
    obs_dim: int
    act_dim: int

    def predict(self, obs: torch.Tensor, act: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``obs[E, M, O]``, ``act[E, M, A]`` -> next observations ``[E, M, O]`` (member ``e`` on block ``e``)."""
        ...


@runtime_checkable
class Constraint(Protocol):
    """A constraint ``cost(obs, act) <= threshold`` used by planners and controller wrappers.

    Planners treat constraints as hard when some candidate is feasible and minimise total violation
    ``sum(relu(cost - threshold))`` when none is. An optional ``placement`` says where a planner applies it:
    ``"current"`` (the real current state and each candidate's first action: constraints whose guarantee
    covers the future, e.g. an LDM) or ``"imagined"`` (every imagined step; the default).
    """

    threshold: float

    def cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]`` (hot path)."""
        ...


@runtime_checkable
class RewardShaper(Protocol):
    """A reward term used inside a planner (and, via a ``gymnasium.RewardWrapper``, by any agent).

    ``mode`` is ``"replace"`` (the shaped reward replaces the task reward) or ``"add"`` (it is added,
    times ``weight`` if the object has one).
    """

    mode: str

    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``obs, next_obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]`` (hot path)."""
        ...


Objective = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


@runtime_checkable
class TrajectoryOptimizer(Protocol):
    """Searches action sequences: ``objective`` maps ``[N, H, A]`` (or ``[B, N, H, A]``) candidates to scores
    (and optional violations); ``optimize`` returns the best sequence ``[H, A]`` (or ``[B, H, A]``) within the
    bounds. The base class :class:`mbrl.planning.base.TrajectoryOptimizer` (CEM, iCEM, MPPI, random shooting)
    implements the shared parts; ``reset`` / ``advance`` and ``last_best`` (the best-ranked sample of the last
    call) are optional."""

    def optimize(self, objective: Objective, init_mean: torch.Tensor, *, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        ...


@runtime_checkable
class Controller(Protocol):
    """Anything that acts: ``act(obs[O]) -> action[A]`` (numpy), e.g. :class:`mbrl.MPCAgent`. Plain functions
    ``obs -> action`` and SB3-style ``predict(obs) -> (action, state)`` objects are adapted by the wrappers
    that accept controllers (:func:`as_controller`)."""

    def act(self, obs) -> np.ndarray:
        ...


class _FunctionController:
    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def act(self, obs) -> np.ndarray:
        return self.fn(obs)


class _PredictController:
    def __init__(self, model) -> None:
        self.model = model

    def act(self, obs) -> np.ndarray:
        return self.model.predict(obs, deterministic=True)[0]

    def reset(self) -> None:
        if callable(getattr(self.model, "reset", None)):
            self.model.reset()


def as_controller(obj) -> Controller:
    """``obj`` as a :class:`Controller`: objects with ``act`` as they are, SB3-style ``predict`` objects and
    plain callables wrapped. Raises ``ValueError`` otherwise."""
    if callable(getattr(obj, "act", None)):
        return obj
    if callable(getattr(obj, "predict", None)):
        return _PredictController(obj)
    if callable(obj):
        return _FunctionController(obj)
    raise ValueError(f"controller must have act(obs) or predict(obs), or be callable; got {type(obj).__name__}")
