"""Run a function over a grid of settings, serially or through Ray, and merge the results into one table.

Benchmarks sweep seeds x thresholds (or x methods); each grid point is independent, so the same code
runs in a loop on a laptop or fans out over a Ray cluster:

    rows = run_grid(fn, {"seed": [0, 1, 2], "threshold": [1.0, 2.0]}, backend="ray", address="auto")

``fn(**point) -> dict`` must be importable by the workers (a module-level function). Every returned row
holds the grid point's settings and ``fn``'s results; rows come back in grid order whatever the backend.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

__all__ = ["grid_points", "merge_table", "run_grid"]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid`` as a list of dicts, in row-major order.

    ``grid`` maps argument names (identifiers) to non-empty sequences of values (lists, tuples, ranges or
    1-D NumPy arrays, whose entries become Python scalars).
    """
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid must be a non-empty mapping of name -> list of values")
    values = {}
    for k, v in grid.items():
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"grid keys must be argument names (identifiers), got {k!r}")
        if isinstance(v, np.ndarray) and v.ndim == 1:
            v = v.tolist()
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) == 0:
            raise ValueError(f"grid[{k!r}] must be a non-empty list of values")
        values[k] = v
    keys = list(values)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(values[k] for k in keys))]


def _row(fn, point: dict, fixed: dict) -> dict:
    out = fn(**point, **fixed)
    if not isinstance(out, Mapping):
        raise TypeError(f"fn must return a mapping of results, got {type(out).__name__} at {point}")
    return dict(out)


def run_grid(
    fn: Callable[..., Mapping[str, Any]],
    grid: Mapping[str, Sequence[Any]],
    backend: str = "serial",
    address: str | None = None,
    num_cpus_per_task: float = 1.0,
    num_gpus_per_task: float = 0.0,
    progress: bool = True,
    runtime_env: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> list[dict[str, Any]]:
    """Evaluate ``fn(**point, **fixed)`` at every grid point; return one merged row per point.

    Args:
        backend: ``"serial"`` (a loop in this process) or ``"ray"`` (one Ray task per point; a local
            Ray instance unless ``address`` names a cluster, e.g. ``"auto"`` or ``"ray://host:10001"``).
        num_cpus_per_task, num_gpus_per_task: Ray resources per grid point.
        runtime_env: Ray's runtime environment for the workers when this call starts Ray, e.g.
            ``{"env_vars": {"PYTHONPATH": folder}}`` so that they import ``fn``'s module from a folder that is
            not a package (a benchmark script).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    points = grid_points(grid)
    clash = sorted(set(points[0]) & set(fixed))
    if clash:
        raise ValueError(f"fixed arguments {clash} are also grid keys (grid): give each argument once")
    if backend not in ("serial", "ray"):
        raise ValueError(f"backend must be 'serial' or 'ray', got {backend!r}")
    if backend == "serial":
        results = [_row(fn, p, fixed) for p in tqdm(points, desc="sweep", disable=not progress)]
    else:  # "ray"
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ValueError(
                "backend='ray' needs the 'sweep' extra: pip install 'safe-density[sweep]'"
            ) from exc
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     runtime_env=dict(runtime_env) if runtime_env else None)
        remote = ray.remote(num_cpus=num_cpus_per_task, num_gpus=num_gpus_per_task)(fn)
        refs = [remote.remote(**p, **fixed) for p in points]
        results = []
        for ref, p in zip(tqdm(refs, desc="sweep (ray)", disable=not progress), points):
            out = ray.get(ref)
            if not isinstance(out, Mapping):
                raise TypeError(f"fn must return a mapping of results, got {type(out).__name__} at {p}")
            results.append(dict(out))
    return [{**p, **r} for p, r in zip(points, results)]


def merge_table(rows: Sequence[Mapping[str, Any]], by: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Group ``rows`` by the keys ``by`` and report mean, std and count of each metric (e.g. over seeds)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    table = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        for m in metrics:
            vals = np.asarray([float(r[m]) for r in rs if m in r], dtype=float)
            row[f"{m}_mean"] = float(vals.mean()) if vals.size else float("nan")
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        row["n"] = len(rs)
        table.append(row)
    return table
