"""Every contract the planner consumes, and the callable aliases (docs/design.md, "Contracts").

All are structural (``typing.Protocol``, runtime-checkable): any object with the right members plugs in,
no subclassing needed. Tensors are batched with arbitrary leading dimensions ``...``.
:mod:`safe_density.contracts` re-exports them and adds ``DensityModel``.

**One rule for the planner's inner loop.** Calls made on every imagined step or candidate (``Constraint.cost``,
a ``RewardShaper``'s ``__call__``, ``DynamicsModel.predict``) are the hot path: they do no input validation and
no host synchronisation (so a rollout can be captured in a CUDA graph), accept any float dtype, and map NaN
to "worst" (an infinite or very large cost, the lowest reward) instead of raising. Public query methods
(e.g. ``LyapunovDensityModel.value``, ``MuralReward.reward``, ``DensityModel.log_prob``) validate their inputs
and raise ``ValueError`` naming the argument. Plug-ins are checked once, by :func:`check_plugins` (the agent
calls it at construction, :func:`mbrl.rollout.rollout` when it validates), and :class:`mbrl.MPCAgent` then
calls each on a small batch, so that mistakes surface at construction and not at the first ``act``.

The rules every plug-in follows live here, once: feasibility (:func:`is_feasible`, :func:`violation`) and how a
shaper combines with the task reward (:func:`shape_reward`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = [
    "GRANULARITIES", "PLACEMENTS", "SHAPER_MODES", "Constraint", "Controller", "CostFn", "DynamicsModel",
    "Objective", "Plugins", "RewardShaper", "TrajectoryOptimizer", "TransitionFn", "as_controller", "check_plugins",
    "is_feasible", "shape_reward", "violation",
]

#: ``(obs[..., O], act[..., A], next_obs[..., O]) -> [...]``: a task's reward or termination, a reward shaper.
TransitionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``(obs[..., O], act[..., A]) -> [...]``: a constraint's cost, e.g. the LDM's ``G(s, a)``.
CostFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``actions[N, H, A]`` (or ``[B, N, H, A]``) -> ``scores[N]`` (``[B, N]``), or ``(scores, violations)``.
Objective = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]

PLACEMENTS = ("current", "imagined")
SHAPER_MODES = ("add", "replace")
GRANULARITIES = ("particle", "candidate", "members")


# ------------------------------------------------------------------------------------------ protocols
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

    Feasible means :func:`is_feasible` (``cost <= threshold``; NaN is infeasible). Planners treat constraints as
    hard when some candidate is feasible and minimise the total :func:`violation` ``sum relu(cost - threshold)``
    when none is. ``threshold`` is a finite real, read once when the constraint is handed to a planner
    (:func:`check_plugins`); make a new constraint to change it. An optional ``placement`` says where a planner
    applies it: ``"current"`` (the real current state and each candidate's first action: constraints whose
    guarantee covers the future, e.g. an LDM) or ``"imagined"`` (every imagined step; the default).
    """

    threshold: float

    def cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]`` (hot path)."""
        ...


@runtime_checkable
class RewardShaper(Protocol):
    """A reward term used inside a planner and, through :class:`mbrl.wrappers.RewardShaperWrapper`, by any
    gymnasium agent.

    Optional attributes (read with these defaults, see :func:`shape_reward`):

    * ``mode``: ``"add"`` (default; ``reward + weight * shaper``) or ``"replace"`` (the shaper's value replaces
      the task reward);
    * ``weight``: the factor of an added term (default ``1.0``; ignored with ``"replace"``);
    * ``granularity``: ``"particle"`` (default; a planner calls the shaper on every particle), ``"candidate"``
      (a planner calls it once per candidate and imagined step, on the mean over the candidate's particles of
      ``obs`` and ``next_obs``, and every particle gets that value: for terms whose cost is a model evaluation
      of their own), or ``"members"``: the shaper also has ``from_member_means(delta[..., M, O]) -> [...]``, and a
      TS-inf planner gives it, per candidate and step, the mean predicted change of each of the ``M`` members that
      propagate the candidate's particles, averaged over that member's particles (no model call of its own: the
      propagation computed them; e.g. :class:`mbrl.penalties.EnsembleDisagreement`). Where that is not available
      (other propagations, one particle, a model whose ``predict`` has no ``return_mean_delta``) ``"members"`` is
      evaluated as ``"candidate"``. Outside a planner (one real transition) all are the same call.
    """

    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``obs, next_obs: Tensor[..., obs_dim]``, ``act: Tensor[..., act_dim]`` -> ``Tensor[...]`` (hot path)."""
        ...


