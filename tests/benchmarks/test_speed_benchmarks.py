"""The speed benchmarks run end to end at small sizes (their figures come from full runs, not from tests)."""

from __future__ import annotations

import json

from benchmarks import fit_speed, planner_speed


def test_planner_speed_times_the_plugins_against_the_plain_planner(tmp_path):
    res = planner_speed.main(["--quick", "--device", "cpu", "--rounds", "1", "--out", str(tmp_path),
                              "--modes", "fp32", "fp32+disagreement", "fp32+mural"])
    wall = res["clocks"]["wall"]
    assert all(res["finite_and_in_bounds"].values())
    assert wall["fp32+disagreement"]["x_plain"] > 0 and wall["fp32+mural"]["x_plain"] > 0
    assert "x_plain" not in wall["fp32"]
    assert json.loads((tmp_path / "planner_speed.json").read_text())["config"]["population"] == 100
    assert (tmp_path / "planner_speed.png").stat().st_size > 0


def test_fit_speed_runs_without_the_anchor(tmp_path):
    res = fit_speed.main(["--transitions", "200", "--epochs", "1", "--rounds", "1", "--no-anchor",
                          "--out", str(tmp_path)])
    assert set(res["summary"]) == {"ours"} and res["summary"]["ours"]["seconds"] > 0
    assert res["rounds"]["ours"][0]["val_mse"] > 0
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())
