"""Learned Lyapunov density model ``G_phi(s, a)`` from offline transitions (docs/design.md, LDM section).

Kang, Gradu, Choi, Janner, Tomlin & Levine, "Lyapunov Density Models: Constraining Distribution Shift in
Learning-Based Control", ICML 2022 (arXiv 2206.10524). With energies ``E(s, a) = -log p(s, a)`` from any
``DensityModel`` fitted on the data's state-action pairs, ``G`` is regressed like a Q-function on the
discounted backup

    y = (1 - gamma) E(s, a) + gamma * max( E(s, a), min_a' G_target(s', a') ),    y = E(s, a) if terminated

with a Polyak-averaged target network, and ``min_a'`` taken over ``n_action_samples`` uniform samples in the
action box (optionally refined by ``cem_steps`` of the cross-entropy method). The backup's fixed point tends
to the undiscounted LDM as ``gamma -> 1`` (``safe_density.ldm.tabular``).

Choices made here (stated, not from the paper's code, which we could not consult):

* ``G >= E`` holds for the exact LDM, so every prediction is ``max(E(s, a), G_phi(s, a))``: unseen actions
  (where ``G_phi`` extrapolates freely) can never look safer than their own density says, which removes the
  optimistic-``min`` failure of offline Q-learning with a minimum.
* Energies in the *targets* are capped at ``energy_cap`` (default: the data energies' max plus two standard
  deviations): beyond it a point is out of distribution anyway and huge ``-log p`` values would dominate the
  regression. The network predicts ``G`` standardised by the data energies' mean and standard deviation.
* Defaults: ``gamma = 0.99``, two hidden layers of 256 (ReLU), Adam ``lr = 3e-4``, ``tau = 0.005``, batch 256
  (standard off-policy Q-learning settings); default density: a 16-component Gaussian mixture (cheap to
  evaluate on every backup; pass a ``FlowDensity`` for a normalising flow).
* Terminated transitions have no future: ``y = E(s, a)``.
* ``n_critics``: the authors' code regresses a double critic and takes the pessimistic one (``min`` of two
  ``Q = -G``); ``n_critics = 2`` does that here (``G_phi = max`` of the critics, each regressed on the same
  targets, which the target critics' maximum sets). The default stays 1: on the Hopper benchmark two critics
  kept the learned ``G`` Bellman-consistent on the data as one does (99.6 % vs 99.3 % of transitions) and did
  not make it consistent along the planner's real trajectories (81 % vs 77 %), at twice the cost.
"""

from __future__ import annotations

import copy
import math
import operator
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from mbrl.common.action_box import ActionBox
from mbrl.common.config import with_overrides
from mbrl.common.seeding import make_generator
from mbrl.common.serialization import atomic_directory, load_state, resolve_checkpoint, write_state
from mbrl.common.threads import fit_threads
from mbrl.common.validation import INT_MAX, as_flags, as_tensor, check_int, check_threshold
from safe_density.contracts import DensityModel
from safe_density.density.base import DensityBase

__all__ = ["THRESHOLD_RULES", "LDMConfig", "LDMConstraint", "LyapunovDensityModel", "resolve_threshold"]

THRESHOLD_RULES = ("ldm", "energy")


def resolve_threshold(source, threshold: float | None = None, greedy: bool = False) -> float:
    """The threshold ``c`` to use with ``source`` (the one precedence rule of the library):

    1. ``threshold`` when given;
    2. else ``source.threshold`` (a ``Constraint``, e.g. an :class:`LDMConstraint`);
    3. else the calibrated one of a :class:`LyapunovDensityModel` (:meth:`~LyapunovDensityModel.calibrate`):
       its ``"energy"`` entry for the greedy constraint, its ``"ldm"`` entry otherwise.

    Validated (a finite real; ``ValueError`` naming ``threshold``)."""
    if threshold is None:
        threshold = getattr(source, "threshold", None)
    if threshold is None:
        calibration = getattr(source, "calibration", None)
        if not isinstance(calibration, dict):
            raise ValueError("threshold must be given (ldm has no threshold and was not calibrated: "
                             "call ldm.calibrate(obs, act, quantile) or pass threshold=)")
        threshold = calibration["energy" if greedy else "ldm"]
    return check_threshold("threshold", threshold)


