import importlib.util

import pytest

from mbrl.sweep import grid_points, merge_table, run_grid


def _fn(seed, threshold, scale=1.0):
    return {"score": scale * (seed + 10 * threshold)}


def test_grid_order_and_merge():
    rows = run_grid(_fn, {"threshold": [1.0, 2.0], "seed": [0, 1, 2]}, progress=False, scale=2.0)
    assert [(r["threshold"], r["seed"]) for r in rows] == [(t, s) for t in (1.0, 2.0) for s in (0, 1, 2)]
    assert rows[4]["score"] == 2.0 * (1 + 20)
    table = merge_table(rows, by=["threshold"], metrics=["score"])
    assert [t["threshold"] for t in table] == [1.0, 2.0]
    assert table[0]["score_mean"] == pytest.approx(2.0 * (1 + 10))
    assert table[0]["n"] == 3 and table[0]["score_std"] == pytest.approx(2.0)


def test_bad_grid():
    with pytest.raises(ValueError, match="grid"):
        grid_points({})
    with pytest.raises(ValueError, match="seed"):
        grid_points({"seed": []})
    with pytest.raises(ValueError, match="backend"):
        run_grid(_fn, {"seed": [0], "threshold": [1]}, backend="mpi")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (extra 'sweep')")
def test_ray_matches_serial():
    def fn(seed, threshold):  # a closure: Ray ships it by value (the test module is not importable)
        return {"score": seed + 10 * threshold}

    grid = {"seed": [0, 1], "threshold": [0.5]}
    try:
        got = run_grid(fn, grid, backend="ray", progress=False, num_cpus_per_task=0.5)
    finally:
        import ray

        ray.shutdown()
    assert got == run_grid(fn, grid, progress=False)
