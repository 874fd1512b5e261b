"""Learned dynamics models: the PETS probabilistic ensemble, its training loop and its normaliser."""

from mbrl.models.ensemble import (
    PETS_WEIGHT_DECAY,
    ProbabilisticEnsemble,
    default_weight_decay,
    onednn_fused_available,
)
from mbrl.models.normalizer import Normalizer
from mbrl.models.training import FitConfig, fit_ensemble

__all__ = [
    "PETS_WEIGHT_DECAY",
    "FitConfig",
    "Normalizer",
    "ProbabilisticEnsemble",
    "default_weight_decay",
    "fit_ensemble",
    "onednn_fused_available",
]
