"""HalfCheetah-v5 with exact batched reward (gymnasium ``half_cheetah_v5.py``); it never terminates.

The env is built with ``exclude_current_positions_from_observation=False`` so that the forward reward,
which needs the x position before and after the step, can be computed from ``(obs, next_obs)``.
Observation (18 entries, float64)::

    0 x (rootx)  1 z (rootz)  2 angle (rooty)  3 bthigh  4 bshin  5 bfoot  6 fthigh  7 fshin  8 ffoot  (qpos)
    9..17 the nine qvel entries in the same order (not clipped)                                       (qvel)

Reward, as ``HalfCheetahEnv.step``/``_get_rew`` (weights are ``make_task`` options with these defaults)::

    r = forward_reward_weight * (next_obs[0] - obs[0]) / dt - ctrl_cost_weight * sum(act**2)
        (forward_reward_weight 1, ctrl_cost_weight 0.1, dt = frame_skip * timestep = 5 * 0.01 = 0.05)
"""

from __future__ import annotations

import torch

from mbrl.tasks.base import Task, make_gym_task, never_terminates

__all__ = ["OBS_NAMES", "REWARD_PARAMS", "make_half_cheetah_task"]

NAME = "HalfCheetah-v5"
REWARD_PARAMS = {"forward_reward_weight": 1.0, "ctrl_cost_weight": 0.1}  # HalfCheetahEnv v5 defaults
_JOINTS = ("x", "z", "angle", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
OBS_NAMES = tuple(f"qpos_{j}" for j in _JOINTS) + tuple(f"qvel_{j}" for j in _JOINTS)


def _build(p: dict, dt: float):
    w_fwd, w_ctrl = float(p["forward_reward_weight"]), float(p["ctrl_cost_weight"])

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """HalfCheetah-v5 reward ``[...]``: forward velocity ``(x' - x) / dt`` - control cost."""
        return w_fwd * (next_obs[..., 0] - obs[..., 0]) / dt - w_ctrl * act.square().sum(dim=-1)

    return reward, never_terminates


def make_half_cheetah_task(**options) -> Task:
    """HalfCheetah-v5 :class:`~mbrl.tasks.base.Task` (obs 18 with x first, act 6 in [-1, 1]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (``forward_reward_weight``, ``ctrl_cost_weight``,
    ``reset_noise_scale``, ``frame_skip``, ``max_episode_steps``);
    ``exclude_current_positions_from_observation`` must stay False.
    """
    return make_gym_task(
        NAME, options, reward_params=REWARD_PARAMS,
        forced={"exclude_current_positions_from_observation": False}, build=_build, obs_names=OBS_NAMES,
        description="HalfCheetah-v5 (x kept in obs[0]): reward = (x' - x) / 0.05 - 0.1|a|^2; "
        "never terminates.",
    )
