"""Project actions onto ``{a in box : G(s, a) <= c}``: the search behind every LDM controller wrapper.

:class:`ActionProjector` keeps an action ``a0`` where ``G(s, a0) <= c`` and otherwise finds the closest
feasible action (docs/design.md, "Lyapunov density models", acting rule) by

* ``method="sample"``: candidates around ``a0`` at several noise scales, uniform candidates in the action box
  and points on the segments from ``a0`` to the feasible candidates; the feasible one nearest to ``a0`` wins
  (all states and candidates batched in one evaluation of ``G`` per round);
* ``method="qp"``: a QP on the linearisation of ``G`` in the action (cvxpy, built once with ``Parameter`` s
  and re-solved),

      minimise ||a - a0||^2   s.t.   G(s, a_k) + grad_a G(s, a_k) . (a - a_k) <= c,   low <= a <= high,

  re-linearised at its answer ``a_k`` for up to ``qp_iters`` rounds (sequential QP); the answer is checked
  with the real ``G`` and sampling takes over when it is not feasible.

When no feasible action exists among the candidates the least-violating one (smallest ``G``) is returned.
Tensors in, tensors out, no validation: the wrappers in :mod:`safe_density.ldm.controller` validate.
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.common.seeding import make_generator
from mbrl.contracts import CostFn, is_feasible

__all__ = ["METHODS", "ActionProjector", "as_cost_fn"]

METHODS = ("sample", "qp")


def as_cost_fn(ldm) -> CostFn:
    """``(obs[..., O], act[..., A]) -> G[...]`` from a ``LyapunovDensityModel`` (its ``value``), a
    ``Constraint`` (its ``cost``) or a callable; resolved once so the search does not re-dispatch."""
    for attr in ("value", "cost"):
        fn = getattr(ldm, attr, None)
        if callable(fn):
            return fn
    if callable(ldm):
        return ldm
    raise ValueError("ldm must have value(obs, act) or cost(obs, act), or be callable (obs, act) -> G")


class ActionProjector:
    """Nearest feasible action under ``G(s, a) <= threshold`` in ``box`` (module docstring).

    Args:
        cost_fn: ``(obs[..., O], act[..., A]) -> G[...]`` (see :func:`as_cost_fn`).
        threshold: the level ``c``; box: the :class:`~mbrl.common.ActionBox` (its device and dtype are used).
        method: ``"sample"`` or ``"qp"``; n_samples: candidates per state and round; noise_std: ``[A]`` base
            std of the candidates around ``a0`` (scales 0.1x..3x); qp_iters: sequential-QP rounds;
            refine_rounds: sampling rounds refining the best candidate; seed: seeds the candidates.
    """

    def __init__(self, cost_fn: CostFn, threshold: float, box: ActionBox, method: str, n_samples: int,
                 noise_std: torch.Tensor, qp_iters: int, refine_rounds: int, seed: int | None) -> None:
        self.cost_fn, self.threshold, self.box, self.method = cost_fn, float(threshold), box, method
        self.n_samples, self.noise_std = n_samples, noise_std
        self.qp_iters, self.refine_rounds = qp_iters, refine_rounds
        self.device, self.dtype = box.device, box.dtype
        self._gen = make_generator(seed, self.device)
        self._qp = None

    def reseed(self, seed: int | None) -> None:
        """Restart the candidates' generator from ``seed`` (a wrapper does it when its env is reset with a seed,
        so that a seeded episode filters the same way every time)."""
        self._gen = make_generator(seed, self.device)

    def cost(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.cost_fn(obs, act), device=self.device).to(self.dtype)

    @torch.no_grad()
    def project(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``obs[B, O]``, ``act[B, A]`` -> (``action[B, A]``, ``G[B]`` at it, ``modified[B]`` bool)."""
        a = self.box.project(act)
        g0 = self.cost(obs, a)
        out, g_out = a.clone(), g0.clone()
        bad = ~is_feasible(g0, self.threshold)
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(-1)
            if self.method == "qp":
                new, g_new = self._qp_project(obs[rows], a[rows])
                still = ~is_feasible(g_new, self.threshold)
                if bool(still.any()):
                    new[still], g_new[still] = self._sample_project(obs[rows[still]], a[rows[still]])
            else:
                new, g_new = self._sample_project(obs[rows], a[rows])
            out[rows], g_out[rows] = new, g_new
        return out, g_out, bad

    # ------------------------------------------------------------------ sampling
    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self._gen, device=self.device, dtype=self.dtype)

    def _sample_project(self, obs: torch.Tensor, a0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched sampling search: ``obs[B, O]``, ``a0[B, A]`` -> (action ``[B, A]``, ``G`` ``[B]``).

        Round 0: candidates around ``a0`` (noise scales 0.1x..3x ``noise_std``) and uniform in the box. Then
        ``refine_rounds`` rounds of points on the segment ``a0 -> best`` and shrinking noise around ``best``.
        """
        b, k, ad = a0.shape[0], self.n_samples, self.box.act_dim
        n_uni = max(1, k // 4)
        n_loc = k - n_uni
        scales = torch.tensor([0.1, 0.3, 1.0, 3.0], dtype=self.dtype, device=self.device)
        sc = scales[torch.arange(n_loc, device=self.device) % len(scales)][None, :, None]
        local = a0[:, None] + sc * self.noise_std * self._randn(b, n_loc, ad)
        uniform = self.box.sample(b, n_uni, generator=self._gen)
        best, g_best = self._pick(obs, a0, self.box.project(torch.cat([local, uniform], 1)))   # [B, K, A]
        n_seg = k // 2
        t = torch.linspace(0, 1, n_seg, dtype=self.dtype, device=self.device)[None, :, None]
        for r in range(self.refine_rounds):
            seg = a0[:, None] + t * (best - a0)[:, None]
            fine = best[:, None] + 0.5 * 0.3**r * self.noise_std * self._randn(b, k - n_seg, ad)
            best, g_best = self._pick(obs, a0, self.box.project(torch.cat([seg, fine, best[:, None]], 1)))
        return best, g_best

    def _pick(self, obs: torch.Tensor, a0: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Closest feasible candidate, else the least-violating: ``cand[B, K, A]`` -> ``[B, A]``, ``[B]``."""
        g = self.cost(obs[:, None].expand(-1, cand.shape[1], -1), cand)  # [B, K]
        feas = is_feasible(g, self.threshold)
        dist = (cand - a0[:, None]).norm(dim=-1)
        score = torch.where(feas, dist, torch.full_like(dist, float("inf")))
        idx = torch.where(feas.any(1), score.argmin(1), torch.nan_to_num(g, nan=float("inf")).argmin(1))
        ar = torch.arange(cand.shape[0], device=self.device)
        return cand[ar, idx], g[ar, idx]

    # ------------------------------------------------------------------ sequential QP (cvxpy)
    def _build_qp(self):
        import cvxpy as cp

        n = self.box.act_dim
        a, a0, g = cp.Variable(n), cp.Parameter(n), cp.Parameter(n)
        b = cp.Parameter()
        lo, hi = (cp.Parameter(n, value=x.astype(np.float64)) for x in self.box.numpy())
        prob = cp.Problem(cp.Minimize(cp.sum_squares(a - a0)), [g @ a <= b, a >= lo, a <= hi])
        self._qp = (prob, a, a0, g, b)

    def _linearise(self, obs: torch.Tensor, x: torch.Tensor):
        """``(grad_a G[B, A], G[B])`` at ``x`` as float64 numpy, or None when ``G`` is not differentiable."""
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            gval = self.cost(obs, x)
            if not gval.requires_grad:
                return None
            (grad,) = torch.autograd.grad(gval.sum(), x)
        return grad.detach().cpu().double().numpy(), gval.detach().cpu().double().numpy()

    def _solve_qps(self, a0_np: np.ndarray, x_np: np.ndarray, grad_np, g_np, active) -> np.ndarray:
        """One QP per active state on the linearisation at ``x`` (module docstring); returns the answers."""
        import cvxpy as cp

        if self._qp is None:
            self._build_qp()
        prob, var, p_a0, p_g, p_b = self._qp
        margin = 1e-4 * (1.0 + abs(self.threshold))
        new = x_np.copy()
        for i in range(a0_np.shape[0]):  # cvxpy solves one problem at a time (a Python loop is unavoidable)
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
        return new

    def _qp_project(self, obs: torch.Tensor, a0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequential QP per state (module docstring): ``obs[B, O]``, ``a0[B, A]`` -> ``[B, A]``, ``[B]``."""
        cur, best = a0.clone(), a0.clone()
        g_best = self.cost(obs, a0)
        active = torch.ones(a0.shape[0], dtype=torch.bool, device=self.device)
        a0_np = a0.detach().cpu().double().numpy()
        for _ in range(self.qp_iters):
            lin = self._linearise(obs, cur)
            if lin is None:
                break  # G is not differentiable: leave it to sampling
            new = self._solve_qps(a0_np, cur.detach().cpu().double().numpy(), *lin, active.cpu().numpy())
            cur = self.box.project(torch.as_tensor(new, dtype=self.dtype, device=self.device))
            g_cur = self.cost(obs, cur)
            ok_now, ok_best = is_feasible(g_cur, self.threshold), is_feasible(g_best, self.threshold)
            d_cur, d_best = (cur - a0).norm(dim=-1), (best - a0).norm(dim=-1)
            better = (ok_now & (~ok_best | (d_cur < d_best))) | (~ok_now & ~ok_best & (g_cur < g_best))
            better &= active
            best = torch.where(better[:, None], cur, best)
            g_best = torch.where(better, g_cur, g_best)
            active &= ~ok_now
            if not bool(active.any()):
                break
        return best, g_best
