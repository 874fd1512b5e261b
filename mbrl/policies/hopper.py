"""The shipped Hopper-v5 behaviour policies (forward and backward hoppers) and their data.

Trained once by ``benchmarks/train_hopper_behaviour.py`` (stable-baselines3 SAC; seed, command, training curve
and evaluation are in each checkpoint's ``meta.json``) and shipped as small safetensors files in
``mbrl/policies/data/hopper_<name>/``. They run as plain torch modules (:class:`~mbrl.policies.MLPPolicy`):
no stable-baselines3 at run time.

:func:`collect_hopper_data` rolls them out at several action-noise levels: the quiet copies hop without
falling, the noisy ones sometimes fall, the mix of behaviour an LDM needs (docs/design.md, "Published recipes":
the authors' D4RL medium/expert mix of forward and backward hoppers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mbrl.policies.mlp import MLPPolicy
from mbrl.policies.rollouts import collect_rollouts

__all__ = ["HOPPER_POLICIES", "collect_hopper_data", "hopper_policy_dir", "load_hopper_policy"]

HOPPER_POLICIES = ("forward", "backward")
_DATA = Path(__file__).resolve().parent / "data"


def hopper_policy_dir(name: str) -> Path:
    """The folder of the shipped policy ``name`` (``"forward"`` or ``"backward"``)."""
    if name not in HOPPER_POLICIES:
        raise ValueError(f"name must be one of {HOPPER_POLICIES}, got {name!r}")
    return _DATA / f"hopper_{name}"


def load_hopper_policy(name: str = "forward", device: torch.device | str | None = None) -> MLPPolicy:
    """The shipped policy ``name``: ``policy(obs[..., 12]) -> act[..., 3]`` on ``make_task("Hopper-v5")``
    observations (x first, ignored by the network)."""
    path = hopper_policy_dir(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python -m benchmarks.train_hopper_behaviour --which {name}")
    return MLPPolicy.load(path, device=device)


def collect_hopper_data(policies=HOPPER_POLICIES, noises=(0.1, 0.3, 0.5), episodes_per_setting: int = 2,
                        max_steps: int = 300, seed: int = 0, task=None) -> dict[str, np.ndarray]:
    """Roll out every shipped policy at every action-noise level (seeded, deterministic).

    Returns :func:`~mbrl.policies.rollouts.collect_rollouts`'s arrays: ``obs [N, 12]``, ``act [N, 3]``,
    ``next_obs [N, 12]``, ``terminated``/``truncated`` ``[N]``, ``episode [N]``, and per episode ``fell``,
    ``steps``, ``setting``.
    """
    loaded = {name: load_hopper_policy(name) for name in policies}
    return collect_rollouts(lambda name, noise, s: loaded[name].controller(noise=noise, seed=s), list(policies),
                            noises, episodes_per_setting, max_steps, seed, task)
