"""What every trajectory optimiser shares: :class:`OptimizerBase` (docs/design.md, "Contracts").

The contract itself is :class:`mbrl.contracts.TrajectoryOptimizer`: ``optimize(objective, init_mean, box=...,
generator=...)`` searches action sequences ``[H, A]`` for the one the ``objective`` scores best. It works on a
leading batch of ``B`` independent problems (e.g. many start states planned at once):

* ``init_mean: Tensor[H, A]``: ``objective`` receives ``Tensor[N, H, A]`` and returns ``Tensor[N]`` scores
  or ``(scores, violations)``; the result is ``Tensor[H, A]``.
* ``init_mean: Tensor[B, H, A]``: ``objective`` receives ``Tensor[B, N, H, A]`` and returns ``Tensor[B, N]``
  (or the pair); the result is ``Tensor[B, H, A]``.

Scores are maximised; violations are ``>= 0`` with 0 meaning feasible, and candidates are ranked by
:mod:`mbrl.planning.selection` (feasible by score, then infeasible by violation, non-finite last).
Action bounds are an :class:`~mbrl.common.ActionBox` (``box=``), given to the constructor or to ``optimize``
(which overrides); ``low=``/``high=`` (scalars or ``[A]``) are a shorthand that builds one. Every sample and
every returned action is projected into the box with ``box.project``.
"""

from __future__ import annotations

import math

import torch

from mbrl.common.action_box import ActionBox
from mbrl.common.validation import INT_MAX, as_tensor, check_int, check_threshold
from mbrl.contracts import Objective

__all__ = ["OptimizerBase", "truncated_normal"]

_SQRT2 = math.sqrt(2.0)


def truncated_normal(shape, *, generator: torch.Generator | None, device, dtype=torch.float32,
                     bound: float = 2.0) -> torch.Tensor:
    """Standard normal samples truncated to ``[-bound, bound]`` by inverse-CDF sampling (no rejection loop).

    PETS samples CEM candidates from ``N(0, 1)`` truncated at 2 standard deviations.
    """
    lo = 0.5 * (1.0 + math.erf(-bound / _SQRT2))
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    p = lo + u * (1.0 - 2.0 * lo)
    return (_SQRT2 * torch.erfinv(2.0 * p - 1.0)).clamp_(-bound, bound).to(dtype)


def _as_box(box, low, high) -> ActionBox | None:
    """``box``, or the box ``low``/``high`` describe, or None when neither is given."""
    if box is not None:
        if low is not None or high is not None:
            raise ValueError("give box or low/high (action bounds), not both")
        if not isinstance(box, ActionBox):
            raise ValueError(f"box must be an ActionBox (mbrl.common), got {type(box).__name__}")
        return box
    if low is None and high is None:
        return None
    return ActionBox(low, high, names=("low", "high"))


class OptimizerBase:
    """Base class: bounds, objective calls and shape checks (module docstring).

    Args:
        box: default action bounds (an :class:`~mbrl.common.ActionBox`); ``optimize`` may override them.
        low, high: shorthand for ``box=ActionBox(low, high)`` (scalars apply to every action dimension).
    """

    def __init__(self, low=None, high=None, *, box: ActionBox | None = None) -> None:
        self.box = _as_box(box, low, high)
        #: ``(plan[B, H, A], score[B], violation[B])``: the best-ranked sample of the last ``optimize`` call
        #: (constrained ranking), always ``[B, ...]``-batched; None before the first call.
        self.last_best: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ state hooks
    def reset(self) -> None:
        """Forget anything remembered between calls (e.g. iCEM's elites). No-op for stateless optimisers."""

    def advance(self, steps: int) -> None:
        """Tell a stateful optimiser that the problem moved ``steps`` time steps since the last call."""

    # ------------------------------------------------------------------ helpers
    def _prepare(self, init_mean, box, low, high) -> tuple[torch.Tensor, ActionBox, bool]:
        """``(mean[B, H, A] in the box, box on the mean's device in float32, squeeze)``."""
        mean = as_tensor("init_mean", init_mean)
        if mean.ndim not in (2, 3) or mean.numel() == 0:
            raise ValueError(f"init_mean must have shape (H, A) or (B, H, A), got {tuple(mean.shape)}")
        squeeze = mean.ndim == 2
        mean = mean.float().unsqueeze(0) if squeeze else mean.float()
        b = _as_box(box, low, high) or self.box
        if b is None:
            raise ValueError("low and high (action bounds) must be given: box= (an ActionBox) or low=/high=, to "
                             "the constructor or to optimize")
        b = b.broadcast(mean.shape[-1]).to(mean.device, torch.float32)
        return b.project(mean), b, squeeze

    @staticmethod
    def _evaluate(objective: Objective, samples: torch.Tensor, squeeze: bool):
        """Call ``objective`` on ``samples[B, N, H, A]``; return float ``(scores, violations)`` [B, N]."""
        out = objective(samples[0] if squeeze else samples)
        scores, violations = out if isinstance(out, tuple) else (out, None)
        want = samples.shape[1:2] if squeeze else samples.shape[:2]
        if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != tuple(want):
            raise ValueError(f"objective must return scores of shape {tuple(want)}, got "
                             f"{tuple(getattr(scores, 'shape', ()))}")
        scores = scores.float().unsqueeze(0) if squeeze else scores.float()
        if violations is None:
            return scores, torch.zeros_like(scores)
        if not isinstance(violations, torch.Tensor) or tuple(violations.shape) != tuple(want):
            raise ValueError(f"objective must return violations of shape {tuple(want)}, got "
                             f"{tuple(getattr(violations, 'shape', ()))}")
        violations = violations.float().unsqueeze(0) if squeeze else violations.float()
        return scores, violations

    @staticmethod
    def _finish(plan: torch.Tensor, fallback: torch.Tensor, box: ActionBox, squeeze: bool) -> torch.Tensor:
        """Replace non-finite entries by ``fallback``, project into the box and drop the batch dim if needed."""
        plan = box.project(torch.where(torch.isfinite(plan), plan, fallback))
        return plan[0] if squeeze else plan

    def _record_best(self, best: torch.Tensor, best_key, fallback: torch.Tensor, box: ActionBox) -> None:
        """Store the best sample of this call in ``last_best`` (finite and within the bounds)."""
        if best_key is None:
            self.last_best = None
            return
        plan = self._finish(best, fallback, box, False)
        self.last_best = (plan, best_key[0][:, 0], best_key[1][:, 0])

    @staticmethod
    def _sizes(population, elites, iterations) -> tuple[int, int, int]:
        """Validated ``(population, elites, iterations)`` of an elite-based optimiser (``elites <= population``)."""
        population = check_int("population", population, low=1, high=INT_MAX)
        elites = check_int("elites", elites, low=1, high=INT_MAX)
        if elites > population:
            raise ValueError(f"elites must be <= population ({population}), got {elites}")
        return population, elites, check_int("iterations", iterations, low=1, high=INT_MAX)

    @staticmethod
    def _alpha(alpha) -> float:
        return check_threshold("alpha", alpha, low=0.0, high=1.0, inclusive=True)

    def optimize(self, objective: Objective, init_mean, *, box: ActionBox | None = None, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k not in ("box", "last_best")]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"
