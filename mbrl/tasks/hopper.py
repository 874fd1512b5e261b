"""Hopper-v5 with exact batched reward and termination (gymnasium ``hopper_v5.py``).

The env is built with ``exclude_current_positions_from_observation=False`` so that the forward reward,
which needs the x position before and after the step, can be computed from ``(obs, next_obs)``.
Observation (12 entries, float64)::

    0 x (rootx)   1 z (rootz)   2 torso angle (rooty)   3 thigh   4 leg   5 foot       (qpos)
    6..11 the six qvel entries in the same order, clipped to [-10, 10]                 (qvel)

Reward, as ``HopperEnv.step``/``_get_rew`` (weights are ``make_task`` options with these defaults)::

    r = forward_reward_weight * (next_obs[0] - obs[0]) / dt          (dt = frame_skip * timestep = 0.008)
        + healthy_reward * is_healthy(next_obs)                       (1.0, checked after the step)
        - ctrl_cost_weight * sum(act**2)                              (1e-3)

``is_healthy``: ``z`` in ``healthy_z_range`` (0.7, inf), angle in ``healthy_angle_range`` (-0.2, 0.2)
and every entry of ``state_vector()[2:]`` (angle, joints, qvel) in
``healthy_state_range`` (-100, 100), all strict.
``terminated = not is_healthy and terminate_when_unhealthy``.
One deviation is possible in principle: the env checks the *unclipped* qvel against (-100, 100) while the
observation holds qvel clipped to [-10, 10], so a joint speed >= 100 would terminate the env but not
``termination_fn``. Random actions never come close (max |qvel| 8.8 over 20 000 random steps).
"""

from __future__ import annotations

import torch

from mbrl.tasks.base import Task, make_gym_task

__all__ = ["OBS_NAMES", "REWARD_PARAMS", "make_hopper_task"]

NAME = "Hopper-v5"
REWARD_PARAMS = {  # HopperEnv.__init__ defaults (v5)
    "forward_reward_weight": 1.0,
    "ctrl_cost_weight": 1e-3,
    "healthy_reward": 1.0,
    "terminate_when_unhealthy": True,
    "healthy_state_range": (-100.0, 100.0),
    "healthy_z_range": (0.7, float("inf")),
    "healthy_angle_range": (-0.2, 0.2),
}
_JOINTS = ("x", "z", "angle", "thigh", "leg", "foot")
OBS_NAMES = tuple(f"qpos_{j}" for j in _JOINTS) + tuple(f"qvel_{j}" for j in _JOINTS)


def _build(p: dict, dt: float):
    w_fwd, w_ctrl = float(p["forward_reward_weight"]), float(p["ctrl_cost_weight"])
    r_healthy = float(p["healthy_reward"])
    s_lo, s_hi = p["healthy_state_range"]
    z_lo, z_hi = p["healthy_z_range"]
    a_lo, a_hi = p["healthy_angle_range"]
    terminate = bool(p["terminate_when_unhealthy"])

    def is_healthy(next_obs: torch.Tensor) -> torch.Tensor:
        z, angle, state = next_obs[..., 1], next_obs[..., 2], next_obs[..., 2:]
        ok_state = ((s_lo < state) & (state < s_hi)).all(dim=-1)
        return ok_state & (z_lo < z) & (z < z_hi) & (a_lo < angle) & (angle < a_hi)

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Hopper-v5 reward ``[...]``: forward velocity + healthy bonus (after the step) - control cost."""
        forward = w_fwd * (next_obs[..., 0] - obs[..., 0]) / dt
        healthy = r_healthy * is_healthy(next_obs).to(next_obs.dtype)
        return forward + healthy - w_ctrl * act.square().sum(dim=-1)

    def termination(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Hopper-v5 ``terminated`` ``bool[...]``: unhealthy after the step (if terminate_when_unhealthy)."""
        unhealthy = ~is_healthy(next_obs)
        return unhealthy if terminate else torch.zeros_like(unhealthy)

    return reward, termination


def make_hopper_task(**options) -> Task:
    """Hopper-v5 :class:`~mbrl.tasks.base.Task` (obs 12 with x first, act 3 in [-1, 1]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (reward weights and ranges above, ``reset_noise_scale``,
    ``frame_skip``, ``max_episode_steps``); ``exclude_current_positions_from_observation`` must stay False.
    """
    return make_gym_task(
        NAME, options, reward_params=REWARD_PARAMS,
        forced={"exclude_current_positions_from_observation": False}, build=_build, obs_names=OBS_NAMES,
        description="Hopper-v5 (x kept in obs[0]): reward = forward velocity + healthy bonus - 1e-3|a|^2; "
        "terminates when unhealthy (z <= 0.7, |angle| >= 0.2 or a state entry outside (-100, 100)).",
    )
