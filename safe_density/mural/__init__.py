"""MURAL: uncertainty-aware success-example rewards (Li et al., ICML 2021; ``docs/design.md``)."""

from .classifier import SuccessClassifier, balanced_weights, classifier_reward, train_classifier
from .cnml import CNMLConfig, cnml_batched, cnml_naive
from .meta_nml import (
    MetaNMLCache,
    MetaNMLConfig,
    meta_nml_cached,
    meta_nml_fast,
    meta_nml_naive,
    meta_nml_prepare,
    meta_nml_vmap,
    meta_train,
)
from .reward import MuralConfig, MuralReward
from .wrapper import MuralRewardWrapper

__all__ = [
    "CNMLConfig",
    "MetaNMLCache",
    "MetaNMLConfig",
    "MuralConfig",
    "MuralReward",
    "MuralRewardWrapper",
    "SuccessClassifier",
    "balanced_weights",
    "classifier_reward",
    "cnml_batched",
    "cnml_naive",
    "meta_nml_cached",
    "meta_nml_fast",
    "meta_nml_naive",
    "meta_nml_prepare",
    "meta_nml_vmap",
    "meta_train",
    "train_classifier",
]
