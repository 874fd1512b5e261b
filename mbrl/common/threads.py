"""Thread counts per workload: small fits run at one thread unless the user chose a count.

Measured on this project's 2-core machine (issue 20; `docs/design.md`, "Decisions since the start"): fitting the
PETS ensemble (5 x 200^4, 2,000 transitions, 5 epochs) took 3.4 s at 1 thread and 4.7 s at 2 on a quiet machine,
6.5 s and 16.4 s with one other busy process; an LDM fit (300 steps) 8.5 / 11.7 s quiet and 16.5 / 44.2 s busy.
Small networks and batches spend their time in per-op overhead and thread hand-offs, not in arithmetic, and a
second thread that waits for a descheduled partner makes every parallel region slow. So the library's fits
(:func:`mbrl.models.training.fit_ensemble`, ``LyapunovDensityModel.fit``, ``DensityBase.fit``, ``MuralReward.update``)
run inside :func:`fit_threads`, which sets one thread for their duration and puts the previous count back.

The user's choice wins: when ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) is set, or ``torch.set_num_threads`` was
called with a count other than torch's own default, :func:`fit_threads` changes nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["FIT_THREADS", "fit_threads", "user_chose_threads"]

#: the thread count of the library's fits when the user chose none
FIT_THREADS = 1
_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_TORCH_DEFAULT = torch.get_num_threads()   # torch's own choice, read before anyone could change it


def user_chose_threads() -> bool:
    """True when the user set a thread count: an environment variable, or ``torch.set_num_threads`` with a value
    other than torch's default."""
    return any(os.environ.get(k) for k in _ENV) or torch.get_num_threads() != _TORCH_DEFAULT


@contextlib.contextmanager
def fit_threads() -> Iterator[None]:
    """Run the block at :data:`FIT_THREADS` threads unless the user chose a count (module docstring); the previous
    count is restored afterwards, also on an exception. Nesting is harmless."""
    if user_chose_threads() or torch.get_num_threads() == FIT_THREADS:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(FIT_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)
