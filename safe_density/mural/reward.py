"""``MuralReward``: success-example rewards from a classifier, exact CNML or meta-NML.

``../shared/design.md``, "MURAL" and "Contracts" (``RewardShaper``). The user gives success examples
``S+`` (label 1); :meth:`MuralReward.update` adds the states the agent visited (label 0) and retrains;
calling the object gives ``r(s) in [0, 1]``:

* ``method="classifier"``: the maximum-likelihood classifier's ``p(success|s)`` (VICE baseline);
* ``method="cnml"``: exact CNML, two classifiers retrained per state (slow, the reference);
* ``method="meta_nml"``: MURAL's meta-NML, one adaptation step per state (closed form, batched).

Visited-state history: the last ``config.max_visited`` visited states are kept (first in, first out),
the analogue of MURAL sampling negatives from a bounded replay pool; every update retrains on the
examples plus this history, classes balanced (``equal_pos_neg_test=True`` in the official code).
Features are standardised with the mean/std of the training set of the last update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mbrl.util.seeding import check_seed
from mbrl.util.serialization import load_state, save_state
from mbrl.util.validation import as_tensor, check_int, check_threshold

from .classifier import (
    Params,
    SuccessClassifier,
    balanced_weights,
    classifier_reward,
    init_params,
    train_classifier,
)
from .cnml import CNMLConfig, cnml_batched
from .meta_nml import MetaNMLConfig, meta_nml_fast, meta_train

__all__ = ["MuralConfig", "MuralReward"]

_METHODS = ("meta_nml", "cnml", "classifier")
#: Standardised features are clipped to +-this many standard deviations: far outside the data the
#: classifiers are (piecewise) linear, so the reward is unchanged in practice, while e.g. 1e30 inputs
#: no longer overflow the meta-NML closed form (NaN rewards).
FEATURE_CLIP = 1e4
_MIN_SD = 1e-6  # a feature with a smaller spread in the training set is left unscaled (sd = 1)


@dataclass(frozen=True)
class MuralConfig:
    """Settings of :class:`MuralReward`; defaults from the official MURAL code where it has them.

    * ``hidden=(2048, 2048)``, ReLU: ``meta_nml_layers`` in ``examples/*/variants.py``.
    * ``classifier_lr=1e-4``, ``classifier_batch=128``: ``classifier_lr``/``classifier_batch_size``
      of the VICE baseline there. ``classifier_steps=1000``: our choice (MLE fit per update).
    * ``meta_steps=256``: meta-updates per update (official: one epoch over 128 sampled query points,
      2 labels each, tasks batched 1 x 16 accumulation, ``num_initial_meta_epochs=10``; our choice).
    * ``max_visited=10_000``: visited-state history (our choice). Retraining frequency in the paper:
      every epoch of 1000 environment steps (``meta_nml_train_every_k=1``, ``epoch_length=1000``); see
      :class:`safe_density.mural.wrapper.MuralRewardWrapper`.
    * ``cnml``/``meta_nml``: :class:`CNMLConfig`, :class:`MetaNMLConfig`.

    These paper-size defaults are meant for a GPU. :meth:`small` is a CPU preset for 2-D problems
    (tests, notebook, benchmarks) whose meta-NML values (inner lr 1, inner query weight 10) were
    tuned by us to match exact CNML on a 2-D problem.
    """

    hidden: tuple[int, ...] = (2048, 2048)
    activation: str = "relu"
    classifier_lr: float = 1e-4
    classifier_batch: int | None = 128
    classifier_steps: int = 1000
    meta_steps: int = 256
    max_visited: int = 10_000
    standardize: bool = True
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
        check_int("classifier_steps", self.classifier_steps, low=0, high=10**9)
        check_int("meta_steps", self.meta_steps, low=0, high=10**9)
        check_int("max_visited", self.max_visited, low=1, high=2**62)
        check_int("chunk_size", self.chunk_size, low=1, high=2**62)
        if not isinstance(self.cnml, CNMLConfig):
            raise ValueError(f"cnml must be a CNMLConfig, got {type(self.cnml).__name__}")
        if not isinstance(self.meta_nml, MetaNMLConfig):
            raise ValueError(f"meta_nml must be a MetaNMLConfig, got {type(self.meta_nml).__name__}")

    @classmethod
    def small(cls, **overrides) -> MuralConfig:
        """CPU preset: 2 x 32 ReLU MLP, full-batch Adam, tuned one-step meta-NML."""
        base = dict(
            hidden=(32, 32), classifier_lr=1e-2, classifier_batch=None, classifier_steps=300, meta_steps=600,
            cnml=CNMLConfig(steps=100, lr=1e-2),
            meta_nml=MetaNMLConfig(inner_lr=1.0, inner_query_weight=10.0, meta_lr=1e-2, meta_batch=16),
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MuralConfig:
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        d["cnml"] = CNMLConfig(**d["cnml"])
        d["meta_nml"] = MetaNMLConfig(**d["meta_nml"])
        return cls(**d)


class MuralReward:
    """Reward ``r(s) in [0, 1]`` from success examples; a ``RewardShaper`` (design.md, "Contracts").

    Args:
        success_examples: ``[K, O]`` observations of successful outcomes (label 1).
        method: ``"meta_nml"`` (MURAL), ``"cnml"`` (exact, slow) or ``"classifier"`` (VICE baseline).
        seed: seeds the initial parameters, minibatches and meta-training queries.
        device: torch device (default CPU).
        config: :class:`MuralConfig`.
        mode: ``"replace"`` (default) or ``"add"`` (planners add ``weight * r``).
        weight: scale used by planners/wrappers in ``"add"`` mode.
        state_slice: ``(start, stop)`` of the observation entries the classifier sees.
        feature_fn: ``obs[..., O] -> features[..., D]`` (batched torch); overrides ``state_slice``;
            not saved by :meth:`save` (pass it again to :meth:`load`).
        dtype: floating dtype of the model and rewards.
        regularizer: optional training regulariser of the success classifier, an object with
            ``loss(model_fn, x, y)`` replacing the cross-entropy, e.g. ``safe_density.rcad.RCAD()`` (less
            over-confident away from the data; used by the ``classifier`` and ``cnml`` methods' MLE fit).

    Usage: ``mr.update(visited[M, O])`` then ``mr(states[..., O]) -> [...]`` or
    ``mr(obs, act, next_obs) -> [...]`` (the reward of ``next_obs``).
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
        self.regularizer = regularizer  # e.g. RCAD: used when training the MLE classifier (classifier / cnml)
        self.method, self.mode, self.seed = method, mode, check_seed("seed", seed)
        self.config = config if config is not None else MuralConfig()
        if not isinstance(self.config, MuralConfig):
            raise ValueError(f"config must be a MuralConfig, got {type(config).__name__}")
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
        self.feature_dim = feats.shape[-1]
        self.model = SuccessClassifier(self.feature_dim, self.config.hidden, self.config.activation)
        self.mle_params: Params = init_params(self.model, self.seed, dtype, self.device)
        self.meta_params: Params | None = None
        self.visited = ex.new_zeros(0, self.obs_dim)
        self.mu = feats.new_zeros(self.feature_dim)
        self.sd = feats.new_ones(self.feature_dim)
        self.n_updates = 0
        self._data: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

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

    def _rebuild_data(self) -> None:
        fe = self._features(self.success_examples, "success_examples")
        fv = self._features(self.visited, "visited_states")
        x = torch.cat([fe, fv])
        if self.config.standardize:  # statistics in float64: float32 sums of squares overflow beyond ~1e19
            x64 = x.double()
            sd = x64.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x64[0])
            self.mu = x64.mean(0).to(x.dtype)
            self.sd = torch.where(sd < _MIN_SD, torch.ones_like(sd), sd).to(x.dtype)
        x = self._norm(x)
        y = torch.cat([x.new_ones(fe.shape[0]), x.new_zeros(fv.shape[0])])
        self._data = (x, y, balanced_weights(y).to(x))

    @property
    def fitted(self) -> bool:
        return self.n_updates > 0

    # ------------------------------------------------------------------ training
    def update(self, visited_states, steps: int | None = None, progress: bool = True) -> MuralReward:
        """Add ``visited_states[M, O]`` (label 0) to the bounded history and retrain.

        ``steps``: Adam steps of the classifier (``classifier``/``cnml``) or meta-updates
        (``meta_nml``); default from the config. Returns ``self``.
        """
        v = as_tensor("visited_states", visited_states, dtype=self.dtype, device=self.device, nonempty=True)
        if v.ndim == 1:
            v = v.unsqueeze(0)
        if v.ndim != 2 or v.shape[-1] != self.obs_dim:
            raise ValueError(f"visited_states must have shape [M, {self.obs_dim}], got {tuple(v.shape)}")
        if steps is not None:
            steps = check_int("steps", steps, low=0, high=10**9)
        self.visited = torch.cat([self.visited, v])[-self.config.max_visited:]
        self._rebuild_data()
        x, y, c = self._data
        cfg = self.config
        seed = self.seed * 100_003 + self.n_updates
        if self.method in ("classifier", "cnml") or self.meta_params is None:
            n = steps if (steps is not None and self.method != "meta_nml") else cfg.classifier_steps
            self.mle_params = train_classifier(
                self.model, self.mle_params, x, y, weights=c, steps=n, lr=cfg.classifier_lr,
                batch_size=cfg.classifier_batch, regularizer=self.regularizer, seed=seed, progress=progress)
        if self.method == "meta_nml":
            start = self.meta_params if self.meta_params is not None else self.mle_params
            n = steps if steps is not None else cfg.meta_steps
            self.meta_params = meta_train(self.model, start, x, y, c, steps=n, config=cfg.meta_nml,
                                          seed=seed, progress=progress)
        self.n_updates += 1
        return self

    # ------------------------------------------------------------------ rewards
    def reward(self, states) -> torch.Tensor:
        """``states[..., O]`` (torch or numpy) -> rewards ``[...]`` in [0, 1] (torch, on ``device``)."""
        if not self.fitted:
            raise RuntimeError("MuralReward has no visited states yet: call update(visited_states) first")
        s = as_tensor("states", states, dtype=self.dtype, device=self.device, min_ndim=1,
                      last_dim=self.obs_dim)
        batch = s.shape[:-1]
        f = self._norm(self._features(s.reshape(-1, self.obs_dim), "states"))
        x, y, c = self._data
        if f.shape[0] == 0:
            return f.new_zeros(batch)
        if self.method == "classifier":
            r = classifier_reward(self.model, self.mle_params, f)
        elif self.method == "cnml":
            r = cnml_batched(self.model, self.mle_params, x, y, c, f, self.config.cnml)
        else:
            r = meta_nml_fast(self.model, self.meta_params, x, y, c, f, self.config.meta_nml)
        return r.clamp(0.0, 1.0).reshape(batch)

    def __call__(self, *args) -> torch.Tensor:
        """``mr(states)`` or, as a ``RewardShaper``, ``mr(obs, act, next_obs)`` (reward of ``next_obs``)."""
        if len(args) == 1:
            return self.reward(args[0])
        if len(args) == 3:
            return self.reward(args[2])
        raise TypeError(f"MuralReward takes (states) or (obs, act, next_obs), got {len(args)} arguments")

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Atomic safetensors + JSON checkpoint (``mbrl.util.serialization``); ``feature_fn`` is not saved."""
        tensors = {"success_examples": self.success_examples, "visited": self.visited, "mu": self.mu,
                   "sd": self.sd}
        tensors.update({f"mle.{k}": v for k, v in self.mle_params.items()})
        if self.meta_params is not None:
            tensors.update({f"meta.{k}": v for k, v in self.meta_params.items()})
        meta = {"method": self.method, "seed": self.seed, "mode": self.mode, "weight": self.weight,
                "state_slice": list(self.state_slice) if self.state_slice else None,
                "n_updates": self.n_updates, "dtype": str(self.dtype).replace("torch.", ""),
                "config": self.config.to_dict(), "has_feature_fn": self.feature_fn is not None}
        save_state(path, tensors, meta)

    @classmethod
    def load(cls, path, device=None, feature_fn: Callable | None = None) -> MuralReward:
        """Load a checkpoint written by :meth:`save` (pass ``feature_fn`` again if one was used)."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        t, meta = load_state(path, dev)
        if meta.get("has_feature_fn") and feature_fn is None:
            raise ValueError("feature_fn: the saved MuralReward used a feature_fn; pass it to load()")
        obj = cls(t["success_examples"], method=meta["method"], seed=meta["seed"], device=dev,
                  config=MuralConfig.from_dict(meta["config"]), mode=meta["mode"], weight=meta["weight"],
                  state_slice=tuple(meta["state_slice"]) if meta["state_slice"] else None,
                  feature_fn=feature_fn, dtype=getattr(torch, meta["dtype"]))
        obj.visited = t["visited"]
        obj.mle_params = {k[4:]: v for k, v in t.items() if k.startswith("mle.")}
        meta_p = {k[5:]: v for k, v in t.items() if k.startswith("meta.")}
        obj.meta_params = meta_p or None
        obj.n_updates = int(meta["n_updates"])
        if obj.n_updates > 0:
            obj._rebuild_data()
        obj.mu, obj.sd = t["mu"], t["sd"]
        return obj

