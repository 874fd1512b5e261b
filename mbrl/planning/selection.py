"""Constrained elite selection shared by every trajectory optimiser (docs/design.md, "Contracts").

Candidates are ordered lexicographically by three keys:

1. class: 0 = feasible (``violation == 0``) with a finite score, 1 = infeasible (``violation > 0``, finite)
   with a finite score, 2 = anything non-finite (NaN/inf score or NaN/inf violation: a diverged rollout);
2. within class 0 the score, largest first; within class 1 the total violation, smallest first;
3. ties keep the candidates' index order (stable sorts).

So constraints are hard whenever some candidate is feasible, the least-violating plan wins when none is,
and a NaN rollout can never beat a valid one (the pitfall of scoring NaN as a tiny negative number on
negative-reward tasks, docs/design.md "PETS"). Everything is batched over leading dims with two stable sorts
and ``torch.topk``: no Python loop over candidates or problems.
"""

from __future__ import annotations

import torch

__all__ = [
    "FEASIBLE", "INFEASIBLE", "INVALID", "candidate_class", "rank_key", "select_elites", "update_best",
]

FEASIBLE, INFEASIBLE, INVALID = 0, 1, 2


def _check(scores: torch.Tensor, violations: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.ndim < 1:
        raise ValueError(f"scores must be a tensor with at least one dimension, got {type(scores).__name__}"
                         f"{tuple(getattr(scores, 'shape', ()))}")
    if violations is None:
        return torch.zeros_like(scores, dtype=torch.float32)
    if not isinstance(violations, torch.Tensor) or violations.shape != scores.shape:
        raise ValueError(f"violations must be a tensor of the scores' shape {tuple(scores.shape)}, got "
                         f"{tuple(getattr(violations, 'shape', ()))}")
    return violations


def candidate_class(scores: torch.Tensor, violations: torch.Tensor | None = None) -> torch.Tensor:
    """Class of each candidate: ``FEASIBLE`` (0), ``INFEASIBLE`` (1) or ``INVALID`` (2, non-finite).

    Args:
        scores: ``[..., N]`` (larger is better); violations: ``[..., N]`` (>= 0, 0 = feasible) or None.
    Returns:
        ``int64[..., N]``.
    """
    violations = _check(scores, violations)
    finite = torch.isfinite(scores) & torch.isfinite(violations)
    cls = torch.where(violations > 0, INFEASIBLE, FEASIBLE)
    return torch.where(finite, cls, INVALID).to(torch.int64)


def rank_key(scores: torch.Tensor, violations: torch.Tensor | None = None) -> torch.Tensor:
    """A total-order key (larger is better) implementing the constrained ranking of the module docstring.

    Args:
        scores: ``[..., N]`` candidate scores (returns; NaN counts as -inf, +inf as invalid).
        violations: ``[..., N]`` total constraint violations (NaN counts as +inf), or None (all feasible).
    Returns:
        ``int64[..., N]``: ``N`` for the best candidate down to ``1`` for the worst (a permutation).
    """
    violations = _check(scores, violations)
    cls = candidate_class(scores, violations)
    s = torch.nan_to_num(scores.double(), nan=-torch.inf)
    v = torch.nan_to_num(violations.double(), nan=torch.inf)
    secondary = torch.where(cls == FEASIBLE, -s, torch.where(cls == INFEASIBLE, v, torch.zeros_like(v)))
    order = torch.sort(secondary, dim=-1, stable=True).indices
    order = order.gather(-1, torch.sort(cls.gather(-1, order), dim=-1, stable=True).indices)
    n = scores.shape[-1]
    values = torch.arange(n, 0, -1, device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, values)


def select_elites(scores: torch.Tensor, violations: torch.Tensor | None, k: int) -> torch.Tensor:
    """Indices of the ``k`` best candidates, best first (constrained ranking, module docstring).

    Args:
        scores, violations: ``[..., N]`` (violations may be None).
        k: number of elites, ``1 <= k <= N``.
    Returns:
        ``int64[..., k]`` indices into the last dimension.
    """
    n = scores.shape[-1] if isinstance(scores, torch.Tensor) and scores.ndim else 0
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max(n, 1) or n == 0:
        raise ValueError(f"k must be an integer in [1, {n}], got {k!r}")
    return torch.topk(rank_key(scores, violations), k, dim=-1, sorted=True).indices


def update_best(best: torch.Tensor, best_key, cand: torch.Tensor, score: torch.Tensor, viol: torch.Tensor):
    """Keep, per problem, the better (constrained ranking) of the running best and a new candidate.

    Args:
        best: ``[B, H, A]`` running best (ignored while ``best_key`` is None); cand: ``[B, H, A]``.
        best_key: ``(score[B, 1], violation[B, 1])`` of the running best, or None before the first candidate.
        score, viol: ``[B, 1]`` of ``cand``.
    Returns:
        ``(best, best_key)`` updated.
    """
    if best_key is None:
        return cand, (score, viol)
    s = torch.cat([best_key[0], score], dim=1)
    v = torch.cat([best_key[1], viol], dim=1)
    key = rank_key(s, v)
    new = key[:, 1] > key[:, 0]
    best = torch.where(new[:, None, None], cand, best)
    return best, (torch.where(new[:, None], score, best_key[0]), torch.where(new[:, None], viol, best_key[1]))
