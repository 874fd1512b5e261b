"""Goal-reaching tasks with a sparse reward: :class:`GoalTask` and the helpers every such task shares.

A goal task (PointMaze, Meta-World push) rewards ``1[success(next_obs)]`` and never terminates (or, in an
episodic variant, terminates on success). :func:`sparse_goal_fns` builds those batched functions from the
task's success test, :func:`goal_obs` validates the observations they read, and :func:`disc_samples` draws the
success examples MURAL learns from (uniform in a disc around the goal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl.common.seeding import make_generator
from mbrl.common.validation import as_tensor
from mbrl.contracts import TransitionFn
from mbrl.tasks.base import Task, check_transition

__all__ = ["GoalTask", "disc_samples", "goal_obs", "sparse_goal_fns"]


@dataclass(frozen=True, eq=False)
class GoalTask(Task):
    """A :class:`~mbrl.tasks.base.Task` with a goal: what MURAL and the goal benchmarks need on top.

    Fields (all batched torch, leading dims ``...``; ``success_fn`` is the base class's, here always set to
    the env's ``info["success"]`` test):
        distance_fn: ``obs[..., O] -> [...]``, distance to the goal that the success test thresholds.
        success_examples: ``(k, seed=0, device=None) -> Tensor[k, O]`` float32 states that are successes.
        goal_features: ``obs[..., O] -> [..., F]``, the features a success classifier should look at.
    """

    distance_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    success_examples: Callable[..., torch.Tensor] | None = None
    goal_features: Callable[[torch.Tensor], torch.Tensor] | None = None


def goal_obs(name: str, x, obs_dim: int) -> torch.Tensor:
    """``x[..., obs_dim]`` as a float tensor, computed in at least float32 (like :mod:`mbrl.tasks.base`);
    non-finite values pass (a planner must see a diverged rollout). ``ValueError`` naming ``name``."""
    x = as_tensor(name, x, finite=False, min_ndim=1, last_dim=obs_dim)
    return x.to(torch.promote_types(x.dtype, torch.float32))


def sparse_goal_fns(success_fn: Callable[[torch.Tensor], torch.Tensor], obs_dim: int, act_dim: int
                    ) -> tuple[TransitionFn, TransitionFn, TransitionFn]:
    """``(reward, never, on_success)`` batched transition functions for a sparse goal task:

    * ``reward(obs, act, next_obs) = 1[success_fn(next_obs)]`` in the inputs' promoted floating dtype;
    * ``never``: all False (a continuing task); ``on_success``: ``success_fn(next_obs)`` (an episodic one).
    Each returns ``[...]`` (the broadcast leading dims) and validates like :func:`mbrl.tasks.base.check_transition`.
    """

    def reward(obs, act, next_obs) -> torch.Tensor:
        _, _, n, out_dtype, batch = check_transition(obs, act, next_obs, obs_dim, act_dim)
        return success_fn(n).to(out_dtype).expand(batch)

    def never(obs, act, next_obs) -> torch.Tensor:
        _, _, n, _, batch = check_transition(obs, act, next_obs, obs_dim, act_dim)
        return torch.zeros(batch, dtype=torch.bool, device=n.device)

    def on_success(obs, act, next_obs) -> torch.Tensor:
        _, _, n, _, batch = check_transition(obs, act, next_obs, obs_dim, act_dim)
        return success_fn(n).to(torch.bool).expand(batch)

    return reward, never, on_success


def disc_samples(k: int, radius: float, max_radius: float, seed: int | torch.Generator | None = 0
                 ) -> tuple[torch.Tensor, torch.Generator]:
    """``k`` points uniform in a disc of ``radius`` around the origin, ``[k, 2]`` float64, and the generator
    (seeded by ``seed``) for any further draws. ``k >= 1`` and ``0 <= radius < max_radius`` (the success
    radius, so that every example is a success), else ``ValueError`` naming ``k`` / ``radius``."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 <= radius < max_radius:
        raise ValueError(f"radius must be in [0, {max_radius}), got {radius}")
    gen = make_generator(seed, "cpu")
    ang = torch.rand(k, generator=gen, dtype=torch.float64) * (2 * math.pi)
    rad = radius * torch.rand(k, generator=gen, dtype=torch.float64).sqrt()
    return torch.stack([rad * ang.cos(), rad * ang.sin()], dim=-1), gen
