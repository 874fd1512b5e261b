"""Exact Lyapunov density models on finite MDPs (docs/design.md, "Lyapunov density models").

Deterministic transitions ``s' = next_state[s, a]``:

    G(s, a) = max( E(s, a), min_a' G(s', a') )                               (gamma = 1)
    G(s, a) = (1 - gamma) E(s, a) + gamma max( E(s, a), min_a' G(s', a') )  (gamma < 1)

For ``gamma = 1`` the equation has many fixed points (any large constant on a cycle satisfies it); the LDM is
the *least* one, the minimax path value ``G(s, a) = min over infinite action sequences of the largest energy
met``. Value iteration from ``G = E`` increases monotonically, stays below every fixed point and only takes
values from the finite set of energies, so it reaches the least fixed point *exactly* and stops when an
iteration changes nothing. Deterministic case: after ``k`` iterations ``G`` is the minimax value over paths of
``k + 1`` steps, and a path longer than ``S * A`` repeats a state-action pair (a lasso), so ``S * A + 1``
iterations suffice. For ``gamma < 1`` the backup is a ``gamma``-contraction with a unique fixed point, solved
to ``tol`` in sup norm; it lies below the ``gamma = 1`` LDM and tends to it as ``gamma -> 1``.

Stochastic transitions ``P[s, a, s']``: the worst case over the support (``P > 0``),

    G(s, a) = max( E(s, a), max_{s': P(s'|s,a) > 0} min_a' G(s', a') )      (and the discounted analogue).

Inputs may be numpy arrays or torch tensors; the output has the same kind (float64 numpy or a tensor on the
energy's device and dtype).
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl.common.validation import check_threshold

__all__ = ["solve_tabular", "solve_tabular_stochastic"]


def _energy(energy) -> tuple[np.ndarray, bool, torch.Tensor | None]:
    is_torch = isinstance(energy, torch.Tensor)
    ref = energy if is_torch else None
    e = energy.detach().cpu().double().numpy() if is_torch else np.asarray(energy, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"energy must have shape (S, A), got {e.shape}")
    if e.size == 0:
        raise ValueError(f"energy must not be empty, got shape {e.shape}")
    if np.isnan(e).any():
        raise ValueError("energy contains NaN values")
    if np.isneginf(e).any():
        raise ValueError("energy contains -inf values (only +inf, 'never allowed', is accepted)")
    return e, is_torch, ref


def _out(g: np.ndarray, is_torch: bool, ref: torch.Tensor | None):
    if not is_torch:
        return g
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(g, dtype=dtype, device=ref.device)


def _check_common(gamma, tol, max_iter) -> tuple[float, float, int | None]:
    gamma = check_threshold("gamma", gamma, low=0.0, high=1.0)
    if gamma == 0.0:
        raise ValueError("gamma must lie in (0, 1], got 0.0")
    tol = check_threshold("tol", tol, low=0.0)
    if max_iter is not None and int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1 or None, got {max_iter}")
    return gamma, tol, None if max_iter is None else int(max_iter)


def _iterate(e: np.ndarray, worst_next_value, gamma: float, tol: float, max_iter: int) -> np.ndarray:
    """Value iteration ``G <- backup(G)`` from ``G = E``; ``worst_next_value(V[S]) -> [S, A]``."""
    g = e.copy()
    with np.errstate(invalid="ignore"):
        for _ in range(max_iter):
            nxt = worst_next_value(g.min(axis=1))
            if gamma == 1.0:
                new = np.maximum(e, nxt)
                if np.array_equal(new, g):
                    return new
            else:
                new = (1.0 - gamma) * e + gamma * np.maximum(e, nxt)
                fin = np.isfinite(new) & np.isfinite(g)
                same_inf = ~fin & (new == g)
                diff = np.abs(new - g)[fin]
                if (fin | same_inf).all() and (diff.size == 0 or diff.max() <= tol):
                    return new
            g = new
    raise RuntimeError(
        f"LDM value iteration did not converge in {max_iter} iterations "
        f"(gamma={gamma}); raise max_iter or tol"
    )


def _default_iters(n_pairs: int, gamma: float, tol: float, span: float) -> int:
    if gamma == 1.0:
        return n_pairs * n_pairs + 2
    # gamma^k * span <= tol  ->  k >= log(tol/span)/log(gamma)
    span = max(span, 1.0)
    k = np.log(max(tol, 1e-300) / span) / np.log(gamma) if tol > 0 else 1e7
    return int(min(max(k, 1.0) + 10 + n_pairs, 10_000_000))


def solve_tabular(energy, next_state, gamma: float = 1.0, tol: float = 1e-10, max_iter: int | None = None):
    """Exact LDM ``G[S, A]`` for deterministic transitions (module docstring; docs/design.md, LDM equation).

    Args:
        energy: ``E[S, A]`` (numpy or torch), ``-log p(s, a)``; ``+inf`` marks never-allowed pairs.
        next_state: ``int[S, A]`` with values in ``[0, S)``.
        gamma: discount in ``(0, 1]``; ``1`` gives the exact least fixed point (no tolerance involved).
        tol: sup-norm stopping tolerance for ``gamma < 1``.
        max_iter: iteration cap (default: ``(S A)^2 + 2`` for ``gamma = 1``, enough for ``tol`` otherwise).
    Returns:
        ``G[S, A]`` of the energy's kind (numpy float64 or a tensor like ``energy``); ``G >= E``.
    """
    gamma, tol, max_iter = _check_common(gamma, tol, max_iter)
    e, is_torch, ref = _energy(energy)
    ns = next_state.detach().cpu().numpy() if isinstance(next_state, torch.Tensor) else np.asarray(next_state)
    if ns.shape != e.shape:
        raise ValueError(f"next_state must have the shape of energy {e.shape}, got {ns.shape}")
    if not (
        np.issubdtype(ns.dtype, np.integer)
        or (np.issubdtype(ns.dtype, np.floating) and np.all(np.isfinite(ns)) and np.all(ns == np.round(ns)))
    ):
        raise ValueError(f"next_state must hold integer state indices, got dtype {ns.dtype}")
    ns = ns.astype(np.int64)
    s = e.shape[0]
    if ns.min() < 0 or ns.max() >= s:
        raise ValueError(f"next_state values must lie in [0, {s}), got range [{ns.min()}, {ns.max()}]")
    if gamma == 1.0:
        # Deterministic: S*A + 1 iterations suffice (lasso argument, module docstring).
        max_iter = max_iter if max_iter is not None else e.size + 2
    else:
        fin = e[np.isfinite(e)]
        span = float(fin.max() - fin.min()) if fin.size else 1.0
        max_iter = max_iter if max_iter is not None else _default_iters(e.size, gamma, tol, span)
    g = _iterate(e, lambda v: v[ns], gamma, tol, max_iter)
    return _out(g, is_torch, ref)


def solve_tabular_stochastic(
    energy, transition, gamma: float = 1.0, tol: float = 1e-10, max_iter: int | None = None
):
    """Worst-case LDM ``G[S, A]`` for stochastic transitions ``transition[S, A, S]`` (module docstring).

    Every successor with ``P(s'|s, a) > 0`` counts (the adversary picks the next state), so acting with
    ``G <= c`` keeps ``E <= c`` with probability one. Rows of ``transition`` must be non-negative, finite and
    sum to 1 (within 1e-6).
    """
    gamma, tol, max_iter = _check_common(gamma, tol, max_iter)
    e, is_torch, ref = _energy(energy)
    p = (
        transition.detach().cpu().double().numpy()
        if isinstance(transition, torch.Tensor)
        else np.asarray(transition, dtype=np.float64)
    )
    s, a = e.shape
    if p.shape != (s, a, s):
        raise ValueError(f"transition must have shape {(s, a, s)}, got {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("transition must be finite and non-negative")
    if not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise ValueError("transition rows must sum to 1 over the next state")
    support = p > 0  # [S, A, S]

    def worst(v: np.ndarray) -> np.ndarray:
        return np.where(support, v[None, None, :], -np.inf).max(-1)

    if max_iter is None:
        if gamma == 1.0:
            max_iter = e.size * e.size + 2
        else:
            fin = e[np.isfinite(e)]
            span = float(fin.max() - fin.min()) if fin.size else 1.0
            max_iter = _default_iters(e.size, gamma, tol, span)
    g = _iterate(e, worst, gamma, tol, max_iter)
    return _out(g, is_torch, ref)
