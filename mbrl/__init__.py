"""mbrl: a PETS-style model-based controller (Chua et al., NeurIPS 2018; docs/design.md "PETS").

Probabilistic ensemble dynamics, trajectory sampling, CEM / iCEM / MPPI optimisers and an MPC agent on
gymnasium + MuJoCo tasks. Names are imported lazily so ``import mbrl`` stays cheap.

Note: the import name ``mbrl`` is shared with the unmaintained ``mbrl-lib`` package; the two cannot be
installed in one environment.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ProbabilisticEnsemble": "mbrl.models",
    "ReplayBuffer": "mbrl.buffer",
    "MPCAgent": "mbrl.agent",
    "CEM": "mbrl.planning",
    "ICEM": "mbrl.planning",
    "MPPI": "mbrl.planning",
    "RandomShooting": "mbrl.planning",
    "TrajectoryOptimizer": "mbrl.contracts",
    "OptimizerBase": "mbrl.planning",
    "ActionBox": "mbrl.common",
    "make_task": "mbrl.tasks",
    "Task": "mbrl.tasks",
    "rollout": "mbrl.rollout",
    "run_pets": "mbrl.train",
    "PETSConfig": "mbrl.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbrl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
