"""Behaviour policies as plain torch modules (trained elsewhere, shipped as safetensors) and roll-out helpers."""

from mbrl.policies.hopper import HOPPER_POLICIES, collect_hopper_data, hopper_policy_dir, load_hopper_policy
from mbrl.policies.mlp import MLPPolicy, PolicyController
from mbrl.policies.rollouts import collect_rollouts, evaluate_policy, keep_before_falls

__all__ = [
    "HOPPER_POLICIES",
    "MLPPolicy",
    "PolicyController",
    "collect_hopper_data",
    "collect_rollouts",
    "evaluate_policy",
    "hopper_policy_dir",
    "keep_before_falls",
    "load_hopper_policy",
]
