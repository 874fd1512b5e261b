"""Pusher-v5 (7-DoF arm pushing a cylinder) with exact batched reward (gymnasium ``pusher_v5.py``).

Observation (23 entries, float64)::

    0..6 qpos of the 7 arm joints   7..13 their qvel
    14..16 tips_arm COM (x, y, z)   17..19 object COM   20..22 goal COM          (after the step)

Reward, computed after the step (``PusherEnv._get_rew``); it never terminates::

    r = -reward_near_weight * ||object - tips_arm|| - reward_dist_weight * ||object - goal||
        - reward_control_weight * sum(act**2)                        (weights 0.5, 1, 0.1; 3-D norms)
"""

from __future__ import annotations

import torch

from mbrl.tasks.base import Task, make_gym_task, never_terminates

__all__ = ["OBS_NAMES", "REWARD_PARAMS", "make_pusher_task"]

NAME = "Pusher-v5"
REWARD_PARAMS = {"reward_near_weight": 0.5, "reward_dist_weight": 1.0, "reward_control_weight": 0.1}
OBS_NAMES = (tuple(f"qpos{i}" for i in range(7)) + tuple(f"qvel{i}" for i in range(7))
             + tuple(f"{body}_{c}" for body in ("tips_arm", "object", "goal") for c in "xyz"))
TIPS, OBJECT, GOAL = slice(14, 17), slice(17, 20), slice(20, 23)


def _build(p: dict, dt: float):
    w_near, w_dist = float(p["reward_near_weight"]), float(p["reward_dist_weight"])
    w_ctrl = float(p["reward_control_weight"])

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Pusher-v5 reward ``[...]``: -0.5 ||object - tip|| - ||object - goal|| - 0.1 |a|^2 (after step)."""
        obj = next_obs[..., OBJECT]
        near = torch.linalg.vector_norm(obj - next_obs[..., TIPS], dim=-1)
        dist = torch.linalg.vector_norm(obj - next_obs[..., GOAL], dim=-1)
        return -w_near * near - w_dist * dist - w_ctrl * act.square().sum(dim=-1)

    return reward, never_terminates


def make_pusher_task(**options) -> Task:
    """Pusher-v5 :class:`~mbrl.tasks.base.Task` (obs 23, act 7 in [-2, 2]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (``reward_near_weight``, ``reward_dist_weight``,
    ``reward_control_weight``, ``frame_skip``, ``max_episode_steps``).
    """
    return make_gym_task(
        NAME, options, reward_params=REWARD_PARAMS, forced={}, build=_build, obs_names=OBS_NAMES,
        description="Pusher-v5: reward = -0.5||object - tip|| - ||object - goal|| - 0.1|a|^2 "
        "(after the step); never terminates.",
    )
