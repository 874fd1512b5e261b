"""``MuralReward``: success-example rewards from a classifier, exact CNML or meta-NML.

``docs/design.md``, "MURAL" and "Contracts" (``RewardShaper``). The user gives success examples
``S+`` (label 1); :meth:`MuralReward.update` adds the states the agent visited (label 0) and retrains;
calling the object gives ``r(s) in [0, 1]``:

* ``method="classifier"``: the maximum-likelihood classifier's ``p(success|s)`` (VICE baseline);
* ``method="cnml"``: exact CNML, two classifiers retrained per state (slow, the reference);
* ``method="meta_nml"``: MURAL's meta-NML, one adaptation step per state (closed form, batched).

Incremental training (official code: ``num_initial_meta_epochs=10``, then ``num_meta_epochs=1`` per
retraining). The first :meth:`~MuralReward.update` fits from scratch (``classifier_steps`` of the MLE
classifier, then ``meta_steps`` meta-updates); every later one continues from the current parameters
with a bounded budget (``meta_steps_incremental`` / ``classifier_steps_incremental``, each step on at
most ``outer_batch`` / ``classifier_batch`` points), so its cost does not grow with the data beyond one
pass over it. Everything that depends only on the data and the parameters (the meta-NML data gradient
and data-adapted weights, :class:`~safe_density.mural.meta_nml.MetaNMLCache`) is computed at the end of
``update`` (and by :meth:`~MuralReward.load`), never by a reward call.

Visited-state history: the last ``config.max_visited`` visited states are kept (first in, first out),
the analogue of MURAL sampling negatives from a bounded replay pool; every update trains on the
examples plus this history, classes balanced (``equal_pos_neg_test=True`` in the official code).
Features are standardised with the mean/std of the current training set; when an update moves these
statistics, the first layer of every network is rewritten so that the function it computes on raw
features is unchanged (training then continues from the same function).

Two call paths (docs/design.md, "Contracts"): :meth:`~MuralReward.reward` and ``mr(states)`` validate their
input (``ValueError`` naming the argument); ``mr(obs, act, next_obs)``, the ``RewardShaper`` form called
on every imagined step of a planner, does no validation and no host synchronisation and maps a NaN
reward (NaN states) to 0, the worst reward.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mbrl.common.seeding import check_seed
from mbrl.common.serialization import load_state, save_state
from mbrl.common.threads import fit_threads
from mbrl.common.validation import as_tensor, check_int, check_threshold

from .classifier import (
    Params,
    SuccessClassifier,
    balanced_weights,
    classifier_reward,
    init_params,
    linear_layers,
    train_classifier,
)
from .cnml import CNMLConfig, cnml_batched
from .meta_nml import MetaNMLCache, MetaNMLConfig, meta_nml_cached, meta_nml_prepare, meta_nml_vmap, meta_train

__all__ = ["MuralConfig", "MuralReward"]

logger = logging.getLogger(__name__)

_METHODS = ("meta_nml", "cnml", "classifier")
#: Standardised features are clipped to +-this many standard deviations: far outside the data the
#: classifiers are (piecewise) linear, so the reward is unchanged in practice, while e.g. 1e30 inputs
#: no longer overflow the meta-NML closed form (NaN rewards).
FEATURE_CLIP = 1e4
_MIN_SD = 1e-6  # a feature with a smaller spread in the training set is left unscaled (sd = 1)
_SMALL_MAX_DIM = 4  # CPU preset: 2 x 32 up to this feature dimension, 2 x 64 above


@dataclass(frozen=True)
class MuralConfig:
    """Settings of :class:`MuralReward`. The dataclass defaults are the official MURAL code's
    (:meth:`published`); :meth:`small` / :meth:`for_device` are CPU presets.

    * ``hidden=(2048, 2048)``, ReLU: ``meta_nml_layers`` in ``examples/*/variants.py``.
    * ``classifier_lr=1e-4``, ``classifier_batch=128``: ``classifier_lr``/``classifier_batch_size``
      of the VICE baseline there. ``classifier_steps=1000``: our choice (MLE fit of the first update);
      ``classifier_steps_incremental=100``: our choice (each later update, from the current parameters).
    * ``meta_steps=160``: meta-updates of the first update, the code's ``num_initial_meta_epochs=10``
      epochs of 16 meta-updates (128 query points x 2 labels, 16 tasks per accumulated meta-batch);
      ``meta_steps_incremental=16``: one such epoch per later update (``num_meta_epochs=1``).
    * ``support_size=64``: NML methods only: the data's (class-balanced) weights are scaled to sum to this,
      so that one query point weighs ``q / (64 + q)`` of the adapted loss whatever the history size, as in
      the official code, whose meta-tasks adapt on 64 data points (``num_points_per_task``-style sets of
      64); ``None``: weights sum to ``N`` (the query's influence, hence the reward's contrast between
      visited and novel states, then vanishes as the history grows: every visited state gets ~0).
    * ``max_visited=10_000``: visited-state history (our choice). Retraining frequency in the paper:
      every epoch of 1000 environment steps (``meta_nml_train_every_k=1``, ``epoch_length=1000``); see
      :class:`safe_density.mural.wrapper.MuralRewardWrapper`.
    * ``clip_to_box`` (NML methods; ours): standardised features are clipped to the box the meta-training
      queries are drawn from (the data's bounding box widened by ``meta_nml.box_margin`` of its span on each
      side), so a state beyond it gets the reward of the nearest state meta-NML was trained on. Without it,
      states 2-5 m beyond Hopper success examples got 1e-5 to 5e-38 from the ReLU network's extrapolation
      where exact CNML gives 1/2.
    * ``prior_weight``, ``prior_points`` (NML methods; ours): ``prior_points`` scrambled-Sobol points spread
      over that box with the soft label 1/2 and ``prior_weight`` of the data's total weight: a uniform prior
      that says "no evidence either way" where nobody has been, so that CNML and meta-NML stay near 1/2 on
      novel states in every direction instead of extrapolating the classifier's confidence (design.md,
      "MURAL", MURAL-2). Where data lie, 10 % spread over the box is outweighed by the data.
    * ``cnml``/``meta_nml``: :class:`CNMLConfig`, :class:`MetaNMLConfig`.
    """

    hidden: tuple[int, ...] = (2048, 2048)
    activation: str = "relu"
    classifier_lr: float = 1e-4
    classifier_batch: int | None = 128
    classifier_steps: int = 1000
    classifier_steps_incremental: int = 100
    meta_steps: int = 160
    meta_steps_incremental: int = 16
    max_visited: int = 10_000
    support_size: float | None = 64.0
    standardize: bool = True
    clip_to_box: bool = True
    prior_weight: float = 0.1
    prior_points: int = 256
    chunk_size: int = 4096
    cnml: CNMLConfig = field(default_factory=CNMLConfig)
    meta_nml: MetaNMLConfig = field(default_factory=MetaNMLConfig)

    def __post_init__(self):
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden",
                           tuple(check_int(f"hidden[{i}]", h, low=1) for i, h in enumerate(self.hidden)))
        lr = check_threshold("classifier_lr", self.classifier_lr, low=0.0, inclusive=False)
        if lr == float("inf"):
            raise ValueError("classifier_lr must be finite")
        if self.classifier_batch is not None:
            check_int("classifier_batch", self.classifier_batch, low=1)
        for name in ("classifier_steps", "classifier_steps_incremental", "meta_steps", "meta_steps_incremental"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=0, high=10**9))
        check_int("max_visited", self.max_visited, low=1, high=2**62)
        if self.support_size is not None:
            check_threshold("support_size", self.support_size, low=0.0, high=1e12, inclusive=False)
        check_int("chunk_size", self.chunk_size, low=1, high=2**62)
        check_threshold("prior_weight", self.prior_weight, low=0.0, high=1e6)
        check_int("prior_points", self.prior_points, low=1, high=2**20)
        if not isinstance(self.cnml, CNMLConfig):
            raise ValueError(f"cnml must be a CNMLConfig, got {type(self.cnml).__name__}")
        if not isinstance(self.meta_nml, MetaNMLConfig):
            raise ValueError(f"meta_nml must be a MetaNMLConfig, got {type(self.meta_nml).__name__}")

    @classmethod
    def published(cls, **overrides) -> MuralConfig:
        """The official code's sizes (2 x 2048 meta-NML, lr 1e-3 / inner 0.01, VICE lr 1e-4, batch 128):
        meant for a GPU (on 2 CPU cores one update on a few hundred states takes minutes)."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> MuralConfig:
        """CPU preset for low-dimensional features: 2 x 32 ReLU MLP, full-batch Adam, one-step meta-NML with
        inner lr 0.3, inner query weight 10 and 80 % of the meta-training queries uniform over the box (tuned by
        us against exact proximal CNML on two 2-D problems: tests/safe_density/test_mural.py, ``_shape_problem``).
        First update: 300 classifier steps + 600 meta-updates; later updates: 30 / 16."""
        base = dict(
            hidden=(32, 32), classifier_lr=1e-2, classifier_batch=None, classifier_steps=300,
            classifier_steps_incremental=30, meta_steps=600, meta_steps_incremental=16,
            cnml=CNMLConfig(),
            meta_nml=MetaNMLConfig(inner_lr=0.3, inner_query_weight=10.0, meta_lr=1e-2, meta_batch=16,
                                   uniform_query_fraction=0.8),
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def for_device(cls, device=None, feature_dim: int = 2) -> tuple[str, MuralConfig]:
        """``(name, config)`` suited to ``device`` and the feature dimension: ``"published"`` on CUDA,
        ``"small"`` (2 x 32) on CPU up to 4 features, ``"small-64"`` (2 x 64) on CPU above."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        feature_dim = check_int("feature_dim", feature_dim, low=1)
        if dev.type == "cuda":
            return "published", cls.published()
        if feature_dim <= _SMALL_MAX_DIM:
            return "small", cls.small()
        return "small-64", cls.small(hidden=(64, 64))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MuralConfig:
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        d["cnml"] = CNMLConfig(**d["cnml"])
        d["meta_nml"] = MetaNMLConfig(**d["meta_nml"])
        return cls(**d)


def _restandardise(model: SuccessClassifier, params: Params, mu0, sd0, mu1, sd1) -> Params:
    """First layer rewritten for new feature statistics so that the network's function of the raw
    features is unchanged: ``W (f - mu0)/sd0 + b = W' (f - mu1)/sd1 + b'`` with ``W' = W sd1/sd0``,
    ``b' = b + W (mu1 - mu0)/sd0``."""
    wn, bn = linear_layers(model)[0]
    w, b = params[wn], params[bn]
    out = dict(params)
    out[wn] = w * (sd1 / sd0).to(w)
    out[bn] = b + w @ ((mu1 - mu0) / sd0).to(w)
    return out


class MuralReward:
    """Reward ``r(s) in [0, 1]`` from success examples; a ``RewardShaper`` (docs/design.md, "Contracts").

    Args:
        success_examples: ``[K, O]`` observations of successful outcomes (label 1), finite, ``K >= 1``.
        method: ``"meta_nml"`` (MURAL), ``"cnml"`` (exact, slow) or ``"classifier"`` (VICE baseline).
        seed: seeds the initial parameters, minibatches and meta-training queries.
        device: torch device (default CPU).
        config: :class:`MuralConfig`; ``None`` picks :meth:`MuralConfig.for_device` for ``device`` and the
            feature dimension (the chosen name is logged at INFO and kept in ``self.preset``).
        mode: ``"replace"`` (default) or ``"add"`` (planners add ``weight * r``).
        weight: scale used by planners/wrappers in ``"add"`` mode.
        state_slice: ``(start, stop)`` of the observation entries the classifier sees.
        feature_fn: ``obs[..., O] -> features[..., D]`` (batched torch); overrides ``state_slice``;
            not saved by :meth:`save` (pass it again to :meth:`load`).
        dtype: floating dtype of the model and rewards.
        regularizer: optional training regulariser of the success classifier, an object with
            ``loss(model_fn, x, y)`` replacing the cross-entropy, e.g. ``safe_density.rcad.RCAD()`` (less
            over-confident away from the data; used by the ``classifier`` and ``cnml`` methods' MLE fit).

    Usage: ``mr.update(visited[M, O])`` then ``mr.reward(states[..., O]) -> [...]`` (validated), or, inside a
    planner, ``mr(obs, act, next_obs) -> [...]`` (the reward of ``next_obs``; unvalidated hot path).
    """

    def __init__(self, success_examples, method: str = "meta_nml", seed: int = 0, device=None,
                 config: MuralConfig | None = None, *, mode: str = "replace", weight: float = 1.0,
                 state_slice: tuple[int, int] | None = None,
                 feature_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 dtype: torch.dtype = torch.float32, regularizer=None):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if mode not in ("replace", "add"):
            raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
        self.weight = check_threshold("weight", weight)
        if abs(self.weight) == float("inf"):
            raise ValueError(f"weight must be finite, got {weight!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r} (half precision "
                             "training of the classifiers is not supported)")
        if regularizer is not None and not callable(getattr(regularizer, "loss", None)):
            raise ValueError("regularizer must have a loss(model_fn, x, y) method, e.g. safe_density.rcad.RCAD")
        if config is not None and not isinstance(config, MuralConfig):
            raise ValueError(f"config must be a MuralConfig, got {type(config).__name__}")
        if feature_fn is not None and not callable(feature_fn):
            raise ValueError("feature_fn must be callable")
        self.regularizer = regularizer  # e.g. RCAD: used when training the MLE classifier (classifier / cnml)
        self.method, self.mode, self.seed = method, mode, check_seed("seed", seed)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        ex = as_tensor("success_examples", success_examples, dtype=dtype, device=self.device, nonempty=True)
        if ex.ndim != 2 or ex.shape[0] < 1:
            raise ValueError(f"success_examples must have shape [K, obs_dim], got {tuple(ex.shape)}")
        self.obs_dim = ex.shape[1]
        if state_slice is not None:
            if isinstance(state_slice, (str, bytes)) or not hasattr(state_slice, "__len__") \
                    or len(state_slice) != 2:
                raise ValueError(f"state_slice must be a pair (start, stop), got {state_slice!r}")
            a, b = (check_int("state_slice", v) for v in state_slice)
            if not (0 <= a < b <= self.obs_dim):
                raise ValueError(f"state_slice must be 0 <= start < stop <= {self.obs_dim}, "
                                 f"got {state_slice}")
            state_slice = (a, b)
        self.state_slice, self.feature_fn = state_slice, feature_fn
        self.success_examples = ex
        feats = self._features(ex, "success_examples")
        if feats.ndim != 2 or feats.shape[0] != ex.shape[0]:
            raise ValueError(f"feature_fn(success_examples) must have shape [{ex.shape[0]}, D], "
                             f"got {tuple(feats.shape)}")
        self.feature_dim = feats.shape[-1]
        if config is None:
            self.preset, config = MuralConfig.for_device(self.device, self.feature_dim)
            logger.info("MuralReward: config=None -> preset %r (device %s, %d features, hidden %s)",
                        self.preset, self.device.type, self.feature_dim, config.hidden)
        else:   # a config equal to a named preset keeps its name (e.g. MuralConfig.small() is "small")
            named = {"small": MuralConfig.small(), "small-64": MuralConfig.small(hidden=(64, 64)),
                     "published": MuralConfig.published()}
            self.preset = next((k for k, v in named.items() if v == config), "custom")
        self.config = config
        self.model = SuccessClassifier(self.feature_dim, self.config.hidden, self.config.activation)
        self.mle_params: Params = init_params(self.model, self.seed, dtype, self.device)
        self.meta_params: Params | None = None
        self.visited = ex.new_zeros(0, self.obs_dim)
        self.mu = feats.new_zeros(self.feature_dim)
        self.sd = feats.new_ones(self.feature_dim)
        self.n_updates = 0
        self._data: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._box: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cache: MetaNMLCache | None = None

    # ------------------------------------------------------------------ features and data
    def _features(self, obs: torch.Tensor, name: str) -> torch.Tensor:
        if self.feature_fn is not None:
            f = self.feature_fn(obs)
            f = as_tensor(f"feature_fn({name})", f, dtype=self.dtype, device=self.device)
        elif self.state_slice is not None:
            f = obs[..., self.state_slice[0]:self.state_slice[1]]
        else:
            f = obs
        return f

    def _norm(self, f: torch.Tensor) -> torch.Tensor:
        """Standardised features, clipped to ``+-FEATURE_CLIP`` (computed in float64 to avoid overflow)."""
        z = (f.double() - self.mu.double()) / self.sd.double()
        return z.clamp(-FEATURE_CLIP, FEATURE_CLIP).to(f.dtype)

    def _raw_training_features(self) -> tuple[torch.Tensor, int]:
        fe = self._features(self.success_examples, "success_examples")
        fv = self._features(self.visited, "visited_states")
        return torch.cat([fe, fv]), fe.shape[0]

    def _fit_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``[D]`` of the raw features (float64 statistics: float32 sums of squares overflow)."""
        x64 = x.double()
        sd = x64.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x64[0])
        sd = torch.where(sd < _MIN_SD, torch.ones_like(sd), sd)
        return x64.mean(0).to(x.dtype), sd.to(x.dtype)

    def _build_data(self, x: torch.Tensor, n_pos: int) -> None:
        x = self._norm(x)
        y = torch.cat([x.new_ones(n_pos), x.new_zeros(x.shape[0] - n_pos)])
        w = balanced_weights(y).to(x)
        self._box = None
        if self.method != "classifier":
            if self.config.support_size is not None:
                w = w * (self.config.support_size / x.shape[0])
            lo, hi = x.min(0).values, x.max(0).values
            pad = self.config.meta_nml.box_margin * (hi - lo).clamp_min(_MIN_SD)
            lo, hi = lo - pad, hi + pad
            if self.config.clip_to_box:
                self._box = (lo, hi)
            if self.config.prior_weight > 0:
                sob = torch.quasirandom.SobolEngine(x.shape[1], scramble=True, seed=self.seed)
                u = sob.draw(self.config.prior_points, dtype=torch.float64).to(x)
                xp = lo + u * (hi - lo)
                wp = torch.full((xp.shape[0],), self.config.prior_weight * float(w.sum()) / xp.shape[0]).to(w)
                x, y, w = torch.cat([x, xp]), torch.cat([y, torch.full_like(wp, 0.5)]), torch.cat([w, wp])
        self._data = (x, y, w)

    def _refresh_cache(self) -> None:
        """Recompute what reward calls reuse (meta-NML: data gradient and data-adapted weights)."""
        self._cache = None
        if self.method == "meta_nml" and self.config.meta_nml.inner_steps == 1:
            x, y, c = self._data
            self._cache = meta_nml_prepare(self.model, self.meta_params, x, y, c, self.config.meta_nml)

    @property
    def fitted(self) -> bool:
        return self.n_updates > 0

    @property
    def training_data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x[N, D], y[N], weights[N])`` of the last update: standardised features, labels (1 = example),
        class-balancing weights (read-only use; e.g. to evaluate exact CNML on a grid)."""
        self._check_fitted()
        return self._data

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features ``[..., D]`` (after ``feature_fn``/``state_slice``) -> the classifier's inputs."""
        f = as_tensor("features", features, dtype=self.dtype, device=self.device, last_dim=self.feature_dim)
        return self._norm(f)

    @property
    def feature_box(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(lo[D], hi[D])``: the standardised-feature box the NML rewards clip states to (``config.clip_to_box``;
        the training data's box widened by ``meta_nml.box_margin``), ``None`` for the classifier."""
        self._check_fitted()
        return self._box

    @property
    def cache(self) -> MetaNMLCache | None:
        """The query-independent quantities of the last :meth:`update` (``None`` unless meta-NML, k = 1)."""
        return self._cache

    # ------------------------------------------------------------------ training
    @fit_threads()
    def update(self, visited_states, steps: int | None = None, progress: bool = True) -> MuralReward:
        """Add ``visited_states[M, O]`` (label 0; ``[O]`` for one state) to the bounded history and train.

        The first update fits from scratch; later ones continue from the current parameters with the
        config's incremental budget (module docstring). ``steps``: overrides the number of Adam steps of the
        classifier (``classifier``/``cnml``) or of meta-updates (``meta_nml``) of this update. Returns ``self``.
        """
        v = as_tensor("visited_states", visited_states, dtype=self.dtype, device=self.device, nonempty=True)
        if v.ndim == 1:
            v = v.unsqueeze(0)
        if v.ndim != 2 or v.shape[-1] != self.obs_dim:
            raise ValueError(f"visited_states must have shape [M, {self.obs_dim}], got {tuple(v.shape)}")
        if steps is not None:
            steps = check_int("steps", steps, low=0, high=10**9)
        first, cfg = not self.fitted, self.config
        self.visited = torch.cat([self.visited, v])[-cfg.max_visited:]
        raw, n_pos = self._raw_training_features()
        if cfg.standardize:
            mu, sd = self._fit_stats(raw)
            if not first:
                self.mle_params = _restandardise(self.model, self.mle_params, self.mu, self.sd, mu, sd)
                if self.meta_params is not None:
                    self.meta_params = _restandardise(self.model, self.meta_params, self.mu, self.sd, mu, sd)
            self.mu, self.sd = mu, sd
        self._build_data(raw, n_pos)
        x, y, c = self._data
        seed = self.seed * 100_003 + self.n_updates
        if self.method in ("classifier", "cnml") or self.meta_params is None:
            n = cfg.classifier_steps if first else cfg.classifier_steps_incremental
            n = steps if (steps is not None and self.method != "meta_nml") else n
            self.mle_params = train_classifier(
                self.model, self.mle_params, x, y, weights=c, steps=n, lr=cfg.classifier_lr,
                batch_size=cfg.classifier_batch, regularizer=self.regularizer, seed=seed, progress=progress)
        if self.method == "meta_nml":
            start = self.meta_params if self.meta_params is not None else self.mle_params
            n = steps if steps is not None else (cfg.meta_steps if first else cfg.meta_steps_incremental)
            self.meta_params = meta_train(self.model, start, x, y, c, steps=n, config=cfg.meta_nml,
                                          seed=seed, progress=progress)
        self._refresh_cache()
        self.n_updates += 1
        return self

    # ------------------------------------------------------------------ rewards
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("MuralReward has no visited states yet: call update(visited_states) first")

    def _reward_of_features(self, f: torch.Tensor) -> torch.Tensor:
        """Standardised features ``[B, D] -> [B]`` (no validation)."""
        if self._box is not None:
            f = torch.maximum(torch.minimum(f, self._box[1]), self._box[0])
        if self.method == "classifier":
            return classifier_reward(self.model, self.mle_params, f)
        x, y, c = self._data
        if self.method == "cnml":
            return cnml_batched(self.model, self.mle_params, x, y, c, f, self.config.cnml)
        if self._cache is not None:
            return meta_nml_cached(self.model, self._cache, f, self.config.meta_nml.chunk_size)
        return meta_nml_vmap(self.model, self.meta_params, x, y, c, f, self.config.meta_nml)

    def reward(self, states) -> torch.Tensor:
        """``states[..., O]`` (torch or numpy) -> rewards ``[...]`` in [0, 1] (torch, on ``device``).

        Validated: ``ValueError`` naming ``states`` for a wrong last dimension or NaN/inf entries."""
        self._check_fitted()
        s = as_tensor("states", states, dtype=self.dtype, device=self.device, min_ndim=1,
                      last_dim=self.obs_dim)
        batch = s.shape[:-1]
        f = self._norm(self._features(s.reshape(-1, self.obs_dim), "states"))
        if f.shape[0] == 0:
            return f.new_zeros(batch)
        return self._reward_of_features(f).clamp(0.0, 1.0).reshape(batch)

    def shaped(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Hot path: ``next_obs[..., O] -> [...]`` in ``dtype`` with no validation and no host sync; NaN -> 0.

        Inputs of another dtype/device are cast; infinite features are clipped like :meth:`reward`'s."""
        self._check_fitted()
        s = next_obs.to(device=self.device, dtype=self.dtype)
        batch = s.shape[:-1]
        s = s.reshape(-1, s.shape[-1])
        if self.feature_fn is not None:
            f = self.feature_fn(s).to(device=self.device, dtype=self.dtype)
        elif self.state_slice is not None:
            f = s[:, self.state_slice[0]:self.state_slice[1]]
        else:
            f = s
        if f.shape[0] == 0:
            return f.new_zeros(batch)
        f = ((f - self.mu) / self.sd).clamp(-FEATURE_CLIP, FEATURE_CLIP)
        r = self._reward_of_features(f)
        return torch.nan_to_num(r, nan=0.0).clamp(0.0, 1.0).reshape(batch)

    def __call__(self, *args) -> torch.Tensor:
        """``mr(states)`` (validated, as :meth:`reward`) or, as a ``RewardShaper``, ``mr(obs, act, next_obs)``
        (the reward of ``next_obs`` through the unvalidated hot path :meth:`shaped`)."""
        if len(args) == 1:
            return self.reward(args[0])
        if len(args) == 3:
            return self.shaped(args[2])
        raise TypeError(f"MuralReward takes (states) or (obs, act, next_obs), got {len(args)} arguments")

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Atomic safetensors + JSON checkpoint (``mbrl.common.serialization``); ``feature_fn`` is not saved."""
        tensors = {"success_examples": self.success_examples, "visited": self.visited, "mu": self.mu,
                   "sd": self.sd}
        tensors.update({f"mle.{k}": v for k, v in self.mle_params.items()})
        if self.meta_params is not None:
            tensors.update({f"meta.{k}": v for k, v in self.meta_params.items()})
        meta = {"method": self.method, "seed": self.seed, "mode": self.mode, "weight": self.weight,
                "state_slice": list(self.state_slice) if self.state_slice else None,
                "n_updates": self.n_updates, "dtype": str(self.dtype).replace("torch.", ""),
                "config": self.config.to_dict(), "has_feature_fn": self.feature_fn is not None,
                "preset": self.preset, "obs_dim": self.obs_dim, "feature_dim": self.feature_dim}
        save_state(path, tensors, meta)

    @classmethod
    def load(cls, path, device=None, feature_fn: Callable | None = None) -> MuralReward:
        """Load a checkpoint written by :meth:`save` (pass ``feature_fn`` again if one was used).

        Raises ``ValueError`` naming ``path`` when the metadata disagree with the tensors (shapes, dtype,
        dimensions, number of updates, which parameter sets are present)."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        t, meta = load_state(path, dev)
        if meta.get("has_feature_fn") and feature_fn is None:
            raise ValueError("feature_fn: the saved MuralReward used a feature_fn; pass it to load()")
        try:
            dtype = getattr(torch, str(meta["dtype"]))
            config = MuralConfig.from_dict(meta["config"])
            ss = meta["state_slice"]
            obj = cls(t["success_examples"], method=meta["method"], seed=meta["seed"], device=dev, config=config,
                      mode=meta["mode"], weight=meta["weight"], state_slice=tuple(ss) if ss else None,
                      feature_fn=feature_fn, dtype=dtype)
            n_updates = check_int("n_updates", meta["n_updates"], low=0)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"path {path}: invalid MuralReward checkpoint metadata ({exc})") from exc
        obj.preset = str(meta.get("preset", "custom"))
        _check_checkpoint(path, obj, t, meta, n_updates)
        obj.visited = t["visited"]
        obj.mle_params = {k[4:]: v for k, v in t.items() if k.startswith("mle.")}
        meta_p = {k[5:]: v for k, v in t.items() if k.startswith("meta.")}
        obj.meta_params = meta_p or None
        obj.n_updates = n_updates
        obj.mu, obj.sd = t["mu"], t["sd"]
        if obj.n_updates > 0:
            raw, n_pos = obj._raw_training_features()
            obj._build_data(raw, n_pos)
            obj._refresh_cache()
        return obj


def _check_checkpoint(path, obj: MuralReward, t: dict, meta: dict, n_updates: int) -> None:
    """Every tensor of a checkpoint against what its metadata imply (``ValueError`` naming ``path``)."""
    def bad(msg):
        raise ValueError(f"path {path}: checkpoint metadata disagree with its tensors: {msg}")

    for k in ("obs_dim", "feature_dim"):
        if k in meta and meta[k] != getattr(obj, k):
            bad(f"{k} is {meta[k]} but the success examples give {getattr(obj, k)}")
    for k in ("visited", "mu", "sd"):
        if k not in t:
            bad(f"tensor {k!r} is missing")
    for k, v in t.items():
        if v.dtype != obj.dtype:
            bad(f"tensor {k!r} has dtype {v.dtype}, metadata say {obj.dtype}")
        if not bool(torch.isfinite(v).all()):
            bad(f"tensor {k!r} holds NaN or infinite values")
    if t["visited"].ndim != 2 or t["visited"].shape[1] != obj.obs_dim:
        bad(f"visited has shape {tuple(t['visited'].shape)}, expected [M, {obj.obs_dim}]")
    if t["visited"].shape[0] > obj.config.max_visited:
        bad(f"{t['visited'].shape[0]} visited states exceed max_visited={obj.config.max_visited}")
    if (n_updates > 0) != (t["visited"].shape[0] > 0):
        bad(f"n_updates={n_updates} with {t['visited'].shape[0]} visited states")
    for k in ("mu", "sd"):
        if tuple(t[k].shape) != (obj.feature_dim,):
            bad(f"{k} has shape {tuple(t[k].shape)}, expected ({obj.feature_dim},)")
    if bool((t["sd"] <= 0).any()):
        bad("sd must be positive")
    shapes = {k: tuple(v.shape) for k, v in obj.mle_params.items()}
    for prefix in ("mle.", "meta."):
        got = {k[len(prefix):]: tuple(v.shape) for k, v in t.items() if k.startswith(prefix)}
        if prefix == "meta." and not got:
            if obj.method == "meta_nml" and n_updates > 0:
                bad("a fitted meta_nml reward needs its meta-trained parameters ('meta.*')")
            continue
        if prefix == "meta." and obj.method != "meta_nml":
            bad(f"method {obj.method!r} has no meta-trained parameters")
        if got != shapes:
            bad(f"parameters {prefix}* have shapes {got}, the config's network has {shapes}")
