"""Shared machinery of the density models: input validation and standardisation (docs/design.md, "Contracts").

Every density model in :mod:`safe_density.density` works on *standardised* data
``z = (x - mean) / std`` (per feature; ``std < 1e-12`` is replaced by 1, as in PETS' normaliser) and
reports the log-density of the *original* variable,

    log p_x(x) = log p_z((x - mean) / std) - sum_d log std_d,

so energies ``E = -log p`` from different models are on the same scale. The energy of a Lyapunov density
model (docs/design.md, "Lyapunov density models") is ``E(s, a) = -log p(s, a)`` from any of these.
"""

from __future__ import annotations

import os

import torch

from mbrl.common.serialization import load_state, save_state
from mbrl.common.threads import fit_threads
from mbrl.common.validation import as_tensor

__all__ = ["DensityBase", "validate_fit_data"]

_MIN_STD = 1e-12


def validate_fit_data(x, *, name: str = "x", dtype=None, device=None, min_points: int = 1) -> torch.Tensor:
    """Validate training data: a finite, non-empty ``[N, D]`` tensor with ``N >= min_points``."""
    t = as_tensor(name, x, dtype=dtype, device=device, nonempty=True)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {tuple(t.shape)}")
    if t.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got {t.shape[0]}")
    return t


class DensityBase:
    """Base class: device/dtype/seed handling, standardisation, query validation and the log-det term.

    Subclasses implement ``_fit_standardised(z: Tensor[N, D])`` and ``_log_prob_standardised(z:
    Tensor[M, D]) -> Tensor[M]``, and for :meth:`save` / :meth:`load` the hooks ``_config`` (the constructor
    keywords that rebuild the model), ``_state_tensors`` (the fitted tensors) and ``_restore`` (set them back).
    """

    def __init__(
        self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seed: int | None = 0
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        self.dim: int | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    # ------------------------------------------------------------------ public API
    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @fit_threads()
    def fit(self, x, progress: bool = True, **kwargs):
        """Fit to ``x: Tensor[N, D]`` (array-like accepted) and return ``self``. ``progress``: a tqdm bar for
        fits that iterate long enough to need one (the flow's gradient steps)."""
        t = validate_fit_data(x, dtype=self.dtype, device=self.device, min_points=self._min_points())
        self.dim = int(t.shape[1])
        self.mean = t.mean(0)
        std = t.std(0, unbiased=False) if t.shape[0] > 1 else torch.ones_like(self.mean)
        self.std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
        self._fit_standardised((t - self.mean) / self.std, progress=progress, **kwargs)
        return self

    def log_prob(self, x, validate: bool = True) -> torch.Tensor:
        """``x: Tensor[..., D]`` -> ``log p(x): Tensor[...]`` (original, unstandardised units).

        ``validate=False`` is the hot path of the contracts (``mbrl.contracts``): ``x`` must be a tensor with
        last dimension ``D``; it is cast to the model's device and dtype without any check or host sync, and
        NaN rows give NaN (a caller such as the LDM constraint maps them to "worst")."""
        if validate:
            z, batch = self._standardise_query(x)
        else:
            self._require_fitted()
            batch = tuple(x.shape[:-1])
            z = ((x.to(self.mean.device, self.mean.dtype) - self.mean) / self.std).reshape(-1, x.shape[-1])
        out = self._log_prob_standardised(z) - torch.log(self.std).sum()
        return out.reshape(batch)

    def energy(self, x) -> torch.Tensor:
        """``E(x) = -log p(x)``: ``Tensor[..., D]`` -> ``Tensor[...]`` (docs/design.md, LDM energy)."""
        return -self.log_prob(x)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save to directory ``path`` (safetensors + JSON, ``mbrl.common.serialization``; atomic, no pickle)."""
        meta = self._base_meta() | self._config()
        save_state(path, self._base_tensors() | self._state_tensors(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu"):
        """The model saved at ``path`` by :meth:`save`, on ``device``."""
        tensors, meta = load_state(path, device)
        keys = cls._config_keys()
        m = cls(**{k: meta[k] for k in keys}, device=device, dtype=cls._dtype_from(meta), seed=meta["seed"])
        m._load_base(tensors, meta)
        m._restore(tensors, meta)
        return m

    # ------------------------------------------------------------------ helpers
    def _min_points(self) -> int:
        return 1

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(x) first")

    def _standardise_query(self, x) -> tuple[torch.Tensor, tuple[int, ...]]:
        self._require_fitted()
        t = as_tensor("x", x, dtype=self.dtype, device=self.device, min_ndim=1, last_dim=self.dim)
        batch = tuple(t.shape[:-1])
        return ((t - self.mean) / self.std).reshape(-1, self.dim), batch

    def _base_tensors(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        return {"mean": self.mean, "std": self.std}

    def _base_meta(self) -> dict:
        return {
            "class": type(self).__name__,
            "dim": self.dim,
            "dtype": str(self.dtype).replace("torch.", ""),
            "seed": self.seed,
        }

    def _load_base(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if meta.get("class") != type(self).__name__:
            raise ValueError(f"checkpoint holds a {meta.get('class')}, not a {type(self).__name__}")
        self.dim = int(meta["dim"])
        self.mean = tensors["mean"].to(self.device, self.dtype)
        self.std = tensors["std"].to(self.device, self.dtype)

    @staticmethod
    def _dtype_from(meta: dict) -> torch.dtype:
        return getattr(torch, meta.get("dtype", "float32"))

    # subclasses
    @classmethod
    def _config_keys(cls) -> tuple[str, ...]:  # pragma: no cover - abstract
        """The constructor keywords :meth:`_config` returns (read back from the metadata by :meth:`load`)."""
        raise NotImplementedError

    def _config(self) -> dict:
        """The constructor keywords (JSON values) that rebuild this model unfitted."""
        return {k: getattr(self, k) for k in self._config_keys()}

    def _state_tensors(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_standardised(self, z: torch.Tensor, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_prob_standardised(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
