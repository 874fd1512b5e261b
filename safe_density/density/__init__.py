"""Density models meeting the ``DensityModel`` contract (docs/design.md, "Contracts").

``fit(x[N, D]) -> self`` and ``log_prob(x[..., D]) -> [...]``, standardisation inside, ``save``/``load``
through ``mbrl.common.serialization``. Used for the energies ``E = -log p(s, a)`` of Lyapunov density models.
"""

from safe_density.density.base import DensityBase, validate_fit_data
from safe_density.density.flow import FlowDensity
from safe_density.density.gmm import GaussianMixtureDensity
from safe_density.density.kde import GaussianKDE, kde_bandwidth

__all__ = [
    "DensityBase",
    "FlowDensity",
    "GaussianKDE",
    "GaussianMixtureDensity",
    "kde_bandwidth",
    "validate_fit_data",
]
