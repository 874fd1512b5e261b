"""RCAD: reducing confidence along adversarial directions (design.md, "RCAD adversarial unlearning").

Setlur, Eysenbach, Smith & Levine, "Adversarial Unlearning: Reducing Confidence Along Adversarial
Directions", NeurIPS 2022 (arXiv 2206.01367). For a training batch ``(x, y)`` each example is pushed a
*large* distance along its own normalised input-gradient of the training loss,

    x' = x + α · ∇_x L(x, y) / ||∇_x L(x, y)||_2          (per example, L = cross-entropy)

and the model is trained on

    loss = CE(p_θ(·|x), y) - λ · H(p_θ(·|x'))

i.e. it fits the labels on ``x`` while being *uncertain* on the self-generated points ``x'``, which lie
along the directions the model is most sensitive to (often spurious features). ``x'`` is a constant:
it is computed from the current parameters but detached, so no gradient flows through the attack
(the official code builds the perturbation in ``attack_pgd`` from ``delta.grad`` / ``delta.data`` and
adds it with no graph back to θ).

Published defaults. The paper tunes ``α`` and ``λ`` per data set; the authors' code
(github.com/ars22/RCAD-regularizer, ``run.sh``: CIFAR-100-2k, ResNet-18, the low-data setting) uses
``--alpha 0.5 --lambd 0.2`` (one attack step, L2 norm, images in ``[0, 1]``); ``scripts/run_MPE.sh``
(full CIFAR-100, WRN-28-10) uses ``--alpha 1.0 --lambd 0.2``. We default to ``step_size=0.5``,
``weight=0.2``. The paper's Fig. 1 describes the step as ~10x a typical adversarial-training step.
``α`` is an L2 length in input units, so it should be rescaled with the input scale and dimension.
Differences from that code, on purpose: its regulariser is ``λ (log C - H)`` (same gradient as ``-λ H``),
it adds ``U(-0.01, 0.01)`` noise to the perturbation and combines RCAD with label smoothing and data
augmentation; here the term is exactly the equation above and anything else is the caller's choice.

Heads: ``model(x)`` returns ``[B, C]`` logits (softmax, ``y`` integer class ids in ``[0, C)``) or
``[B]`` / ``[B, 1]`` logits (sigmoid, ``y`` floats in ``[0, 1]``, normally 0/1).

Per-example gradients are exact from one backward pass of the *summed* loss because examples do not
interact -- except through layers that mix the batch such as ``BatchNorm`` in training mode (then
``x'`` depends weakly on the other examples, as in the official code). The extra forward passes also
update BatchNorm running statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mbrl.util.validation import as_tensor, check_finite, check_threshold

__all__ = ["RCAD", "RCADDensity", "adversarial_inputs", "predictive_entropy", "rcad_loss"]

#: Defaults of the authors' code for the low-data CIFAR-100-2k run (see module docstring).
PUBLISHED_STEP_SIZE = 0.5
PUBLISHED_WEIGHT = 0.2

_REDUCTIONS = ("mean", "sum", "none")
Model = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------- helpers
def _is_binary(logits: torch.Tensor) -> bool:
    return logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)


def _check_logits(logits: torch.Tensor, batch: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError("model must return a floating-point logits tensor")
    if logits.ndim not in (1, 2) or logits.shape[0] != batch:
        raise ValueError(f"model must map x[B={batch}, ...] to logits [B, C], [B] or [B, 1], "
                         f"got shape {tuple(logits.shape)}")
    if logits.ndim == 2 and logits.shape[1] == 0:
        raise ValueError("model must return at least one logit per example")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("model returned NaN or infinite logits (is x within the model's range?)")
    return logits


def _prepare_labels(y, logits: torch.Tensor) -> torch.Tensor:
    """Validate ``y`` against the head of ``logits``; return long ``[B]`` or float ``[B]`` labels."""
    batch = logits.shape[0]
    if _is_binary(logits):
        yt = as_tensor("y", y, dtype=logits.dtype, device=logits.device)
        if yt.ndim == 2 and yt.shape[1] == 1:
            yt = yt[:, 0]
        if yt.ndim != 1 or yt.shape[0] != batch:
            raise ValueError(f"y must have shape [{batch}] (or [{batch}, 1]) for a binary head, "
                             f"got {tuple(yt.shape)}")
        if yt.numel() and (bool((yt < 0).any()) or bool((yt > 1).any())):
            raise ValueError("y must lie in [0, 1] for a binary (sigmoid) head")
        return yt
    n_classes = logits.shape[1]
    if isinstance(y, torch.Tensor):
        yt = y.to(logits.device)
    else:
        try:
            arr = np.asarray(y)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"y must be array-like class ids, got {type(y).__name__}") from exc
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"y must hold integer class ids, got dtype {arr.dtype}")
        yt = torch.from_numpy(np.array(arr, order="C", copy=True)).to(logits.device)
    if yt.is_floating_point():
        if not bool(torch.isfinite(yt).all()) or not bool((yt == yt.round()).all()):
            raise ValueError("y must hold integer class ids for a multi-class head")
    elif yt.dtype == torch.bool or yt.is_complex():
        raise ValueError(f"y must hold integer class ids, got dtype {yt.dtype}")
    yt = yt.long()
    if yt.ndim != 1 or yt.shape[0] != batch:
        raise ValueError(f"y must have shape [{batch}] (batch of x), got {tuple(yt.shape)}")
    if yt.numel() and (bool((yt < 0).any()) or bool((yt >= n_classes).any())):
        raise ValueError(f"y must hold class ids in [0, {n_classes}), got range "
                         f"[{int(yt.min())}, {int(yt.max())}]")
    return yt


def _per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``[B]`` for a softmax head or a sigmoid head."""
    if _is_binary(logits):
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), y, reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the predictive distribution: logits ``[B, C]`` (softmax) or ``[B]``/``[B, 1]``
    (Bernoulli) -> ``[B]``. Computed from log-probabilities, so it is finite for any finite logits."""
    if _is_binary(logits):
        z = logits.reshape(-1)
        log_p, log_q = F.logsigmoid(z), F.logsigmoid(-z)
        return -(log_p.exp() * log_p + log_q.exp() * log_q)
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def _check_model(model) -> None:
    if not callable(model):
        raise ValueError(f"model must be callable (x -> logits), got {type(model).__name__}")


def _check_x(x, model) -> torch.Tensor:
    """``x`` as a finite, non-empty tensor; for an ``nn.Module`` with floating parameters, in their dtype and
    on their device (so that e.g. float64 or integer data can feed a float32 model)."""
    xt = as_tensor("x", x, min_ndim=1, nonempty=True)
    if isinstance(model, torch.nn.Module):
        p = next((t for t in model.parameters() if t.is_floating_point()), None)
        if p is not None:
            xt = as_tensor("x", xt, dtype=p.dtype, device=p.device)
    return xt


# --------------------------------------------------------------------------------------------- public
def adversarial_inputs(model: Model, x, y, step_size: float = PUBLISHED_STEP_SIZE,
                       eps: float = 1e-12) -> torch.Tensor:
    """The RCAD points ``x' = x + α ∇_x L / ||∇_x L||`` (design.md "RCAD"), detached.

    Args:
        model: ``x[B, ...] -> logits [B, C]`` or ``[B]`` / ``[B, 1]``.
        x: inputs ``[B, ...]`` (any float tensor / array; device taken from ``x``).
        y: labels ``[B]`` (class ids, or floats in ``[0, 1]`` for a binary head).
        step_size: ``α >= 0``, the L2 length of the step per example.
        eps: guard for a zero gradient (that example then stays at ``x``).
    Returns:
        ``x'`` with ``x``'s shape, ``requires_grad=False`` and no ``grad_fn``.
    """
    _check_model(model)
    alpha = check_threshold("step_size", step_size, low=0.0, high=math.inf, inclusive=True)
    if math.isinf(alpha):
        raise ValueError("step_size must be finite")
    xt = _check_x(x, model)
    return _adversarial(model, xt, y, alpha, eps)[0]


def _adversarial(model: Model, x: torch.Tensor, y, alpha: float, eps: float):
    x_req = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _check_logits(model(x_req), x.shape[0])
        labels = _prepare_labels(y, logits)
        total = _per_example_ce(logits, labels).sum()
        if total.requires_grad:
            (grad,) = torch.autograd.grad(total, x_req, allow_unused=True)
        else:  # the logits do not depend on x (e.g. a constant model): no direction to step along
            grad = None
    if grad is None:
        grad = torch.zeros_like(x)
    norm = grad.flatten(1).norm(dim=1) if grad.ndim > 1 else grad.abs()
    scale = alpha / norm.clamp_min(eps)
    scale = torch.where(norm > eps, scale, torch.zeros_like(scale))
    x_adv = x.detach() + scale.reshape((-1,) + (1,) * (x.ndim - 1)) * grad
    return x_adv.detach(), labels


def rcad_loss(model: Model, x, y, step_size: float = PUBLISHED_STEP_SIZE,
              weight: float = PUBLISHED_WEIGHT, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on ``x`` minus ``weight`` x predictive entropy on the RCAD points ``x'``.

    ``loss_i = CE(p_θ(·|x_i), y_i) - λ H(p_θ(·|x'_i))`` with ``x'_i`` from :func:`adversarial_inputs`
    (design.md "RCAD"; Setlur et al. 2022). Differentiable in the model's parameters; ``x'`` is a
    constant. Defaults are the authors' code's (``α = 0.5``, ``λ = 0.2``; see the module docstring).

    Args:
        model: ``x[B, ...] -> logits [B, C]`` (softmax) or ``[B]`` / ``[B, 1]`` (sigmoid).
        x: inputs ``[B, ...]``; y: labels ``[B]`` (ids in ``[0, C)``, or floats in ``[0, 1]``).
        step_size: ``α >= 0`` (0 gives ``CE - λ H(p(·|x))``, a confidence penalty on the data itself).
        weight: ``λ >= 0`` (0 gives plain cross-entropy).
        reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (``[B]``).
    Raises:
        ValueError: naming the argument for NaN/inf inputs, a batch mismatch, negative ``step_size`` or
        ``weight``, labels out of range, a bad ``reduction`` or a model output of the wrong shape.
    """
    _check_model(model)
    alpha = check_threshold("step_size", step_size, low=0.0, high=math.inf)
    lam = check_threshold("weight", weight, low=0.0, high=math.inf)
    if math.isinf(alpha) or math.isinf(lam):
        raise ValueError("step_size and weight must be finite")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    xt = _check_x(x, model)
    if lam > 0:
        x_adv, labels = _adversarial(model, xt, y, alpha, 1e-12)
    logits = _check_logits(model(xt), xt.shape[0])
    if lam == 0:
        labels = _prepare_labels(y, logits)
    per_example = _per_example_ce(logits, labels)
    if lam > 0:
        logits_adv = _check_logits(model(x_adv), xt.shape[0])
        per_example = per_example - lam * predictive_entropy(logits_adv)
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    return per_example


