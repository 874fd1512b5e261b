"""Learned dynamics models: the PETS probabilistic ensemble and its input/target normaliser."""

from mbrl.models.ensemble import (
    PETS_WEIGHT_DECAY,
    ProbabilisticEnsemble,
    default_weight_decay,
    onednn_fused_available,
)
from mbrl.models.normalizer import Normalizer

__all__ = ["PETS_WEIGHT_DECAY", "Normalizer", "ProbabilisticEnsemble", "default_weight_decay", "onednn_fused_available"]
