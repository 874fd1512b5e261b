"""The PETS probabilistic ensemble: E Gaussian MLPs in one module, one batched matmul per layer.

Chua et al. 2018 (docs/design.md, "PETS"). Each member maps standardised ``(obs, act)`` to the mean and
log-variance of the standardised state delta ``next_obs - obs``. The members' weights are stacked:
layer ``l`` has weight ``[E, in, out]`` and bias ``[E, 1, out]`` and is applied to ``h[E, N, in]`` with one
``torch.baddbmm``, so the planner's particles for all members go through a single kernel per layer.

The loss follows the original PETS code (``dmbrl/modeling/models/BNN.py``); the training loop that minimises
it lives in :mod:`mbrl.models.training` (:meth:`ProbabilisticEnsemble.fit` calls it):

    loss = sum_e [ mean_{n,d} (mu - y)^2 exp(-logvar) + mean_{n,d} logvar ]          (Gaussian NLL)
         + sum_l wd_l * ||W_l||^2 / 2                                               (tf.nn.l2_loss)
         + logvar_penalty * (sum max_logvar - sum min_logvar)

with the log-variance soft-bounded by learnable ``max_logvar``/``min_logvar``:
``logvar = max - softplus(max - logvar); logvar = min + softplus(logvar - min)``.

Fused inference path (the planner's hot loop, issue 14). Under ``torch.no_grad`` on CPU, :meth:`predict` and
:meth:`mean_and_var` run each member's layers through oneDNN's fused ``linear + bias + activation`` kernel
(``torch.ops.mkldnn._linear_pointwise``) on cached transposed weights, instead of ``baddbmm`` on a broadcast
bias copy followed by a separate activation pass: no bias copy, one pass over each hidden activation, and
oneDNN's AVX-512 / AVX512-BF16 / AMX GEMMs. The input standardisation, the log-variance bounds, the sampling
and the state update stay in float32; only the matrix products (and the stored hidden activations) use the
matrix-product dtype, which is the parameter dtype unless :attr:`ProbabilisticEnsemble.matmul_dtype` is set
(e.g. ``torch.bfloat16`` on a float32 model: bf16 products, float32 everything else). The normalisers'
scales and the upper log-variance bound are folded into the cached first and output layers, so the
epilogue (bounds, raw std, sampling, state update) is one short element-wise chain (issue 20; see
:meth:`ProbabilisticEnsemble._fused_weights`). It equals the eager
path (:meth:`forward`) within float rounding (tested); ``model.fused = False`` restores the eager path, which
is also used whenever gradients are needed, on other devices and for float64/float16.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mbrl.common.seeding import check_seed, make_generator
from mbrl.common.serialization import load_state, save_state
from mbrl.common.validation import INT_MAX, as_tensor, check_int, check_threshold
from mbrl.config import PETS
from mbrl.models.normalizer import Normalizer
from mbrl.models.training import FitConfig, fit_ensemble

__all__ = ["PETS_WEIGHT_DECAY", "ProbabilisticEnsemble", "default_weight_decay", "onednn_fused_available"]

#: Per-layer L2 weight decays of the original PETS code (4 hidden layers + output layer).
PETS_WEIGHT_DECAY: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)

_ACTIVATIONS = {"silu": F.silu, "swish": F.silu, "relu": F.relu, "tanh": torch.tanh, "elu": F.elu}
# oneDNN post-op names of the activations it fuses into the matrix product (elu runs as a separate pass).
_ONEDNN_ATTR = {"silu": "swish", "swish": "swish", "relu": "relu", "tanh": "tanh"}
_FUSED_DTYPES = (torch.float32, torch.bfloat16)
_onednn_ok: bool | None = None


def onednn_fused_available() -> bool:
    """Whether this torch build has oneDNN's fused linear kernel (the CPU fused inference path)."""
    global _onednn_ok
    if _onednn_ok is None:
        try:
            op = torch.ops.mkldnn._linear_pointwise
            ok = bool(torch.backends.mkldnn.is_available())
            if ok:  # one tiny call: some builds register the op but cannot run it
                x = torch.ones(2, 3)
                ok = bool(torch.allclose(op(x, torch.ones(4, 3), torch.zeros(4), "none", [], ""),
                                         torch.full((2, 4), 3.0)))
        except (AttributeError, RuntimeError):
            ok = False
        _onednn_ok = ok
    return _onednn_ok


