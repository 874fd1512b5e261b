"""Input validation that raises ``ValueError`` naming the offending argument.

Every public entry point of ``mbrl`` and ``safe_density`` funnels its tensors through these helpers so
that bad input (wrong shapes, NaN/inf, empty data, thresholds out of range) fails early and clearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_tensor", "check_finite", "check_shape", "check_threshold"]


def as_tensor(
    name: str,
    x,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    finite: bool = True,
    min_ndim: int = 0,
    last_dim: int | None = None,
    nonempty: bool = False,
) -> torch.Tensor:
    """Convert ``x`` (tensor, array, list, scalar) to a floating tensor and validate it.

    Args:
        name: argument name used in error messages.
        dtype: target floating dtype (default: ``x``'s own floating dtype, else float32).
        device: target device (default: ``x``'s own, else CPU).
        finite: reject NaN and +-inf.
        min_ndim: minimum number of dimensions.
        last_dim: required size of the last dimension.
        nonempty: reject tensors with zero elements.
    Raises:
        ValueError: naming ``name`` when any check fails.
        TypeError: when ``x`` is not numeric.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy raises many types
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real, got {t.dtype}")
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if last_dim is not None and (t.ndim == 0 or t.shape[-1] != last_dim):
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(t.shape)}")
    if nonempty and t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    if finite:
        check_finite(name, t)
    return t


def check_finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``t`` holds NaN or infinity."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_shape(name: str, t: torch.Tensor, shape: Sequence[int | None]) -> torch.Tensor:
    """Check ``t.shape`` against ``shape`` where ``None`` matches any size."""
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def check_threshold(
    name: str, value, *, low: float = -math.inf, high: float = math.inf, inclusive: bool = True
) -> float:
    """Validate a scalar threshold/hyper-parameter: finite (unless a bound is infinite) and in range."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    ok = (low <= v <= high) if inclusive else (low < v < high)
    if not ok:
        br = "[]" if inclusive else "()"
        raise ValueError(f"{name} must lie in {br[0]}{low}, {high}{br[1]}, got {v}")
    return v