@dataclass(frozen=True)
class RCAD:
    """RCAD as a pluggable regulariser: ``RCAD(step_size, weight).loss(model, x, y) -> scalar``.

    The returned value already contains the cross-entropy (``CE - λ H(p(·|x'))``), so a trainer that
    accepts a ``regularizer`` hook uses it in place of its plain cross-entropy. Defaults from the
    authors' code (module docstring); design.md "RCAD".
    """

    step_size: float = PUBLISHED_STEP_SIZE
    weight: float = PUBLISHED_WEIGHT

    def __post_init__(self) -> None:
        for name in ("step_size", "weight"):
            v = check_threshold(name, getattr(self, name), low=0.0, high=math.inf)
            if math.isinf(v):
                raise ValueError(f"{name} must be finite")

    def loss(self, model: Model, x, y, reduction: str = "mean") -> torch.Tensor:
        """``rcad_loss(model, x, y, self.step_size, self.weight, reduction)``."""
        return rcad_loss(model, x, y, step_size=self.step_size, weight=self.weight, reduction=reduction)

    def adversarial_inputs(self, model: Model, x, y) -> torch.Tensor:
        """The detached RCAD points ``x'`` ``[B, ...]`` used by :meth:`loss`."""
        return adversarial_inputs(model, x, y, step_size=self.step_size)


