"""Keep any controller inside the data: filter its actions by ``G(s, a) <= c`` (design.md, LDM section).

:class:`DensityConstrainedController` returns the wrapped controller's action ``a0`` whenever
``G(s, a0) <= c`` and otherwise the closest feasible action found by

* ``method="sample"``: candidates around ``a0`` at several noise scales, uniform candidates in the action box
  and points on the segments from ``a0`` to the feasible candidates; the feasible one nearest to ``a0`` wins
  (all states and candidates batched in one evaluation of ``G`` per round);
* ``method="qp"``: a QP on the linearisation of ``G`` in the action (cvxpy, built once with ``Parameter`` s
  and re-solved),

      minimise ||a - a0||^2   s.t.   G(s, a_k) + grad_a G(s, a_k) . (a - a_k) <= c,   low <= a <= high,

  re-linearised at its answer ``a_k`` for up to ``qp_iters`` rounds (sequential QP); the answer is checked
  with the real ``G`` and sampling takes over when it is not feasible.

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

from mbrl.contracts import as_controller
from mbrl.util.seeding import make_generator
from mbrl.util.validation import as_tensor, check_int, check_threshold

__all__ = ["DensityConstrainedActionWrapper", "DensityConstrainedController"]

_METHODS = ("sample", "qp")


class DensityConstrainedController:
    """Filter the actions of ``controller`` so that ``G(s, a) <= threshold`` (module docstring).

    Args:
        controller: ``obs -> act`` function, an object with ``act(obs)`` (e.g. ``mbrl.MPCAgent``) or an
            SB3-style object with ``predict(obs, deterministic=True) -> (action, state)``; ``None`` when only
            :meth:`filter` is used (e.g. by :class:`DensityConstrainedActionWrapper`).
        ldm: ``LyapunovDensityModel`` / ``Constraint`` / callable ``(obs[..., O], act[..., A]) -> [...]``.
        threshold: the level ``c``; ``None`` takes ``ldm.threshold`` (a ``Constraint``) or the calibrated
            threshold of a ``LyapunovDensityModel`` (:meth:`~LyapunovDensityModel.calibrate`).
        method: ``"sample"`` or ``"qp"``.
        action_low, action_high: action box ``[A]``; default ``ldm.action_low`` / ``ldm.action_high``.
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
        if controller is not None and not (
            callable(controller) or hasattr(controller, "act") or hasattr(controller, "predict")
        ):
            raise ValueError("controller must be callable or have an act(obs) or predict(obs) method")
        if not (
            callable(getattr(ldm, "value", None)) or callable(getattr(ldm, "cost", None)) or callable(ldm)
        ):
            raise ValueError(
                "ldm must have value(obs, act) or cost(obs, act), or be callable (obs, act) -> G"
            )
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if threshold is None:
            calibration = getattr(ldm, "calibration", None)
            if hasattr(ldm, "threshold"):
                threshold = ldm.threshold
            elif isinstance(calibration, dict) and "ldm" in calibration:
                threshold = calibration["ldm"]  # LyapunovDensityModel.calibrate(obs, act, quantile)
            else:
                raise ValueError("threshold must be given (ldm has no threshold and was not calibrated: "
                                 "call ldm.calibrate(obs, act, quantile) or pass threshold=)")
        self.threshold = check_threshold("threshold", threshold)
        n_samples = check_int("n_samples", n_samples, low=2, high=2**31 - 1)
        qp_iters = check_int("qp_iters", qp_iters, low=1, high=10**6)
        self.refine_rounds = check_int("refine_rounds", refine_rounds, low=0, high=10**6)
        self.controller, self.ldm, self.method = controller, ldm, method
        self.n_samples, self.qp_iters, self.warn = int(n_samples), int(qp_iters), bool(warn)
        self.controller_batched = controller_batched
        inner = getattr(ldm, "ldm", ldm)  # an LDMConstraint wraps its model
        self.dtype = getattr(inner, "dtype", torch.float32)
        self.device = getattr(inner, "device", torch.device("cpu"))
        if action_low is None:
            action_low = getattr(inner, "action_low", None)
        if action_high is None:
            action_high = getattr(inner, "action_high", None)
        if action_low is None:
            raise ValueError("action_low must be given (ldm has no action_low)")
        if action_high is None:
            raise ValueError("action_high must be given (ldm has no action_high)")
        low = as_tensor("action_low", action_low, dtype=self.dtype, device=self.device).reshape(-1)
        high = as_tensor("action_high", action_high, dtype=self.dtype, device=self.device).reshape(-1)
        act_dim = getattr(inner, "act_dim", low.shape[0])
        if low.shape[0] != act_dim or low.numel() == 0:
            raise ValueError(f"action_low must have {act_dim} entries, got {low.shape[0]}")
        if high.shape[0] != low.shape[0]:
            raise ValueError(
                f"action_high must have {low.shape[0]} entries like action_low, got {high.shape[0]}"
            )
        if not bool((low < high).all()):
            raise ValueError("action_low must be strictly below action_high in every dimension")
        self.low, self.high, self.act_dim = low, high, int(low.shape[0])
        self.obs_dim = getattr(inner, "obs_dim", None)
        width = high - low
        if noise_std is None:
            self.noise_std = 0.1 * width
        else:
            ns = check_threshold("noise_std", noise_std, low=0.0, high=np.inf, inclusive=False)
            self.noise_std = torch.full_like(width, ns)
        self._gen = make_generator(seed, self.device)
        self._qp = None
        self.last_feasible: np.ndarray | None = None
        self.last_modified: np.ndarray | None = None
        self.last_cost: np.ndarray | None = None
        self.infeasible_count = 0

    # ------------------------------------------------------------------ G evaluation
    def _cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if callable(getattr(self.ldm, "value", None)):
            out = self.ldm.value(obs, act)
        elif callable(getattr(self.ldm, "cost", None)):
            out = self.ldm.cost(obs, act)
        else:
            out = self.ldm(obs, act)
        return torch.as_tensor(out, device=self.device).to(self.dtype)

    # ------------------------------------------------------------------ controller interface
    def _run_controller(self, obs: np.ndarray, batched: bool) -> np.ndarray:
        if self.controller is None:
            raise RuntimeError("no controller to call: use filter(obs, act) or pass a controller")

        ctl = as_controller(self.controller)   # the Controller contract (mbrl.contracts): act / predict / callable

        def call(o):
            out = ctl.act(o)
            if isinstance(out, torch.Tensor):
                out = out.detach().cpu().numpy()
            return np.asarray(out, dtype=np.float64)

        if not batched:
            return call(obs)
        try_batch = self.controller_batched
        if try_batch is None:  # auto: objects with act() (MPCAgent) take one observation; others a batch
            try_batch = not (hasattr(self.controller, "act") and callable(self.controller.act))
        if try_batch:
            out = call(obs)
            if out.shape == (obs.shape[0], self.act_dim) or self.controller_batched:
                return out
        return np.stack([call(o) for o in obs])

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

    def reset(self) -> None:
        """Reset the wrapped controller (if it has ``reset``) between episodes."""
        if self.controller is not None and callable(getattr(self.controller, "reset", None)):
            self.controller.reset()

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
        a2 = torch.minimum(torch.maximum(a2, self.low), self.high)
        with torch.no_grad():
            g0 = self._cost(o2, a2)
        out, g_out = a2.clone(), g0.clone()
        bad = ~(g0 <= self.threshold)
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(-1)
            if self.method == "qp":
                new, g_new = self._qp_project(o2[rows], a2[rows])
                still = ~(g_new <= self.threshold)
                if bool(still.any()):
                    s_new, s_g = self._sample_project(o2[rows[still]], a2[rows[still]])
                    new[still], g_new[still] = s_new, s_g
            else:
                new, g_new = self._sample_project(o2[rows], a2[rows])
            out[rows], g_out[rows] = new, g_new
        feasible = (g_out <= self.threshold).cpu().numpy()
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

    def _clip(self, a: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(a, self.low), self.high)

    @torch.no_grad()
    def _sample_project(self, obs: torch.Tensor, a0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched sampling search: ``obs[B, O]``, ``a0[B, A]`` -> (action ``[B, A]``, ``G`` ``[B]``).

        Round 0: candidates around ``a0`` (noise scales 0.1x..3x ``noise_std``) and uniform in the box. Then
        ``refine_rounds`` rounds of points on the segment ``a0 -> best`` and shrinking noise around ``best``.
        """
        b, k, ad = a0.shape[0], self.n_samples, self.act_dim
        n_uni = max(1, k // 4)
        n_loc = k - n_uni
        scales = torch.tensor([0.1, 0.3, 1.0, 3.0], dtype=self.dtype, device=self.device)
        sc = scales[torch.arange(n_loc, device=self.device) % len(scales)][None, :, None]
        noise = torch.randn(b, n_loc, ad, generator=self._gen, device=self.device, dtype=self.dtype)
        local = a0[:, None] + sc * self.noise_std * noise
        u = torch.rand(b, n_uni, ad, generator=self._gen, device=self.device, dtype=self.dtype)
        cand = self._clip(torch.cat([local, self.low + u * (self.high - self.low)], 1))  # [B, K, A]
        best, g_best = self._pick(obs, a0, cand)
        n_seg = k // 2
        t = torch.linspace(0, 1, n_seg, dtype=self.dtype, device=self.device)[None, :, None]
        for r in range(self.refine_rounds):
            seg = a0[:, None] + t * (best - a0)[:, None]
            scale = 0.5 * 0.3**r
            fine = best[:, None] + scale * self.noise_std * torch.randn(
                b, k - n_seg, ad, generator=self._gen, device=self.device, dtype=self.dtype
            )
            cand = self._clip(torch.cat([seg, fine, best[:, None]], 1))
            best, g_best = self._pick(obs, a0, cand)
        return best, g_best

    def _pick(
        self, obs: torch.Tensor, a0: torch.Tensor, cand: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closest feasible candidate, else the least-violating: ``cand[B, K, A]`` -> ``[B, A]``, ``[B]``."""
        g = self._cost(obs[:, None].expand(-1, cand.shape[1], -1), cand)  # [B, K]
        feas = g <= self.threshold
        dist = (cand - a0[:, None]).norm(dim=-1)
        score = torch.where(feas, dist, torch.full_like(dist, float("inf")))
        i_feas = score.argmin(1)
        i_viol = torch.nan_to_num(g, nan=float("inf")).argmin(1)
        idx = torch.where(feas.any(1), i_feas, i_viol)
        ar = torch.arange(cand.shape[0], device=self.device)
        return cand[ar, idx], g[ar, idx]

    def _build_qp(self):
        import cvxpy as cp

        n = self.act_dim
        a, a0, g = cp.Variable(n), cp.Parameter(n), cp.Parameter(n)
        b = cp.Parameter()
        lo = cp.Parameter(n, value=self.low.cpu().double().numpy())
        hi = cp.Parameter(n, value=self.high.cpu().double().numpy())
        prob = cp.Problem(cp.Minimize(cp.sum_squares(a - a0)), [g @ a <= b, a >= lo, a <= hi])
        self._qp = (prob, a, a0, g, b)

    def _qp_project(self, obs: torch.Tensor, a0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential QP per state (module docstring): ``obs[B, O]``, ``a0[B, A]`` -> ``[B, A]``, ``[B]``."""
        import cvxpy as cp

        if self._qp is None:
            self._build_qp()
        prob, var, p_a0, p_g, p_b = self._qp
        cur = a0.clone()
        best = a0.clone()
        with torch.no_grad():
            g_best = self._cost(obs, a0)
        active = torch.ones(a0.shape[0], dtype=torch.bool, device=self.device)
        margin = 1e-4 * (1.0 + abs(self.threshold))
        for _ in range(self.qp_iters):
            x = cur.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                gval = self._cost(obs, x)
                if not gval.requires_grad:
                    break  # G is not differentiable: leave it to sampling
                (grad,) = torch.autograd.grad(gval.sum(), x)
            grad_np, g_np, x_np = (t.detach().cpu().double().numpy() for t in (grad, gval, x))
            a0_np = a0.detach().cpu().double().numpy()
            new = x_np.copy()
            for i in range(a0.shape[0]):
                gn = float(np.linalg.norm(grad_np[i]))
                if not bool(active[i]) or not np.isfinite(gn) or gn < 1e-12 or not np.isfinite(g_np[i]):
                    continue  # flat or undefined linearisation: nothing to project on
                p_a0.value, p_g.value = a0_np[i], grad_np[i]
                p_b.value = float(self.threshold - margin - g_np[i] + grad_np[i] @ x_np[i])
                try:
                    prob.solve(solver=cp.CLARABEL)
                except cp.error.SolverError:
                    continue
                if var.value is not None and prob.status in ("optimal", "optimal_inaccurate"):
                    new[i] = var.value
            cur = self._clip(torch.as_tensor(new, dtype=self.dtype, device=self.device))
            with torch.no_grad():
                g_cur = self._cost(obs, cur)
            ok_now = g_cur <= self.threshold
            ok_best = g_best <= self.threshold
            d_cur, d_best = (cur - a0).norm(dim=-1), (best - a0).norm(dim=-1)
            better = (ok_now & (~ok_best | (d_cur < d_best))) | (~ok_now & ~ok_best & (g_cur < g_best))
            better &= active
            best = torch.where(better[:, None], cur, best)
            g_best = torch.where(better, g_cur, g_best)
            active &= ~ok_now
            if not bool(active.any()):
                break
        return best, g_best


class DensityConstrainedActionWrapper(gym.ActionWrapper):
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
        super().__init__(env)
        inner = getattr(ldm, "ldm", ldm)
        low, high = getattr(inner, "action_low", None), getattr(inner, "action_high", None)
        if low is None or high is None:
            if not isinstance(env.action_space, gym.spaces.Box):
                raise ValueError("env.action_space must be a Box when ldm has no action bounds")
            low, high = env.action_space.low, env.action_space.high
        self.filter = DensityConstrainedController(
            None, ldm, threshold, method, low, high, n_samples, noise_std, qp_iters, seed=seed, warn=warn
        )
        self._obs = None
        self._last_info: dict = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
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
