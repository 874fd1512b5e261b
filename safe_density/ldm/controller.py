"""Keep any controller inside the data: filter its actions by ``G(s, a) <= c`` (docs/design.md, LDM section).

:class:`DensityConstrainedController` returns the wrapped controller's action ``a0`` whenever
``G(s, a0) <= c`` and otherwise the closest feasible action found by the search of
:mod:`safe_density.ldm.projection` (``method="sample"`` or ``"qp"``); :class:`DensityConstrainedActionWrapper`
does the same inside a ``gymnasium`` env. This module is the user-facing part: input validation, the
controller contract, per-state reports and warnings.

When no feasible action is found the least-violating candidate (smallest ``G``) is returned, ``last_feasible``
is ``False`` for that state, ``infeasible_count`` grows and a ``RuntimeWarning`` is issued.
``ldm`` is a :class:`~safe_density.ldm.LyapunovDensityModel` (its ``value``), any ``Constraint`` (its
``cost``) or a callable ``(obs, act) -> G``. Numpy in, numpy out; batched observations ``[B, O]`` work.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.common.validation import INT_MAX, as_tensor, check_int, check_threshold
from mbrl.contracts import as_controller, is_feasible
from safe_density.ldm.learned import resolve_threshold
from safe_density.ldm.projection import METHODS, ActionProjector, as_cost_fn

__all__ = ["DensityConstrainedActionWrapper", "DensityConstrainedController"]



def _default_box(inner, action_low, action_high) -> ActionBox:
    """``action_low``/``action_high`` (or an ``ActionBox`` as ``action_low``), each defaulting to the LDM's own
    ``action_box``; on the LDM's device and in its dtype."""
    dtype, device = getattr(inner, "dtype", torch.float32), getattr(inner, "device", torch.device("cpu"))
    own = getattr(inner, "action_box", None)
    if isinstance(action_low, ActionBox) or (action_low is None and action_high is None and own is not None):
        return ActionBox(action_low if action_low is not None else own, None, device=device, dtype=dtype)
    for name, given in (("action_low", action_low), ("action_high", action_high)):
        if given is None and not isinstance(own, ActionBox):
            raise ValueError(f"{name} must be given (ldm has no action_box)")
    low = own.low if action_low is None else action_low
    high = own.high if action_high is None else action_high
    return ActionBox(low, high, getattr(inner, "act_dim", None), device=device, dtype=dtype)