@dataclass(frozen=True)
class RCADDensity:
    """RCAD for density models (our adaptation; the paper defines RCAD for classifiers only).

    A density model's "confidence" is its log-density. For a batch ``z`` of training points, take the
    RCAD step along the normalised gradient of the negative log-likelihood, i.e. the direction in which
    the density falls fastest (away from the data):

        z' = z + step_size * grad_z NLL(z) / ||grad_z NLL(z)||      (per example, detached as in RCAD)

    and return the hinge ``weight * mean(relu(log p(z') - log p(z) + margin))`` (``log p(z)`` detached):
    a trainer *adds* it to its NLL loss (``FlowDensity(regularizer=RCADDensity())``), so the model learns
    to put at least ``margin`` nats less density one step along every adversarial direction, the density
    counterpart of maximising a classifier's entropy at ``x'``. (A plain ``+ weight * log p(z')`` term is
    unbounded below and collapses a flow; the hinge keeps the objective bounded.) ``step_size`` is in the
    model's standardised units; defaults: one standard deviation, three nats.
    """

    step_size: float = 1.0
    weight: float = 1.0
    margin: float = 3.0

    def __post_init__(self) -> None:
        for name in ("step_size", "weight", "margin"):
            v = check_threshold(name, getattr(self, name), low=0.0, high=math.inf)
            if math.isinf(v):
                raise ValueError(f"{name} must be finite")

    def adversarial_inputs(self, log_prob: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """``z'[B, D]`` (detached): ``z`` moved ``step_size`` along the per-example NLL gradient."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"z must be a non-empty tensor [B, D], got {getattr(z, 'shape', type(z))}")
        check_finite("z", z)
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            nll = -log_prob(zz).sum()
            # a log-density that does not depend on z (e.g. constant) gives no direction: z' = z
            g = torch.autograd.grad(nll, zz, allow_unused=True)[0] if nll.requires_grad else None
        if g is None:
            g = torch.zeros_like(z)
        norm = g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (z + self.step_size * g / norm).detach()

    def loss(self, log_prob: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Scalar hinge ``weight * mean(relu(log p(z') - log p(z) + margin))``, added to the NLL of ``z``."""
        z_adv = self.adversarial_inputs(log_prob, z)
        lp = log_prob(torch.cat([z.detach(), z_adv]))
        lp_z, lp_adv = lp[: z.shape[0]].detach(), lp[z.shape[0]:]
        return self.weight * torch.relu(lp_adv - lp_z + self.margin).mean()
