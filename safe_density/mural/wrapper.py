"""MURAL's rewards for any gymnasium agent: :class:`mbrl.wrappers.RewardShaperWrapper` plus retraining.

``docs/design.md``, "Contracts": the same ``RewardShaper`` object used inside planners serves model-free agents
(e.g. an off-the-shelf SB3 SAC) through the generic wrapper; this one adds what MURAL needs on top. Every step
records the new observation's features as a visited state; every ``retrain_every`` steps the reward is retrained
on the states recorded since the last retraining (:meth:`MuralReward.update` keeps the bounded history and
continues from the current parameters with its incremental budget). MURAL retrains once per epoch of 1000
environment steps (official code: ``epoch_length=1000``, ``meta_nml_train_every_k=1``), hence the default.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from mbrl.common.validation import check_int
from mbrl.wrappers import RewardShaperWrapper

from .reward import MuralReward

__all__ = ["MuralRewardWrapper"]


class MuralRewardWrapper(RewardShaperWrapper):
    """Replace (``mode="replace"``) or add to (``"add"``, times ``weight``) the env reward with MURAL's.

    Args:
        env: any gymnasium env (``Dict`` observations need ``feature_fn``).
        mural_reward: a :class:`MuralReward` (its own ``state_slice``/``feature_fn`` apply after ours).
        retrain_every: environment steps between retrainings (integer >= 1).
        feature_fn: optional ``obs -> state`` (numpy) applied before recording and rewarding.
        update_steps: ``steps`` passed to :meth:`MuralReward.update` (``None``: the config's budget).

    The reward of step ``t`` is computed with the model as it is before the retraining that step ``t``
    may trigger. If the reward has never been trained, ``reset`` trains it on the first observation.
    ``info["task_reward"]`` holds the environment's own reward, ``info["shaped_reward"]`` MURAL's.
    Observations that do not match ``mural_reward.obs_dim`` or hold NaN/inf raise ``ValueError`` naming
    ``observation`` (and ``env`` when the observation space already disagrees at construction).
    ``retrain_seconds`` accumulates the wall time spent in retraining.
    """

    def __init__(self, env: gym.Env, mural_reward: MuralReward, retrain_every: int = 1000,
                 feature_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 update_steps: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, mural_reward=mural_reward, retrain_every=retrain_every,
                                                 feature_fn=feature_fn, update_steps=update_steps,
                                                 _disable_deepcopy=True)
        if not isinstance(mural_reward, MuralReward):
            raise ValueError(f"mural_reward must be a MuralReward, got {type(mural_reward).__name__}")
        if update_steps is not None:
            update_steps = check_int("update_steps", update_steps, low=0, high=10**9)
        shape = getattr(env.observation_space, "shape", None)
        if feature_fn is None and shape is not None and int(np.prod(shape)) != mural_reward.obs_dim:
            raise ValueError(f"env: observations have shape {tuple(shape)} but mural_reward expects "
                             f"{mural_reward.obs_dim} entries (pass feature_fn to map one to the other)")
        super().__init__(env, mural_reward, feature_fn, mural_reward.obs_dim, retrain_every)
        self.mural_reward, self.update_steps = mural_reward, update_steps

    def _update(self, states: np.ndarray) -> None:
        self.mural_reward.update(states, steps=self.update_steps, progress=False)
