"""PETS cross-entropy method (Chua et al. 2018, docs/design.md "PETS"; PETS code ``dmbrl/misc/optimizers/cem.py``).

Each iteration samples ``population`` action sequences from ``N(mean, var)`` truncated at 2 standard
deviations, keeps the ``elites`` best by the constrained ranking of :mod:`mbrl.planning.selection`, and
moves the distribution with momentum ``alpha``::

    mean <- alpha * mean + (1 - alpha) * mean(elites)
    var  <- alpha * var  + (1 - alpha) * var(elites)

The initial variance is PETS's ``(high - low)^2 / 16`` (std a quarter of the bound range). With
``clip="truncate"`` (PETS) the variance is also capped per entry so that the 2-std truncation stays inside
the bounds (``var <= min((mean - low) / 2, (high - mean) / 2)^2``); with ``clip="clip"`` samples are drawn
from the uncapped distribution and clipped to the bounds. Either way every sample lies within the bounds.
The result is the final mean (PETS) or, with ``return_best=True``, the best sample seen; the best sample is
kept in ``last_best`` either way (the MPC agent executes it when the mean violates a constraint).
"""

from __future__ import annotations

import torch

from mbrl.common.validation import check_threshold
from mbrl.config import PETS
from mbrl.planning.base import OptimizerBase, truncated_normal
from mbrl.planning.selection import select_elites, update_best

__all__ = ["CEM"]

_F32_MAX = torch.finfo(torch.float32).max  # a huge init_std saturates instead of overflowing float32


class CEM(OptimizerBase):
    """PETS CEM (module docstring). Defaults are the PETS code's: 500 / 50, 5 iterations, alpha 0.1.

    Args:
        population: samples per iteration ``N``.
        elites: elites per iteration ``K <= N``.
        iterations: CEM iterations per call.
        alpha: momentum kept from the previous distribution (PETS 0.1).
        init_std: initial standard deviation (scalar); default ``(high - low) / 4`` per entry.
        min_std: floor on the standard deviation (0 = none, as in PETS).
        clip: ``"truncate"`` (PETS variance cap) or ``"clip"`` (clip samples to the bounds).
        return_best: return the best sample seen instead of the final mean.
        low, high, box: default action bounds (:class:`~mbrl.planning.OptimizerBase`; ``optimize`` overrides).
    """

    def __init__(self, population: int = PETS.population, elites: int = PETS.elites,
                 iterations: int = PETS.iterations, alpha: float = PETS.alpha,
                 init_std: float | None = None, min_std: float = 0.0, clip: str = "truncate",
                 return_best: bool = False, low=None, high=None, box=None) -> None:
        super().__init__(low, high, box=box)
        self.population, self.elites, self.iterations = self._sizes(population, elites, iterations)
        self.alpha = self._alpha(alpha)
        self.init_std = None if init_std is None else check_threshold("init_std", init_std, low=0.0)
        self.min_std = check_threshold("min_std", min_std, low=0.0)
        if clip not in ("truncate", "clip"):
            raise ValueError(f"clip must be 'truncate' or 'clip', got {clip!r}")
        self.clip = clip
        self.return_best = bool(return_best)

    def optimize(self, objective, init_mean, *, box=None, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Optimise ``objective`` from ``init_mean`` (``[H, A]`` or ``[B, H, A]``); see the module doc."""
        mean, box, squeeze = self._prepare(init_mean, box, low, high)
        B, H, A = mean.shape
        N, K = self.population, self.elites
        var = ((box.width / 4).square().expand_as(mean) if self.init_std is None
               else torch.full_like(mean, min(self.init_std ** 2, _F32_MAX)))
        min_var = self.min_std ** 2
        best, best_key = mean.clone(), None
        for _ in range(self.iterations):
            v = var
            if self.clip == "truncate":
                v = torch.minimum(torch.minimum((mean - box.low) / 2, (box.high - mean) / 2).square(), var)
            noise = truncated_normal((B, N, H, A), generator=generator, device=mean.device)
            samples = mean.unsqueeze(1) + noise * v.sqrt().unsqueeze(1)
            samples = box.project(samples)
            scores, viol = self._evaluate(objective, samples, squeeze)
            idx = select_elites(scores, viol, K)
            elite = samples.gather(1, idx[:, :, None, None].expand(B, K, H, A))
            best, best_key = update_best(best, best_key, elite[:, 0], scores.gather(1, idx[:, :1]),
                                         viol.gather(1, idx[:, :1]))
            mean = self.alpha * mean + (1 - self.alpha) * elite.mean(1)
            var = self.alpha * var + (1 - self.alpha) * elite.var(1, unbiased=False)
            var = var.clamp_min(min_var)
        self._record_best(best, best_key, mean, box)
        return self._finish(best if self.return_best else mean, mean, box, squeeze)

