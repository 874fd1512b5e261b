"""safe_density: plug-in density constraints, uncertainty-aware rewards and adversarial unlearning.

- Lyapunov density models (Kang et al., ICML 2022): :class:`LyapunovDensityModel`,
  :class:`DensityConstrainedController`, :func:`solve_tabular`.
- MURAL (Li et al., ICML 2021): :class:`MuralReward`.
- RCAD (Setlur et al., NeurIPS 2022): :func:`rcad_loss`, :class:`RCAD`.
- Contracts (``typing.Protocol``): :class:`Constraint`, :class:`RewardShaper`, :class:`DensityModel`.

See ``docs/design.md`` for the equations. Names are imported lazily so ``import safe_density`` is cheap.
"""

from __future__ import annotations

import importlib

from safe_density.contracts import Constraint, DensityModel, RewardShaper  # noqa: F401 (re-exported)

__version__ = "0.1.0"

_EXPORTS = {
    "LyapunovDensityModel": "safe_density.ldm",
    "DensityConstrainedController": "safe_density.ldm",
    "solve_tabular": "safe_density.ldm",
    "solve_tabular_stochastic": "safe_density.ldm",
    "DensityConstrainedActionWrapper": "safe_density.ldm",
    "LDMConfig": "safe_density.ldm",
    "LDMConstraint": "safe_density.ldm",
    "FlowDensity": "safe_density.density",
    "GaussianKDE": "safe_density.density",
    "GaussianMixtureDensity": "safe_density.density",
    "MuralReward": "safe_density.mural",
    "MuralConfig": "safe_density.mural",
    "MuralRewardWrapper": "safe_density.mural",
    "rcad_loss": "safe_density.rcad",
    "RCAD": "safe_density.rcad",
    "RCADDensity": "safe_density.rcad",
}

__all__ = sorted([*_EXPORTS, "Constraint", "DensityModel", "RewardShaper"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'safe_density' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
