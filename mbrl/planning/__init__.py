"""Trajectory optimisers over action sequences (docs/design.md, "Contracts": ``mbrl.contracts.TrajectoryOptimizer``).

:class:`CEM` (PETS), :class:`ICEM` (Pinneri et al. 2020), :class:`MPPI` (Williams et al. 2017 / PDDM) and
:class:`RandomShooting`, all batched over independent problems, bounded, seeded by a ``torch.Generator``
and ranking candidates with the constrained selection of :mod:`mbrl.planning.selection`.
"""

from mbrl.planning.base import OptimizerBase, truncated_normal
from mbrl.planning.cem import CEM
from mbrl.planning.icem import ICEM, colored_noise
from mbrl.planning.mppi import MPPI, mppi_weights
from mbrl.planning.random_shooting import RandomShooting
from mbrl.planning.selection import candidate_class, rank_key, select_elites

__all__ = ["CEM", "ICEM", "MPPI", "OptimizerBase", "RandomShooting", "candidate_class", "colored_noise",
           "mppi_weights", "rank_key", "select_elites", "truncated_normal"]
