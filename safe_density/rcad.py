"""RCAD: reducing confidence along adversarial directions (docs/design.md, "RCAD adversarial unlearning").

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

Published settings. The paper tunes ``α`` and ``λ`` per data set; the authors' code
(github.com/ars22/RCAD-regularizer, ``run.sh``: CIFAR-100-2k, ResNet-18, the low-data setting) uses
``--alpha 0.5 --lambd 0.2`` (one attack step, L2 norm, images in ``[0, 1]``, with label smoothing 0.6);
``scripts/run_MPE.sh`` (full CIFAR-100, WRN-28-10) uses ``--alpha 1.0 --lambd 0.2``. They are one call away,
``RCAD.published()`` (= ``step_size=0.5, weight=0.2``), and they belong to 3,072-dimensional CIFAR images
in ``[0, 1]``: ``α`` is an L2 length in input units, so on other inputs 0.5 is simply the wrong size (on
scikit-learn's 64-pixel digits it made an MLP *more* confident on uniform noise than plain cross-entropy).

Default step (``step_size="auto"``, used by ``rcad_loss(model, x, y)``, ``RCAD()`` and ``RCADDensity()``):

    α = step_scale · median_{i<j} ||x_i - x_j||_2          (over the training batch, no gradient)

The median pairwise distance is the batch's own length scale: translation invariant, proportional to the
input scale, growing like ``sqrt(D)`` with the dimension (``sqrt(2 D)`` per unit of feature std), and robust
to outliers and to the batch size (unlike a nearest-neighbour distance, which shrinks as the batch grows).
Measured spreads: digits in ``[0, 1]`` (64 dims) 3.07; uniform ``[0, 1]`` noise of CIFAR's size (3,072 dims)
22.6; standardised breast-cancer features (30 dims) 6.7; standardised 2-D data ~1.7.

The numbers were chosen on held-out data, never the test split (``benchmarks/rcad_small_data.py --sweep``:
each seed's training subset of digits / breast cancer is split 75/25 and scored on the 25 %). First sweep,
5 seeds, ``step_scale`` in {0.125, 0.25, 0.5, 1, 2} x ``λ`` in {0.2, 0.5}: on digits ``step_scale = 0.5``
had the best or tied-best held-out accuracy at 5, 10 and 25 % of the training split (``λ = 0.2``:
0.825 / 0.887 / 0.954 vs ERM's 0.800 / 0.869 / 0.944) and cut the max-probability on uniform noise from
0.75 to 0.54 / 0.42 / 0.60; 0.125-0.25 did little at ``λ = 0.2`` (noise 0.74-0.76 at 5 %), 1-2 lost accuracy
at 5-10 % (0.81-0.87). Second sweep, 8 seeds, ``step_scale`` in {0.5, 1} x ``λ`` in {0.2, 0.5, 1}: with
``step_scale = 0.5``, ``λ = 0.5`` kept held-out accuracy at or above ERM's at 5 / 10 / 25 % (0.844 / 0.871 /
0.926 vs 0.797 / 0.871 / 0.920) and lowered max-probability on noise (0.48 / 0.48 / 0.63 vs 0.74 / 0.74 /
0.77) and on inverted digits (0.54 / 0.61 / 0.79 vs 0.81 / 0.81 / 0.85) by more than one standard deviation
at 5 and 10 %, which ``λ = 0.2`` (the authors' value) did not on inverted digits at 10 % (0.64 ± 0.22);
``λ = 1`` cost accuracy at 10 %. Hence the defaults ``step_scale = 0.5``, ``weight = 0.5``. On breast cancer
(20-100 training points) every setting is within the held-out noise (accuracy ± 0.05-0.09) and lowers the
confidence off the data a little (noise box 0.99 -> 0.94).

What the step means: half a typical inter-example distance along the direction the loss rises fastest is far
off the data manifold in many dimensions, yet short of the neighbouring examples of another class. In two
dimensions the gradient direction lies within the data's span, and confidence *beyond* the data (outside its
hull) needs a longer step: for the MURAL classifier on two 2-D clusters, ``step_scale`` 1.5-2 with
``weight`` 0.5 lowers the reward's distance from 1/2 far away from 0.5 to 0.2, the default leaves it at 0.5.
``RCADDensity`` uses the same rule with ``step_scale = 0.6``, one standard deviation on 2-D standardised
features (its earlier, tested default: 3+ nats less density far away at < 0.3 nats lower training
likelihood; 0.5 costs 0.42 nats on the same test), growing with the dimension like the classifier's step.
With ``"auto"`` each example's loss depends on the rest of the batch through that single scalar.

Label smoothing (``label_smoothing=ε``): the cross-entropy on ``x`` uses targets ``(1 - ε) onehot + ε / C``
(``y (1 - ε) + ε / 2`` for a sigmoid head) -- the paper reports RCAD on top of label smoothing. The
adversarial direction is still the gradient of the plain cross-entropy, as in the authors' code.

Differences from that code, on purpose: its regulariser is ``λ (log C - H)`` (same gradient as ``-λ H``),
it adds ``U(-0.01, 0.01)`` noise to the perturbation and uses data augmentation; here the term is exactly
the equation above and anything else is the caller's choice. The paper's Fig. 1 describes the step as ~10x
a typical adversarial-training step.

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

from mbrl.common.validation import as_tensor, check_finite, check_threshold

__all__ = ["RCAD", "RCADDensity", "adversarial_inputs", "batch_step_size", "predictive_entropy", "rcad_loss"]

#: Defaults of the authors' code for the low-data CIFAR-100-2k run (see module docstring).
PUBLISHED_STEP_SIZE = 0.5
PUBLISHED_WEIGHT = 0.2
#: ``step_size="auto"``: the step is ``step_scale`` x the batch's median pairwise input distance.
AUTO = "auto"
#: Default multiplier of the batch spread for classifiers (module docstring, "Default step": measured).
DEFAULT_STEP_SCALE = 0.5
#: Default ``λ`` with the auto step (held-out sweep, module docstring; the authors' 0.2 is in ``published()``).
DEFAULT_WEIGHT = 0.5
#: Default multiplier for :class:`RCADDensity` (module docstring, "Default step").
DENSITY_STEP_SCALE = 0.6

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


# --------------------------------------------------------------------------------------------- step size
def batch_step_size(x, scale: float = DEFAULT_STEP_SCALE, max_points: int = 256) -> torch.Tensor:
    """The default RCAD step: ``scale`` x the median L2 distance between two examples of the batch.

    ``spread(x)`` is the median of ``||x_i - x_j||_2`` over the pairs ``i < j`` of (at most ``max_points``
    evenly spaced) examples of the batch; if more than half the pairs coincide, their mean; if the batch has
    no spread at all (one example, or all equal), the root-mean-square example norm, and ``sqrt(D)`` if that
    is zero too. It is translation invariant and grows like ``scale_of_inputs * sqrt(D)``, so one ``scale``
    fits pixels in ``[0, 1]`` and standardised features alike (module docstring, "Default step").

    Args:
        x: inputs ``[B, ...]`` (flattened per example), finite; torch tensor or array.
        scale: the multiplier, finite and ``> 0``.
        max_points: cap on the examples used (cost ``O(max_points^2 D)``).
    Returns:
        a 0-dim tensor (``x``'s floating dtype and device), ``> 0``, no gradient.
    """
    s = check_threshold("scale", scale, low=0.0, high=math.inf, inclusive=False)
    xt = as_tensor("x", x, min_ndim=1, nonempty=True)
    return _spread(xt, int(max_points)) * s


@torch.no_grad()
def _spread(x: torch.Tensor, max_points: int = 256) -> torch.Tensor:
    flat = x.detach().reshape(x.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError("x must have at least one feature per example")
    out_dtype = flat.dtype
    flat = flat.to(torch.float64)
    n = flat.shape[0]
    if n > max_points:  # evenly spaced, deterministic (no RNG)
        flat = flat[torch.linspace(0, n - 1, max_points, device=flat.device).round().long()]
        n = max_points
    big = flat.abs().amax().clamp_min(1e-300)  # divide out the magnitude: no overflow for huge inputs
    unit = flat / big
    rms = unit.square().sum(1).mean().sqrt() * big
    if n > 1:
        iu = torch.triu_indices(n, n, 1, device=flat.device)
        d = torch.cdist(unit, unit)[iu[0], iu[1]] * big
        med, mean = d.median(), d.mean()
        spread = torch.where(med > 0, med, torch.where(mean > 0, mean, rms))
    else:
        spread = rms
    spread = torch.where(spread > 0, spread, torch.full_like(spread, math.sqrt(flat.shape[1])))
    return spread.to(out_dtype)


def _check_step(step_size) -> float | str:
    if isinstance(step_size, str):
        if step_size != AUTO:
            raise ValueError(f"step_size must be {AUTO!r} or a finite number > 0, got {step_size!r}")
        return AUTO
    v = check_threshold("step_size", step_size, low=0.0, high=math.inf, inclusive=False)
    if math.isinf(v):
        raise ValueError("step_size must be finite (or 'auto')")
    return v


def _check_nonneg(name: str, value, high: float = math.inf, inclusive: bool = True) -> float:
    v = check_threshold(name, value, low=0.0, high=high, inclusive=True)
    if math.isinf(v) or (not inclusive and v >= high):
        raise ValueError(f"{name} must be finite and in [0, {high}{']' if inclusive else ')'}, got {v}")
    return v


def _resolve_step(step, step_scale: float, x: torch.Tensor):
    return _spread(x) * step_scale if step == AUTO else step


# --------------------------------------------------------------------------------------------- public
def adversarial_inputs(model: Model, x, y, step_size: float | str = AUTO,
                       step_scale: float = DEFAULT_STEP_SCALE, eps: float = 1e-12) -> torch.Tensor:
    """The RCAD points ``x' = x + α ∇_x L / ||∇_x L||`` (docs/design.md "RCAD"), detached.

    Args:
        model: ``x[B, ...] -> logits [B, C]`` or ``[B]`` / ``[B, 1]``.
        x: inputs ``[B, ...]`` (any float tensor / array; device taken from ``x``).
        y: labels ``[B]`` (class ids, or floats in ``[0, 1]`` for a binary head).
        step_size: ``α``, the L2 length of the step per example: a finite number ``> 0``, or ``"auto"``
            (default): ``step_scale`` x the batch's median pairwise distance (:func:`batch_step_size`).
        step_scale: the multiplier of the ``"auto"`` step.
        eps: guard for a zero gradient (that example then stays at ``x``).
    Returns:
        ``x'`` with ``x``'s shape, ``requires_grad=False`` and no ``grad_fn``.
    """
    _check_model(model)
    step = _check_step(step_size)
    scale = check_threshold("step_scale", step_scale, low=0.0, high=math.inf, inclusive=False)
    xt = _check_x(x, model)
    return _adversarial(model, xt, y, _resolve_step(step, scale, xt), eps)[0]


def _adversarial(model: Model, x: torch.Tensor, y, alpha, eps: float):
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


def _smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Cross-entropy ``[B]`` against labels smoothed by ``eps`` (target ``(1 - eps) onehot + eps / C``)."""
    if eps == 0.0:
        return _per_example_ce(logits, y)
    if _is_binary(logits):
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), y * (1 - eps) + 0.5 * eps,
                                                  reduction="none")
    return F.cross_entropy(logits, y, reduction="none", label_smoothing=eps)


