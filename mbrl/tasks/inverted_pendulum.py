"""InvertedPendulum-v5 with exact batched reward and termination (gymnasium ``inverted_pendulum_v5.py``).

Observation (4 entries, float64): ``[cart position, pole angle, cart velocity, pole angular velocity]``
(qpos then qvel). Action: force on the cart, 1 entry in [-3, 3]. Checked after the step, on ``next_obs``::

    terminated = any(~isfinite(next_obs)) or |next_obs[1]| > 0.2
    r = 1 if not terminated else 0
"""

from __future__ import annotations

import torch

from mbrl.tasks.base import Task, make_gym_task

__all__ = ["ANGLE_LIMIT", "OBS_NAMES", "make_inverted_pendulum_task"]

NAME = "InvertedPendulum-v5"
ANGLE_LIMIT = 0.2  # hard-coded in InvertedPendulumEnv.step
OBS_NAMES = ("qpos_cart", "qpos_pole", "qvel_cart", "qvel_pole")


def _termination(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum-v5 ``terminated`` ``bool[...]``: non-finite next_obs or |pole angle| > 0.2."""
    return ~torch.isfinite(next_obs).all(dim=-1) | (next_obs[..., 1].abs() > ANGLE_LIMIT)


def _reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """InvertedPendulum-v5 reward ``[...]``: 1 for every step that does not terminate, else 0."""
    return (~_termination(obs, act, next_obs)).to(next_obs.dtype)


def make_inverted_pendulum_task(**options) -> Task:
    """InvertedPendulum-v5 :class:`~mbrl.tasks.base.Task` (obs 4, act 1 in [-3, 3]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (``reset_noise_scale``, ``frame_skip``, ``max_episode_steps``).
    """
    return make_gym_task(
        NAME, options, reward_params={}, forced={}, build=lambda p, dt: (_reward, _termination),
        obs_names=OBS_NAMES,
        description="InvertedPendulum-v5: reward 1 per step; terminates when |pole angle| > 0.2 or obs is "
        "non-finite.",
    )