@dataclass(frozen=True)
class LDMConfig:
    """Hyper-parameters of :class:`LyapunovDensityModel` (module docstring for their provenance)."""

    hidden: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    n_action_samples: int = 32
    cem_steps: int = 0
    cem_elites: int = 4
    tau: float = 0.005
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    steps: int = 2_000
    batch_size: int = 256
    energy_cap: float | None = None
    density_components: int = 16
    pool_refresh: int = 500
    n_critics: int = 1

    def __post_init__(self) -> None:
        hidden = tuple(int(h) for h in self.hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {self.hidden}")
        object.__setattr__(self, "hidden", hidden)
        g = check_threshold("gamma", self.gamma, low=0.0, high=1.0)
        if g == 0.0:
            raise ValueError("gamma must lie in (0, 1], got 0.0")
        for name in ("n_action_samples", "cem_elites", "steps", "batch_size", "density_components", "pool_refresh",
                     "n_critics"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=1, high=INT_MAX))
        object.__setattr__(self, "cem_steps", check_int("cem_steps", self.cem_steps, low=0, high=10**6))
        if int(self.cem_elites) > int(self.n_action_samples):
            raise ValueError(
                f"cem_elites ({self.cem_elites}) must be <= n_action_samples ({self.n_action_samples})"
            )
        check_threshold("tau", self.tau, low=0.0, high=1.0, inclusive=True)
        if float(self.tau) == 0.0:
            raise ValueError("tau must lie in (0, 1], got 0.0")
        check_threshold("lr", self.lr, low=0.0, high=math.inf, inclusive=False)
        check_threshold("weight_decay", self.weight_decay, low=0.0)
        check_threshold("grad_clip", self.grad_clip, low=0.0, high=math.inf, inclusive=False)
        if self.energy_cap is not None:
            check_threshold("energy_cap", self.energy_cap)

@dataclass
class LDMConstraint:
    """``Constraint`` (safe_density.contracts): ``cost(obs, act) = G(obs, act)`` (or ``E`` if ``greedy``).

    Feasible where ``cost <= threshold``. ``greedy=True`` gives the one-step density constraint
    ``E(s, a) <= c`` that the LDM paper shows can lead out of the data (its Fig. 1).

    ``placement`` says where a planner applies it (``mbrl.rollout``): ``"current"`` (default) checks the real
    current state and the candidate's first action only. That is what an LDM is for: ``G(s, a) <= c`` at the
    real state already guarantees that acting by the constraint keeps every future ``E <= c``, so checking
    imagined states adds nothing but the dynamics model's error (which is far wider than the density: on
    Hopper no imagined candidate stays feasible past the first step). ``"imagined"`` applies the cost on
    every imagined step (a per-step density budget, for those who want one).
    """

    ldm: LyapunovDensityModel
    threshold: float
    greedy: bool = False
    placement: str = "current"

    def __post_init__(self) -> None:
        if self.placement not in ("current", "imagined"):
            raise ValueError(f"placement must be 'current' or 'imagined', got {self.placement!r}")

    def cost(self, obs, act) -> torch.Tensor:
        """``obs[..., O]``, ``act[..., A]`` -> ``Tensor[...]`` (the planner's hot path).

        Same values as :meth:`LyapunovDensityModel.value` / ``energy`` on valid tensors, but with no input
        validation (no host synchronisation per imagined step, so a planner can capture it in a CUDA graph),
        any float dtype (e.g. the bf16 planner) cast to the model's, and non-finite inputs or values mapped
        to a large finite cost instead of an exception: a diverged rollout counts as violating.
        """
        ldm = self.ldm
        if not isinstance(obs, torch.Tensor) or not isinstance(act, torch.Tensor):
            return self.ldm.energy(obs, act) if self.greedy else self.ldm.value(obs, act)
        if self.greedy:
            ldm._require_density()
        elif not ldm.fitted:
            raise RuntimeError("LyapunovDensityModel is not fitted; call fit(...) first")
        # shape checks only (metadata, no device synchronisation)
        for name, t, dim in (("obs", obs, ldm.obs_dim), ("act", act, ldm.act_dim)):
            if t.ndim < 1 or t.shape[-1] != dim:
                raise ValueError(f"{name} must have shape [..., {dim}], got {tuple(t.shape)}")
        o = ldm._select(obs.to(ldm.device, ldm.dtype))
        a = act.to(ldm.device, ldm.dtype)
        try:
            batch = torch.broadcast_shapes(o.shape[:-1], a.shape[:-1])
        except RuntimeError as exc:
            raise ValueError(
                f"obs batch shape {tuple(o.shape[:-1])} and act batch shape {tuple(a.shape[:-1])} do not broadcast"
            ) from exc
        o, a = o.expand(*batch, ldm.feature_dim), a.expand(*batch, ldm.act_dim)
        with torch.no_grad():
            v = ldm._fast_energy(o, a)
            if not self.greedy:
                v = ldm._value(o, a, v)
        big = torch.finfo(v.dtype).max / 4
        return torch.nan_to_num(v, nan=big, posinf=big, neginf=-big)