class DensityConstrainedController:
    """Filter the actions of ``controller`` so that ``G(s, a) <= threshold`` (module docstring).

    Args:
        controller: ``obs -> act`` function, an object with ``act(obs)`` (e.g. ``mbrl.MPCAgent``) or an
            SB3-style object with ``predict(obs, deterministic=True) -> (action, state)``; ``None`` when only
            :meth:`filter` is used (e.g. by :class:`DensityConstrainedActionWrapper`).
        ldm: ``LyapunovDensityModel`` / ``Constraint`` / callable ``(obs[..., O], act[..., A]) -> [...]``.
        threshold: the level ``c``; ``None`` takes ``ldm.threshold`` (a ``Constraint``) or the calibrated
            threshold of a ``LyapunovDensityModel`` (:func:`~safe_density.ldm.learned.resolve_threshold`).
        method: ``"sample"`` or ``"qp"``.
        action_low, action_high: action box ``[A]`` (or an ``ActionBox`` as ``action_low``); default: the
            LDM's ``action_box``.
        n_samples: candidates per state and sampling round.
        noise_std: base std of the candidates around ``a0`` (default 0.1 x box width; scales 0.1x..3x).
        qp_iters: sequential-QP rounds before falling back to sampling.
        refine_rounds: sampling rounds refining the best candidate (segment to ``a0`` + shrinking noise).
        controller_batched: ``True``: call the controller on the batch; ``False``: once per state; ``None``:
            per state for objects with ``act`` (e.g. ``MPCAgent``), else on the batch, falling back to
            per-state calls when the returned shape is not ``[B, A]``.
        seed: seeds the candidate sampling.
        warn: issue a ``RuntimeWarning`` when some state has no feasible action.
    """

    def __init__(
        self,
        controller,
        ldm,
        threshold: float | None = None,
        method: str = "sample",
        action_low=None,
        action_high=None,
        n_samples: int = 256,
        noise_std: float | None = None,
        qp_iters: int = 10,
        refine_rounds: int = 4,
        controller_batched: bool | None = None,
        seed: int | None = 0,
        warn: bool = True,
    ) -> None:
        # the Controller contract (mbrl.contracts): act(obs) as is; predict(obs) and plain callables adapted
        self._ctl = None if controller is None else as_controller(controller)
        cost_fn = as_cost_fn(ldm)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        threshold = resolve_threshold(ldm, threshold)
        n_samples = check_int("n_samples", n_samples, low=2, high=INT_MAX)
        qp_iters = check_int("qp_iters", qp_iters, low=1, high=10**6)
        refine_rounds = check_int("refine_rounds", refine_rounds, low=0, high=10**6)
        self.controller, self.ldm, self.method, self.warn, self.seed = controller, ldm, method, bool(warn), seed
        self.controller_batched = controller_batched
        inner = getattr(ldm, "ldm", ldm)  # an LDMConstraint wraps its model
        box = _default_box(inner, action_low, action_high)
        if noise_std is None:
            noise = 0.1 * box.width
        else:
            noise = torch.full_like(box.width, check_threshold("noise_std", noise_std, low=0.0, high=np.inf,
                                                               inclusive=False))
        self.projector = ActionProjector(cost_fn, threshold, box, method, n_samples, noise, qp_iters,
                                         refine_rounds, seed)
        self.threshold, self.act_dim = threshold, box.act_dim
        self.obs_dim = getattr(inner, "obs_dim", None)
        self.dtype, self.device = box.dtype, box.device
        self.last_feasible: np.ndarray | None = None
        self.last_modified: np.ndarray | None = None
        self.last_cost: np.ndarray | None = None
        self.infeasible_count = 0

    @property
    def action_box(self) -> ActionBox:
        """The box actions are projected into (:class:`~mbrl.common.ActionBox`)."""
        return self.projector.box

    @property
    def low(self) -> torch.Tensor:
        return self.projector.box.low

    @property
    def high(self) -> torch.Tensor:
        return self.projector.box.high

    # ------------------------------------------------------------------ controller interface
    def _run_controller(self, obs: np.ndarray, batched: bool) -> np.ndarray:
        if self.controller is None:
            raise RuntimeError("no controller to call: use filter(obs, act) or pass a controller")
        if not batched:
            return self._call(obs, obs.shape)
        try_batch = self.controller_batched
        if try_batch is None:  # auto: Controllers (act, e.g. MPCAgent) take one observation; adapted ones a batch
            try_batch = self._ctl is not self.controller
        if try_batch:
            try:
                out = self._call(obs, obs.shape)
            except (TypeError, ValueError, IndexError, RuntimeError):
                if self.controller_batched:   # the user said it takes batches: its error is the answer
                    raise
                out = None                    # auto: a per-state controller; call it state by state below
            if out is not None and (out.shape == (obs.shape[0], self.act_dim) or self.controller_batched):
                return out
        return np.stack([self._call(o, o.shape) for o in obs])

    def _call(self, obs: np.ndarray, shape: tuple) -> np.ndarray:
        """The controller's action(s) for ``obs`` as float64 ``[A]`` (``[B, A]`` for a batch); a scalar is read as a
        1-D action. Anything else raises ``ValueError`` naming ``controller``."""
        out = self._ctl.act(obs)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        try:
            out = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"controller must return numeric actions, got {type(out).__name__}") from None
        if out.ndim == 0 and self.act_dim == 1:
            out = out.reshape(1)
        want = (self.act_dim,) if len(shape) == 1 else (shape[0], self.act_dim)
        if out.shape != want and not (len(shape) == 2 and self.controller_batched is None):
            raise ValueError(f"controller returned an action of shape {out.shape} for observations of shape "
                             f"{shape}; expected {want}")
        return out

    def __call__(self, obs) -> np.ndarray:
        """``obs[O]`` or ``obs[B, O]`` -> filtered action ``[A]`` or ``[B, A]`` (numpy)."""
        obs_np = as_tensor("obs", obs, dtype=torch.float64, device="cpu", nonempty=True, detach=True).numpy()
        if obs_np.ndim not in (1, 2) or obs_np.shape[-1] == 0:
            raise ValueError(f"obs must have shape (O,) or (B, O), got {obs_np.shape}")
        if self.obs_dim is not None and obs_np.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have last dimension {self.obs_dim}, got shape {obs_np.shape}")
        return self.filter(obs_np, self._run_controller(obs_np, obs_np.ndim == 2))

    act = __call__

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = True):
        """SB3-style ``predict(obs) -> (action, state)``."""
        return self(obs), state

    def reset(self, seed: int | None = None) -> None:
        """Reset the wrapped controller (if it has ``reset``) between episodes. With a ``seed`` (e.g. the env's
        reset seed) the candidate sampling restarts from ``(seed, the filter's own seed)``, so that a seeded
        episode filters the same way every time."""
        if self._ctl is not None and callable(getattr(self._ctl, "reset", None)):
            self._ctl.reset()
        if seed is not None:
            own = 0 if self.seed is None else int(self.seed)
            self.projector.reseed(int(np.random.SeedSequence([int(seed), own]).generate_state(1)[0]))

    # ------------------------------------------------------------------ the filter
    def filter(self, obs, act) -> np.ndarray:
        """Project ``act`` onto ``{a : G(obs, a) <= c}`` (nearest point found), per state.

        Args:
            obs: ``[O]`` or ``[B, O]``; act: ``[A]`` or ``[B, A]`` (same batch), clipped to the box first.
        Returns:
            numpy ``[A]`` or ``[B, A]``. Sets ``last_feasible``, ``last_modified``, ``last_cost`` (per state).
        """
        o = as_tensor("obs", obs, dtype=self.dtype, device=self.device, min_ndim=1)
        a = as_tensor("act", act, dtype=self.dtype, device=self.device, min_ndim=1, last_dim=self.act_dim)
        if self.obs_dim is not None and o.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have last dimension {self.obs_dim}, got shape {tuple(o.shape)}")
        single = o.ndim == 1
        if o.ndim > 2 or a.ndim != o.ndim or (not single and a.shape[0] != o.shape[0]):
            raise ValueError(
                f"obs {tuple(o.shape)} and act {tuple(a.shape)} must be (O,), (A,) or (B, O), (B, A)"
            )
        if o.numel() == 0 or (not single and o.shape[0] == 0):
            raise ValueError("obs must not be empty")
        o2, a2 = (o[None], a[None]) if single else (o, a)
        out, g_out, bad = self.projector.project(o2, a2)
        feasible = is_feasible(g_out, self.threshold).cpu().numpy()
        self.last_feasible = feasible[0] if single else feasible
        modified = bad.cpu().numpy()
        self.last_modified = modified[0] if single else modified
        cost = g_out.cpu().numpy()
        self.last_cost = cost[0] if single else cost
        n_bad = int((~feasible).sum())
        if n_bad:
            self.infeasible_count += n_bad
            if self.warn:
                warnings.warn(
                    f"no action with G <= {self.threshold} found for {n_bad} state(s); returning the "
                    "least-violating action",
                    RuntimeWarning,
                    stacklevel=2,
                )
        res = out.detach().cpu().numpy()
        return res[0] if single else res


