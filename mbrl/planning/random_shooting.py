"""Random shooting: the best of ``population`` uniform samples within the bounds (Nagabandi et al., ICRA
2018, "Neural network dynamics for model-based deep RL with model-free fine-tuning"), ranked by the
constrained selection of :mod:`mbrl.planning.selection`. The baseline every optimiser should beat."""

from __future__ import annotations

import torch

from mbrl.common.validation import INT_MAX, check_int
from mbrl.planning.base import OptimizerBase
from mbrl.planning.selection import select_elites

__all__ = ["RandomShooting"]


class RandomShooting(OptimizerBase):
    """Best of ``population`` uniform action sequences (``init_mean`` only fixes the shape and device).

    Args:
        population: number of samples.
        low, high, box: default action bounds (:class:`~mbrl.planning.OptimizerBase`).
    """

    def __init__(self, population: int = 1000, low=None, high=None, box=None) -> None:
        super().__init__(low, high, box=box)
        self.population = check_int("population", population, low=1, high=INT_MAX)

    def optimize(self, objective, init_mean, *, box=None, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Return the best sample, ``[H, A]`` or ``[B, H, A]`` like ``init_mean``."""
        mean, box, squeeze = self._prepare(init_mean, box, low, high)
        B, H, A = mean.shape
        samples = box.sample(B, self.population, H, generator=generator)
        scores, viol = self._evaluate(objective, samples, squeeze)
        idx = select_elites(scores, viol, 1)
        best = samples.gather(1, idx[:, :, None, None].expand(B, 1, H, A))[:, 0]
        self._record_best(best, (scores.gather(1, idx), viol.gather(1, idx)), mean, box)
        return self._finish(best, mean, box, squeeze)
