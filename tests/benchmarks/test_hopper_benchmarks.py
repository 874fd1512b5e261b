"""The Hopper LDM benchmarks run end to end at tiny sizes, their grids through Ray's local processes (whose
workers import ``benchmarks.*`` from the repository root: ``benchmarks._common.ray_runtime_env``)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

pytest.importorskip("ray")   # the 'sweep' extra; `make test` installs it


@pytest.fixture(scope="module", autouse=True)
def _ray_shutdown():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_hopper_ldm_tiny_through_ray(tmp_path):
    hl = importlib.import_module("benchmarks.hopper_ldm")
    res = hl.main(["--preset", "tiny", "--out", str(tmp_path), "--no-overhead"])
    methods = {t["method"] for t in res["table"]}
    assert methods == {"none", "disagreement", "greedy", "ldm", "ldm-wrap"}
    s = hl.TINY
    n_rows = len(res["table"])
    assert len(res["rows"]) == n_rows * s.seeds * len(s.targets)
    for t in res["table"]:
        assert t["episodes"] == s.seeds * len(s.targets)
        assert 0 <= t["falls"] <= t["episodes"] and 0 <= t["reached"] <= t["episodes"]
    # the LDM and greedy rows share their c at each percentile of the data's energies (the authors' rule)
    for q, c_ldm, c_greedy in res["thresholds"].values():
        if q is not None:
            assert c_ldm == c_greedy
    saved = json.loads((tmp_path / "hopper_ldm.json").read_text())
    assert saved["data"]["source"] == "policies" and saved["data"]["transitions"] > 0
    assert (tmp_path / "hopper_ldm.png").stat().st_size > 0


def test_hopper_ldm_episode_stops_at_the_target():
    common = importlib.import_module("benchmarks._common")
    from mbrl.tasks import make_task

    class Still:
        def act(self, obs):
            return np.zeros(3, np.float32)

    task = make_task("Hopper-v5")

    class Fake:   # a model and LDM stand-in: only shapes matter here
        def predict(self, o, a, deterministic=True):
            import torch
            return torch.zeros(1, o.shape[0], 12)

        def value(self, o, a):
            import torch
            return torch.zeros(len(o))

        energy = value

    r = common.run_episode(task, Still(), Fake(), Fake(), target=0.0, steps=50, seed=0, reach_tol=0.2)
    assert r["reached"] and r["steps"] == 1 and not r["fell"]
    r = common.run_episode(task, Still(), Fake(), Fake(), target=5.0, steps=20, seed=0, reach_tol=0.2)
    assert not r["reached"] and r["steps"] == 20


def test_ldm_wrap_policy_tiny_through_ray(tmp_path):
    wp = importlib.import_module("benchmarks.ldm_wrap_policy")
    res = wp.main(["--preset", "tiny", "--out", str(tmp_path)])
    s = wp.TINY
    filters = wp.filters(s)
    assert len(filters) == 1 + 2 * len(s.quantiles) + 1
    assert len(res["rows"]) == len(s.cells) * len(filters) * s.episodes
    assert {t["method"] for t in res["table"]} == {"bare", "ldm-env-wrapper q0.9"} | {
        f"{m} q{q:g}" for m in ("ldm", "density") for q in s.quantiles}
    for t in res["table"]:
        assert 0 <= t["changed_fraction"] <= 1
        if t["method"] == "bare":
            assert t["changed_fraction"] == 0
    # the filter seen from the env's side (ActionWrapper) and the controller's side give the same episode
    by = {(r["cell"], r["method"], r["quantile"], r["seed"]): r for r in res["rows"]}
    for (cell, m, q, seed), r in by.items():
        if m == "ldm-env-wrapper":
            other = by[(cell, "ldm", q, seed)]
            assert other["distance"] == pytest.approx(r["distance"]) and other["fell"] == r["fell"]
            assert other["changed_fraction"] == pytest.approx(r["changed_fraction"])
    assert (tmp_path / "ldm_wrap_policy.png").stat().st_size > 0


def test_perturbed_env_changes_hoppers_own_parameters():
    common = importlib.import_module("benchmarks._common")
    from mbrl.tasks import make_task

    task = make_task("Hopper-v5")
    base = task.make_env().unwrapped.model
    env = common.perturbed_env(task, 1.5, 0.5)
    m = env.unwrapped.model
    assert m.body_mass[m.body("torso").id] == pytest.approx(1.5 * base.body_mass[base.body("torso").id])
    np.testing.assert_allclose(m.geom_friction[:, 0], 0.5 * base.geom_friction[:, 0])


def test_paper_preset_has_the_published_sizes():
    hl = importlib.import_module("benchmarks.hopper_ldm")
    common = importlib.import_module("benchmarks._common")
    from safe_density.density import FlowDensity

    p = hl.PAPER
    assert p.ldm.hidden == (1024, 1024) and p.ldm.n_critics == 2 and p.ldm.steps == 150_000
    assert p.ldm.batch_size == 1024 and p.ldm.lr == 1e-4 and p.ldm.tau == 0.005
    assert p.projection_samples == 5000 and p.episode_steps == 1000
    assert isinstance(common.make_density(p, 0, "cpu"), FlowDensity)
    assert hl.build_parser().parse_args(["--preset", "paper", "--device", "cuda"]).preset == "paper"
