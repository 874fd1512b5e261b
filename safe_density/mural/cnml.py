"""Exact conditional normalised maximum likelihood (CNML) for the binary success classifier.

``docs/design.md``, "MURAL", equation

    p_CNML(1|s) = p_θ1(1|s) / ( p_θ1(1|s) + p_θ0(0|s) ),   θ_y = argmin_θ L(D ∪ {(s, y)})

For every query ``s`` and both labels ``y`` the classifier is really retrained, starting from the
current parameters (the maximum-likelihood fit on ``D``), with ``steps`` full-batch Adam steps on the
augmented loss (:func:`augmented_loss`). This is the expensive reference that meta-NML amortises.

Two implementations that must agree (tests: to 1e-5 in float64):
* :func:`cnml_naive`: a Python loop over queries and labels with ``torch.optim.Adam`` (reference);
* :func:`cnml_batched`: all ``2 B`` retrainings at once, ``torch.func.vmap`` over (query, label) of a
  functional Adam written with ``torch.func.grad``; queries are processed in chunks to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from mbrl.common.validation import check_int, check_threshold

from .classifier import Params, SuccessClassifier, logits

__all__ = ["CNMLConfig", "augmented_loss", "cnml_batched", "cnml_naive", "normalise"]


@dataclass(frozen=True)
class CNMLConfig:
    """Budget and regulariser of the per-query retraining (docs/design.md, MURAL-1 and "Where the code differs").

    MURAL (Li et al. 2021, Sec. 4) defines CNML with training "to convergence" and gives no budget for its
    exact-CNML comparison. Unregularised, a flexible network trained to convergence memorises the query: on a
    2-D problem (200 visited states) CNML was 0.08 at the visited states themselves and 0.5 one grid cell away,
    and with a short budget instead (100 Adam steps) 0.38 at the visited states. So the reference is
    *proximal* CNML: ``θ_y = argmin L(D ∪ {(s, y)}) + prox/2 ||θ - θ_0||^2`` from the maximum-likelihood fit
    ``θ_0`` (a Gaussian prior around it; one gradient step of size ``1/prox`` is its linearisation, as in
    meta-NML), solved by ``steps`` full-batch Adam steps at ``lr``. Defaults (ours): ``prox=0.1``,
    300 steps at lr 1e-2. ``query_weight``: weight of ``(s, y)`` relative to one data point (1 = plain
    ``D ∪ {(s, y)}``; the official code's ``query_point_weight`` is 1).
    """

    steps: int = 300
    lr: float = 1e-2
    query_weight: float = 1.0
    prox: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    chunk_size: int = 256

    def __post_init__(self):
        check_int("steps", self.steps, low=1)
        check_threshold("lr", self.lr, low=0.0, high=1e6, inclusive=False)
        check_threshold("query_weight", self.query_weight, low=0.0, high=1e12)
        check_threshold("prox", self.prox, low=0.0, high=1e12)
        check_threshold("beta1", self.beta1, low=0.0, high=1.0, inclusive=True)
        check_threshold("beta2", self.beta2, low=0.0, high=1.0, inclusive=True)
        check_threshold("eps", self.eps, low=0.0, high=1.0, inclusive=False)
        check_int("chunk_size", self.chunk_size, low=1)


def augmented_loss(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor,
                   w: torch.Tensor, s: torch.Tensor, ys: torch.Tensor, query_weight: float) -> torch.Tensor:
    """``L(D ∪ {(s, ys)}) = (sum_i w_i l(x_i, y_i) + q l(s, ys)) / (sum_i w_i + q)``.

    ``x[N, D]``, ``y[N]``, ``w[N]`` (data weights), ``s[D]`` one query, ``ys`` scalar label, ``q =
    query_weight``. ``l`` is the binary cross-entropy of the logit.
    """
    z = logits(model, params, x)
    lo = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    zq = logits(model, params, s)
    lq = F.binary_cross_entropy_with_logits(zq, ys)
    return ((lo * w).sum() + query_weight * lq) / (w.sum() + query_weight)


def _prox_loss(model, params, anchor, x, y, w, s, ys, cfg: CNMLConfig) -> torch.Tensor:
    """The per-query objective: :func:`augmented_loss` plus ``prox / 2 * ||θ - anchor||^2``."""
    loss = augmented_loss(model, params, x, y, w, s, ys, cfg.query_weight)
    if cfg.prox > 0:
        loss = loss + 0.5 * cfg.prox * sum((params[k] - anchor[k]).square().sum() for k in params)
    return loss


def normalise(z1: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """``p1 / (p1 + p0)`` with ``p1 = sigmoid(z1)`` (θ_1's p(1|s)), ``p0 = sigmoid(-z0)`` (θ_0's p(0|s))."""
    return torch.sigmoid(F.logsigmoid(z1) - F.logsigmoid(-z0))


def check_inputs(x, y, w, states, w_name: str = "w") -> None:
    """The shared shape check of the CNML and meta-NML entry points: ``x[N, D]``, ``y[N]``, ``w[N]`` (``w_name``
    in the message: ``w`` weights, ``c`` meta-NML's counts) and ``states[B, D]``; ``ValueError`` otherwise."""
    if x.ndim != 2 or y.shape != x.shape[:1] or w.shape != x.shape[:1]:
        raise ValueError(f"x must be [N, D] with y, {w_name} [N]; got {tuple(x.shape)}, {tuple(y.shape)}, "
                         f"{tuple(w.shape)}")
    if states.ndim != 2 or states.shape[-1] != x.shape[-1]:
        raise ValueError(f"states must be [B, {x.shape[-1]}], got {tuple(states.shape)}")


def cnml_naive(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
               states: torch.Tensor, config: CNMLConfig = CNMLConfig()) -> torch.Tensor:
    """Reference CNML: one ``torch.optim.Adam`` retraining per (query, label). ``states[B, D] -> [B]``."""
    check_inputs(x, y, w, states)
    out = []
    for s in states:
        zs = []
        for label in (0.0, 1.0):
            anchor = {k: v.detach() for k, v in params.items()}
            p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            opt = torch.optim.Adam(p.values(), lr=config.lr, betas=(config.beta1, config.beta2),
                                   eps=config.eps, foreach=False)
            ys = torch.tensor(label, dtype=x.dtype, device=x.device)
            for _ in range(config.steps):
                loss = _prox_loss(model, p, anchor, x, y, w, s, ys, config)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                zs.append(logits(model, p, s))
        out.append(normalise(zs[1], zs[0]))
    return torch.stack(out) if out else states.new_zeros(0)


def _fit_logit(model, params, x, y, w, s, ys, cfg: CNMLConfig):
    """Functional Adam (same arithmetic as ``torch.optim.Adam``) on one task; returns the logit at ``s``."""
    g_fn = grad(lambda p: _prox_loss(model, p, params, x, y, w, s, ys, cfg))
    p = dict(params)
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for t in range(1, cfg.steps + 1):
        g = g_fn(p)
        bc1 = 1 - cfg.beta1 ** t
        bc2s = (1 - cfg.beta2 ** t) ** 0.5
        for k in p:
            m[k] = m[k] + (g[k] - m[k]) * (1 - cfg.beta1)
            v2[k] = v2[k] * cfg.beta2 + (1 - cfg.beta2) * g[k] * g[k]
            p[k] = p[k] - (cfg.lr / bc1) * m[k] / (v2[k].sqrt() / bc2s + cfg.eps)
    return logits(model, p, s)


def cnml_batched(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                 states: torch.Tensor, config: CNMLConfig = CNMLConfig()) -> torch.Tensor:
    """Batched exact CNML: ``vmap`` over (query, label) of functional Adam. ``states[B, D] -> [B]``."""
    check_inputs(x, y, w, states)
    params = {k: v.detach() for k, v in params.items()}
    fit = vmap(lambda s, ys: _fit_logit(model, params, x, y, w, s, ys, config))
    outs = []
    with torch.no_grad():
        for chunk in states.split(config.chunk_size):
            b = chunk.shape[0]
            s2 = torch.cat([chunk, chunk])
            ys = torch.cat([chunk.new_zeros(b), chunk.new_ones(b)])
            z = fit(s2, ys)
            outs.append(normalise(z[b:], z[:b]))
    return torch.cat(outs) if outs else states.new_zeros(0)
