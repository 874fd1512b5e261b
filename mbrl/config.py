"""The published PETS settings, stated once (Chua et al. 2018; docs/design.md, "PETS").

:class:`PETSConfig` holds the original code's hyper-parameters; the components take their defaults from it
(:class:`~mbrl.planning.CEM`'s population, elites, iterations and alpha; :class:`~mbrl.MPCAgent`'s horizon,
particles, propagation and replanning; :class:`~mbrl.models.ProbabilisticEnsemble`'s size and widths;
:class:`~mbrl.models.training.FitConfig`'s epochs, batch, learning rate and hold-out), so that a default is
changed in one place. This module imports nothing from ``mbrl`` but :mod:`mbrl.common`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbrl.common.config import with_overrides
from mbrl.common.validation import check_int, check_threshold

__all__ = ["PETS", "PETSConfig"]


@dataclass(frozen=True)
class PETSConfig:
    """Hyper-parameters of one PETS run. Defaults are the original code's (docs/design.md, PETS table)."""

    hidden: tuple[int, ...] = (200, 200, 200, 200)
    ensemble_size: int = 5
    epochs_per_episode: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    holdout: float = 0.1
    optimizer: str = "cem"  # cem | icem | mppi
    population: int = 500
    elites: int = 50
    iterations: int = 5
    alpha: float = 0.1
    horizon: int = 30
    particles: int = 20
    propagation: str = "ts_inf"
    replan_every: int = 1  # the PETS code replans at every step; k > 1 executes k planned actions per plan
    warmup_episodes: int = 1
    warmup_steps: int = 0  # the random phase runs (several env episodes if needed) until this many steps
    episodes: int = 10
    max_episode_steps: int | None = None
    buffer_capacity: int = 1_000_000
    dtype: str = "float32"  # or "bfloat16" (planner's fast mode)

    def __post_init__(self):
        """Reject bad fields at construction (``ValueError`` naming the field), not after the warm-up."""
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden",
                           tuple(check_int(f"hidden[{i}]", h, low=1) for i, h in enumerate(self.hidden)))
        ints = {"ensemble_size": 1, "epochs_per_episode": 0, "batch_size": 1, "population": 1, "elites": 1,
                "iterations": 1, "horizon": 1, "particles": 1, "replan_every": 1, "warmup_episodes": 0,
                "warmup_steps": 0, "episodes": 0, "buffer_capacity": 1}
        for name, low in ints.items():
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=low))
        if self.max_episode_steps is not None:
            object.__setattr__(self, "max_episode_steps", check_int("max_episode_steps", self.max_episode_steps,
                                                                     low=1))
        if self.replan_every > self.horizon:
            raise ValueError(f"replan_every must be <= horizon ({self.horizon}), got {self.replan_every}")
        if self.elites > self.population:
            raise ValueError(f"elites must be <= population ({self.population}), got {self.elites}")
        check_threshold("lr", self.lr, low=0.0, high=1e6, inclusive=False)
        check_threshold("holdout", self.holdout, low=0.0, high=1.0)
        if self.holdout >= 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        check_threshold("alpha", self.alpha, low=0.0, high=1.0)
        choices = {"optimizer": ("cem", "icem", "mppi"), "propagation": ("ts_inf", "ts_1", "expectation"),
                   "dtype": ("float32", "bfloat16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.warmup_episodes + self.episodes < 1:
            raise ValueError("episodes + warmup_episodes must be >= 1")

    def replace(self, **kw) -> PETSConfig:
        """This config with some fields replaced (``ValueError`` naming an unknown one)."""
        return with_overrides(PETSConfig, self, **kw)


#: the defaults, as an instance the components' signatures read (``horizon: int = PETS.horizon``)
PETS = PETSConfig()