def default_weight_decay(n_hidden: int) -> tuple[float, ...]:
    """PETS per-layer decays for ``n_hidden`` hidden layers plus the output layer.

    Exactly :data:`PETS_WEIGHT_DECAY` for 4 hidden layers; otherwise the hidden values are truncated or
    their last value repeated, and the output layer keeps the PETS output decay.
    """
    hid, out = PETS_WEIGHT_DECAY[:-1], PETS_WEIGHT_DECAY[-1]
    return tuple(hid[min(i, len(hid) - 1)] for i in range(n_hidden)) + (out,)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ProbabilisticEnsemble(nn.Module):
    """Ensemble of E Gaussian MLPs predicting the standardised state delta (docs/design.md, "PETS").

    Args:
        obs_dim: observation size ``O``.
        act_dim: action size ``A``.
        ensemble_size: number of members ``E`` (5 in PETS).
        hidden: hidden layer widths (PETS: 4 x 200 for HalfCheetah/Reacher, see docs/design.md table).
        activation: ``"silu"`` (= swish, PETS), ``"relu"``, ``"tanh"`` or ``"elu"``.
        weight_decay: one L2 coefficient per layer including the output layer (``len(hidden) + 1`` values).
            ``None`` gives the PETS schedule :data:`PETS_WEIGHT_DECAY` for 4 hidden layers; for other
            depths its hidden-layer values are truncated (or the last one repeated) and the output
            layer keeps 1e-4 (see :func:`default_weight_decay`).
        init_max_logvar, init_min_logvar: initial soft bounds of the log-variance (0.5 / -10 in PETS).
        logvar_penalty: coefficient of ``sum(max_logvar) - sum(min_logvar)`` in the loss (0.01).
        device, dtype: where and in which floating dtype the parameters live.
        seed: seed of the weight initialisation (truncated normal, std ``1 / (2 sqrt(in))``).

    Attributes:
        ensemble_size, obs_dim, act_dim: sizes ``E``, ``O``, ``A``.
        in_normalizer: standardises ``cat(obs, act)`` (``[O + A]`` statistics).
        out_normalizer: standardises the delta targets (``[O]`` statistics).
        fused: use the fused CPU inference path in :meth:`predict` / :meth:`mean_and_var` when it applies
            (module docstring; default True). Not saved with the model.
        matmul_dtype: dtype of the matrix products on the fused path (``None``: the parameter dtype). Set
            ``torch.bfloat16`` on a float32 model for bf16 products with float32 standardisation, sampling
            and state update (the fast CPU planning mode on CPUs with AVX512-BF16 or AMX).
    """

    fused: bool = True

    @property
    def matmul_dtype(self) -> torch.dtype | None:
        """Dtype of the fused path's matrix products (``None``: the parameter dtype); see the class docstring."""
        return self.__dict__.get("_matmul_dtype")

    @matmul_dtype.setter
    def matmul_dtype(self, dtype: torch.dtype | None) -> None:
        if dtype is not None and dtype not in _FUSED_DTYPES:
            raise ValueError(f"matmul_dtype must be None, torch.float32 or torch.bfloat16, got {dtype!r}")
        self.__dict__["_matmul_dtype"] = dtype

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        ensemble_size: int = PETS.ensemble_size,
        hidden: Sequence[int] = PETS.hidden,
        activation: str = "silu",
        weight_decay: Sequence[float] | None = None,
        init_max_logvar: float = 0.5,
        init_min_logvar: float = -10.0,
        logvar_penalty: float = 0.01,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ):
        super().__init__()
        obs_dim = check_int("obs_dim", obs_dim, low=1, high=INT_MAX)
        act_dim = check_int("act_dim", act_dim, low=1, high=INT_MAX)
        ensemble_size = check_int("ensemble_size", ensemble_size, low=1, high=INT_MAX)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"hidden must be a sequence of positive widths, got {hidden!r}")
        hidden = tuple(check_int(f"hidden[{i}]", h, low=1, high=INT_MAX) for i, h in enumerate(hidden))
        seed = check_seed("seed", seed)
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if weight_decay is None:
            weight_decay = default_weight_decay(len(hidden))
        if isinstance(weight_decay, (str, bytes)) or not isinstance(weight_decay, Sequence):
            raise ValueError(f"weight_decay must be a sequence of floats, got {weight_decay!r}")
        weight_decay = tuple(check_threshold(f"weight_decay[{i}]", w, low=0.0, high=math.inf)
                             for i, w in enumerate(weight_decay))
        if len(weight_decay) != len(hidden) + 1:
            raise ValueError(
                f"weight_decay must have len(hidden) + 1 = {len(hidden) + 1} values (one per layer), "
                f"got {len(weight_decay)}"
            )
        if any(not math.isfinite(w) or w < 0 for w in weight_decay):
            raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay}")
        init_max_logvar = check_threshold("init_max_logvar", init_max_logvar, low=-1e6, high=1e6)
        init_min_logvar = check_threshold("init_min_logvar", init_min_logvar, low=-1e6, high=init_max_logvar,
                                          inclusive=False)
        logvar_penalty = check_threshold("logvar_penalty", logvar_penalty, low=0.0, high=1e6)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")

        self.obs_dim, self.act_dim, self.ensemble_size = int(obs_dim), int(act_dim), int(ensemble_size)
        self.hidden, self.activation, self.weight_decay = hidden, activation, weight_decay
        self.init_max_logvar, self.init_min_logvar = init_max_logvar, init_min_logvar
        self.logvar_penalty, self.seed = logvar_penalty, int(seed)
        self._act = _ACTIVATIONS[activation]
        device = torch.device(device) if device is not None else torch.device("cpu")

        # Initialise on CPU in float32 with a seeded generator so the weights are identical on every device.
        gen = make_generator(self.seed, "cpu")
        sizes = (self.obs_dim + self.act_dim, *hidden, 2 * self.obs_dim)
        E = self.ensemble_size
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            std = 1.0 / (2.0 * math.sqrt(n_in))
            try:
                w = torch.empty(E, n_in, n_out)
            except (RuntimeError, MemoryError) as exc:
                raise ValueError(f"ensemble_size={E} x layer ({n_in}, {n_out}) (obs_dim, act_dim, hidden) "
                                 f"cannot be allocated: {str(exc).splitlines()[0]}") from exc
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=gen)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(E, 1, n_out)))
        self.max_logvar = nn.Parameter(torch.full((1, 1, self.obs_dim), init_max_logvar))
        self.min_logvar = nn.Parameter(torch.full((1, 1, self.obs_dim), init_min_logvar))
        self.in_normalizer = Normalizer(self.obs_dim + self.act_dim)
        self.out_normalizer = Normalizer(self.obs_dim)
        self._fused_cache: tuple | None = None
        self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ hot path
    def forward(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and soft-bounded log-variance of the standardised delta.

        Args:
            x_norm: ``[E, N, O + A]`` standardised inputs (member ``e`` reads block ``e``).
        Returns:
            ``(mean, logvar)``, each ``[E, N, O]``, in standardised target units.
        """
        h = x_norm
        n = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < n:
                h = self._act(h)
        mean, logvar = h.split(self.obs_dim, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    # ------------------------------------------------------------------ fused inference path
    def with_matmul_dtype(self, dtype: torch.dtype | None) -> ProbabilisticEnsemble:
        """A view of this model whose fused-path matrix products run in ``dtype`` (e.g. ``torch.bfloat16``).

        The view shares every parameter and buffer with this model (no copy: a refit of the model is seen by
        the view, whose weight cache follows the parameters' versions); only :attr:`matmul_dtype` differs.
        Standardisation, log-variance bounds, sampling and the returned states stay in float32 when the
        model is float32, so a planner can keep its states in float32 while its products run in bf16.
        """
        if dtype is not None and dtype not in _FUSED_DTYPES:
            raise ValueError(f"dtype must be None, torch.float32 or torch.bfloat16, got {dtype!r}")
        view = copy.copy(self)  # shallow: the same _parameters / _buffers / _modules dictionaries
        view.matmul_dtype = dtype
        view.__dict__["_fused_cache"] = None
        return view

    def _fused_dtype(self, *xs: torch.Tensor) -> torch.dtype | None:
        """Matrix-product dtype of the fused path for inputs ``xs``, or None when the eager path must run."""
        if not self.fused or xs[0].device.type != "cpu" or not onednn_fused_available():
            return None
        p = self.max_logvar
        if torch.is_grad_enabled() and (p.requires_grad or any(x.requires_grad for x in xs)):
            return None  # training / differentiating through the model: autograd needs the eager ops
        mm = self.matmul_dtype if self.matmul_dtype is not None else p.dtype
        if mm not in _FUSED_DTYPES or p.dtype not in _FUSED_DTYPES:
            return None
        return mm

    def _fused_weights(self, mm: torch.dtype) -> tuple[list, torch.Tensor, torch.Tensor] | None:
        """The fused path's cached weights: ``(layers, c1[O], c2[O])``, or None when the head cannot be folded.

        ``layers[l] = ([out, in] weight per member in ``mm``, float32 ``[out]`` bias per member)``, with the
        normalisers and the upper log-variance bound folded in (exact algebra, only rounding differs):

        * first layer: weight rows divided by the input std (the input is centred, not scaled, before it);
        * output layer, mean half: scaled by the target std, the target mean added to its bias, so it
          returns the raw delta ``denorm(mean) - obs`` directly;
        * output layer, log-variance half: negated with ``max_logvar`` in its bias, so it returns
          ``z = max_logvar - logvar`` (the argument of the first soft bound).

        With ``c1 = exp(min_logvar / 2) * std_out`` and ``c2 = exp(max_logvar - min_logvar)``, the two soft
        bounds and the raw standard deviation collapse to one element-wise chain,
        ``std = c1 * sqrt(1 + c2 / (1 + exp(z)))`` (see :meth:`_fused_head`). ``c2`` overflows float32 only for
        bounds more than 80 nats apart; the eager path then runs. The cache is rebuilt when any parameter or
        normaliser statistic is replaced or modified in place (``_version``)."""
        tensors = (*self.weights, *self.biases, self.max_logvar, self.min_logvar, self.in_normalizer.std,
                   self.out_normalizer.mean, self.out_normalizer.std)
        key = (mm, tuple((q.data_ptr(), q._version) for q in tensors))
        cache = self._fused_cache
        if cache is None or cache[0] != key:
            with torch.no_grad():
                f32 = torch.float32
                hi, lo = self.max_logvar.detach().to(f32).reshape(-1), self.min_logvar.detach().to(f32).reshape(-1)
                sd_out, mu_out = self.out_normalizer.std.to(f32), self.out_normalizer.mean.to(f32)
                c1, c2 = torch.exp(0.5 * lo) * sd_out, torch.exp(hi - lo)
                ws = [w.detach().to(f32) for w in self.weights]
                bs = [b.detach().to(f32).reshape(b.shape[0], -1) for b in self.biases]   # [E, out]
                ws[0] = ws[0] / self.in_normalizer.std.to(f32)[None, :, None]
                O = self.obs_dim
                ws[-1] = torch.cat([ws[-1][..., :O] * sd_out, -ws[-1][..., O:]], dim=-1)
                bs[-1] = torch.cat([bs[-1][:, :O] * sd_out + mu_out, hi - bs[-1][:, O:]], dim=-1)
                layers = [(list(w.transpose(1, 2).to(mm).contiguous().unbind(0)), list(b.contiguous().unbind(0)))
                          for w, b in zip(ws, bs)]
                ok = bool(torch.isfinite(c2).all() and (hi - lo).max() < 80)
            self._fused_cache = cache = (key, (layers, c1, c2) if ok else None)
        return cache[1]

    def _fused_head(self, obs: torch.Tensor, act: torch.Tensor, mm: torch.dtype):
        """The fused path: raw ``(delta_mean, std)`` of the next observation, each float32 ``[E, N, O]``, or
        None (eager path). ``obs[E, N, O]``, ``act[E, N, A]`` (see :meth:`_fused_weights` for the folding)."""
        folded = self._fused_weights(mm)
        if folded is None:
            return None
        layers, c1, c2 = folded
        op = torch.ops.mkldnn._linear_pointwise
        attr = _ONEDNN_ATTR.get(self.activation)
        n = len(layers) - 1
        if obs.dtype == act.dtype == torch.float32:  # two slice copies into one buffer: 3.7x faster than cat here
            x = obs.new_empty(*obs.shape[:-1], obs.shape[-1] + act.shape[-1])
            x[..., : obs.shape[-1]].copy_(obs)
            x[..., obs.shape[-1]:].copy_(act)
        else:
            x = torch.cat([obs, act], dim=-1).to(torch.float32)
        x = x.sub_(self.in_normalizer.mean).to(mm)
        outs = []
        for e in range(self.ensemble_size):
            h = x[e]
            for i, (ws, bs) in enumerate(layers):
                if i < n and attr is not None:
                    h = op(h, ws[e], bs[e], attr, [], "")
                else:
                    h = op(h, ws[e], bs[e], "none", [], "")
                    if i < n:
                        h = self._act(h)
            outs.append(h)
        out = torch.stack(outs).to(torch.float32)
        delta, z = out.split(self.obs_dim, dim=-1)
        std = z.exp().add_(1.0).reciprocal_().mul_(c2).add_(1.0).sqrt_().mul_(c1)
        return delta, std

    def _inputs(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Broadcast ``obs``/``act`` to ``[E, N, .]`` and return them.

        Tensors get shape checks only (the planner's hot path: NaN/inf propagate to the predictions, so
        a diverged rollout stays visible); array-likes are converted with :func:`as_tensor` (finite).
        """
        E = self.ensemble_size
        dev = self.max_logvar.device
        if not isinstance(obs, torch.Tensor):
            obs = as_tensor("obs", obs, device=dev)
        if not isinstance(act, torch.Tensor):
            act = as_tensor("act", act, device=dev)
        if obs.is_complex() or act.is_complex():
            raise ValueError(f"{'obs' if obs.is_complex() else 'act'} must be real, got a complex tensor")
        if not obs.is_floating_point():  # integer / boolean inputs: computed (and returned) in float32
            obs = obs.to(torch.float32)
        if not act.is_floating_point():
            act = act.to(obs.dtype)
        if obs.ndim == 2:
            obs = obs.unsqueeze(0).expand(E, -1, -1)
        if act.ndim == 2:
            act = act.unsqueeze(0).expand(E, -1, -1)
        if obs.ndim != 3 or obs.shape[0] != E or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have shape ({E}, N, {self.obs_dim}) or (N, {self.obs_dim}), "
                             f"got {tuple(obs.shape)}")
        if act.ndim != 3 or act.shape[:2] != obs.shape[:2] or act.shape[-1] != self.act_dim:
            raise ValueError(f"act must have shape ({E}, {obs.shape[1]}, {self.act_dim}) or "
                             f"({obs.shape[1]}, {self.act_dim}), got {tuple(act.shape)}")
        return obs, act

    def _eager_head(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` on standardised ``cat(obs, act)``: standardised ``(mean, logvar)`` ``[E, N, O]``."""
        x = self.in_normalizer.normalize(torch.cat([obs, act], dim=-1))
        return self.forward(x.to(self.max_logvar.dtype))

    def _head(self, obs: torch.Tensor, act: torch.Tensor):
        """The fused head's raw ``(delta_mean, std)`` when the fused path applies, else None."""
        mm = self._fused_dtype(obs, act)
        return None if mm is None else self._fused_head(obs, act, mm)

    def predict(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        return_mean_delta: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Next observations in raw units: ``obs + denorm(mean + exp(logvar / 2) * noise)``.

        Args:
            obs: ``[E, N, O]`` (member ``e`` predicts row block ``e``) or ``[N, O]`` (every member).
            act: ``[E, N, A]`` or ``[N, A]``.
            deterministic: return the mean prediction (no noise).
            generator: source of the Gaussian noise (seeded sampling).
            return_mean_delta: also return each row's mean predicted change ``denorm(mean)``, float32 ``[E, N, O]``
                (the planner's ensemble-disagreement penalty reads it; no extra forward).
        Returns:
            ``[E, N, O]`` next observations in the dtype of ``obs`` (float32 if ``obs`` is not floating); with
            ``return_mean_delta``, ``(next_obs, mean_delta)``.
        """
        obs, act = self._inputs(obs, act)
        out_dtype = obs.dtype if obs.is_floating_point() else torch.float32
        head = self._head(obs, act)
        if head is not None:
            delta, std = head
            mean_delta = delta.clone() if return_mean_delta else None
            if not deterministic:
                delta = delta.addcmul_(std, torch.randn(delta.shape, generator=generator, device=delta.device,
                                                        dtype=delta.dtype))
            nxt = torch.add(obs, delta).to(out_dtype)
            return (nxt, mean_delta) if return_mean_delta else nxt
        mean, logvar = self._eager_head(obs, act)
        mean_delta = self.out_normalizer.denormalize(mean).float() if return_mean_delta else None
        if not deterministic:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + torch.exp(0.5 * logvar) * noise
        nxt = (obs + self.out_normalizer.denormalize(mean)).to(out_dtype)
        return (nxt, mean_delta) if return_mean_delta else nxt

    def mean_and_var(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member Gaussian of the next observation in raw units.

        Args:
            obs: ``[E, N, O]`` or ``[N, O]``; act: ``[E, N, A]`` or ``[N, A]``.
        Returns:
            ``(mean_next_obs, var)``, each ``[E, N, O]``. Ensemble disagreement (epistemic uncertainty)
            is ``mean_next_obs.var(0)``; ``var`` is each member's aleatoric variance.
        """
        obs, act = self._inputs(obs, act)
        out_dtype = obs.dtype if obs.is_floating_point() else torch.float32
        head = self._head(obs, act)
        if head is not None:
            delta, std = head
            return torch.add(obs, delta).to(out_dtype), std.square().to(out_dtype)
        mean, logvar = self._eager_head(obs, act)
        mean_next = (obs + self.out_normalizer.denormalize(mean)).to(out_dtype)
        var = (torch.exp(logvar) * self.out_normalizer.std.square()).to(out_dtype)
        return mean_next, var

    # ------------------------------------------------------------------ training
    def loss(self, x: torch.Tensor, y: torch.Tensor, decay: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """PETS training loss (module docstring) for ``x[E, B, in]``, ``y[E, B, O]``; returns (total, nll).

        ``decay=False`` leaves out the per-layer L2 term; :meth:`optimizer_groups` then applies it as Adam's weight
        decay (the training loop does, which saves a pass over every weight and its backward per minibatch)."""
        mean, logvar = self.forward(x)
        nll = ((mean - y).square() * torch.exp(-logvar)).mean((1, 2)) + logvar.mean((1, 2))
        nll = nll.sum()
        bounds = self.logvar_penalty * (self.max_logvar.sum() - self.min_logvar.sum())
        if not decay:
            return nll + bounds, nll
        l2 = sum(wd * 0.5 * w.square().sum() for wd, w in zip(self.weight_decay, self.weights) if wd > 0)
        return nll + l2 + bounds, nll

    def optimizer_groups(self) -> list[dict]:
        """Parameter groups whose ``weight_decay`` is the loss's per-layer L2 coefficient: the gradient of
        ``wd / 2 * ||W||^2`` is ``wd * W``, exactly what Adam's (coupled, not AdamW's) weight decay adds to the
        gradient, so ``Adam(model.optimizer_groups())`` on ``loss(decay=False)`` takes the steps of ``Adam`` on
        ``loss()``."""
        return [*({"params": [w], "weight_decay": wd} for w, wd in zip(self.weights, self.weight_decay)),
                {"params": [*self.biases, self.max_logvar, self.min_logvar], "weight_decay": 0.0}]

    @torch.no_grad()
    def holdout_mse(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Per-member MSE of the mean on standardised targets; ``x[N, in]``, ``y[N, O]`` -> ``[E]``."""
        E = self.ensemble_size
        total = torch.zeros(E, dtype=torch.float64, device=x.device)
        for s in range(0, x.shape[0], chunk):
            xb = x[s : s + chunk].unsqueeze(0).expand(E, -1, -1)
            mean, _ = self.forward(xb)
            total += (mean - y[s : s + chunk]).square().sum((1, 2)).double()
        return total / (x.shape[0] * self.obs_dim)

    def fit(self, data, config: FitConfig | None = None, **overrides) -> dict:
        """Train all members together by the PETS loss with Adam: :func:`mbrl.models.training.fit_ensemble`
        with ``config`` (:class:`~mbrl.models.training.FitConfig`, PETS defaults) and ``overrides`` of its fields
        (``epochs``, ``batch_size``, ``lr``, ``holdout``, ``patience``, ``bootstrap``, ``seed``, ``progress``,
        ``max_holdout``).

        Args:
            data: a ``ReplayBuffer`` (its stored transitions), a ``Batch`` or a tuple
                ``(obs[N,O], act[N,A], next_obs[N,O])``, on any device.
        Returns:
            ``{"train_loss": [float per epoch], "holdout_mse": [[float per member] per epoch],
            "best_epoch": [int per member]}`` (each member ends with its weights from its best epoch).
        """
        return fit_ensemble(self, data, config, **overrides)

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) of this model, dtype being the current one."""
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "ensemble_size": self.ensemble_size,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "weight_decay": list(self.weight_decay),
            "init_max_logvar": self.init_max_logvar,
            "init_min_logvar": self.init_min_logvar,
            "logvar_penalty": self.logvar_penalty,
            "seed": self.seed,
            "dtype": _dtype_name(self.max_logvar.dtype),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, bounds and normaliser statistics (safetensors) and the config (JSON) to ``path``."""
        save_state(path, {k: v for k, v in self.state_dict().items()},
                   {"class": "ProbabilisticEnsemble", "config": self.config()})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> ProbabilisticEnsemble:
        """Rebuild a model saved by :meth:`save` (bit-exact) on ``device`` (CPU by default)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        tensors, meta = load_state(path, device=device)
        if meta.get("class") != "ProbabilisticEnsemble":
            raise ValueError(f"path {path} does not hold a ProbabilisticEnsemble checkpoint")
        try:
            cfg = dict(meta["config"])
            cfg["dtype"] = getattr(torch, str(cfg["dtype"]))
            model = cls(**cfg, device=device)
            model.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise ValueError(f"path {path} holds a corrupt ProbabilisticEnsemble checkpoint: {exc}") from exc
        return model

    def extra_repr(self) -> str:
        return (f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, ensemble_size={self.ensemble_size}, "
                f"hidden={self.hidden}, activation={self.activation!r}")
