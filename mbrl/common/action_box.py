"""The action box ``[low, high]``: validated once, then projected onto and sampled from without checks.

Every part that needs action bounds (tasks, :class:`~mbrl.agent.MPCAgent`, the trajectory optimisers, the
LDM and its controller wrapper, the CLI) builds an :class:`ActionBox` or accepts one, so that there is one
rule for bounds: finite, ``low <= high`` element-wise (a pinned dimension with ``low == high`` is allowed;
sampling and projection then return that value). Projection and sampling are hot-path methods: batched
tensor code that does no validation and no host sync (the rule in :mod:`mbrl.contracts`).
"""

from __future__ import annotations

import numpy as np
import torch

from mbrl.common.validation import as_tensor

__all__ = ["ActionBox", "check_bounds"]


def check_bounds(low, high, *, names: tuple[str, str] = ("low", "high"), dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of bounds of any broadcastable shapes (the one bounds rule).

    Args:
        low, high: tensors, arrays or scalars; finite, broadcastable to each other, ``low <= high``.
        names: the argument names used in error messages.
    Returns:
        ``(low, high)`` as ``dtype`` tensors on ``device`` (``high`` on ``low``'s device), shapes unchanged.
    Raises:
        ValueError: naming the argument (``None``, NaN/inf, shapes that do not broadcast, ``low > high``).
    """
    for name, b in zip(names, (low, high)):
        if b is None:
            raise ValueError(f"{names[0]} and {names[1]} must both be given (action bounds), got {name}=None")
    lo = as_tensor(names[0], low, dtype=dtype, device=device)
    hi = as_tensor(names[1], high, dtype=dtype, device=lo.device)
    try:
        torch.broadcast_shapes(lo.shape, hi.shape)
    except RuntimeError as exc:
        raise ValueError(f"{names[0]} {tuple(lo.shape)} and {names[1]} {tuple(hi.shape)} must broadcast") from exc
    if bool((lo > hi).any()):
        raise ValueError(f"{names[0]} must be <= {names[1]} element-wise, got {names[0]}={lo.tolist()}, "
                         f"{names[1]}={hi.tolist()}")
    return lo, hi


class ActionBox:
    """An axis-aligned box of ``act_dim`` actions.

    Args:
        low, high: ``[A]`` bounds (tensors, arrays or lists), or an existing :class:`ActionBox` as ``low`` with
            ``high=None`` (moved to ``device``/``dtype`` without re-validation).
        act_dim: the required ``A`` (default: ``len(low)``).
        names: argument names for error messages (e.g. ``("--action-low", "--action-high")`` in the CLI).
    Attributes:
        low, high: ``[A]`` tensors; ``act_dim``; ``width = high - low``; ``center``.
    """

    __slots__ = ("high", "low")

    def __init__(self, low, high=None, act_dim: int | None = None, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32, names: tuple[str, str] = ("action_low", "action_high")):
        if isinstance(low, ActionBox) and high is None:
            lo = low.low.to(device=device or low.low.device, dtype=dtype)
            hi = low.high.to(device=lo.device, dtype=dtype)
        else:
            lo, hi = check_bounds(low, high, names=names, dtype=dtype, device=device)
            for name, b in zip(names, (lo, hi)):
                if b.ndim > 1:
                    raise ValueError(f"{name} must be a scalar or have shape (A,) (one bound per action "
                                     f"dimension, the same at every step), got shape {tuple(b.shape)}")
            lo, hi = lo.reshape(-1), hi.reshape(-1)
        want = lo.shape[0] if act_dim is None else int(act_dim)
        for name, b in zip(names, (lo, hi)):
            if want == 0 or b.shape[0] == 0:
                raise ValueError(f"{name} must have at least one entry (one bound per action dimension), got none")
            if b.shape != (want,):
                raise ValueError(f"{name} must have shape ({want},) (one bound per action dimension), "
                                 f"got {tuple(b.shape)}")
        if not bool(torch.isfinite(hi - lo).all()):
            raise ValueError(f"{names[1]} - {names[0]} overflows {dtype}: the box is too wide to sample from")
        # own copies: a caller who later edits its tensors cannot break low <= high behind the box's back
        self.low, self.high = lo.clone(), hi.clone()

    # ------------------------------------------------------------------ properties
    @property
    def act_dim(self) -> int:
        return int(self.low.shape[0])

    @property
    def width(self) -> torch.Tensor:
        return self.high - self.low

    @property
    def center(self) -> torch.Tensor:
        return (self.low + self.high) / 2

    @property
    def device(self) -> torch.device:
        return self.low.device

    @property
    def dtype(self) -> torch.dtype:
        return self.low.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ActionBox:
        """The same box on another device / dtype (no re-validation); ``self`` when nothing changes."""
        same_device = device is None or torch.device(device) == self.device
        if same_device and (dtype is None or dtype == self.dtype):
            return self
        return ActionBox(self, None, device=device, dtype=dtype or self.dtype)

    def broadcast(self, act_dim: int) -> ActionBox:
        """This box for ``act_dim`` actions: ``self`` when it has ``act_dim`` entries, a one-entry box (scalar
        bounds) repeated; ``ValueError`` naming ``low``/``high`` otherwise."""
        if self.act_dim == act_dim:
            return self
        if self.act_dim != 1:
            raise ValueError(f"low/high (action bounds) have {self.act_dim} entries but the actions have "
                             f"{act_dim} dimensions")
        return ActionBox(self.low.expand(act_dim), self.high.expand(act_dim), act_dim, device=self.device,
                         dtype=self.dtype)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` as float32 NumPy arrays ``[A]``."""
        return (self.low.detach().cpu().float().numpy().copy(), self.high.detach().cpu().float().numpy().copy())

    # ------------------------------------------------------------------ hot path: no validation, no host sync
    def project(self, a: torch.Tensor) -> torch.Tensor:
        """Clip ``a[..., A]`` into the box (the Euclidean projection onto a box). NaN stays NaN."""
        return torch.minimum(torch.maximum(a, self.low), self.high)

    def sample(self, *shape: int, generator: torch.Generator | np.random.Generator | None = None):
        """``[*shape, A]`` actions uniform in the box, drawn from ``generator``: a ``torch.Generator`` (on the
        box's device) gives a tensor in the box's dtype; a NumPy ``Generator`` gives a float32 array (for
        gymnasium loops, e.g. PETS's random warm-up)."""
        if isinstance(generator, np.random.Generator):
            lo, hi = self.numpy()
            return generator.uniform(lo, hi, size=(*shape, self.act_dim)).astype(np.float32)
        u = torch.rand(*shape, self.act_dim, generator=generator, device=self.device, dtype=self.dtype)
        return self.low + u * self.width

    def contains(self, a: torch.Tensor, slack: float = 0.0) -> torch.Tensor:
        """``[...]`` bool: ``a[..., A]`` lies in the box widened by ``slack`` times its width on every side."""
        pad = slack * self.width
        return ((a >= self.low - pad) & (a <= self.high + pad)).all(dim=-1)

    def __repr__(self) -> str:
        return f"ActionBox(low={self.low.tolist()}, high={self.high.tolist()})"
