"""Input validation that raises ``ValueError`` naming the offending argument.

Every public entry point of ``mbrl`` and ``safe_density`` funnels its tensors through these helpers so
that bad input (wrong shapes, NaN/inf, empty data, thresholds out of range) fails early and clearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_tensor", "check_finite", "check_int", "check_shape", "check_threshold"]


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
        dtype: target floating dtype (default: ``x``'s own floating dtype, else float32); a non-floating
            ``dtype`` raises ``ValueError`` (casting would silently turn NaN into an integer).
        device: target device (default: ``x``'s own, else CPU).
        finite: reject NaN and +-inf.
        min_ndim: minimum number of dimensions.
        last_dim: required size of the last dimension.
        nonempty: reject tensors with zero elements.
    Raises:
        ValueError: naming ``name`` when any check fails (including a finite ``x`` that overflows ``dtype``).
        TypeError: when ``x`` is not numeric.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype for {name} must be a floating torch.dtype, got {dtype!r}")
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - numpy raises many types
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        t = torch.from_numpy(np.array(arr, order="C", copy=True))
    if t.is_complex():
        raise TypeError(f"{name} must be real, got {t.dtype}")
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    if finite and t.is_floating_point():
        check_finite(name, t)  # before the cast, so that the message can tell NaN/inf from overflow
    src_finite = finite and t.dtype != dtype
    t = t.to(device=device if device is not None else t.device, dtype=dtype)
    if t.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if last_dim is not None and (t.ndim == 0 or t.shape[-1] != last_dim):
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(t.shape)}")
    if nonempty and t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    if src_finite and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} overflows {dtype}: its finite values do not fit in this dtype")
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
    except OverflowError:  # an int beyond float range
        v = math.inf if value > 0 else -math.inf
    except Exception as exc:  # TypeError, ValueError, RuntimeError (multi-element tensors), ...
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    ok = (low <= v <= high) if inclusive else (low < v < high)
    if not ok:
        br = "[]" if inclusive else "()"
        raise ValueError(f"{name} must lie in {br[0]}{low}, {high}{br[1]}, got {v}")
    return v


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Validate an integer argument (Python/NumPy/one-element tensor integer, or an integral float).

    The value must also lie in ``[low, high]`` (``None``: unbounded).

    Raises ``ValueError`` naming ``name`` for booleans, non-integral, NaN/inf or out-of-range values.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = value.item()
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    else:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {v}")
    return v
