"""``argparse`` types shared by the command lines (``python -m mbrl.train``, ``safe-density``): each parses one
option's text or raises ``argparse.ArgumentTypeError`` with a one-line reason, which argparse reports naming the
option."""

from __future__ import annotations

import argparse
import math

__all__ = ["device", "int_at_least", "real"]


def int_at_least(low: int):
    """An integer ``>= low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


def real(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False):
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if v < low or v > high or (low_open and v == low):
            raise argparse.ArgumentTypeError(f"must lie in {'(' if low_open else '['}{low}, {high}], got {v}")
        return v

    parse.__name__ = "number"
    return parse


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where it is available."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be 'cpu' or 'cuda' (or 'cuda:N'), got {text!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"must be 'cpu' or 'cuda' (or 'cuda:N'), got {text!r}")
    return text