def rcad_loss(model: Model, x, y, step_size: float | str = AUTO, weight: float = DEFAULT_WEIGHT,
              reduction: str = "mean", *, step_scale: float = DEFAULT_STEP_SCALE,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on ``x`` minus ``weight`` x predictive entropy on the RCAD points ``x'``.

    ``loss_i = CE_ls(p_θ(·|x_i), y_i) - λ H(p_θ(·|x'_i))`` with ``x'_i`` from :func:`adversarial_inputs`
    (docs/design.md "RCAD"; Setlur et al. 2022), ``CE_ls`` the cross-entropy with labels smoothed by
    ``label_smoothing``. Differentiable in the model's parameters; ``x'`` is a constant (computed from the
    plain cross-entropy's input gradient, as in the authors' code).

    Defaults: ``step_size="auto"``, i.e. ``step_scale = 0.5`` x the batch's median pairwise input distance,
    and ``weight = 0.5``, both chosen on held-out data (module docstring, "Default step"). The authors'
    values are ``step_size=0.5, weight=0.2`` (:meth:`RCAD.published`), which belong to 3,072-dimensional
    CIFAR images in ``[0, 1]``. With ``"auto"`` each example's loss depends on the rest of the batch
    through that one scalar step.

    Args:
        model: ``x[B, ...] -> logits [B, C]`` (softmax) or ``[B]`` / ``[B, 1]`` (sigmoid).
        x: inputs ``[B, ...]``, finite; y: labels ``[B]`` (ids in ``[0, C)``, or floats in ``[0, 1]``).
        step_size: ``α``: ``"auto"`` or a finite number ``> 0`` (an L2 length in input units).
        weight: ``λ >= 0``, finite (0 gives the (smoothed) cross-entropy alone).
        reduction: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (``[B]``).
        step_scale: multiplier of the ``"auto"`` step (finite, ``> 0``; ignored for a numeric step).
        label_smoothing: ``ε`` in ``[0, 1)`` for the cross-entropy on ``x`` (0: none).
    Raises:
        ValueError: naming the argument for NaN/inf inputs, a batch mismatch, a ``step_size`` that is not
        ``"auto"`` or finite and positive, a negative ``weight``, labels out of range, a bad ``reduction``,
        ``step_scale`` or ``label_smoothing``, or a model output of the wrong shape.
    """
    _check_model(model)
    step = _check_step(step_size)
    lam = _check_nonneg("weight", weight)
    scale = check_threshold("step_scale", step_scale, low=0.0, high=math.inf, inclusive=False)
    ls = _check_nonneg("label_smoothing", label_smoothing, high=1.0, inclusive=False)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    xt = _check_x(x, model)
    if lam > 0:
        x_adv, labels = _adversarial(model, xt, y, _resolve_step(step, scale, xt), 1e-12)
    logits = _check_logits(model(xt), xt.shape[0])
    if lam == 0:
        labels = _prepare_labels(y, logits)
    per_example = _smoothed_ce(logits, labels, ls)
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

    The returned value already contains the cross-entropy (``CE_ls - λ H(p(·|x'))``), so a trainer that
    accepts a ``regularizer`` hook (``MuralReward(regularizer=RCAD())``) uses it in place of its plain
    cross-entropy. ``RCAD()`` takes the batch-scaled default step (module docstring, "Default step");
    :meth:`published` gives the authors' CIFAR values. docs/design.md "RCAD".

    Fields: ``step_size`` (``"auto"`` or a finite number > 0), ``weight`` (λ >= 0), ``step_scale`` (the
    ``"auto"`` multiplier), ``label_smoothing`` (ε in ``[0, 1)``, applied to the cross-entropy on ``x``).
    """

    step_size: float | str = AUTO
    weight: float = DEFAULT_WEIGHT
    step_scale: float = DEFAULT_STEP_SCALE
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check_step(self.step_size)
        _check_nonneg("weight", self.weight)
        check_threshold("step_scale", self.step_scale, low=0.0, high=math.inf, inclusive=False)
        _check_nonneg("label_smoothing", self.label_smoothing, high=1.0, inclusive=False)

    @classmethod
    def published(cls, label_smoothing: float = 0.0) -> RCAD:
        """The authors' code's low-data CIFAR-100-2k setting, ``α = 0.5``, ``λ = 0.2`` (``run.sh``).

        ``α = 0.5`` is an L2 length for 32x32x3 images in ``[0, 1]`` (3,072 dimensions, median pairwise
        distance ~15-23): on other inputs it is the wrong size (module docstring). That run also smooths
        labels by 0.6 (``label_smoothing=0.6`` here); the default ``0.0`` gives the bare RCAD loss.
        """
        return cls(step_size=PUBLISHED_STEP_SIZE, weight=PUBLISHED_WEIGHT, label_smoothing=label_smoothing)

    def loss(self, model: Model, x, y, reduction: str = "mean") -> torch.Tensor:
        """:func:`rcad_loss` with this configuration -> scalar (or ``[B]`` for ``reduction="none"``)."""
        return rcad_loss(model, x, y, step_size=self.step_size, weight=self.weight, reduction=reduction,
                         step_scale=self.step_scale, label_smoothing=self.label_smoothing)

    def adversarial_inputs(self, model: Model, x, y) -> torch.Tensor:
        """The detached RCAD points ``x'`` ``[B, ...]`` used by :meth:`loss`."""
        return adversarial_inputs(model, x, y, step_size=self.step_size, step_scale=self.step_scale)

    def resolved_step_size(self, x) -> float:
        """The step ``α`` this configuration takes on the batch ``x[B, ...]`` (a float)."""
        if self.step_size == AUTO:
            return float(batch_step_size(x, self.step_scale))
        return float(self.step_size)


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
    unbounded below and collapses a flow; the hinge keeps the objective bounded.)

    ``step_size`` defaults to ``"auto"``, the classifier's rule (:func:`batch_step_size`): ``step_scale`` x
    the batch's median pairwise distance, ``DENSITY_STEP_SCALE`` by default (module docstring); a number
    is a length in the model's standardised units. Default margin: three nats.
    """

    step_size: float | str = AUTO
    weight: float = 1.0
    margin: float = 3.0
    step_scale: float = DENSITY_STEP_SCALE

    def __post_init__(self) -> None:
        _check_step(self.step_size)
        _check_nonneg("weight", self.weight)
        _check_nonneg("margin", self.margin)
        check_threshold("step_scale", self.step_scale, low=0.0, high=math.inf, inclusive=False)

    def adversarial_inputs(self, log_prob: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """``z'[B, D]`` (detached): ``z`` moved the step along the per-example NLL gradient."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] == 0:
            raise ValueError(f"z must be a non-empty tensor [B, D], got {getattr(z, 'shape', type(z))}")
        check_finite("z", z)
        step = _resolve_step(self.step_size, self.step_scale, z)
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            nll = -log_prob(zz).sum()
            # a log-density that does not depend on z (e.g. constant) gives no direction: z' = z
            g = torch.autograd.grad(nll, zz, allow_unused=True)[0] if nll.requires_grad else None
        if g is None:
            g = torch.zeros_like(z)
        norm = g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (z + step * g / norm).detach()

    def loss(self, log_prob: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Scalar hinge ``weight * mean(relu(log p(z') - log p(z) + margin))``, added to the NLL of ``z``."""
        z_adv = self.adversarial_inputs(log_prob, z)
        lp = log_prob(torch.cat([z.detach(), z_adv]))
        lp_z, lp_adv = lp[: z.shape[0]].detach(), lp[z.shape[0]:]
        return self.weight * torch.relu(lp_adv - lp_z + self.margin).mean()
