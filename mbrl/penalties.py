"""Uncertainty penalties that plug into ``MPCAgent(reward_shapers=...)`` (docs/design.md, ``RewardShaper``).

:class:`EnsembleDisagreement` is the classic model-uncertainty penalty (e.g. MOPO, Yu et al. 2020; MOReL,
Kidambi et al. 2020): ``-weight * sum_d Var_e[mu_e(s, a)]_d``, the spread of the members' mean
predictions, which grows where the data gave the members no reason to agree. The LDM paper compares
against it on Hopper (benchmarks/hopper_ldm.py).
"""

from __future__ import annotations

import torch

__all__ = ["EnsembleDisagreement"]


class EnsembleDisagreement:
    """Reward term ``-weight * disagreement(obs, act)`` (``mode = "add"``).

    Args:
        model: an ensemble with ``mean_and_var(obs, act) -> (mean[E, ..., O], var)``.
        weight: penalty scale (> 0). The call returns ``-disagreement``; planners add
            ``weight * shaper(obs, act, next_obs)``, i.e. ``-weight * disagreement``.
    """

    mode = "add"

    def __init__(self, model, weight: float = 1.0) -> None:
        if not hasattr(model, "mean_and_var"):
            raise ValueError("model must provide mean_and_var(obs, act)")
        if not (float(weight) > 0):
            raise ValueError(f"weight must be > 0, got {weight!r}")
        self.model, self.weight = model, float(weight)

    def disagreement(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``obs[..., O]``, ``act[..., A]`` -> ``[...]``: summed variance of the members' means."""
        lead = obs.shape[:-1]
        o = obs.reshape(-1, obs.shape[-1])
        a = act.expand(*lead, act.shape[-1]).reshape(-1, act.shape[-1])
        mdl = self.model
        p = next(mdl.parameters(), None) if hasattr(mdl, "parameters") else None
        if p is not None and p.dtype != o.dtype:
            o, a = o.to(p.dtype), a.to(p.dtype)
        mean, _ = mdl.mean_and_var(o, a)
        return mean.float().var(0, unbiased=False).sum(-1).reshape(lead)

    def __call__(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return -self.disagreement(obs, act)
