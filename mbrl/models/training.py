"""The ensemble's training loop, apart from the model (docs/design.md, "PETS"; the original ``BNN.train``).

:func:`fit_ensemble` trains every member of a :class:`~mbrl.models.ProbabilisticEnsemble` at once on the
model's own loss (:meth:`~mbrl.models.ProbabilisticEnsemble.loss`): a shuffled train/holdout split, one
bootstrap resample per member, per-member row shuffles every epoch (PETS ``shuffle_rows``), Adam, and early
stopping on the holdout MSE with every member rolled back to its own best epoch. The model only has to offer
``loss`` (with ``decay=False``), ``optimizer_groups`` (the L2 term as Adam's weight decay), ``holdout_mse``, its
normalisers and its parameters, so another ensemble can reuse this loop. ``train_loss`` is the mean minibatch
loss without the L2 term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mbrl.common.config import with_overrides
from mbrl.common.seeding import check_seed, make_generator
from mbrl.common.threads import fit_threads
from mbrl.common.validation import INT_MAX, as_tensor, check_int, check_threshold
from mbrl.config import PETS

__all__ = ["FitConfig", "fit_ensemble", "unpack_transitions"]


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of :func:`fit_ensemble`, defaults from PETS (Chua et al. 2018, ``BNN.train``).

    epochs: maximum passes (5 after every episode); batch_size: minibatch per member (32); lr: Adam (1e-3);
    holdout: fraction held out for early stopping, at most ``max_holdout`` rows (with none, up to
    ``max_holdout`` training rows are scored instead); patience: epochs without any member improving before
    stopping; bootstrap: each member trains on its own resample with replacement; seed: the split, the
    bootstrap and the minibatch order (bit-identical reruns on CPU); progress: a tqdm bar over epochs.
    """

    epochs: int = PETS.epochs_per_episode
    batch_size: int = PETS.batch_size
    lr: float = PETS.lr
    holdout: float = PETS.holdout
    patience: int = 5
    bootstrap: bool = True
    seed: int = 0
    progress: bool = True
    max_holdout: int = 5000

    def __post_init__(self) -> None:
        for name, lo in {"epochs": 1, "batch_size": 1, "patience": 1, "max_holdout": 0}.items():
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=lo, high=INT_MAX))
        object.__setattr__(self, "seed", check_seed("seed", self.seed))
        object.__setattr__(self, "lr", check_threshold("lr", self.lr, low=0.0, high=1e6, inclusive=False))
        object.__setattr__(self, "holdout", check_threshold("holdout", self.holdout, low=0.0, high=1.0,
                                                            inclusive=True))


def unpack_transitions(data, obs_dim: int, act_dim: int, dtype: torch.dtype | None = None):
    """Validated ``(obs[N, O], act[N, A], next_obs[N, O])`` from a ``ReplayBuffer``, a ``Batch`` or a tuple."""
    if hasattr(data, "all") and callable(data.all) and hasattr(data, "obs_dim"):
        if len(data) == 0:
            raise ValueError("data (ReplayBuffer) is empty")
        data = data.all()
    if hasattr(data, "obs") and hasattr(data, "act") and hasattr(data, "next_obs"):
        parts = (data.obs, data.act, data.next_obs)
    elif isinstance(data, (tuple, list)) and len(data) == 3:
        parts = tuple(data)
    else:
        raise ValueError("data must be a ReplayBuffer or a tuple (obs, act, next_obs)")
    obs = as_tensor("data.obs", parts[0], dtype=dtype, last_dim=obs_dim, nonempty=True)
    act = as_tensor("data.act", parts[1], dtype=obs.dtype, device=obs.device, last_dim=act_dim, nonempty=True)
    nxt = as_tensor("data.next_obs", parts[2], dtype=obs.dtype, device=obs.device, last_dim=obs_dim, nonempty=True)
    if obs.ndim != 2:
        raise ValueError(f"data.obs must have shape (N, {obs_dim}), got {tuple(obs.shape)}")
    if act.shape != (obs.shape[0], act_dim):
        raise ValueError(f"data.act must have shape ({obs.shape[0]}, {act_dim}), got {tuple(act.shape)}")
    if nxt.shape != obs.shape:
        raise ValueError(f"data.next_obs must have shape {tuple(obs.shape)}, got {tuple(nxt.shape)}")
    return obs, act, nxt


def _split(model, obs, act, next_obs, cfg: FitConfig, gen: torch.Generator):
    """Fit the normalisers on the train split; return standardised ``(x_tr, y_tr, x_ho, y_ho)``."""
    dev, dtype = model.max_logvar.device, model.max_logvar.dtype
    N = obs.shape[0]
    perm = torch.randperm(N, generator=gen)
    n_hold = min(int(N * cfg.holdout), cfg.max_holdout)
    if N - n_hold < 1:
        raise ValueError(f"holdout={cfg.holdout} leaves no training data out of {N} rows")
    hold_idx, train_idx = perm[:n_hold], perm[n_hold:]
    if n_hold == 0:
        hold_idx = train_idx[: cfg.max_holdout] if cfg.max_holdout > 0 else train_idx
    x_all, d_all = torch.cat([obs, act], dim=-1), next_obs - obs
    ti, hi = train_idx.to(obs.device), hold_idx.to(obs.device)
    model.in_normalizer.fit(x_all[ti])
    model.out_normalizer.fit(d_all[ti])

    def std(x, d):
        return (model.in_normalizer.normalize(x.to(dev)).to(dtype), model.out_normalizer.normalize(d.to(dev)).to(dtype))

    return (*std(x_all[ti], d_all[ti]), *std(x_all[hi], d_all[hi]))