@runtime_checkable
class TrajectoryOptimizer(Protocol):
    """Searches action sequences: ``objective`` maps ``[N, H, A]`` (or ``[B, N, H, A]``) candidates to scores
    (and optional violations); ``optimize`` returns the best sequence ``[H, A]`` (or ``[B, H, A]``) inside the
    :class:`~mbrl.common.ActionBox` ``box``. :class:`mbrl.planning.OptimizerBase` (CEM, iCEM, MPPI, random
    shooting) implements the shared parts; ``reset`` / ``advance`` and ``last_best`` (the best-ranked sample of
    the last call) are optional."""

    def optimize(self, objective: Objective, init_mean: torch.Tensor, *, box=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        ...


@runtime_checkable
class Controller(Protocol):
    """Anything that acts: ``act(obs[O]) -> action[A]`` (numpy), e.g. :class:`mbrl.MPCAgent`. Plain functions
    ``obs -> action`` and SB3-style ``predict(obs) -> (action, state)`` objects are adapted by the wrappers
    that accept controllers (:func:`as_controller`)."""

    def act(self, obs) -> np.ndarray:
        ...


# ------------------------------------------------------------------------------------------ the rules
def is_feasible(cost: torch.Tensor, threshold) -> torch.Tensor:
    """``cost <= threshold`` element-wise (bool, same shape); NaN costs are infeasible. The one feasibility
    test of the library (planner, agent, LDM wrappers, benchmarks)."""
    return cost <= threshold


def violation(cost: torch.Tensor, threshold) -> torch.Tensor:
    """``relu(cost - threshold)``: 0 where feasible, the excess otherwise (NaN stays NaN)."""
    return torch.relu(cost - threshold)


def shape_reward(reward: torch.Tensor, value: torch.Tensor, shaper) -> torch.Tensor:
    """The task ``reward`` after one shaper's ``value``: ``value`` (mode ``"replace"``) or
    ``reward + weight * value`` (``"add"``, the default; ``weight`` defaults to 1). Tensors or floats."""
    if getattr(shaper, "mode", "add") == "replace":
        return value
    return reward + float(getattr(shaper, "weight", 1.0)) * value


@dataclass(frozen=True)
class Plugins:
    """Constraints and reward shapers, checked once (:func:`check_plugins`).

    ``current`` / ``imagined``: ``(constraint, threshold)`` pairs by placement, thresholds as Python floats;
    ``shapers``: the reward shapers, in order."""

    current: tuple = ()
    imagined: tuple = ()
    shapers: tuple = ()


def _threshold(i: int, c) -> float:
    t = getattr(c, "threshold", None)
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        t = t.item()
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise ValueError(f"constraints[{i}].threshold must be a real number, got {t!r}")
    if not math.isfinite(float(t)):
        raise ValueError(f"constraints[{i}].threshold must be finite, got {t!r}")
    return float(t)


def check_plugins(constraints: Sequence = (), reward_shapers: Sequence = ()) -> Plugins:
    """Validate the plug-ins once (the hot path never re-checks them). ``ValueError`` naming the item:
    a constraint without ``cost``/``threshold``, a threshold that is not a finite real, an unknown
    ``placement``; a shaper that is not callable or has an unknown ``mode`` or ``granularity`` or a non-finite
    ``weight``."""
    current, imagined = [], []
    for i, c in enumerate(constraints):
        if not isinstance(c, Constraint):
            raise ValueError(f"constraints[{i}] must be a Constraint (mbrl.contracts): 'cost' and 'threshold'")
        placement = getattr(c, "placement", "imagined")
        if placement not in PLACEMENTS:
            raise ValueError(f"constraints[{i}]: placement must be one of {PLACEMENTS}, got {placement!r}")
        (current if placement == "current" else imagined).append((c, _threshold(i, c)))
    for i, s in enumerate(reward_shapers):
        mode = getattr(s, "mode", "add")
        if not callable(s) or mode not in SHAPER_MODES:
            raise ValueError(f"reward_shapers[{i}] must be a RewardShaper: callable, mode 'add' or 'replace' "
                             f"(got mode {mode!r})")
        g = getattr(s, "granularity", "particle")
        if g not in GRANULARITIES:
            raise ValueError(f"reward_shapers[{i}].granularity must be one of {GRANULARITIES}, got {g!r}")
        if g == "members" and not callable(getattr(s, "from_member_means", None)):
            raise ValueError(f"reward_shapers[{i}] has granularity 'members' but no from_member_means method")
        w = getattr(s, "weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w):
            raise ValueError(f"reward_shapers[{i}].weight must be a finite real number, got {w!r}")
    return Plugins(tuple(current), tuple(imagined), tuple(reward_shapers))


# ------------------------------------------------------------------------------------------ controllers
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
