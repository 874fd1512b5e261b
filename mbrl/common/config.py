"""Configuration as frozen dataclasses with defaults stated once: :func:`with_overrides` is how a constructor
takes "a config plus overrides" (``LyapunovDensityModel(..., config=LDMConfig(), steps=500)``) instead of repeating
every default as a keyword."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import TypeVar

__all__ = ["with_overrides"]

C = TypeVar("C")


def with_overrides(cls: type[C], config: C | None = None, **overrides) -> C:
    """``config`` (default: ``cls()``, the published defaults) with some fields replaced.

    Raises ``ValueError`` naming ``config`` when it is not a ``cls``, or naming the unknown option(s) and listing
    the fields. Field values are validated by the dataclass's own ``__post_init__``."""
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")  # pragma: no cover - programming error
    base = cls() if config is None else config
    if not isinstance(base, cls):
        raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; its fields are {names}")
    return replace(base, **overrides) if overrides else base
