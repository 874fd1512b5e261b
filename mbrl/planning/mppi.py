"""MPPI: model-predictive path integral control (Williams et al., ICRA 2017, "Information theoretic MPC"),
in the filtered-noise form of PDDM (Nagabandi et al., CoRL 2019, arXiv 1909.11652).

Each iteration perturbs the mean sequence with time-correlated noise, ``u_t ~ N(0, noise_std^2)``,
``n_t = beta * u_t + (1 - beta) * n_{t-1}`` (PDDM's filter; ``beta = 1`` is plain white noise), clips the
samples to the bounds, and replaces the mean by the exponentially weighted average

    mean = sum_i w_i a_i,    w_i = softmax_i(S_i / temperature)

(``temperature`` is Williams et al.'s lambda; PDDM's reward-weighting ``gamma = 1 / lambda = 10``).
Constraints (docs/design.md, "Contracts"): when a problem has a feasible candidate, only feasible candidates get
weight (hard constraints); when none is feasible the weights are ``softmax(-violation / temperature)``
(minimise the violation). Non-finite candidates get zero weight; if every candidate is non-finite the
mean is kept. Defaults are PDDM's: 700 samples, ``gamma = 10``, ``beta = 0.6``, noise std ``0.9`` (in
action units, for bounds ``[-1, 1]``), one update per call.
"""

from __future__ import annotations

import torch

from mbrl.common.validation import INT_MAX, check_int, check_threshold
from mbrl.planning.base import OptimizerBase
from mbrl.planning.selection import FEASIBLE, INFEASIBLE, candidate_class, select_elites, update_best

__all__ = ["MPPI", "mppi_weights"]


def mppi_weights(scores: torch.Tensor, violations: torch.Tensor, temperature: float) -> torch.Tensor:
    """Constrained MPPI weights (module docstring) over the last dim: ``[..., N] -> [..., N]`` summing to 1
    (or all 0 when every candidate is non-finite)."""
    cls = candidate_class(scores, violations)
    any_feasible = (cls == FEASIBLE).any(-1, keepdim=True)
    util = torch.where(any_feasible, scores.double(), -violations.double())
    ok = torch.where(any_feasible, cls == FEASIBLE, cls == INFEASIBLE)
    logits = torch.where(ok, util / temperature, torch.full_like(util, -torch.inf))
    top = logits.amax(-1, keepdim=True)
    w = torch.where(ok, torch.exp(logits - torch.where(torch.isfinite(top), top, 0.0)), 0.0)
    total = w.sum(-1, keepdim=True)
    return torch.where(total > 0, w / total.clamp_min(1e-300), 0.0).to(scores.dtype)


class MPPI(OptimizerBase):
    """MPPI (module docstring).

    Args:
        population: samples per iteration.
        iterations: weighted-average updates per call (1 in MPPI/PDDM).
        temperature: ``lambda`` of the exponential weights (PDDM gamma = 10 -> 0.1).
        noise_std: std of the action perturbation (scalar, action units).
        beta: PDDM noise filter coefficient in ``(0, 1]``.
        low, high, box: default action bounds (:class:`~mbrl.planning.OptimizerBase`).
    """

    def __init__(self, population: int = 700, iterations: int = 1, temperature: float = 0.1,
                 noise_std: float = 0.9, beta: float = 0.6, low=None, high=None, box=None) -> None:
        super().__init__(low, high, box=box)
        self.population = check_int("population", population, low=1, high=INT_MAX)
        self.iterations = check_int("iterations", iterations, low=1, high=INT_MAX)
        self.temperature = check_threshold("temperature", temperature, low=0.0, high=float("inf"),
                                           inclusive=False)
        self.noise_std = check_threshold("noise_std", noise_std, low=0.0, high=float("inf"))
        self.beta = check_threshold("beta", beta, low=0.0, high=1.0)
        if self.beta == 0:
            raise ValueError("beta must lie in (0, 1], got 0.0")

    def optimize(self, objective, init_mean, *, box=None, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Optimise ``objective`` from ``init_mean`` (``[H, A]`` or ``[B, H, A]``); see the module doc."""
        mean, box, squeeze = self._prepare(init_mean, box, low, high)
        B, H, A = mean.shape
        N = self.population
        # filter weights: n_t = sum_{s<=t} beta (1-beta)^(t-s) u_s, as one [H, H] lower-triangular matrix
        t = torch.arange(H, device=mean.device)
        lag = (t[:, None] - t[None, :]).double()
        filt = torch.where(lag >= 0, self.beta * (1 - self.beta) ** lag.clamp_min(0), 0.0).float()
        best, best_key = mean.clone(), None
        for _ in range(self.iterations):
            u = torch.randn((B, N, H, A), generator=generator, device=mean.device) * self.noise_std
            noise = torch.einsum("ts,bnsa->bnta", filt, u)
            samples = mean.unsqueeze(1) + noise
            samples = box.project(samples)
            scores, viol = self._evaluate(objective, samples, squeeze)
            top = select_elites(scores, viol, 1)
            cand = samples.gather(1, top[:, :, None, None].expand(B, 1, H, A))[:, 0]
            best, best_key = update_best(best, best_key, cand, scores.gather(1, top), viol.gather(1, top))
            w = mppi_weights(scores, viol, self.temperature)
            new = torch.einsum("bn,bnha->bha", w, samples)
            mean = torch.where((w.sum(-1) > 0)[:, None, None], new, mean)
        self._record_best(best, best_key, mean, box)
        return self._finish(mean, mean, box, squeeze)