class _BestMembers:
    """Each member's weights at its best holdout MSE so far, and the log-variance bounds at the last
    improvement (the PETS rule)."""

    def __init__(self, model) -> None:
        self.model, E = model, model.ensemble_size
        self.mse = torch.full((E,), math.inf, dtype=torch.float64)
        self.epoch = [-1] * E
        self.state = [p.detach().clone() for p in self._params()]
        self.bounds = (model.max_logvar.detach().clone(), model.min_logvar.detach().clone())

    def _params(self):
        return (*self.model.weights, *self.model.biases)

    @torch.no_grad()
    def update(self, mse: torch.Tensor, epoch: int) -> bool:
        """Record the members that improved; True if any did."""
        improved = mse < self.mse
        if not bool(improved.any()):
            return False
        self.mse = torch.where(improved, mse, self.mse)
        mask = improved.to(self.model.max_logvar.device)
        for s, p in zip(self.state, self._params()):
            s[mask] = p[mask]
        self.bounds = (self.model.max_logvar.detach().clone(), self.model.min_logvar.detach().clone())
        for e in torch.nonzero(improved).flatten().tolist():
            self.epoch[e] = epoch
        return True

    @torch.no_grad()
    def restore(self) -> None:
        for s, p in zip(self.state, self._params()):
            p.copy_(s)
        self.model.max_logvar.copy_(self.bounds[0])
        self.model.min_logvar.copy_(self.bounds[1])


def _epoch(model, opt, x_tr, y_tr, idx, batch_size: int, gen: torch.Generator) -> float:
    """One pass over every member's (bootstrap) rows in a fresh per-member order; returns the mean loss."""
    E, n_tr = idx.shape
    dev = x_tr.device
    order = torch.argsort(torch.rand(E, n_tr, generator=gen), dim=1)  # PETS shuffle_rows
    ep_idx = torch.gather(idx, 1, order).to(dev)
    n_batches = math.ceil(n_tr / batch_size)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    for b in range(n_batches):
        bi = ep_idx[:, b * batch_size : (b + 1) * batch_size]
        loss, _ = model.loss(x_tr[bi], y_tr[bi], decay=False)  # the L2 term is Adam's weight decay (_adam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach()
    return float(total) / n_batches


def _adam(groups: list[dict], lr: float) -> torch.optim.Adam:
    """Adam over ``groups``: torch's fused kernel (one pass per step over every parameter; 25-35 % less time per
    PETS fit on 2 CPU cores than the per-tensor loop, issue 20) where this torch and device have it, else the
    multi-tensor ``foreach`` form."""
    try:
        return torch.optim.Adam(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(groups, lr=lr, foreach=True)


@fit_threads()
def fit_ensemble(model, data, config: FitConfig | None = None, **overrides) -> dict:
    """Train ``model``'s members together by the PETS loss with Adam (module docstring).

    Args:
        model: a :class:`~mbrl.models.ProbabilisticEnsemble` (or anything with its training surface).
        data: a ``ReplayBuffer``, a ``Batch`` or a tuple ``(obs[N, O], act[N, A], next_obs[N, O])``.
        config: a :class:`FitConfig`; ``overrides`` replace single fields (``epochs=20``).
    Returns:
        ``{"train_loss": [float per epoch], "holdout_mse": [[float per member] per epoch],
        "best_epoch": [int per member]}``; holdout MSE is in standardised target units and each member ends
        with its weights from its best epoch (0-based index into the lists).
    """
    cfg = with_overrides(FitConfig, config, **overrides)
    low_precision = model.max_logvar.dtype in (torch.float16, torch.bfloat16)
    obs, act, next_obs = unpack_transitions(data, model.obs_dim, model.act_dim,
                                            torch.float32 if low_precision else None)
    gen = make_generator(cfg.seed, "cpu")
    x_tr, y_tr, x_ho, y_ho = _split(model, obs, act, next_obs, cfg, gen)
    E, n_tr = model.ensemble_size, x_tr.shape[0]
    idx = torch.randint(n_tr, (E, n_tr), generator=gen) if cfg.bootstrap else torch.arange(n_tr).expand(E, n_tr)
    opt = _adam(model.optimizer_groups(), cfg.lr)
    best, since = _BestMembers(model), 0
    hist: dict = {"train_loss": [], "holdout_mse": [], "best_epoch": best.epoch}
    bar = tqdm(range(cfg.epochs), desc="fit ensemble", unit="epoch", disable=not cfg.progress, leave=False)
    for epoch in bar:
        hist["train_loss"].append(_epoch(model, opt, x_tr, y_tr, idx, cfg.batch_size, gen))
        mse = model.holdout_mse(x_ho, y_ho).cpu()
        hist["holdout_mse"].append(mse.tolist())
        since = 0 if best.update(mse, epoch) else since + 1
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.4g}", holdout=f"{float(mse.mean()):.4g}")
        if since >= cfg.patience:
            break
    bar.close()
    best.restore()
    return hist
