"""Gymnasium wrapper that turns any environment into a MURAL-rewarded one (for model-free agents).

``../shared/design.md``, "Contracts": the same ``RewardShaper`` object used inside planners serves
model-free agents (e.g. an off-the-shelf SB3 SAC) through this wrapper. Every step records the new
observation's features as a visited state; every ``retrain_every`` steps the reward is retrained on
the states recorded since the last retraining (:meth:`MuralReward.update` keeps the bounded history).
MURAL retrains once per epoch of 1000 environment steps (official code: ``epoch_length=1000``,
``meta_nml_train_every_k=1``), hence the default.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from .reward import MuralReward

__all__ = ["MuralRewardWrapper"]


class MuralRewardWrapper(gym.Wrapper):
    """Replace (``mode="replace"``) or add to (``"add"``, times ``weight``) the env reward with MURAL's.

    Args:
        env: any gymnasium env with array observations.
        mural_reward: a :class:`MuralReward` (its own ``state_slice``/``feature_fn`` apply after ours).
        retrain_every: environment steps between retrainings.
        feature_fn: optional ``obs -> state`` (numpy) applied before recording and rewarding.
        update_steps: ``steps`` passed to :meth:`MuralReward.update` (``None``: config default).

    The reward of step ``t`` is computed with the model as it is before the retraining that step ``t``
    may trigger. If the reward has never been trained, ``reset`` trains it on the first observation.
    ``info["task_reward"]`` holds the environment's own reward.
    """

    def __init__(self, env: gym.Env, mural_reward: MuralReward, retrain_every: int = 1000,
                 feature_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 update_steps: int | None = None):
        super().__init__(env)
        if int(retrain_every) < 1:
            raise ValueError(f"retrain_every must be >= 1, got {retrain_every}")
        if not isinstance(mural_reward, MuralReward):
            raise ValueError(f"mural_reward must be a MuralReward, got {type(mural_reward).__name__}")
        self.mural_reward, self.retrain_every = mural_reward, int(retrain_every)
        self.feature_fn, self.update_steps = feature_fn, update_steps
        self._pending: list[np.ndarray] = []
        self.total_steps = 0

    def _state(self, obs) -> np.ndarray:
        s = self.feature_fn(obs) if self.feature_fn is not None else obs
        return np.asarray(s, dtype=np.float64).reshape(-1)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if not self.mural_reward.fitted:
            self.mural_reward.update(self._state(obs)[None], steps=self.update_steps, progress=False)
        return obs, info

    def step(self, action):
        obs, task_r, terminated, truncated, info = self.env.step(action)
        s = self._state(obs)
        r = float(self.mural_reward(torch.as_tensor(s)).item())
        if self.mural_reward.mode == "add":
            r = float(task_r) + self.mural_reward.weight * r
        info = dict(info)
        info["task_reward"] = task_r
        self._pending.append(s)
        self.total_steps += 1
        if self.total_steps % self.retrain_every == 0:
            self.mural_reward.update(np.stack(self._pending), steps=self.update_steps, progress=False)
            self._pending.clear()
        return obs, r, terminated, truncated, info