class DensityConstrainedActionWrapper(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """A ``gymnasium.ActionWrapper`` that filters every action through ``G(obs, a) <= threshold``.

    The observation the action is taken in is remembered from ``reset``/``step``. ``info["density_filter"]``
    reports ``feasible``, ``modified``, ``cost`` and ``original_action`` for each step. Bounds default to the
    LDM's, else the environment's ``Box`` action space.
    """

    def __init__(
        self,
        env: gym.Env,
        ldm,
        threshold: float | None = None,
        method: str = "sample",
        n_samples: int = 256,
        noise_std: float | None = None,
        qp_iters: int = 10,
        seed: int | None = 0,
        warn: bool = True,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, ldm=ldm, threshold=threshold, method=method, n_samples=n_samples,
                                                 noise_std=noise_std, qp_iters=qp_iters, seed=seed, warn=warn,
                                                 _disable_deepcopy=True)
        gym.ActionWrapper.__init__(self, env)
        inner = getattr(ldm, "ldm", ldm)
        low = high = None
        if not isinstance(getattr(inner, "action_box", None), ActionBox):
            if not isinstance(env.action_space, gym.spaces.Box):
                raise ValueError("env.action_space must be a Box when ldm has no action bounds")
            low, high = env.action_space.low, env.action_space.high
        self.filter = DensityConstrainedController(
            None, ldm, threshold, method, low, high, n_samples, noise_std, qp_iters, seed=seed, warn=warn
        )
        self._obs = None
        self._last_info: dict = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the env; with a ``seed``, the filter's candidate sampling restarts from ``(seed, its own seed)``
        too, so that a seeded episode is reproducible."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.filter.reset(seed)
        self._obs = obs
        return obs, info

    def action(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        out = self.filter.filter(
            np.asarray(self._obs, dtype=np.float64), np.asarray(action, dtype=np.float64)
        )
        self._last_info = {
            "feasible": self.filter.last_feasible,
            "modified": self.filter.last_modified,
            "cost": self.filter.last_cost,
            "original_action": np.asarray(action),
        }
        dtype = getattr(self.env.action_space, "dtype", None)
        return out.astype(dtype) if dtype is not None else out

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        self._obs = obs
        info = dict(info)
        info["density_filter"] = self._last_info
        return obs, reward, terminated, truncated, info
