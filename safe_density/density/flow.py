"""Normalising-flow density (``zuko`` NSF or MAF) trained by maximum likelihood (docs/design.md, "Contracts").

    log p_z(z) = log N(T(z); 0, I) + log |det dT/dz|

with ``T`` a neural spline flow (Durkan et al. 2019) or a masked autoregressive flow (Papamakarios et al.
2017) from ``zuko``, fitted by Adam on minibatches of standardised data (``safe_density.density.base``).

Regulariser hook: ``regularizer`` is any object with ``loss(model, z) -> scalar`` where ``model`` maps a
standardised batch ``z[B, D]`` to log-densities ``[B]``; the returned scalar is *added* to the mean
negative log-likelihood of each minibatch (e.g. an adversarial-unlearning term, docs/design.md "RCAD").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import zuko

from mbrl.common.seeding import make_generator
from mbrl.common.validation import check_threshold
from safe_density.density.base import DensityBase

__all__ = ["FlowDensity"]

_FLOWS = {"nsf": zuko.flows.NSF, "maf": zuko.flows.MAF}


class FlowDensity(DensityBase):
    """Neural spline / masked autoregressive flow density.

    Args:
        flow: ``"nsf"`` (default) or ``"maf"``.
        transforms: number of autoregressive transforms.
        hidden: hidden layer widths of each transform's conditioner.
        steps, batch_size, lr, weight_decay: Adam training schedule used by :meth:`fit`.
        regularizer: optional object with ``loss(model, z) -> scalar`` added to the NLL (module docstring).
        chunk_size: queries per batch in ``log_prob``.
        device, dtype, seed: placement and reproducibility (seed drives initialisation and minibatches).
    """

    def __init__(
        self,
        flow: str = "nsf",
        *,
        transforms: int = 3,
        hidden: Sequence[int] = (64, 64),
        steps: int = 2000,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        regularizer=None,
        chunk_size: int = 65536,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = 0,
    ) -> None:
        super().__init__(device=device, dtype=dtype, seed=seed)
        if flow not in _FLOWS:
            raise ValueError(f"flow must be one of {sorted(_FLOWS)}, got {flow!r}")
        for name, v in (
            ("transforms", transforms),
            ("steps", steps),
            ("batch_size", batch_size),
            ("chunk_size", chunk_size),
        ):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {hidden}")
        if regularizer is not None and not callable(getattr(regularizer, "loss", None)):
            raise ValueError("regularizer must have a callable .loss(model, z) method")
        self.flow_type = flow
        self.transforms = int(transforms)
        self.hidden = hidden
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.lr = check_threshold("lr", lr, low=0.0, high=math.inf, inclusive=False)
        self.weight_decay = check_threshold("weight_decay", weight_decay, low=0.0)
        self.regularizer = regularizer
        self.chunk_size = int(chunk_size)
        self.flow: torch.nn.Module | None = None
        self.history: list[float] = []

    def _build(self, dim: int) -> torch.nn.Module:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0 if self.seed is None else int(self.seed))
            flow = _FLOWS[self.flow_type](dim, 0, transforms=self.transforms, hidden_features=self.hidden)
        return flow.to(self.device, self.dtype)

    def _model_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised ``z[B, D]`` -> ``log p_z[B]`` (differentiable; used by the regulariser hook)."""
        return self.flow().log_prob(z)

    def _fit_standardised(
        self, z: torch.Tensor, *, steps: int | None = None, progress: bool = False, **kwargs
    ) -> None:
        if kwargs:
            raise TypeError(f"unexpected fit arguments {sorted(kwargs)}")
        steps = self.steps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.flow = self._build(z.shape[1])
        opt = torch.optim.Adam(self.flow.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        g = make_generator(self.seed, "cpu")
        bs = min(self.batch_size, z.shape[0])
        it = range(steps)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="flow fit", leave=False)
        self.history = []
        self.flow.train()
        for _ in it:
            idx = torch.randint(z.shape[0], (bs,), generator=g).to(z.device)
            batch = z[idx]
            loss = -self._model_log_prob(batch).mean()
            if self.regularizer is not None:
                loss = loss + self.regularizer.loss(self._model_log_prob, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.history.append(float(loss.detach()))
        self.flow.eval().requires_grad_(False)  # log_prob stays differentiable in x, not in the parameters

    def _log_prob_standardised(self, z: torch.Tensor) -> torch.Tensor:
        dist = self.flow()
        out = [dist.log_prob(z[i : i + self.chunk_size]) for i in range(0, z.shape[0], self.chunk_size)]
        return torch.cat(out) if out else z.new_zeros(0)

    # ------------------------------------------------------------------ persistence (DensityBase.save / load)
    @classmethod
    def _config_keys(cls) -> tuple[str, ...]:
        return ("flow", "transforms", "hidden", "steps", "batch_size", "lr", "weight_decay", "chunk_size")

    def _config(self) -> dict:
        return {"flow": self.flow_type, "transforms": self.transforms, "hidden": list(self.hidden),
                "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "chunk_size": self.chunk_size}

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"flow.{k}": v for k, v in self.flow.state_dict().items()}

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.flow = self._build(self.dim)
        self.flow.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("flow.")})
        self.flow.eval().requires_grad_(False)
