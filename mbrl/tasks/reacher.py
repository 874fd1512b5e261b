"""Reacher-v5 (2-link arm) with exact batched reward (gymnasium ``reacher_v5.py``); it never terminates.

Observation (10 entries, float64)::

    0 cos(q0)  1 cos(q1)  2 sin(q0)  3 sin(q1)  4 target x  5 target y  6 qvel0  7 qvel1
    8, 9 (fingertip - target) x, y         (body COMs after the step)

Reward, computed after the step (``ReacherEnv._get_rew``)::

    r = -reward_dist_weight * ||next_obs[8:10]|| - reward_control_weight * sum(act**2)     (weights 1, 1)

The env takes the norm of the 3-D vector fingertip - target; its z part is identically 0 (both bodies sit
at z = 0.01 in ``reacher.xml``), so the 2-D norm of the observed part is exact.
"""

from __future__ import annotations

import torch

from mbrl.tasks.base import Task, make_gym_task, never_terminates

__all__ = ["OBS_NAMES", "REWARD_PARAMS", "make_reacher_task"]

NAME = "Reacher-v5"
REWARD_PARAMS = {"reward_dist_weight": 1.0, "reward_control_weight": 1.0}  # ReacherEnv v5 defaults
OBS_NAMES = ("cos_q0", "cos_q1", "sin_q0", "sin_q1", "target_x", "target_y", "qvel0", "qvel1",
             "fingertip_minus_target_x", "fingertip_minus_target_y")


def _build(p: dict, dt: float):
    w_dist, w_ctrl = float(p["reward_dist_weight"]), float(p["reward_control_weight"])

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Reacher-v5 reward ``[...]``: -distance(fingertip, target) after the step - control cost."""
        dist = torch.linalg.vector_norm(next_obs[..., 8:10], dim=-1)
        return -w_dist * dist - w_ctrl * act.square().sum(dim=-1)

    return reward, never_terminates


def make_reacher_task(**options) -> Task:
    """Reacher-v5 :class:`~mbrl.tasks.base.Task` (obs 10, act 2 in [-1, 1]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (``reward_dist_weight``, ``reward_control_weight``,
    ``frame_skip``, ``max_episode_steps``).
    """
    return make_gym_task(
        NAME, options, reward_params=REWARD_PARAMS, forced={}, build=_build, obs_names=OBS_NAMES,
        description="Reacher-v5: reward = -||fingertip - target|| - |a|^2 (after the step); "
        "never terminates.",
    )
