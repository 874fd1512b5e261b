"""Gaussian mixture density fitted by EM in torch (docs/design.md, "Contracts": a ``DensityModel``).

On standardised data ``z`` (``safe_density.density.base``):

    p(z) = sum_k w_k N(z; mu_k, Sigma_k)

EM (Dempster et al. 1977) with full covariances, ``reg_covar`` added to every diagonal (as in
scikit-learn's ``GaussianMixture``), k-means++-style seeded initialisation of the means, stopping when the
mean log-likelihood improves by less than ``tol``. All steps are batched over points and components.
"""

from __future__ import annotations

import math

import torch

from mbrl.common.seeding import make_generator
from mbrl.common.validation import INT_MAX, check_int, check_threshold
from safe_density.density.base import DensityBase

__all__ = ["GaussianMixtureDensity"]


def _component_log_prob(z: torch.Tensor, means: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``z[N, D]``, ``means[K, D]``, ``chol[K, D, D]`` (lower Cholesky of Sigma_k) -> ``log N[N, K]``.

    Uses the precision Cholesky ``L_k^{-1}`` so the Mahalanobis terms are one batched matmul.
    """
    d = z.shape[1]
    eye = torch.eye(d, dtype=z.dtype, device=z.device).expand_as(chol)
    prec = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}   [K, D, D]
    y = torch.einsum("kij,nj->nki", prec, z) - torch.einsum("kij,kj->ki", prec, means)[None]
    maha = y.square().sum(-1)  # [N, K]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
    return -0.5 * (maha + logdet[None] + d * math.log(2 * math.pi))


class GaussianMixtureDensity(DensityBase):
    """Full-covariance Gaussian mixture fitted by EM.

    Args:
        n_components: number of mixture components ``K``.
        max_iter, tol: EM stopping rule (mean log-likelihood change < ``tol``).
        reg_covar: added to covariance diagonals (standardised units) for stability.
        chunk_size: queries per batch in ``log_prob``.
        device, dtype, seed: placement and reproducibility (seed drives the initial means).
    """

    def __init__(
        self,
        n_components: int = 8,
        *,
        max_iter: int = 200,
        tol: float = 1e-4,
        reg_covar: float = 1e-4,
        chunk_size: int = 8192,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = 0,
    ) -> None:
        super().__init__(device=device, dtype=dtype, seed=seed)
        self.n_components = check_int("n_components", n_components, low=1, high=INT_MAX)
        self.max_iter = check_int("max_iter", max_iter, low=1, high=10**7)
        chunk_size = check_int("chunk_size", chunk_size, low=1, high=INT_MAX)
        self.tol = check_threshold("tol", tol, low=0.0)
        self.reg_covar = check_threshold("reg_covar", reg_covar, low=0.0)
        self.chunk_size = chunk_size
        self.weights: torch.Tensor | None = None
        self.means: torch.Tensor | None = None
        self.chol: torch.Tensor | None = None
        self.n_iter_ = 0
        self.converged_ = False

    def _min_points(self) -> int:
        return self.n_components

    def _init_means(self, z: torch.Tensor) -> torch.Tensor:
        """k-means++ seeding: each new mean drawn with probability proportional to squared distance."""
        g = make_generator(self.seed, "cpu")
        n = z.shape[0]
        idx = [int(torch.randint(n, (1,), generator=g))]
        d2 = (z - z[idx[0]]).square().sum(1)
        for _ in range(1, self.n_components):
            p = d2.double().cpu()
            p = p / p.sum() if float(p.sum()) > 0 else torch.full_like(p, 1.0 / n)
            i = int(torch.multinomial(p, 1, generator=g))
            idx.append(i)
            d2 = torch.minimum(d2, (z - z[i]).square().sum(1))
        return z[idx].clone()

    def _fit_standardised(self, z: torch.Tensor, progress: bool = False, **kwargs) -> None:
        del progress  # a few seconds at most: no bar
        if kwargs:
            raise TypeError(f"unexpected fit arguments {sorted(kwargs)}")
        n, d = z.shape
        k = self.n_components
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        means = self._init_means(z)
        chol = eye.expand(k, d, d).clone()
        logw = torch.full((k,), -math.log(k), dtype=z.dtype, device=z.device)
        prev = -math.inf
        self.converged_ = False
        for it in range(self.max_iter):
            logp = _component_log_prob(z, means, chol) + logw[None]  # [N, K]
            ll = torch.logsumexp(logp, 1)
            mean_ll = float(ll.mean())
            resp = torch.exp(logp - ll[:, None])  # E-step [N, K]
            nk = resp.sum(0) + 10 * torch.finfo(z.dtype).eps  # M-step
            logw = torch.log(nk / n)
            means = resp.T @ z / nk[:, None]
            diff = z[None] - means[:, None]  # [K, N, D]
            cov = (
                torch.einsum("kn,kni,knj->kij", resp.T, diff, diff) / nk[:, None, None] + self.reg_covar * eye
            )
            chol = torch.linalg.cholesky(cov)
            self.n_iter_ = it + 1
            if abs(mean_ll - prev) < self.tol:
                self.converged_ = True
                break
            prev = mean_ll
        self.weights, self.means, self.chol = torch.exp(logw), means, chol

    def _log_prob_standardised(self, z: torch.Tensor) -> torch.Tensor:
        logw = torch.log(self.weights)
        out = [
            torch.logsumexp(_component_log_prob(z[i : i + self.chunk_size], self.means, self.chol) + logw, 1)
            for i in range(0, z.shape[0], self.chunk_size)
        ]
        return torch.cat(out) if out else z.new_zeros(0)

    # ------------------------------------------------------------------ persistence
    # persistence (DensityBase.save / load)
    @classmethod
    def _config_keys(cls) -> tuple[str, ...]:
        return ("n_components", "max_iter", "tol", "reg_covar", "chunk_size")

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "chol": self.chol}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.weights, self.means, self.chol = (tensors[k].to(self.device, self.dtype)
                                               for k in ("weights", "means", "chol"))