def _mlp(inp: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.ReLU()]
        inp = h
    layers.append(nn.Linear(inp, 1))
    return nn.Sequential(*layers)


class _Critics(nn.Module):
    """``n`` independent MLPs; ``[..., in] -> [..., n]``. Their maximum is the (pessimistic) ``G_phi``, as
    the authors' double-Q critic takes the minimum of two ``Q = -G`` heads."""

    def __init__(self, inp: int, hidden: Sequence[int], n: int) -> None:
        super().__init__()
        self.critics = nn.ModuleList(_mlp(inp, hidden) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([c(x) for c in self.critics], -1)


def _make_net(inp: int, hidden: Sequence[int], n: int) -> nn.Module:
    """One MLP (``n = 1``; the layout of checkpoints saved before ``n_critics`` existed) or ``n`` critics."""
    return _mlp(inp, hidden) if n == 1 else _Critics(inp, hidden, n)


def _density_registry() -> dict:
    from safe_density.density import FlowDensity, GaussianKDE, GaussianMixtureDensity

    return {c.__name__: c for c in (FlowDensity, GaussianKDE, GaussianMixtureDensity)}


class LyapunovDensityModel:
    """``G_phi(s, a)``: the worst future energy when acting by ``G <= c`` (module docstring).

    Args:
        obs_dim, act_dim: sizes of observations and actions.
        action_low, action_high: action box ``[act_dim]`` (``low <= high``, or an
            :class:`~mbrl.common.ActionBox` as ``action_low`` and ``None``); next actions are sampled in it.
        density: a ``DensityModel`` over concatenated ``[obs, act]`` (fitted in :meth:`fit` unless already
            fitted: objects with a ``fitted`` attribute that is True are left alone). ``None``: a Gaussian
            mixture with ``density_components`` components.
        hidden, gamma, n_action_samples, cem_steps, tau, lr, steps, batch_size, energy_cap: see
            :class:`LDMConfig`; ``config`` may be given instead of these keywords.
        obs_indices: the observation entries the density and ``G`` see (default: all). Every method still
            takes full ``[..., obs_dim]`` observations. Use it to drop what the data should not constrain,
            e.g. Hopper's x position (``obs_indices=range(1, 12)``): the behaviour is translation invariant
            and a target x outside the data must not count as leaving it.
        device, dtype, seed: placement and reproducibility (seed drives init, minibatches, action samples).

    After :meth:`fit`, :meth:`calibrate` sets the thresholds from quantiles of ``G`` (and of ``E``, for the
    greedy baseline) on the data; :meth:`constraint` then needs no threshold, and checkpoints keep them.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low,
        action_high=None,
        density: DensityModel | None = None,
        *,
        config: LDMConfig | None = None,
        obs_indices: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = 0,
        **overrides,
    ) -> None:
        obs_dim = check_int("obs_dim", obs_dim, low=1, high=INT_MAX)
        act_dim = check_int("act_dim", act_dim, low=1, high=INT_MAX)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device, self.dtype, self.seed = torch.device(device), dtype, seed
        self.obs_indices = _check_indices(obs_indices, obs_dim)
        self.feature_dim = obs_dim if self.obs_indices is None else len(self.obs_indices)
        self._idx = None if self.obs_indices is None else torch.tensor(self.obs_indices, device=self.device)
        self.action_box = ActionBox(action_low, action_high, act_dim, device=self.device, dtype=dtype)
        half = self.action_box.width / 2
        self._act_half = torch.where(half > 0, half, torch.ones_like(half))  # a pinned dimension scales by 1
        self.config = with_overrides(LDMConfig, config, **overrides)
        if density is not None and not isinstance(density, DensityModel):
            raise ValueError("density must be a DensityModel (safe_density.contracts: fit(x) and log_prob(x))")
        self.density = density
        self._density_ready = density is not None and bool(getattr(density, "fitted", False))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0 if seed is None else int(seed))
            self.net = _make_net(self.feature_dim + act_dim, self.config.hidden, self.config.n_critics).to(
                self.device, dtype)
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self._gen = make_generator(seed, self.device)
        # normalisation statistics (set by fit)
        self.obs_mean = torch.zeros(self.feature_dim, dtype=dtype, device=self.device)
        self.obs_std = torch.ones(self.feature_dim, dtype=dtype, device=self.device)
        self.e_mean = torch.zeros((), dtype=dtype, device=self.device)
        self.e_std = torch.ones((), dtype=dtype, device=self.device)
        self.e_cap = torch.tensor(math.inf, dtype=dtype, device=self.device)
        self.fitted = False
        self.history: dict[str, list[float]] = {"loss": [], "target_mean": []}
        #: set by :meth:`calibrate`: ``{"quantile", "ldm", "energy", "n"}`` (thresholds of G and of E)
        self.calibration: dict | None = None

    # ------------------------------------------------------------------ inputs
    def _select(self, o: torch.Tensor) -> torch.Tensor:
        """``[..., obs_dim] -> [..., feature_dim]`` (the ``obs_indices`` entries)."""
        return o if self._idx is None else o.index_select(-1, self._idx)

    def _pair(self, obs, act) -> tuple[torch.Tensor, torch.Tensor]:
        o = as_tensor("obs", obs, dtype=self.dtype, device=self.device, min_ndim=1, last_dim=self.obs_dim)
        o = self._select(o)
        a = as_tensor("act", act, dtype=self.dtype, device=self.device, min_ndim=1, last_dim=self.act_dim)
        try:
            batch = torch.broadcast_shapes(o.shape[:-1], a.shape[:-1])
        except RuntimeError as exc:
            raise ValueError(
                f"obs batch shape {tuple(o.shape[:-1])} and act batch shape "
                f"{tuple(a.shape[:-1])} do not broadcast"
            ) from exc
        return o.expand(*batch, self.feature_dim), a.expand(*batch, self.act_dim)

    def _features(self, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([(o - self.obs_mean) / self.obs_std, (a - self.action_box.center) / self._act_half], -1)

    def _raw_energy(self, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([o, a], -1)
        return -torch.as_tensor(self.density.log_prob(x), device=self.device).to(self.dtype)

    def _fast_energy(self, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``-log p`` on the hot path: a library density (:class:`~safe_density.density.base.DensityBase`) is
        asked without validation (``log_prob(x, validate=False)``); any other ``DensityModel`` gets its own
        validating ``log_prob`` on the finite rows, the others marked +inf."""
        x = torch.cat([o, a], -1)
        if isinstance(self.density, DensityBase):
            return -self.density.log_prob(x, validate=False).to(self.device, self.dtype)
        ok = torch.isfinite(x).all(-1)
        e = self._raw_energy(*torch.where(ok[..., None], x, 0.0).split([self.feature_dim, self.act_dim], -1))
        return torch.where(ok, e, math.inf)

    def _net_value(self, net: nn.Module, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``G_phi`` in energy units: the largest of the critics' predictions (``[...]``)."""
        return net(self._features(o, a)).amax(-1) * self.e_std + self.e_mean

    def _value(self, o: torch.Tensor, a: torch.Tensor, energy: torch.Tensor, net: nn.Module | None = None
               ) -> torch.Tensor:
        """``G = max(E, G_phi)`` (docs/design.md, (LDM-5)): the one place the rule is written. ``energy`` is
        ``E(o, a)`` (computed by the caller, which knows whether it is capped or on the hot path); ``net``
        defaults to the online critic (the backup passes the target)."""
        return torch.maximum(energy, self._net_value(self.net if net is None else net, o, a))

    # ------------------------------------------------------------------ public queries
    def energy(self, obs, act) -> torch.Tensor:
        """``E(s, a) = -log p(s, a)``: ``obs[..., O]``, ``act[..., A]`` -> ``Tensor[...]``."""
        self._require_density()
        o, a = self._pair(obs, act)
        return self._raw_energy(o, a)

    def value(self, obs, act) -> torch.Tensor:
        """``G(s, a) = max(E(s, a), G_phi(s, a))``: ``obs[..., O]``, ``act[..., A]`` -> ``Tensor[...]``.

        Differentiable in ``obs``/``act`` when they require grad (the QP filter of
        ``DensityConstrainedController`` uses ``grad_a G``); otherwise computed without an autograd graph.
        """
        if not self.fitted:
            raise RuntimeError("LyapunovDensityModel is not fitted; call fit(...) first")
        o, a = self._pair(obs, act)
        with torch.set_grad_enabled(torch.is_grad_enabled() and (o.requires_grad or a.requires_grad)):
            return self._value(o, a, self._raw_energy(o, a))

    __call__ = value

    def calibrate(self, obs, act, quantile: float = 0.5, rule: str = "ldm") -> float:
        """Set the thresholds from data (docs/design.md, (LDM-8)); the one threshold rule.

        * ``rule="ldm"``: ``c`` = the ``quantile`` of ``G`` over ``(obs, act)`` (typically the training data's
          own pairs, so a fraction ``quantile`` of them is feasible); the greedy baseline's threshold is the
          same quantile of ``E`` (its own cost: ``G >= E``, so ``G``'s quantile would loosen it).
        * ``rule="energy"``: the LDM paper authors' rule: ``c`` = the ``quantile`` of the data's energies
          ``E``, used as the threshold on ``G`` and on ``E`` alike (the two constraints compared at equal ``c``).

        Stored in ``calibration`` (``{"quantile", "rule", "ldm", "energy", "n"}``, saved with the model) and used
        by :meth:`constraint` and the controller wrappers when no threshold is given (:func:`resolve_threshold`).
        Returns the LDM threshold ``c``. ``obs[N, obs_dim]``, ``act[N, A]``.
        """
        q = check_threshold("quantile", quantile, low=0.0, high=1.0, inclusive=True)
        if rule not in THRESHOLD_RULES:
            raise ValueError(f"rule must be one of {THRESHOLD_RULES}, got {rule!r}")
        if not self.fitted:
            raise RuntimeError("LyapunovDensityModel is not fitted; call fit(...) first")
        o, a = self._pair(obs, act)
        if o.ndim != 2 or o.shape[0] == 0:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}) with N >= 1, got {tuple(o.shape)}")
        with torch.no_grad():
            e = self._raw_energy(o, a)
            g = self._value(o, a, e)
        qs = torch.tensor(q, dtype=torch.float64)
        c_energy = float(torch.quantile(e.double().cpu(), qs))
        c_ldm = float(torch.quantile(g.double().cpu(), qs)) if rule == "ldm" else c_energy
        self.calibration = {"quantile": q, "rule": rule, "ldm": c_ldm, "energy": c_energy, "n": int(o.shape[0])}
        return c_ldm

    def constraint(self, threshold: float | None = None, greedy: bool = False,
                   placement: str = "current") -> LDMConstraint:
        """A ``Constraint`` with ``cost = G`` (``greedy=True``: ``cost = E``).

        Args:
            threshold: ``c``; default: the calibrated one (:meth:`calibrate`) for ``G`` or for ``E``.
            greedy: constrain the one-step energy ``E`` instead of ``G`` (the paper's baseline).
            placement: ``"current"`` (the real current state-action; the LDM's guarantee covers the future) or
                ``"imagined"`` (every imagined step of a planner's rollouts), see :class:`LDMConstraint`.
        """
        return LDMConstraint(self, resolve_threshold(self, threshold, greedy), bool(greedy), placement)

    # ------------------------------------------------------------------ training
    def _require_density(self) -> None:
        if self.density is None or not self._density_ready:
            raise RuntimeError("the density model is not fitted; call fit(...) first")

    def _sample_actions(self, n: int, k: int) -> torch.Tensor:
        return self.action_box.sample(n, k, generator=self._gen)

    @torch.no_grad()
    def _action_pool(self, next_obs: torch.Tensor, chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_action_samples`` uniform next actions per next state and their capped energies, computed once
        (the density does not change while ``G`` is regressed): ``[N, K, A]`` and ``[N, K]``."""
        n, k = next_obs.shape[0], self.config.n_action_samples
        acts = self._sample_actions(n, k)
        rows = max(1, chunk // k)
        e = torch.cat([self._raw_energy(next_obs[i:i + rows, None].expand(-1, k, self.feature_dim), acts[i:i + rows])
                       for i in range(0, n, rows)])
        return acts, e.clamp(max=self.e_cap)

    @torch.no_grad()
    def _min_next_value(self, next_obs: torch.Tensor, pool=None) -> torch.Tensor:
        """``min_a' max(E, G_target)(s', a')`` over sampled (and CEM-refined) actions: ``[B, O] -> [B]``.

        ``pool``: precomputed ``(actions[B, K, A], energies[B, K])`` for the first round (from
        :meth:`_action_pool`), which saves the density evaluation at every step."""
        cfg = self.config
        b, k = next_obs.shape[0], cfg.n_action_samples
        o = next_obs[:, None].expand(b, k, self.feature_dim)

        def score(a: torch.Tensor, e: torch.Tensor | None = None) -> torch.Tensor:
            if e is None:
                e = self._raw_energy(o, a).clamp(max=self.e_cap)
            return self._value(o, a, e, self.target)

        acts = self._sample_actions(b, k) if pool is None else pool[0]
        vals = score(acts, None if pool is None else pool[1])
        best = vals.min(1).values
        span = self.action_box.width
        for _ in range(cfg.cem_steps):
            idx = vals.topk(cfg.cem_elites, dim=1, largest=False).indices
            elites = acts.gather(1, idx[..., None].expand(-1, -1, self.act_dim))
            mu, sd = elites.mean(1, keepdim=True), elites.std(1, keepdim=True) + 1e-3 * span
            noise = torch.randn(b, k, self.act_dim, generator=self._gen, device=self.device, dtype=self.dtype)
            acts = self.action_box.project(mu + sd * noise)
            vals = score(acts)
            best = torch.minimum(best, vals.min(1).values)
        return best

    def _fit_inputs(self, obs, act, next_obs, terminated, steps, batch_size):
        """Validated ``(obs, act, next_obs, done, steps, batch_size)`` for :meth:`fit` (``ValueError`` naming
        the argument)."""
        cfg = self.config
        o = as_tensor("obs", obs, dtype=self.dtype, device=self.device, nonempty=True, detach=True)
        steps = cfg.steps if steps is None else check_int("steps", steps, low=0, high=INT_MAX)
        batch_size = cfg.batch_size if batch_size is None else check_int("batch_size", batch_size, low=1, high=INT_MAX)
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}), got {tuple(o.shape)}")
        n = o.shape[0]
        a = as_tensor("act", act, dtype=self.dtype, device=self.device, detach=True)
        if tuple(a.shape) != (n, self.act_dim):
            raise ValueError(f"act must have shape ({n}, {self.act_dim}), got {tuple(a.shape)}")
        o2 = as_tensor("next_obs", next_obs, dtype=self.dtype, device=self.device, detach=True)
        if tuple(o2.shape) != (n, self.obs_dim):
            raise ValueError(f"next_obs must have shape ({n}, {self.obs_dim}), got {tuple(o2.shape)}")
        if terminated is None:
            done = torch.zeros(n, dtype=torch.bool, device=self.device)
        else:
            done = as_flags("terminated", terminated, n, device=self.device)
        if not bool(self.action_box.contains(a, slack=0.01).all()):
            raise ValueError(f"act must lie within the action box [action_low, action_high] (1 % slack), got values "
                             f"in [{float(a.min()):.3g}, {float(a.max()):.3g}]")

        return o, a, o2, done, steps, batch_size

    def _regress(self, o, a, o2, done, e_data, steps: int, bs: int, progress: bool) -> None:
        """The backup regression of :meth:`fit` (docs/design.md, LDM): target network, min over a pool of next
        actions, Polyak averaging; appends to ``history``."""
        cfg, n = self.config, o.shape[0]
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        it = range(steps)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="LDM fit", leave=False)
        gamma, tau = cfg.gamma, cfg.tau
        pool = None
        for step in it:
            if cfg.cem_steps == 0 and step % cfg.pool_refresh == 0:
                pool = self._action_pool(o2)
            idx = torch.randint(n, (bs,), generator=self._gen, device=self.device)
            e = e_data[idx]
            with torch.no_grad():
                nxt = self._min_next_value(o2[idx], None if pool is None else (pool[0][idx], pool[1][idx]))
                y = (1 - gamma) * e + gamma * torch.maximum(e, nxt)
                y = torch.where(done[idx], e, y)
            pred = self.net(self._features(o[idx], a[idx]))                      # [bs, n_critics]
            # each critic's own mean squared error, summed (one critic: the plain MSE)
            loss = (pred - ((y - self.e_mean) / self.e_std)[:, None]).square().mean(0).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            opt.step()
            with torch.no_grad():
                for p, pt in zip(self.net.parameters(), self.target.parameters()):
                    pt.lerp_(p, tau)
            self.history["loss"].append(float(loss.detach()))
            self.history["target_mean"].append(float(y.mean()))

    @fit_threads()
    def fit(
        self,
        obs,
        act,
        next_obs,
        terminated=None,
        steps: int | None = None,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> dict[str, list[float]]:
        """Fit the density (if needed) and regress ``G_phi`` on the discounted backup (module docstring).

        The ``n_action_samples`` next actions of each transition and their energies are drawn once per
        ``pool_refresh`` steps (:meth:`_action_pool`): the density is fixed during the regression, so the
        loop only evaluates networks (about 20x faster than evaluating the density at every step).

        Args:
            obs, next_obs: ``[N, O]``; act: ``[N, A]``; terminated: optional ``[N]`` bool/0-1.
            steps, batch_size: gradient steps and minibatch size (default: the config's).
            progress: show a tqdm bar.
        Returns:
            ``history`` with per-step ``"loss"`` and ``"target_mean"`` lists (also at ``self.history``).
        """
        cfg = self.config
        o, a, o2, done, steps, batch_size = self._fit_inputs(obs, act, next_obs, terminated, steps, batch_size)
        n = o.shape[0]
        o, o2 = self._select(o), self._select(o2)
        x = torch.cat([o, a], -1)
        if self.density is None:
            from safe_density.density import GaussianMixtureDensity

            self.density = GaussianMixtureDensity(
                min(cfg.density_components, n), device=self.device, dtype=self.dtype, seed=self.seed
            )
        if not getattr(self.density, "fitted", False):
            if isinstance(self.density, DensityBase):
                self.density.fit(x, progress=progress)   # the flow's fit takes most of a minute: show it
            else:
                self.density.fit(x)
        self._density_ready = True

        self.obs_mean = o.mean(0)
        std = o.std(0, unbiased=False)
        self.obs_std = torch.where(std < 1e-12, torch.ones_like(std), std)
        with torch.no_grad():
            e_data = self._raw_energy(o, a)
        _check_finite_energy(e_data)
        self.e_mean = e_data.mean()
        self.e_std = e_data.std(unbiased=False).clamp(min=1e-6) if n > 1 else torch.ones_like(self.e_mean)
        cap = cfg.energy_cap if cfg.energy_cap is not None else float(e_data.max() + 2 * self.e_std)
        self.e_cap = torch.tensor(cap, dtype=self.dtype, device=self.device)
        e_data = e_data.clamp(max=self.e_cap)
        if not self.fitted:
            self.target.load_state_dict(self.net.state_dict())
        self.fitted = True

        self._regress(o, a, o2, done, e_data, steps, min(batch_size, n), progress)
        return self.history

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save network, target, statistics, config and calibration (``mbrl.common.serialization``); the density
        goes to ``path/density`` when it has a ``save`` method. Atomic as a whole: the network and the density
        are written into a temporary folder that replaces ``path`` only when both are complete, so a crash at
        any point leaves the previous checkpoint loadable."""
        if not self.fitted:
            raise RuntimeError("nothing to save: the model is not fitted")
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {f"target.{k}": v for k, v in self.target.state_dict().items()}
        tensors |= {
            "obs_mean": self.obs_mean,
            "obs_std": self.obs_std,
            "e_mean": self.e_mean,
            "e_std": self.e_std,
            "e_cap": self.e_cap,
            "action_low": self.action_box.low,
            "action_high": self.action_box.high,
        }
        cfg = asdict(self.config)
        cfg["hidden"] = list(cfg["hidden"])
        saves_density = callable(getattr(self.density, "save", None))
        meta = {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": cfg,
            "seed": self.seed,
            "dtype": str(self.dtype).replace("torch.", ""),
            "density_class": type(self.density).__name__ if saves_density else None,
            "obs_indices": None if self.obs_indices is None else list(self.obs_indices),
            "calibration": self.calibration,
        }
        with atomic_directory(path) as tmp:
            write_state(tmp, tensors, meta)
            if saves_density:
                self.density.save(tmp / "density")

    @classmethod
    def load(
        cls, path: str | os.PathLike, density=None, device: torch.device | str = "cpu"
    ) -> LyapunovDensityModel:
        """Load a model saved by :meth:`save`; pass ``density`` if it was not saved with the model."""
        tensors, meta = load_state(path, device)
        try:
            return cls._from_state(path, tensors, meta, density, device)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"path {path} does not hold a LyapunovDensityModel checkpoint that matches its own "
                             f"metadata ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_state(cls, path, tensors: dict, meta: dict, density, device) -> LyapunovDensityModel:
        cfg = dict(meta["config"])
        cfg["hidden"] = tuple(cfg["hidden"])
        if density is None:
            name = meta.get("density_class")
            reg = _density_registry()
            if name not in reg:
                raise ValueError("density must be given: the checkpoint holds no loadable density model")
            density = reg[name].load(resolve_checkpoint(path) / "density", device=device)
        m = cls(
            meta["obs_dim"],
            meta["act_dim"],
            tensors["action_low"],
            tensors["action_high"],
            density,
            config=LDMConfig(**cfg),
            obs_indices=meta.get("obs_indices"),
            device=device,
            dtype=getattr(torch, meta["dtype"]),
            seed=meta["seed"],
        )
        m.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        m.target.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("target.")})
        for k in ("obs_mean", "obs_std", "e_mean", "e_std", "e_cap"):
            setattr(m, k, tensors[k].to(m.device, m.dtype))
        m.fitted = True
        m._density_ready = True
        m.calibration = meta.get("calibration")
        return m


def _check_indices(obs_indices, obs_dim: int) -> tuple[int, ...] | None:
    """Validate ``obs_indices`` (distinct integers in ``[0, obs_dim)``, at least one); None means all."""
    if obs_indices is None:
        return None
    try:
        items = list(obs_indices)
        if any(isinstance(i, bool) for i in items):
            raise TypeError
        idx = tuple(operator.index(i) for i in items)
    except TypeError:
        raise ValueError(f"obs_indices must be a sequence of integers, got {obs_indices!r}") from None
    if not idx or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= obs_dim:
        raise ValueError(f"obs_indices must be distinct integers in [0, {obs_dim}) (at least one), got {obs_indices!r}")
    return idx


def _check_finite_energy(e: torch.Tensor) -> None:
    if not bool(torch.isfinite(e).all()):
        raise ValueError("density gives non-finite energies on the data's (obs, act) pairs")
