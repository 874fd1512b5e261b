"""A small MLP success classifier and its plain (VICE-style) reward.

``docs/design.md``, "MURAL": success examples ``S+`` get label 1, visited states label 0. The
classifier outputs one logit ``z(s)`` with ``p(success|s) = sigmoid(z(s))``. The module is a plain
``nn.Sequential`` of ``Linear`` layers and one element-wise activation, evaluated functionally
(``torch.func.functional_call`` on a ``dict`` of parameters), so that ``torch.func.grad``/``vmap``
can train many copies at once (:mod:`safe_density.mural.cnml`, :mod:`safe_density.mural.meta_nml`).

The baseline reward :func:`classifier_reward` is the maximum-likelihood classifier's
``p(success|s)`` (VICE, Fu et al. 2018, as used as the baseline in MURAL, Li et al. 2021): it is
over-confident away from the data, which is what the NML rewards fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mbrl.common.seeding import make_generator
from mbrl.common.validation import check_int, check_threshold

__all__ = [
    "ClassifierRegularizer",
    "Params",
    "SuccessClassifier",
    "balanced_weights",
    "classifier_reward",
    "init_params",
    "linear_layers",
    "logits",
    "train_classifier",
    "weighted_bce",
]

Params = dict[str, torch.Tensor]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


class ClassifierRegularizer(Protocol):
    """Anything with ``loss(model_fn, x, y) -> scalar`` replacing the cross-entropy (e.g. RCAD).

    ``model_fn(x[B, D]) -> logits[B, 2]`` (two-class logits ``[0, z]``), ``y: long[B]`` in {0, 1}.
    The returned loss must already contain the cross-entropy term.
    """

    def loss(self, model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor: ...


class SuccessClassifier(nn.Module):
    """MLP ``R^D -> R`` (one logit). ``forward(x[..., D]) -> z[...]``.

    Args:
        in_dim: feature dimension ``D``.
        hidden: hidden widths (MURAL's meta-NML uses ``(2048, 2048)``; small nets suffice on 2-D tasks).
        activation: element-wise non-linearity, one of ``relu`` (MURAL's), ``tanh``, ``silu``, ``elu``,
            ``softplus``.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (2048, 2048), activation: str = "relu"):
        super().__init__()
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {tuple(hidden)}")
        self.in_dim, self.hidden, self.activation = int(in_dim), tuple(int(h) for h in hidden), activation
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in self.hidden:
            layers += [nn.Linear(d, h), _ACTIVATIONS[activation]()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        """The element-wise activation (used by the closed-form adaptation in ``meta_nml``)."""
        return self.net[1](z) if self.hidden else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def linear_layers(model: SuccessClassifier) -> list[tuple[str, str]]:
    """Names ``(weight, bias)`` of the linear layers in forward order."""
    return [(f"net.{i}.weight", f"net.{i}.bias") for i, m in enumerate(model.net) if isinstance(m, nn.Linear)]


def init_params(model: SuccessClassifier, seed: int | torch.Generator | None = 0,
                dtype: torch.dtype = torch.float32, device=None) -> Params:
    """Fresh seeded parameters (PyTorch's default ``Linear`` init, reproducible from ``seed``)."""
    gen = make_generator(seed, "cpu")
    out: Params = {}
    for wn, bn in linear_layers(model):
        fan_in = model.get_parameter(wn).shape[1]
        bound = fan_in ** -0.5
        shape_w = model.get_parameter(wn).shape
        out[wn] = ((torch.rand(shape_w, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)
        out[bn] = ((torch.rand(shape_w[0], generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dtype)
    return {k: v.to(device) for k, v in out.items()}


def logits(model: SuccessClassifier, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``z(x)`` under ``params``: ``x[..., D] -> [...]``."""
    return functional_call(model, params, (x,))


def weighted_bce(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i BCE(z_i, y_i) / sum_i w_i`` (plain mean when ``w`` is None). ``z, y, w: [N]``."""
    lo = F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")
    if w is None:
        return lo.mean()
    return (lo * w).sum() / w.sum()


def balanced_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-point weights ``[N]`` giving both classes equal total weight, normalised to sum to ``N``.

    MURAL samples equal numbers of positives and negatives for the classifier's loss
    (``equal_pos_neg_test=True`` in the official code); with few examples and many visited states
    this weighting is the full-batch equivalent.
    """
    n = y.numel()
    n1 = y.sum()
    n0 = n - n1
    w = torch.where(y > 0.5, 0.5 * n / n1.clamp_min(1), 0.5 * n / n0.clamp_min(1))
    if n1 == 0 or n0 == 0:
        w = torch.ones_like(w)
    return w.to(torch.get_default_dtype() if not y.is_floating_point() else y.dtype)


def train_classifier(
    model: SuccessClassifier,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    steps: int = 500,
    lr: float = 1e-3,
    batch_size: int | None = None,
    regularizer: ClassifierRegularizer | None = None,
    seed: int | torch.Generator | None = 0,
    progress: bool = False,
) -> Params:
    """Maximum-likelihood training with Adam; returns new (detached) parameters.

    Args:
        x: ``[N, D]`` features; y: ``[N]`` labels in {0, 1}; weights: ``[N]`` per-point weights
            (e.g. :func:`balanced_weights`), ignored when ``regularizer`` is given (it owns the loss).
        steps, lr: Adam budget; batch_size: minibatch size (``None``: full batch, deterministic).
        regularizer: optional object with ``loss(model_fn, x, y)`` (e.g. ``safe_density.rcad.RCAD``):
            ``model_fn(x) -> [B, 2]`` two-class logits ``[0, z]``, ``y`` long.
        seed: minibatch sampling seed.
    """
    steps = check_int("steps", steps, low=0, high=10**9)
    check_threshold("lr", lr, low=0.0, high=1e6, inclusive=False)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ValueError(f"x must be [N, D] and y [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(p.values(), lr=lr)
    gen = make_generator(seed, "cpu")
    n = x.shape[0]
    from tqdm.auto import trange

    for _ in trange(steps, disable=not progress, desc="classifier", leave=False):
        if batch_size is not None and batch_size < n:
            idx = torch.randint(0, n, (batch_size,), generator=gen).to(x.device)
            xb, yb, wb = x[idx], y[idx], None if weights is None else weights[idx]
        else:
            xb, yb, wb = x, y, weights
        if regularizer is not None:
            def model_fn(inp, _p=p):
                z = logits(model, _p, inp)
                return torch.stack([torch.zeros_like(z), z], dim=-1)

            loss = regularizer.loss(model_fn, xb, yb.long())
        else:
            loss = weighted_bce(logits(model, p, xb), yb, wb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in p.items()}


@torch.no_grad()
def classifier_reward(model: SuccessClassifier, params: Params, states: torch.Tensor) -> torch.Tensor:
    """VICE-style reward ``p(success|s) = sigmoid(z(s))``: ``states[..., D] -> [...]`` in [0, 1]."""
    return torch.sigmoid(logits(model, params, states))
