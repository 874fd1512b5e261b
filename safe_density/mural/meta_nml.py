"""Meta-NML: MAML-trained classifier whose one-step adaptation approximates CNML.

``docs/design.md``, "MURAL" (Li et al., ICML 2021, Sec. 5, Algorithm 2). Each meta-task is a
query point ``s`` with a proposed label ``y``. Both the support (inner) loss and the outer loss are the
CNML objective on ``D ∪ {(s, y)}`` with the query weighted like ``q`` data points (official code:
``query_point_weight=1``, classes balanced as with ``equal_pos_neg_test=True``):

    L_q(θ; s, y) = ( sum_i c_i l(x_i, y_i) + q l(s, y) ) / ( sum_i c_i + q )
    θ'_{s,y}     = θ - α ∇_θ L_{q_in}(θ; s, y)               (k inner SGD steps, k = 1 in the paper)
    min_θ  E_{s,y} [ L_q(θ'_{s,y}; s, y) ]                     (outer loss, Adam)
    r(s) = p_θ'_{s,1}(1|s) / ( p_θ'_{s,1}(1|s) + p_θ'_{s,0}(0|s) )

Fast evaluation (:func:`meta_nml_fast`, exact for ``k = 1``). The inner gradient splits into a data
term ``g_D = ∇ sum_i c_i l_i / (C + q_in)``, identical for every query and computed ONCE per call, and
a query term. For an MLP, the query term of layer ``l`` is the outer product
``β (σ(z(s)) - y) u_l(s) h_{l-1}(s)^T`` (``u_l = ∂z/∂z_l``, ``h_{l-1}`` the layer input at ``s``,
``β = q_in / (C + q_in)``), so the adapted network evaluated at ``s`` itself is

    z'_l = W^D_l h'_{l-1} + b^D_l - α β (σ(z(s)) - y) u_l ( h_{l-1} · h'_{l-1} + 1 ),

with ``W^D = W - α G^D`` the data-adapted weights shared by all queries. No per-query weights are
materialised: the cost per state is two forward passes and one backward pass of the small MLP, all
as batched matrix products. :func:`meta_nml_naive` (a Python loop adapting a copy per query with
autograd) is the reference; :func:`meta_nml_vmap` (``torch.func.vmap`` of the functional inner loop)
handles ``k > 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vmap

from mbrl.common.seeding import make_generator
from mbrl.common.validation import check_int, check_threshold

from .classifier import Params, SuccessClassifier, linear_layers, logits
from .cnml import augmented_loss, check_inputs, normalise

__all__ = [
    "MetaNMLCache",
    "MetaNMLConfig",
    "meta_nml_cached",
    "meta_nml_fast",
    "meta_nml_naive",
    "meta_nml_prepare",
    "meta_nml_vmap",
    "meta_train",
]


@dataclass(frozen=True)
class MetaNMLConfig:
    """Meta-NML settings; defaults from the official MURAL code (github.com/kevintli/mural).

    * ``inner_lr=0.01``: ``adaptation_step_size`` default of ``meta-nml/maml/meta_nml.py``.
    * ``inner_steps=1``: ``nml_grad_steps=1`` in ``examples/*/variants.py`` (also ``num_adaptation_steps``).
    * ``query_weight=1``: ``query_point_weight=1`` (the query counts as one data point in ``D ∪ {s}``).
    * ``inner_query_weight``: weight of the query in the support loss; the paper's support uses the
      same weighting (``None`` -> ``query_weight``). Small networks adapt better with a larger value.
    * ``meta_lr=1e-3``: Adam ``meta_lr`` default of ``MetaNML``.
    * ``meta_batch=16``: ``meta_task_batch_size=1`` with ``accumulation_steps=16``.
    * ``outer_batch=2048``: ``meta_test_batch_size`` (data points in the outer loss per task).
    * ``uniform_query_fraction``: fraction of meta-training queries drawn uniformly from the data's
      bounding box (expanded by ``box_margin``) instead of from the data; the code's option
      ``meta_nml_uniform_train_data`` (default off). Our choice: 0.5, so that novel states, where the
      reward matters for exploration, are seen during meta-training.
    * ``first_order``: first-order MAML (the paper uses second order).
    """

    inner_lr: float = 0.01
    inner_steps: int = 1
    query_weight: float = 1.0
    inner_query_weight: float | None = None
    meta_lr: float = 1e-3
    meta_batch: int = 16
    outer_batch: int = 2048
    uniform_query_fraction: float = 0.5
    box_margin: float = 0.25
    first_order: bool = False
    chunk_size: int = 4096

    def __post_init__(self):
        check_threshold("inner_lr", self.inner_lr, low=0.0, high=1e6, inclusive=False)
        check_int("inner_steps", self.inner_steps, low=1)
        check_threshold("query_weight", self.query_weight, low=0.0, high=1e12)
        if self.inner_query_weight is not None:
            check_threshold("inner_query_weight", self.inner_query_weight, low=0.0, high=1e12)
        check_threshold("meta_lr", self.meta_lr, low=0.0, high=1e6, inclusive=False)
        check_int("meta_batch", self.meta_batch, low=2)
        check_int("outer_batch", self.outer_batch, low=1)
        check_threshold("uniform_query_fraction", self.uniform_query_fraction, low=0.0, high=1.0)
        check_threshold("box_margin", self.box_margin, low=0.0, high=1e6)
        check_int("chunk_size", self.chunk_size, low=1)

    @property
    def q_in(self) -> float:
        return self.query_weight if self.inner_query_weight is None else self.inner_query_weight


def _data_loss_sum(model, params, x, y, c):
    z = logits(model, params, x)
    return (F.binary_cross_entropy_with_logits(z, y, reduction="none") * c).sum()


def _adapt(model, params, x, y, c, s, ys, cfg: MetaNMLConfig, g_data0: Params | None = None) -> Params:
    """``k`` inner SGD steps on ``L_{q_in}(θ; s, ys)`` for ONE query (functional, vmappable)."""
    q = cfg.q_in
    denom = c.sum() + q
    p = dict(params)
    for step in range(cfg.inner_steps):
        if step == 0 and g_data0 is not None:
            gq = grad(lambda pp: F.binary_cross_entropy_with_logits(logits(model, pp, s), ys))(p)
            g = {k: g_data0[k] + (q / denom) * gq[k] for k in p}
        else:
            g = grad(lambda pp: augmented_loss(model, pp, x, y, c, s, ys, q))(p)
        p = {k: p[k] - cfg.inner_lr * g[k] for k in p}
    return p


def meta_nml_naive(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor,
                   c: torch.Tensor, states: torch.Tensor,
                   config: MetaNMLConfig = MetaNMLConfig()) -> torch.Tensor:
    """Reference: adapt a copy of the parameters per (query, label) with autograd. ``[B, D] -> [B]``."""
    check_inputs(x, y, c, states, "c")
    out = []
    for s in states:
        zs = []
        for label in (0.0, 1.0):
            ys = torch.tensor(label, dtype=x.dtype, device=x.device)
            p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            for _ in range(config.inner_steps):
                loss = augmented_loss(model, p, x, y, c, s, ys, config.q_in)
                g = torch.autograd.grad(loss, list(p.values()))
                p = {k: (v - config.inner_lr * gk).detach().requires_grad_(True)
                     for (k, v), gk in zip(p.items(), g)}
            with torch.no_grad():
                zs.append(logits(model, p, s))
        out.append(normalise(zs[1], zs[0]))
    return torch.stack(out) if out else states.new_zeros(0)


def _shared_data_grad(model, params, x, y, c, q) -> Params:
    """``g_D = ∇_θ sum_i c_i l_i / (C + q)``, the query-independent part of the support gradient."""
    g = grad(lambda p: _data_loss_sum(model, p, x, y, c))(params)
    return {k: v / (c.sum() + q) for k, v in g.items()}


def meta_nml_vmap(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor,
                  states: torch.Tensor, config: MetaNMLConfig = MetaNMLConfig()) -> torch.Tensor:
    """``vmap`` over (query, label) of the functional inner loop (any ``k``); the first step's data
    gradient is computed once. ``states[B, D] -> [B]``."""
    check_inputs(x, y, c, states, "c")
    params = {k: v.detach() for k, v in params.items()}
    g0 = _shared_data_grad(model, params, x, y, c, config.q_in)

    def one(s, ys):
        return logits(model, _adapt(model, params, x, y, c, s, ys, config, g0), s)

    outs = []
    with torch.no_grad():
        for chunk in states.split(config.chunk_size):
            b = chunk.shape[0]
            z = vmap(one)(torch.cat([chunk, chunk]), torch.cat([chunk.new_zeros(b), chunk.new_ones(b)]))
            outs.append(normalise(z[b:], z[:b]))
    return torch.cat(outs) if outs else states.new_zeros(0)


def _act_derivative(model: SuccessClassifier, z: torch.Tensor) -> torch.Tensor:
    """Element-wise derivative of the activation at ``z`` (closed form for ReLU/tanh, else by ``jvp``)."""
    if model.activation == "relu":
        return (z > 0).to(z.dtype)
    if model.activation == "tanh":
        return 1 - torch.tanh(z).square()
    return jvp(model.act, (z,), (torch.ones_like(z),))[1]


@dataclass(frozen=True)
class MetaNMLCache:
    """What the closed-form path needs that depends only on the data and the parameters (not the query).

    Built by :func:`meta_nml_prepare` (once per :meth:`MuralReward.update`, never per reward call):
    ``theta[l] = (W_l, b_l)`` the meta-trained layers, ``adapted[l] = (W_l - α G^D_l, b_l - α g^D_l)`` the
    data-adapted layers shared by every query, ``beta = q_in / (C + q_in)`` and ``alpha`` (docs/design.md, "MURAL").
    """

    theta: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    adapted: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    beta: float
    alpha: float


def meta_nml_prepare(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor,
                     config: MetaNMLConfig = MetaNMLConfig()) -> MetaNMLCache:
    """The query-independent part of :func:`meta_nml_fast`: one data gradient over ``x[N, D]`` (one
    forward and backward pass over the data), the data-adapted weights and ``beta``."""
    if x.ndim != 2 or y.shape != x.shape[:1] or c.shape != x.shape[:1]:
        raise ValueError(f"x must be [N, D] with y, c [N]; got {tuple(x.shape)}, {tuple(y.shape)}, "
                         f"{tuple(c.shape)}")
    params = {k: v.detach() for k, v in params.items()}
    q = config.q_in
    with torch.enable_grad():
        g0 = _shared_data_grad(model, params, x, y, c, q)
    alpha = float(config.inner_lr)
    names = linear_layers(model)
    adapted = tuple((params[wn] - alpha * g0[wn], params[bn] - alpha * g0[bn]) for wn, bn in names)
    theta = tuple((params[wn], params[bn]) for wn, bn in names)
    return MetaNMLCache(theta=theta, adapted=adapted, beta=q / (float(c.sum()) + q), alpha=alpha)


@torch.no_grad()
def meta_nml_cached(model: SuccessClassifier, cache: MetaNMLCache, states: torch.Tensor,
                    chunk_size: int = 4096) -> torch.Tensor:
    """Closed-form one-step meta-NML rewards ``states[B, D] -> [B]`` from a :class:`MetaNMLCache`.

    No validation and no host synchronisation (the planner's hot path; docs/design.md, "Contracts"): the cost
    per state is two forward passes and one backward pass of the small MLP, as batched matrix products.
    """
    ws, wd, alpha, beta = cache.theta, cache.adapted, cache.alpha, cache.beta
    relu = model.activation == "relu"
    n = len(ws)
    outs = []
    for s in states.split(chunk_size):
        # forward at θ: layer inputs h_{l-1} and pre-activations z_l
        hs, zs, h = [s], [], s
        for i, (w_, b_) in enumerate(ws):
            z = torch.addmm(b_, h, w_.T)
            zs.append(z)
            if i < n - 1:
                h = model.act(z)
                hs.append(h)
        # backward of the output logit: u_l = dz_L / dz_l (ReLU's derivative is sign(relu(z)), read off the stored
        # activation: 10x cheaper on CPU than a boolean mask)
        us = [torch.ones_like(zs[-1])]
        for i in range(n - 1, 0, -1):
            g = us[0] @ ws[i][0]
            us.insert(0, g.mul_(hs[i].sign()) if relu else g * _act_derivative(model, zs[i - 1]))
        sig = torch.sigmoid(zs[-1].squeeze(-1))
        zy = []
        for label in (0.0, 1.0):
            coef = (sig - label).mul_(alpha * beta).unsqueeze(-1)                   # [B, 1]
            h2 = s
            for i, (w_, b_) in enumerate(wd):
                dot = torch.linalg.vecdot(hs[i], h2).add_(1.0).unsqueeze(-1).mul_(coef)   # coef * (h.h2 + 1)
                z2 = torch.addmm(b_, h2, w_.T).addcmul_(us[i], dot, value=-1.0)
                h2 = (z2.relu_() if relu else model.act(z2)) if i < n - 1 else z2
            zy.append(h2.squeeze(-1))
        outs.append(normalise(zy[1], zy[0]))
    return torch.cat(outs) if outs else states.new_zeros(0)


@torch.no_grad()
def meta_nml_fast(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor,
                  states: torch.Tensor, config: MetaNMLConfig = MetaNMLConfig(),
                  cache: MetaNMLCache | None = None) -> torch.Tensor:
    """Meta-NML rewards ``states[B, D] -> [B]`` in [0, 1]; closed form (exact) for one inner step.

    See the module docstring for the equation. ``cache``: a :class:`MetaNMLCache` of the same
    ``params``/data (from :func:`meta_nml_prepare`), reused instead of recomputing the data gradient.
    Falls back to :func:`meta_nml_vmap` when ``k > 1``.
    """
    check_inputs(x, y, c, states, "c")
    if config.inner_steps != 1:
        return meta_nml_vmap(model, params, x, y, c, states, config)
    if cache is None:
        cache = meta_nml_prepare(model, params, x, y, c, config)
    return meta_nml_cached(model, cache, states, config.chunk_size)


def outer_batch(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, size: int, gen: torch.Generator):
    """The data of one meta-update: all of ``(x[N, D], y[N], c[N])`` when ``N <= size``; else ``size`` points
    drawn with probability proportional to their weight ``c``, each weighted ``sum(c) / size``. The batch's
    weighted loss is then an unbiased estimate of the full one with the same total weight (a uniform draw
    would mostly leave out the few success examples and shrink the data's weight against the query's)."""
    if x.shape[0] <= size:
        return x, y, c
    idx = torch.multinomial(c.detach().double().cpu(), size, replacement=True, generator=gen).to(x.device)
    return x[idx], y[idx], torch.full((size,), float(c.sum()) / size, dtype=c.dtype, device=c.device)


def _sample_queries(x, n, frac, margin, gen):
    n_unif = int(round(n * frac))
    idx = torch.randint(0, x.shape[0], (n - n_unif,), generator=gen).to(x.device)
    lo, hi = x.min(0).values, x.max(0).values
    span = (hi - lo).clamp_min(1e-6)
    u = torch.rand(n_unif, x.shape[1], generator=gen, dtype=torch.float64).to(x)
    unif = lo - margin * span + u * span * (1 + 2 * margin)
    return torch.cat([x[idx], unif])


def meta_train(model: SuccessClassifier, params: Params, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, *,
               steps: int, config: MetaNMLConfig = MetaNMLConfig(), seed: int | torch.Generator | None = 0,
               progress: bool = False, optimizer_state: dict | None = None) -> Params:
    """MAML meta-training (Algorithm 2 of MURAL) for ``steps`` meta-updates; returns new parameters.

    Each meta-update: ``meta_batch // 2`` query points (from the data and uniformly from its box),
    each with both labels; an outer batch of ``outer_batch`` data points (all of them when fewer; else drawn
    with probability proportional to their weight ``c`` and weighted ``sum(c) / outer_batch`` each);
    outer loss = mean over tasks of ``L_q(θ'; s, y)``; gradient by ``torch.func.grad`` through the
    ``vmap``-ed inner loop (second order unless ``first_order``); Adam step with ``meta_lr``.
    """
    steps = check_int("steps", steps, low=0, high=10**9)
    gen = make_generator(seed, "cpu")
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(p.values(), lr=config.meta_lr)
    n_q = config.meta_batch // 2

    def task_loss(pp, g0, s, ys, xb, yb, cb):
        if config.first_order:
            src = {k: v.detach() for k, v in pp.items()}
            adapted = _adapt(model, src, xb, yb, cb, s, ys, config, g0)
            adapted = {k: pp[k] + (adapted[k] - src[k]).detach() for k in pp}
        else:
            adapted = _adapt(model, pp, xb, yb, cb, s, ys, config, g0)
        return augmented_loss(model, adapted, xb, yb, cb, s, ys, config.query_weight)

    def meta_loss(pp, s, ys, xb, yb, cb):
        # the support gradient's data term is the same for every task: computed (and differentiated) once
        src = {k: v.detach() for k, v in pp.items()} if config.first_order else pp
        g0 = _shared_data_grad(model, src, xb, yb, cb, config.q_in)
        per_task = vmap(task_loss, in_dims=(None, None, 0, 0, None, None, None))
        return per_task(pp, g0, s, ys, xb, yb, cb).mean()

    from tqdm.auto import trange

    for _ in trange(steps, disable=not progress, desc="meta-NML", leave=False):
        xb, yb, cb = outer_batch(x, y, c, config.outer_batch, gen)
        qs = _sample_queries(x, n_q, config.uniform_query_fraction, config.box_margin, gen)
        s = torch.cat([qs, qs])
        ys = torch.cat([qs.new_zeros(n_q), qs.new_ones(n_q)])
        g = grad(meta_loss)({k: v.detach() for k, v in p.items()}, s, ys, xb, yb, cb)
        for k in p:
            p[k].grad = g[k].detach()
        opt.step()
    return {k: v.detach() for k, v in p.items()}
