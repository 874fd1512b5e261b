"""The :class:`TrajectoryOptimizer` contract and what every optimiser shares (design.md, "Contracts").

``optimize(objective, init_mean, low=..., high=..., generator=...)`` searches action sequences
``[H, A]`` for the one the ``objective`` scores best. It works on a leading batch of ``B`` independent
problems (e.g. many start states planned at once):

* ``init_mean: Tensor[H, A]``: ``objective`` receives ``Tensor[N, H, A]`` and returns ``Tensor[N]`` scores
  or ``(scores, violations)``; the result is ``Tensor[H, A]``.
* ``init_mean: Tensor[B, H, A]``: ``objective`` receives ``Tensor[B, N, H, A]`` and returns ``Tensor[B, N]``
  (or the pair); the result is ``Tensor[B, H, A]``.

Scores are maximised; violations are ``>= 0`` with 0 meaning feasible, and candidates are ranked by
:mod:`mbrl.planning.selection` (feasible by score, then infeasible by violation, non-finite last).
Action bounds ``low``/``high`` (scalars, ``[A]``, ``[H, A]`` or anything broadcastable to ``init_mean``)
are given to the constructor or to ``optimize`` (which overrides); every returned action lies within them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mbrl.common.action_box import check_bounds
from mbrl.common.validation import as_tensor, check_threshold

__all__ = ["Objective", "TrajectoryOptimizer", "truncated_normal"]

Objective = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]

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


class TrajectoryOptimizer:
    """Base class: bounds handling, objective calls and shape checks (module docstring)."""

    def __init__(self, low=None, high=None) -> None:
        given = low is not None or high is not None
        self.low, self.high = self._bounds(low, high) if given else (None, None)
        self._last_bounds: tuple | None = None  # (low, high) objects given to optimize last, and their tensors
        #: ``(plan[B, H, A], score[B], violation[B])``: the best-ranked sample of the last ``optimize`` call
        #: (constrained ranking), always ``[B, ...]``-batched; None before the first call.
        self.last_best: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ state hooks
    def reset(self) -> None:
        """Forget anything remembered between calls (e.g. iCEM's elites). No-op for stateless optimisers."""

    def advance(self, steps: int) -> None:
        """Tell a stateful optimiser that the problem moved ``steps`` time steps since the last call."""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _bounds(low, high) -> tuple[torch.Tensor, torch.Tensor]:
        return check_bounds(low, high, names=("low", "high"))

    def _prepare(self, init_mean, low, high):
        """``(mean[B, H, A], low[B, H, A], high[B, H, A], squeeze)`` in float32 on the mean's device."""
        mean = as_tensor("init_mean", init_mean)
        if mean.ndim not in (2, 3) or mean.numel() == 0:
            raise ValueError(f"init_mean must have shape (H, A) or (B, H, A), got {tuple(mean.shape)}")
        squeeze = mean.ndim == 2
        mean = mean.float().unsqueeze(0) if squeeze else mean.float()
        if low is None and high is None:
            if self.low is None:
                raise ValueError("low and high (action bounds) must be given to the constructor or optimize")
            lo, hi = self.low, self.high
        elif self._last_bounds is not None and low is self._last_bounds[0] and high is self._last_bounds[1]:
            lo, hi = self._last_bounds[2:]  # the same objects as last call (an agent's ActionBox): checked once
        else:
            lo, hi = self._bounds(low, high)
            # remembered only when no copy was made, so a later call with the same objects sees their values
            self._last_bounds = (low, high, lo, hi) if (lo is low and hi is high) else None
        try:
            lo = torch.broadcast_to(lo.to(mean.device), mean.shape).contiguous()
            hi = torch.broadcast_to(hi.to(mean.device), mean.shape).contiguous()
        except RuntimeError as exc:
            raise ValueError(f"low/high of shapes {tuple(lo.shape)}, {tuple(hi.shape)} do not broadcast to "
                             f"init_mean {tuple(mean.shape)}") from exc
        return torch.minimum(torch.maximum(mean, lo), hi), lo, hi, squeeze

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
    def _finish(plan: torch.Tensor, fallback: torch.Tensor, lo, hi, squeeze: bool) -> torch.Tensor:
        """Replace non-finite entries by ``fallback``, clip to the bounds and drop the batch dim if needed."""
        plan = torch.where(torch.isfinite(plan), plan, fallback)
        plan = torch.minimum(torch.maximum(plan, lo), hi)
        return plan[0] if squeeze else plan

    def _record_best(self, best: torch.Tensor, best_key, fallback: torch.Tensor, lo, hi) -> None:
        """Store the best sample of this call in ``last_best`` (finite and within the bounds)."""
        if best_key is None:
            self.last_best = None
            return
        plan = self._finish(best, fallback, lo, hi, False)
        self.last_best = (plan, best_key[0][:, 0], best_key[1][:, 0])

    @staticmethod
    def _alpha(alpha) -> float:
        return check_threshold("alpha", alpha, low=0.0, high=1.0, inclusive=True)

    def optimize(self, objective: Objective, init_mean, *, low=None, high=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if not k.startswith("_") and k not in ("low", "high", "last_best")]
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in keys) + ")"
