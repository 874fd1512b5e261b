"""Any ``RewardShaper`` as the reward of a gymnasium env, for model-free agents (docs/design.md, "Contracts").

The object a planner uses as a reward shaper (``shaper(obs, act, next_obs) -> [...]`` with optional ``mode`` and
``weight``, :class:`mbrl.contracts.RewardShaper`) reaches any gymnasium agent (e.g. Stable-Baselines3 SAC)
through :class:`RewardShaperWrapper`: every step calls it once on the transition's features and combines its
value with the env's reward by the one rule, :func:`mbrl.contracts.shape_reward`.

Goal-conditioned envs (``Dict`` observations with ``achieved_goal`` / ``desired_goal`` and a ``compute_reward`` on
the unwrapped env, e.g. gymnasium-robotics) keep their ``Dict`` observation, and the wrapper's
``compute_reward(achieved_goal, desired_goal, info)`` reproduces the step's reward, so hindsight relabelling
(SB3's HER) works: the env's reward is recomputed for the relabelled goal and the shaped term, a property of the
visited state stored in ``info["shaped_reward"]``, is kept.

The wrappers record their constructor arguments (``gymnasium.utils.RecordConstructorArgs``), so that
``env.spec`` can rebuild them and both gymnasium's and SB3's env checkers accept them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from mbrl.common.validation import check_int
from mbrl.contracts import shape_reward

__all__ = ["ActionRepeat", "RewardShaperWrapper", "check_action_repeat", "env_steps_kwargs"]


def check_action_repeat(k) -> int:
    """``k`` as an int, or ``ValueError`` naming ``action_repeat`` unless it is an integer >= 1."""
    return check_int("action_repeat", k, low=1)


def env_steps_kwargs(kw: dict, k: int) -> dict:
    """``gymnasium.make`` kwargs with ``max_episode_steps``, given in agent steps, converted to env steps (x ``k``):
    a task with an action repeat counts its episode limit in the agent's steps."""
    if k > 1 and kw.get("max_episode_steps") is not None:
        kw = {**kw, "max_episode_steps": int(kw["max_episode_steps"]) * k}
    return kw


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat every action ``k`` times (one agent step = ``k`` env steps). The reward and ``terminated`` are
    those of the last inner step (so that ``reward_fn(obs, act, next_obs)`` stays exact); ``info["success"]``
    is True if any inner step succeeded; ``info["inner_steps"]`` counts the env steps taken."""

    def __init__(self, env: gym.Env, k: int):
        gym.utils.RecordConstructorArgs.__init__(self, k=k)
        gym.Wrapper.__init__(self, env)
        self.k = check_action_repeat(k)

    def step(self, action):
        success, n = False, 0
        for _ in range(self.k):
            obs, rew, term, trunc, info = self.env.step(action)
            success |= bool(info.get("success", False))
            n += 1
            if term or trunc:
                break
        info = dict(info)
        info["success"], info["inner_steps"] = success, n
        return obs, rew, term, trunc, info


class RewardShaperWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The env's reward shaped by ``shaper`` (module docstring).

    Args:
        env: any gymnasium env; its observations must be arrays, or ``feature_fn`` must map them to one.
        shaper: a :class:`~mbrl.contracts.RewardShaper`: ``shaper(obs[1, F], act[1, A], next_obs[1, F]) -> [1]``
            on float64 tensors of the features ``F``; ``mode`` ``"add"`` (default) or ``"replace"``, ``weight``.
        feature_fn: ``obs -> [F]`` array the shaper sees (default: the observation itself, flattened). Required
            for ``Dict`` observations (``ValueError`` naming ``feature_fn`` otherwise).
        feature_dim: the size ``F`` the features must have (default: not checked).
        retrain_every: retrain the shaper (its ``update(states)``, e.g. a MURAL reward) on the states visited,
            every this many steps (default: never). ``retrain_seconds`` sums the time spent retraining.

    ``info["task_reward"]`` holds the env's own reward, ``info["shaped_reward"]`` the shaper's value. Features
    that hold NaN/inf or have the wrong size raise ``ValueError`` naming ``observation``. Subclasses see every
    state's features through :meth:`_observe` (e.g. MURAL retrains on them).
    """

    def __init__(self, env: gym.Env, shaper, feature_fn: Callable | None = None, feature_dim: int | None = None,
                 retrain_every: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, shaper=shaper, feature_fn=feature_fn, feature_dim=feature_dim,
                                                 retrain_every=retrain_every, _disable_deepcopy=True)
        gym.Wrapper.__init__(self, env)
        if retrain_every is not None:
            retrain_every = check_int("retrain_every", retrain_every, low=1)
            if not callable(getattr(shaper, "update", None)):
                raise ValueError("shaper must have update(states) to be retrained (retrain_every given)")
        if not callable(shaper) or getattr(shaper, "mode", "add") not in ("add", "replace"):
            raise ValueError("shaper must be a RewardShaper: callable (obs, act, next_obs), mode 'add' or 'replace'")
        if feature_fn is not None and not callable(feature_fn):
            raise ValueError("feature_fn must be callable")
        if feature_fn is None and isinstance(env.observation_space, (gym.spaces.Dict, gym.spaces.Tuple)):
            kind = type(env.observation_space).__name__
            raise ValueError(f"feature_fn must be given: the env's observations are a {kind} (pass e.g. "
                             "feature_fn=lambda obs: obs['observation'], or the entries the reward should see)")
        self.shaper, self.feature_fn, self.feature_dim = shaper, feature_fn, feature_dim
        self.retrain_every = retrain_every
        self._state: np.ndarray | None = None
        self._pending: list[np.ndarray] = []
        self.total_steps = 0
        self.n_retrains = 0
        self.retrain_seconds = 0.0
        self.reward_seconds = 0.0   # time in the shaper's per-step calls (profiling; retraining is retrain_seconds)

    # ------------------------------------------------------------------ features
    def _features(self, obs) -> np.ndarray:
        if self.feature_fn is not None:
            obs = self.feature_fn(obs)
        elif isinstance(obs, (dict, tuple)):
            raise ValueError("feature_fn must be given: the env returned a dict/tuple observation")
        s = np.asarray(obs, dtype=np.float64).reshape(-1)
        if self.feature_dim is not None and s.shape[0] != self.feature_dim:
            raise ValueError(f"observation: {s.shape[0]} entries (after feature_fn) but the reward expects "
                             f"{self.feature_dim}")
        if not np.isfinite(s).all():
            raise ValueError("observation contains NaN or infinite values")
        return s

    def _observe(self, state: np.ndarray, after_step: bool) -> None:
        """Called with the features ``[F]`` of every new state: after ``reset`` (``after_step=False``) and after
        each step, once its reward is computed (``True``). With ``retrain_every``, steps' states are recorded and
        the shaper is retrained on them every ``retrain_every`` steps (and once on the first state if it reports
        ``fitted`` False), so the reward of a step is the one before the retraining it may trigger."""
        if self.retrain_every is None:
            return
        if not after_step:
            if not getattr(self.shaper, "fitted", True):
                self._retrain(state[None])
            return
        self._pending.append(state)
        self.total_steps += 1
        if self.total_steps % self.retrain_every == 0:
            self._retrain(np.stack(self._pending))
            self._pending.clear()

    def _retrain(self, states: np.ndarray) -> None:
        t0 = time.perf_counter()
        self._update(states)
        self.retrain_seconds += time.perf_counter() - t0
        self.n_retrains += 1

    def _update(self, states: np.ndarray) -> None:
        """Retrain the shaper on ``states[n, F]`` (subclasses pass their own options)."""
        self.shaper.update(states, progress=False)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._state = self._features(obs)
        self._observe(self._state, False)
        return obs, info

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        obs, task_r, terminated, truncated, info = self.env.step(action)
        nxt = self._features(obs)
        act = torch.as_tensor(np.asarray(action, dtype=np.float64).reshape(1, -1))
        t0 = time.perf_counter()
        value = float(self.shaper(torch.as_tensor(self._state[None]), act, torch.as_tensor(nxt[None]))
                      .reshape(-1)[0])
        self.reward_seconds += time.perf_counter() - t0
        info = {**info, "task_reward": task_r, "shaped_reward": value}
        self._state = nxt
        self._observe(nxt, True)
        return obs, float(shape_reward(float(task_r), value, self.shaper)), terminated, truncated, info

    def compute_reward(self, achieved_goal, desired_goal, info):
        """The step's reward for other goals (HER): the unwrapped env's ``compute_reward`` for the goals, shaped
        with the ``info["shaped_reward"]`` each transition recorded. Single or batched (``info`` an array of
        dicts), like the unwrapped env's."""
        base = getattr(self.env.unwrapped, "compute_reward", None)
        if not callable(base):
            raise AttributeError(f"{type(self.env.unwrapped).__name__} has no compute_reward (not a goal env)")
        task = base(achieved_goal, desired_goal, info)
        if isinstance(info, dict):
            return float(shape_reward(float(task), float(info["shaped_reward"]), self.shaper))
        shaped = np.array([float(i["shaped_reward"]) for i in np.asarray(info).reshape(-1)], dtype=np.float64)
        return shape_reward(np.asarray(task, dtype=np.float64), shaped, self.shaper)
