"""Input validation that raises ``ValueError`` naming the offending argument.

Every public entry point of ``mbrl`` and ``safe_density`` funnels its tensors through these helpers so
that bad input (wrong shapes, NaN/inf, empty data, thresholds out of range) fails early and clearly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["INT_MAX", "as_flags", "as_tensor", "check_finite", "check_int", "check_shape", "check_threshold"]


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
    detach: bool = False,
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
        detach: return a tensor outside autograd (for data that is stored, e.g. in a replay buffer: a stored
            tensor that requires grad would keep its whole graph alive).
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
    if detach:
        t = t.detach()
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


def as_flags(name: str, x, n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean flags ``[n]`` (e.g. ``terminated``) as ``torch.bool``; a scalar is broadcast to ``[n]``.

    Accepts booleans and the numbers 0 and 1 (any numeric dtype). Anything else, e.g. ``2`` (which a plain
    ``bool(...)`` would read as True), ``0.5``, NaN or a wrong shape, raises ``ValueError`` naming ``name``;
    non-numeric input raises ``TypeError``.
    """
    if x is None:
        raise TypeError(f"{name} must be boolean flags, got None")
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be array-like boolean flags, got {type(x).__name__}") from exc
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)) or np.iscomplexobj(arr):
            raise TypeError(f"{name} must be boolean flags, got dtype {arr.dtype}")
        t = torch.from_numpy(np.array(arr, order="C", copy=True))
    if t.is_complex():
        raise TypeError(f"{name} must be boolean flags, got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.reshape(1).expand(n)
    if t.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    if t.dtype != torch.bool and t.numel() and not bool(((t == 0) | (t == 1)).all()):
        bad = t[~((t == 0) | (t == 1))][0].item()
        raise ValueError(f"{name} must hold booleans (True/False or 0/1), got {bad!r}")
    return t.to(device=device if device is not None else t.device, dtype=torch.bool)


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
    name: str,
    value,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    inclusive: bool = True,
    allow_inf: bool = False,
) -> float:
    """Validate a real scalar (threshold / hyper-parameter): not NaN, finite, and in range.

    Args:
        name: argument name used in error messages.
        value: a Python/NumPy real number or a one-element tensor (``bool`` is rejected).
        low, high: the allowed range; an infinite bound only means "unbounded on that side".
        inclusive: ``[low, high]`` when True, ``(low, high)`` otherwise.
        allow_inf: accept ``+-inf`` (still subject to the range). Off by default: an infinite threshold
            switches a constraint off (``+inf``) or makes everything infeasible (``-inf``) without a word.
    Raises:
        ValueError: naming ``name`` for non-numbers, NaN, infinities (unless ``allow_inf``) and values out
            of range.
    """
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{name} must be a real number, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().reshape(()).item()
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range
        v = math.inf if value > 0 else -math.inf
    except Exception as exc:  # TypeError, ValueError, RuntimeError (multi-element tensors), ...
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {v}")
    ok = (low <= v <= high) if inclusive else (low < v < high)
    if not ok:
        br = "[]" if inclusive else "()"
        raise ValueError(f"{name} must lie in {br[0]}{low}, {high}{br[1]}, got {v}")
    return v


#: The upper bound for sizes and loop counts in :func:`check_int`: above the int32 range they cannot be meant
#: (``iterations=10**30`` would otherwise run practically forever).
INT_MAX = 2**31 - 1


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Validate an integer argument: the one integer rule of ``mbrl`` and ``safe_density``.

    Accepted: Python ``int``, NumPy integers (``np.int64(5)``, 0-d integer arrays) and one-element integer
    tensors. Rejected with ``ValueError`` naming ``name``: ``bool``, every float (``2.7`` would otherwise be
    truncated to 2, and ``2.0`` is rejected too so that the rule is simple), NaN/inf, strings, ``None`` and
    values outside ``[low, high]`` (``None``: unbounded on that side). Sizes and loop counts pass
    ``high=INT_MAX``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex() or value.is_floating_point():
            raise ValueError(f"{name} must be an integer, got {_describe(value)}")
        value = value.detach().reshape(()).item()
    elif isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.integer):
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {_describe(value)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {v}")
    return v


def _describe(value) -> str:
    """``repr`` plus a hint for floats (the commonest mistake: ``epochs=2.7`` or ``steps=1e4``)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "NaN"
        if math.isfinite(value) and float(value).is_integer():
            return f"{text} (a float: pass int({text}))"
        return f"{text} (a float)"
    return text
