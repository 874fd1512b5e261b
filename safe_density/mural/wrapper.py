"""Gymnasium wrapper that turns any environment into a MURAL-rewarded one (for model-free agents).

``../shared/design.md``, "Contracts": the same ``RewardShaper`` object used inside planners serves
model-free agents (e.g. an off-the-shelf SB3 SAC) through this wrapper. Every step records the new
observation's features as a visited state; every ``retrain_every`` steps the reward is retrained on
the states recorded since the last retraining (:meth:`MuralReward.update` keeps the bounded history and
continues from the current parameters with its incremental budget). MURAL retrains once per epoch of
1000 environment steps (official code: ``epoch_length=1000``, ``meta_nml_train_every_k=1``), hence the
default.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from mbrl.common.validation import check_int

from .reward import MuralReward

__all__ = ["MuralRewardWrapper"]


class MuralRewardWrapper(gym.Wrapper):
    """Replace (``mode="replace"``) or add to (``"add"``, times ``weight``) the env reward with MURAL's.

    Args:
        env: any gymnasium env with array observations.
        mural_reward: a :class:`MuralReward` (its own ``state_slice``/``feature_fn`` apply after ours).
        retrain_every: environment steps between retrainings (integer >= 1).
        feature_fn: optional ``obs -> state`` (numpy) applied before recording and rewarding.
        update_steps: ``steps`` passed to :meth:`MuralReward.update` (``None``: the config's budget).

    The reward of step ``t`` is computed with the model as it is before the retraining that step ``t``
    may trigger. If the reward has never been trained, ``reset`` trains it on the first observation.
    ``info["task_reward"]`` holds the environment's own reward, ``info["mural_reward"]`` MURAL's.
    Observations that do not match ``mural_reward.obs_dim`` or hold NaN/inf raise ``ValueError`` naming
    ``observation`` (and ``env`` when the observation space already disagrees at construction).
    ``retrain_seconds`` accumulates the wall time spent in retraining.
    """

    def __init__(self, env: gym.Env, mural_reward: MuralReward, retrain_every: int = 1000,
                 feature_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 update_steps: int | None = None):
        super().__init__(env)
        if not isinstance(mural_reward, MuralReward):
            raise ValueError(f"mural_reward must be a MuralReward, got {type(mural_reward).__name__}")
        self.retrain_every = check_int("retrain_every", retrain_every, low=1)
        if update_steps is not None:
            update_steps = check_int("update_steps", update_steps, low=0, high=10**9)
        if feature_fn is not None and not callable(feature_fn):
            raise ValueError("feature_fn must be callable")
        shape = getattr(env.observation_space, "shape", None)
        if feature_fn is None and shape is not None and int(np.prod(shape)) != mural_reward.obs_dim:
            raise ValueError(f"env: observations have shape {tuple(shape)} but mural_reward expects "
                             f"{mural_reward.obs_dim} entries (pass feature_fn to map one to the other)")
        self.mural_reward = mural_reward
        self.feature_fn, self.update_steps = feature_fn, update_steps
        self._pending: list[np.ndarray] = []
        self.total_steps = 0
        self.n_retrains = 0
        self.retrain_seconds = 0.0

    def _state(self, obs) -> np.ndarray:
        s = self.feature_fn(obs) if self.feature_fn is not None else obs
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.shape[0] != self.mural_reward.obs_dim:
            raise ValueError(f"observation: {s.shape[0]} entries (after feature_fn) but mural_reward expects "
                             f"{self.mural_reward.obs_dim}")
        if not np.isfinite(s).all():
            raise ValueError("observation contains NaN or infinite values")
        return s

    def _retrain(self, states: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.mural_reward.update(states, steps=self.update_steps, progress=False)
        self.retrain_seconds += time.perf_counter() - t0
        self.n_retrains += 1

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        s = self._state(obs)
        if not self.mural_reward.fitted:
            self._retrain(s[None])
        return obs, info

    def step(self, action):
        obs, task_r, terminated, truncated, info = self.env.step(action)
        s = self._state(obs)
        r = float(self.mural_reward.reward(s).item())
        info = dict(info)
        info["task_reward"] = task_r
        info["mural_reward"] = r
        if self.mural_reward.mode == "add":
            r = float(task_r) + self.mural_reward.weight * r
        self._pending.append(s)
        self.total_steps += 1
        if self.total_steps % self.retrain_every == 0:
            self._retrain(np.stack(self._pending))
            self._pending.clear()
        return obs, r, terminated, truncated, info
