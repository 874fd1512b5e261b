"""The :class:`Task` record and the helpers that build exact, batched reward/termination functions.

A task bundles what a model-based agent needs besides the dynamics model (docs/design.md, "PETS": the
paper's code plans with the *known* reward): the env factory, the observation/action sizes and bounds,
and batched torch versions of the env's reward and termination that agree with the real env on real
transitions (same terms, weights and the same ``obs``/``next_obs`` each term is read from).

Batched functions (``reward_fn``, ``termination_fn``) take ``obs[..., O]``, ``act[..., A]``,
``next_obs[..., O]`` with any broadcastable leading dims, any floating dtype (bfloat16 included) and any
device, and return ``[...]`` (the broadcast leading dims): a reward in the inputs' promoted floating dtype,
a termination as ``torch.bool``. They are computed in at least float32 (bfloat16/float16 inputs are
up-cast first and the reward cast back), so a difference such as ``(x' - x) / dt`` is not rounded twice.
Non-finite values are *not* rejected: they propagate (planners must see a diverged rollout), and where the
env terminates on them (InvertedPendulum) or reads them as unhealthy (Hopper) the termination is True.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.common.validation import INT_MAX, as_tensor, check_int, check_threshold
from mbrl.contracts import TransitionFn

__all__ = ["Task", "batched_transition_fn", "check_transition", "make_gym_task"]

# gymnasium.make kwargs that change the model or its time step, hence the reward (``dt``): fixed per task.
_MODEL_KEYS = frozenset({"frame_skip", "xml_file"})


@dataclass(frozen=True, eq=False)
class Task:
    """A control task: env factory, sizes, action bounds and exact batched reward/termination.

    Fields:
        name: gymnasium id (e.g. ``"Hopper-v5"``).
        obs_dim, act_dim: sizes ``O`` and ``A`` of the observation and action vectors of ``make_env()``.
        action_box: the action bounds (:class:`~mbrl.common.ActionBox`, ``[A]``); ``action_low`` /
            ``action_high`` are the same bounds as read-only ``float32[A]`` arrays (properties).
        max_episode_steps: the env's time limit (truncation, never termination).
        make_env: ``(**kwargs) -> gymnasium.Env`` building the env the functions agree with.
        reward_fn: ``(obs[..., O], act[..., A], next_obs[..., O]) -> [...]`` the env's step reward.
        termination_fn: same inputs ``-> bool[...]`` the env's ``terminated`` flag.
        description: what the task is, its observation layout and reward, in words.
        info: extra facts (``dt``, reward parameters, ``obs_names``: one name per observation entry).
        success_fn: optional ``obs[..., O] -> bool[...]`` success test (None when the env defines none).
    """

    name: str
    obs_dim: int
    act_dim: int
    action_box: ActionBox
    max_episode_steps: int
    make_env: Callable[..., gym.Env]
    reward_fn: TransitionFn
    termination_fn: TransitionFn
    description: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    success_fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        for key in ("obs_dim", "act_dim", "max_episode_steps"):
            object.__setattr__(self, key, check_int(key, getattr(self, key), low=1))
        if not isinstance(self.action_box, ActionBox):
            raise ValueError(f"action_box must be an ActionBox, got {type(self.action_box).__name__}")
        object.__setattr__(self, "action_box", ActionBox(self.action_box, None, self.act_dim,
                                                         names=("action_box.low", "action_box.high")))
        arrays = self.action_box.numpy()
        for arr in arrays:
            arr.setflags(write=False)
        object.__setattr__(self, "_bounds", arrays)
        for key in ("make_env", "reward_fn", "termination_fn"):
            if not callable(getattr(self, key)):
                raise ValueError(f"{key} must be callable")

    @property
    def action_low(self) -> np.ndarray:
        """``float32[A]`` lower action bounds (read-only; the same as ``action_box.low``)."""
        return self._bounds[0]

    @property
    def action_high(self) -> np.ndarray:
        """``float32[A]`` upper action bounds (read-only; the same as ``action_box.high``)."""
        return self._bounds[1]


def check_transition(obs, act, next_obs, obs_dim: int, act_dim: int):
    """Validate and convert one batch of transitions for a batched reward/termination function.

    Args:
        obs: ``[..., obs_dim]``; act: ``[..., act_dim]``; next_obs: ``[..., obs_dim]`` (tensors or
            array-likes, leading dims broadcastable, all on one device). Non-finite values are allowed.
    Returns:
        ``(obs, act, next_obs, out_dtype, batch_shape)``: the three as tensors in the computation dtype
        (the promoted floating dtype, at least float32), the dtype a reward is returned in (the promoted
        floating dtype of the inputs) and the broadcast leading shape.
    Raises:
        ValueError: naming ``obs``, ``act`` or ``next_obs`` for a wrong last dimension, a scalar, another
            device than ``obs``'s, or leading dims that do not broadcast.
    """
    o = as_tensor("obs", obs, finite=False, min_ndim=1, last_dim=obs_dim)
    a = as_tensor("act", act, finite=False, min_ndim=1, last_dim=act_dim)
    n = as_tensor("next_obs", next_obs, finite=False, min_ndim=1, last_dim=obs_dim)
    for name, t in (("act", a), ("next_obs", n)):
        if t.device != o.device:
            raise ValueError(f"{name} must be on the device of obs ({o.device}), got {t.device}")
    out_dtype = torch.promote_types(torch.promote_types(o.dtype, a.dtype), n.dtype)
    dtype = torch.promote_types(out_dtype, torch.float32)
    try:
        batch = torch.broadcast_shapes(o.shape[:-1], a.shape[:-1], n.shape[:-1])
    except RuntimeError as exc:
        raise ValueError(
            f"obs, act and next_obs leading dims must broadcast, got {tuple(o.shape)}, {tuple(a.shape)}, "
            f"{tuple(n.shape)}"
        ) from exc
    return o.to(dtype), a.to(dtype), n.to(dtype), out_dtype, batch


def batched_transition_fn(raw: TransitionFn, obs_dim: int, act_dim: int, *, boolean: bool) -> TransitionFn:
    """Wrap ``raw(obs, act, next_obs)`` (already-validated tensors) into a public batched function.

    The wrapper validates with :func:`check_transition`, broadcasts the result to the inputs' leading
    dims (a view) and returns it as ``torch.bool`` (``boolean=True``) or in the inputs' dtype.
    """

    @functools.wraps(raw)
    def fn(obs, act, next_obs) -> torch.Tensor:
        o, a, n, out_dtype, batch = check_transition(obs, act, next_obs, obs_dim, act_dim)
        out = raw(o, a, n)
        out = out.to(torch.bool) if boolean else out.to(out_dtype)
        return out.expand(batch)

    return fn


def never_terminates(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """``bool[...]`` all False: the env never sets ``terminated`` (only the time limit ends an episode)."""
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


def _check_param(key: str, value: Any, default: Any) -> Any:
    """Validate a reward option against the type of its default; ``ValueError`` naming ``key``."""
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"option {key} must be a bool, got {value!r}")
        return bool(value)
    if isinstance(default, (int, float)):
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"option {key} must be a real number, got {value!r}")
        v = check_threshold(key, value)
        if not np.isfinite(v):
            raise ValueError(f"option {key} must be finite, got {value!r}")
        return v
    if isinstance(default, tuple) and len(default) == 2:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
            raise ValueError(f"option {key} must be a pair (low, high), got {value!r}")
        lo, hi = (check_threshold(key, v, allow_inf=True) for v in value)
        if lo > hi:
            raise ValueError(f"option {key} must have low <= high, got {value!r}")
        return (lo, hi)
    return value  # pragma: no cover - every reward option has one of the types above


def make_gym_task(
    name: str,
    options: Mapping[str, Any],
    *,
    reward_params: Mapping[str, Any],
    forced: Mapping[str, Any],
    build: Callable[[dict[str, Any], float], tuple[TransitionFn, TransitionFn]],
    obs_names: tuple[str, ...],
    description: str,
) -> Task:
    """Build a :class:`Task` for the registered gymnasium env ``name``.

    Args:
        options: ``gymnasium.make`` kwargs for the env (e.g. ``ctrl_cost_weight=0.2``, ``frame_skip=``,
            ``reset_noise_scale=``) plus optionally ``max_episode_steps``. Reward-relevant ones (keys of
            ``reward_params``) are used by both the env and the reward/termination functions.
        reward_params: the env's reward/termination kwargs and their v5 defaults.
        forced: kwargs the task fixes so that the functions can be exact (a different value in ``options``
            raises ``ValueError``).
        build: ``(params, dt) -> (raw_reward, raw_termination)`` on validated tensors.
        obs_names: one name per observation entry (stored in ``info["obs_names"]``).
        description: stored in ``Task.description``.
    Raises:
        ValueError: for a conflicting forced option or an option the env does not accept.
    """
    options = dict(options)
    max_steps = options.pop("max_episode_steps", None)
    if max_steps is None:
        max_steps = gym.spec(name).max_episode_steps
    else:
        max_steps = check_int("max_episode_steps", max_steps, low=1, high=INT_MAX)
    for key, value in forced.items():
        if key in options and options[key] != value:
            raise ValueError(f"option {key} must be {value!r} for task {name} (its reward needs it)")
    params = {key: _check_param(key, options.get(key, default), default)
              for key, default in reward_params.items()}
    env_kwargs = {**options, **forced}
    try:
        probe = gym.make(name, **env_kwargs)
    except TypeError as exc:
        raise ValueError(f"invalid option(s) {sorted(options)} for task {name}: {exc}") from exc
    try:
        dt = float(probe.unwrapped.dt)
        obs_dim = int(np.prod(probe.observation_space.shape))
        act_dim = int(np.prod(probe.action_space.shape))
        low, high = probe.action_space.low, probe.action_space.high
    finally:
        probe.close()
    if len(obs_names) != obs_dim:  # pragma: no cover - guards the per-task layout tables
        raise RuntimeError(f"{name}: obs layout has {len(obs_names)} names but the env has {obs_dim} entries")
    protected = set(reward_params) | set(forced) | _MODEL_KEYS
    fixed = {key: env_kwargs[key] for key in protected if key in env_kwargs}

    def make_env(**kwargs) -> gym.Env:
        """Build the env (``gymnasium.make``) with the task's options; ``kwargs`` adds e.g. ``render_mode``.

        Raises ``ValueError`` for a kwarg that would change the reward, termination or time step: pass
        those to :func:`mbrl.tasks.make_task` instead, so that the functions follow.
        """
        for key, value in kwargs.items():
            if key in protected and fixed.get(key, reward_params.get(key)) != value:
                raise ValueError(f"{key} changes {name}'s reward or dt: pass it to make_task, not make_env")
        return gym.make(name, **{"max_episode_steps": max_steps, **env_kwargs, **kwargs})

    raw_reward, raw_term = build(params, dt)
    return Task(
        name=name,
        obs_dim=obs_dim,
        act_dim=act_dim,
        action_box=ActionBox(low, high),
        max_episode_steps=int(max_steps),
        make_env=make_env,
        reward_fn=batched_transition_fn(raw_reward, obs_dim, act_dim, boolean=False),
        termination_fn=batched_transition_fn(raw_term, obs_dim, act_dim, boolean=True),
        description=description,
        info={"dt": dt, "params": params, "env_kwargs": env_kwargs, "obs_names": tuple(obs_names)},
    )
