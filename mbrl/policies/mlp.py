"""Behaviour policies as plain torch modules: small MLPs with their observation normalisation.

A policy trained elsewhere (``benchmarks/train_hopper_behaviour.py`` trains them with stable-baselines3 SAC, or PPO) is
stored as weights and normalisation statistics, and runs here without its training library::

    z   = clip((obs[..., obs_indices] - obs_mean) / sqrt(obs_var + eps), -clip_obs, clip_obs)
    h_k = activation(W_k h_{k-1} + b_k)        (k = 1 .. L-1, h_0 = z)
    y   = W_L h_{L-1} + b_L                                    (the Gaussian policy's mean: deterministic)
    a   = clip(y, act_low, act_high)                            (squash=False, e.g. PPO)
    a   = act_low + (tanh(y) + 1) / 2 * (act_high - act_low)    (squash=True, e.g. SAC's tanh-Gaussian)

Saved with :func:`mbrl.common.save_state`: ``tensors.safetensors`` (``w0, b0, ..., obs_mean, obs_var,
act_low, act_high``) and ``meta.json`` (indices, clip, activation, and whatever the trainer recorded: seed,
command, training curve, evaluation). Nothing is unpickled on load.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mbrl.common import ActionBox, as_tensor, check_int, load_state, make_generator, save_state

__all__ = ["MLPPolicy", "PolicyController"]

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class MLPPolicy(torch.nn.Module):
    """A deterministic MLP policy ``forward(obs[..., O]) -> act[..., A]`` (module docstring).

    Args:
        weights: ``[(W_1, b_1), ..., (W_L, b_L)]``, ``W_k`` of shape ``[out, in]`` (torch ``Linear`` layout).
        obs_mean, obs_var: ``[len(obs_indices)]`` normalisation statistics (``obs_var >= 0``).
        obs_dim: size ``O`` of the observations the policy is called with.
        obs_indices: which of the ``O`` entries the network reads (default all), e.g. ``range(1, 12)`` to drop
            Hopper's x, which the task's observations keep and a policy must not depend on.
        act_low, act_high: the action box; the output is clipped to it.
        activation: ``"relu"`` or ``"tanh"``. ``clip_obs``, ``eps``: of the normalisation.
        squash: map the last layer through ``tanh`` into the box (SAC's policies) instead of clipping.
        meta: JSON-serialisable record kept with the weights (seed, command, curve, evaluation).
    """

    def __init__(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor]], obs_mean, obs_var, obs_dim: int,
                 act_low, act_high, obs_indices: Sequence[int] | None = None, activation: str = "relu",
                 clip_obs: float = 10.0, eps: float = 1e-8, squash: bool = False, meta: dict | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.obs_dim = check_int("obs_dim", obs_dim, low=1)
        idx = list(range(self.obs_dim)) if obs_indices is None else [int(i) for i in obs_indices]
        if not idx or min(idx) < 0 or max(idx) >= self.obs_dim:
            raise ValueError(f"obs_indices must be non-empty indices into obs_dim={self.obs_dim}, got {idx}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not (math.isfinite(clip_obs) and clip_obs > 0 and math.isfinite(eps) and eps > 0):
            raise ValueError(f"clip_obs and eps must be finite and > 0, got {clip_obs!r}, {eps!r}")
        if len(weights) < 1:
            raise ValueError("weights must hold at least one (W, b) layer")
        self.box = ActionBox(act_low, act_high)
        self.act_dim = self.box.act_dim
        self.obs_indices, self.activation, self.clip_obs, self.eps = idx, activation, float(clip_obs), float(eps)
        self.squash = bool(squash)
        self.meta = dict(meta or {})
        self.layers = torch.nn.ModuleList()
        width = len(idx)
        for k, (w, b) in enumerate(weights):
            w = as_tensor(f"weights[{k}][0]", w, dtype=torch.float32)
            b = as_tensor(f"weights[{k}][1]", b, dtype=torch.float32)
            if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
                raise ValueError(f"weights[{k}] must be W [out, {width}] and b [out], got {tuple(w.shape)}, "
                                 f"{tuple(b.shape)}")
            layer = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(b)
            self.layers.append(layer)
            width = w.shape[0]
        if width != self.act_dim:
            raise ValueError(f"the last layer gives {width} outputs but the action box has {self.act_dim}")
        mean = as_tensor("obs_mean", obs_mean, dtype=torch.float32).reshape(-1)
        var = as_tensor("obs_var", obs_var, dtype=torch.float32).reshape(-1)
        if mean.shape != (len(idx),) or var.shape != (len(idx),) or bool((var < 0).any()):
            raise ValueError(f"obs_mean and obs_var must have {len(idx)} entries (obs_var >= 0)")
        self.register_buffer("obs_mean", mean)
        self.register_buffer("obs_scale", torch.sqrt(var + self.eps))
        self.register_buffer("_idx", torch.tensor(idx, dtype=torch.long))
        self.register_buffer("act_low", self.box.low.float())
        self.register_buffer("act_high", self.box.high.float())
        self.requires_grad_(False)
        self.to(device or "cpu")

    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs [..., O] -> act [..., A]`` (float32, inside the action box). No validation: the fast path."""
        z = ((obs.to(self.obs_mean.dtype).index_select(-1, self._idx) - self.obs_mean) / self.obs_scale)
        h = z.clamp(-self.clip_obs, self.clip_obs)
        act = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        y = self.layers[-1](h)
        if self.squash:
            return self.act_low + (torch.tanh(y) + 1) * 0.5 * (self.act_high - self.act_low)
        return torch.maximum(torch.minimum(y, self.act_high), self.act_low)

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        """Validated numpy call ``obs [O] or [B, O] -> act [A] or [B, A]`` (float32); the Controller contract."""
        o = as_tensor("obs", obs, dtype=torch.float32, device=self.device)
        if o.ndim not in (1, 2) or o.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have shape [{self.obs_dim}] or [B, {self.obs_dim}], got {tuple(o.shape)}")
        if not bool(torch.isfinite(o).all()):
            raise ValueError("obs must be finite (got NaN or inf)")
        return self(o).cpu().numpy()

    def controller(self, noise: float = 0.0, seed: int | None = 0) -> PolicyController:
        """This policy with Gaussian action noise ``N(0, noise^2)`` (clipped to the box) as a Controller."""
        return PolicyController(self, noise=noise, seed=seed)

    # -- saving ---------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write ``path/`` (safetensors weights and normalisation, JSON metadata)."""
        tensors = {f"w{k}": layer.weight for k, layer in enumerate(self.layers)}
        tensors |= {f"b{k}": layer.bias for k, layer in enumerate(self.layers)}
        tensors |= {"obs_mean": self.obs_mean, "obs_var": self.obs_scale.square() - self.eps,
                    "act_low": self.act_low, "act_high": self.act_high}
        meta = {"format": "mlp_policy/1", "layers": len(self.layers), "obs_dim": self.obs_dim,
                "obs_indices": self.obs_indices, "activation": self.activation, "clip_obs": self.clip_obs,
                "eps": self.eps, "squash": self.squash, "meta": self.meta}
        return save_state(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> MLPPolicy:
        tensors, meta = load_state(path)
        if meta.get("format") != "mlp_policy/1":
            raise ValueError(f"{path} is not an MLPPolicy checkpoint (format {meta.get('format')!r})")
        n = int(meta["layers"])
        missing = [k for k in [f"w{i}" for i in range(n)] + [f"b{i}" for i in range(n)] if k not in tensors]
        if missing:
            raise ValueError(f"{path}: the checkpoint lacks tensors {missing}")
        return cls([(tensors[f"w{i}"], tensors[f"b{i}"]) for i in range(n)], tensors["obs_mean"],
                   tensors["obs_var"].clamp_min(0), meta["obs_dim"], tensors["act_low"], tensors["act_high"],
                   obs_indices=meta["obs_indices"], activation=meta["activation"], clip_obs=meta["clip_obs"],
                   eps=meta["eps"], squash=bool(meta.get("squash", False)), meta=meta.get("meta", {}),
                   device=device)


class PolicyController:
    """An :class:`MLPPolicy` (anything with ``act(obs) -> numpy`` and an ``ActionBox`` ``box``) plus seeded
    Gaussian action noise, clipped to the box, as a :class:`~mbrl.contracts.Controller`:
    ``act(obs[O]) -> act[A]`` (numpy float32)."""

    def __init__(self, policy: MLPPolicy, noise: float = 0.0, seed: int | None = 0) -> None:
        noise = float(noise)
        if not math.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.policy, self.noise = policy, noise
        self._gen = make_generator(seed)

    def reset(self) -> None:
        """Nothing to reset (the policy is memoryless); kept for the Controller contract."""

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        a = torch.as_tensor(self.policy.act(obs))
        if self.noise > 0:
            a = self.policy.box.project(a + self.noise * torch.randn(a.shape, generator=self._gen))
        return a.numpy().astype(np.float32)

    __call__ = act
