"""Lyapunov density models (Kang et al., ICML 2022; docs/design.md, "Lyapunov density models").

- :func:`solve_tabular` / :func:`solve_tabular_stochastic`: exact LDM ``G[S, A]`` on finite MDPs (reference).
- :class:`LyapunovDensityModel`: ``G_phi(s, a)`` learned from offline transitions; ``constraint(c)`` gives a
  ``Constraint`` for planners.
- :class:`DensityConstrainedController` / :class:`DensityConstrainedActionWrapper`: keep any controller's
  actions inside ``G(s, a) <= c``; :class:`ActionProjector` (``projection.py``) is the search they share.
"""

from safe_density.ldm.controller import DensityConstrainedActionWrapper, DensityConstrainedController
from safe_density.ldm.learned import LDMConfig, LDMConstraint, LyapunovDensityModel
from safe_density.ldm.projection import ActionProjector
from safe_density.ldm.tabular import solve_tabular, solve_tabular_stochastic

__all__ = [
    "ActionProjector",
    "DensityConstrainedActionWrapper",
    "DensityConstrainedController",
    "LDMConfig",
    "LDMConstraint",
    "LyapunovDensityModel",
    "solve_tabular",
    "solve_tabular_stochastic",
]
