"""Tests for safe_density.mural: CNML shape, batched == naive, fast meta-NML == naive, agreement."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.mural_reward_shape import shape_problem
from safe_density.mural import (
    CNMLConfig,
    MetaNMLConfig,
    MuralConfig,
    MuralReward,
    MuralRewardWrapper,
    SuccessClassifier,
    balanced_weights,
    classifier_reward,
    cnml_batched,
    cnml_naive,
    meta_nml_fast,
    meta_nml_naive,
    meta_nml_vmap,
    meta_train,
    train_classifier,
)
from safe_density.mural.classifier import init_params

D64 = torch.float64
META_CFG = MetaNMLConfig(inner_lr=1.0, inner_query_weight=10.0, meta_lr=1e-2, meta_batch=16)
CNML_CFG = CNMLConfig(steps=100, lr=1e-2, prox=0.0)  # the unregularised budget these low-level tests were built on


def _data():
    g = torch.Generator().manual_seed(0)
    ex = torch.tensor([1.0, 1.0], dtype=D64) + 0.1 * torch.randn(10, 2, generator=g, dtype=D64)
    vis = torch.tensor([-1.0, -1.0], dtype=D64) + 0.4 * torch.randn(100, 2, generator=g, dtype=D64)
    x = torch.cat([ex, vis])
    y = torch.cat([torch.ones(10, dtype=D64), torch.zeros(100, dtype=D64)])
    return ex, vis, x, y, balanced_weights(y)


@pytest.fixture(scope="module")
def problem():
    ex, vis, x, y, c = _data()
    model = SuccessClassifier(2, (32, 32), "relu").double()
    params = train_classifier(model, init_params(model, 0, D64), x, y, weights=c, steps=300, lr=1e-2)
    return dict(ex=ex, vis=vis, x=x, y=y, c=c, model=model, params=params)


@pytest.fixture(scope="module")
def meta_params(problem):
    p = problem
    return meta_train(p["model"], p["params"], p["x"], p["y"], p["c"], steps=600, config=META_CFG, seed=0)


def test_cnml_reward_shape(problem):
    p = problem
    far = torch.tensor([[3.0, -3.0], [-3.0, 3.0], [-4.0, -4.0]], dtype=D64)
    q = torch.cat([p["ex"], p["vis"][:20], far])
    r = cnml_batched(p["model"], p["params"], p["x"], p["y"], p["c"], q, CNML_CFG)
    assert r[:10].min() > 0.7
    assert r[10:30].mean() < 0.3
    assert ((r[30:] > 0.3) & (r[30:] < 0.7)).all()
    # the plain classifier is over-confident far from the data (what CNML fixes)
    rc = classifier_reward(p["model"], p["params"], far)
    assert (rc < 0.3).any() or (rc > 0.7).any()


def test_cnml_batched_equals_naive(problem):
    p = problem
    q = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 2.0], [3.0, -3.0]], dtype=D64)
    cfg = CNMLConfig(steps=30, lr=1e-2, chunk_size=3)
    a = cnml_naive(p["model"], p["params"], p["x"], p["y"], p["c"], q, cfg)
    b = cnml_batched(p["model"], p["params"], p["x"], p["y"], p["c"], q, cfg)
    assert (a - b).abs().max() < 1e-5
    assert a.std() > 0.05  # not trivially constant


def test_fast_meta_nml_equals_naive(problem, meta_params):
    p = problem
    g = torch.Generator().manual_seed(1)
    q = 3 * torch.randn(15, 2, generator=g, dtype=D64)
    fast = meta_nml_fast(p["model"], meta_params, p["x"], p["y"], p["c"], q, META_CFG)
    naive = meta_nml_naive(p["model"], meta_params, p["x"], p["y"], p["c"], q, META_CFG)
    vm = meta_nml_vmap(p["model"], meta_params, p["x"], p["y"], p["c"], q, META_CFG)
    assert (fast - naive).abs().max() < 1e-5
    assert (vm - naive).abs().max() < 1e-5
    assert naive.std() > 0.05
    # k = 2 inner steps: the vmap path against the naive loop
    cfg2 = MetaNMLConfig(inner_lr=0.3, inner_steps=2, inner_query_weight=10.0)
    a = meta_nml_fast(p["model"], meta_params, p["x"], p["y"], p["c"], q[:5], cfg2)
    b = meta_nml_naive(p["model"], meta_params, p["x"], p["y"], p["c"], q[:5], cfg2)
    assert (a - b).abs().max() < 1e-5


def test_meta_nml_agrees_with_cnml(problem, meta_params):
    p = problem
    gx = torch.linspace(-2.5, 2.5, 9, dtype=D64)
    grid = torch.stack(torch.meshgrid(gx, gx, indexing="xy"), -1).reshape(-1, 2)
    rc = cnml_batched(p["model"], p["params"], p["x"], p["y"], p["c"], grid, CNML_CFG)
    rm = meta_nml_fast(p["model"], meta_params, p["x"], p["y"], p["c"], grid, META_CFG)
    corr = torch.corrcoef(torch.stack([rm, rc]))[0, 1]
    assert corr >= 0.8, float(corr)


class _Point2D(gym.Env):
    """Deterministic 2-D point: obs = position, action = displacement."""

    observation_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float64)
    action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.array([-1.0, -1.0])
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + np.asarray(action), -5, 5)
        return self.pos.copy(), -1.0, False, False, {}


def test_wrapper_rewards_equal_mural_reward():
    ex, *_ = _data()
    mr = MuralReward(ex, method="classifier", config=MuralConfig.small(classifier_steps=30), dtype=D64)
    env = MuralRewardWrapper(_Point2D(), mr, retrain_every=10)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    obs_l, rew_l = [], []
    for _ in range(25):
        obs, r, *_rest, info = env.step(rng.uniform(-0.5, 0.5, 2))
        obs_l.append(obs)
        rew_l.append(r)
        assert info["task_reward"] == -1.0
    assert mr.n_updates == 3  # reset + steps 10 and 20
    expected = mr(np.stack(obs_l[20:])).numpy()
    np.testing.assert_allclose(rew_l[20:], expected, atol=1e-12)
    # RewardShaper form: reward of next_obs
    o = torch.as_tensor(np.stack(obs_l[20:]))
    assert torch.allclose(mr(o, torch.zeros(5, 2), o), mr(o))
    assert mr.mode == "replace"


@pytest.fixture(scope="module")
def fitted_meta():
    ex, vis, *_ = _data()
    mr = MuralReward(ex, method="meta_nml", config=MuralConfig.small(meta_steps=20))
    return mr.update(vis, progress=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=1, max_size=8))
def test_outputs_in_unit_interval(fitted_meta, pts):
    r = fitted_meta(np.asarray(pts))
    assert r.shape == (len(pts),)
    assert torch.isfinite(r).all() and (r >= 0).all() and (r <= 1).all()


def test_batched_shapes_and_save_load(fitted_meta, tmp_path):
    s = torch.randn(3, 4, 2)
    r = fitted_meta(s)
    assert r.shape == (3, 4)
    fitted_meta.save(tmp_path / "mr")
    back = MuralReward.load(tmp_path / "mr")
    assert torch.allclose(back(s), r, atol=1e-6)


def test_bad_input_raises():
    ex, vis, *_ = _data()
    with pytest.raises(ValueError, match="success_examples"):
        MuralReward(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="success_examples"):
        MuralReward(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="method"):
        MuralReward(ex, method="bogus")
    mr = MuralReward(ex, method="classifier", config=MuralConfig.small(classifier_steps=5))
    with pytest.raises(ValueError, match="visited_states"):
        mr.update(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="visited_states"):
        mr.update(np.array([[0.0, np.inf]]))
    mr.update(vis, progress=False)
    with pytest.raises(ValueError, match="states"):
        mr(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="states"):
        mr(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="state_slice"):
        MuralReward(ex, state_slice=(1, 5))


def test_regularizer_hook_is_used(problem):
    p = problem

    class Counting:
        calls = 0

        def loss(self, model_fn, x, y):
            Counting.calls += 1
            out = model_fn(x)
            assert out.shape == (x.shape[0], 2) and y.dtype == torch.long
            return torch.nn.functional.cross_entropy(out, y) + 0.1 * out[:, 1].pow(2).mean()

    a = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2, regularizer=Counting())
    b = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2)
    assert Counting.calls == 5
    assert any(not torch.allclose(a[k], b[k]) for k in a)


def test_rcad_regularizer(problem):
    from safe_density import rcad
    p = problem
    a = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2,
                         regularizer=rcad.RCAD(step_size=0.5, weight=0.2))
    b = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2)
    assert all(torch.isfinite(v).all() for v in a.values())
    assert any(not torch.allclose(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- incremental updates (issue 10)
def _blob(center, sd, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(center, dtype=D64) + sd * torch.randn(n, 2, generator=g, dtype=D64)


@pytest.fixture(scope="module")
def incremental_meta():
    """First update on visits near (-1, -1), then two incremental updates on visits near (1, -1)."""
    ex = _blob([1.0, 1.0], 0.1, 20, 0)
    mr = MuralReward(ex, method="meta_nml", config=MuralConfig.small(meta_steps=300), dtype=D64)
    mr.update(_blob([-1.0, -1.0], 0.3, 200, 1), progress=False)
    first = mr.cache
    for k in range(2):
        mr.update(_blob([1.0, -1.0], 0.3, 100, 2 + k), progress=False)
    return mr, ex, first


def test_incremental_update_keeps_published_shape(incremental_meta):
    mr, ex, _ = incremental_meta
    assert mr.n_updates == 3 and mr.visited.shape == (400, 2)
    r_ex = mr.reward(ex)
    r_old = mr.reward(_blob([-1.0, -1.0], 0.3, 50, 9))
    r_new = mr.reward(_blob([1.0, -1.0], 0.3, 50, 10))
    assert r_ex.mean() > 0.7, float(r_ex.mean())
    assert r_old.mean() < 0.3 and r_new.mean() < 0.3, (float(r_old.mean()), float(r_new.mean()))
    far = torch.tensor([[-3.0, 3.0], [-1.5, 3.5]], dtype=D64)  # novel: far from the examples and the visits
    r_far = mr.reward(far)
    assert ((r_far > 0.25) & (r_far < 0.75)).all(), r_far


def test_incremental_budget_is_bounded(monkeypatch):
    import safe_density.mural.reward as reward_mod

    calls = []
    real = reward_mod.meta_train

    def spy(*a, steps, **kw):
        calls.append((steps, a[2].shape[0]))
        return real(*a, steps=steps, **kw)

    monkeypatch.setattr(reward_mod, "meta_train", spy)
    cfg = MuralConfig.small(classifier_steps=5, meta_steps=7, meta_steps_incremental=3, max_visited=50)
    mr = MuralReward(_blob([1.0, 1.0], 0.1, 5, 0), method="meta_nml", config=cfg)
    for k in range(3):
        mr.update(_blob([-1.0, -1.0], 0.3, 40, k), progress=False)
    prior = cfg.prior_points  # the uniform prior's points ride along (MURAL-2b)
    assert calls == [(7, 45 + prior), (3, 55 + prior), (3, 55 + prior)]  # history capped at max_visited (+ 5 examples)


def test_cache_refreshed_by_update_and_nothing_else(incremental_meta, monkeypatch):
    import safe_density.mural.reward as reward_mod

    mr, ex, first = incremental_meta
    assert mr.cache is not None and mr.cache is not first
    n = {"prepare": 0}
    real = reward_mod.meta_nml_prepare

    def counting(*a, **kw):
        n["prepare"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(reward_mod, "meta_nml_prepare", counting)
    cache = mr.cache
    s = torch.randn(7, 2, dtype=D64)
    a = mr.reward(s)
    b = mr(s)
    c = mr(s, torch.zeros(7, 2), s)
    assert n["prepare"] == 0 and mr.cache is cache
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    # the cache equals a fresh computation from the current parameters and data
    x, y, w = mr._data
    ref = meta_nml_fast(mr.model, mr.meta_params, x, y, w, mr._norm(s), mr.config.meta_nml)
    torch.testing.assert_close(a, ref.clamp(0, 1))
    mr2 = MuralReward(ex, method="meta_nml", config=MuralConfig.small(meta_steps=5, meta_steps_incremental=2),
                      dtype=D64)
    mr2.update(_blob([-1.0, -1.0], 0.3, 30, 1), progress=False)
    before = mr2.cache
    mr2.update(_blob([1.0, -1.0], 0.3, 30, 2), progress=False)
    assert n["prepare"] == 2 and mr2.cache is not before
    assert not torch.equal(before.adapted[0][0], mr2.cache.adapted[0][0])


def test_restandardisation_keeps_the_function():
    """An update that moves the feature statistics but trains 0 steps leaves the reward unchanged."""
    cfg = MuralConfig.small(classifier_steps=50, classifier_steps_incremental=0)
    mr = MuralReward(_blob([1.0, 1.0], 0.1, 10, 0), method="classifier", config=cfg, dtype=D64)
    mr.update(_blob([-1.0, -1.0], 0.3, 50, 1), progress=False)
    s = 2 * torch.randn(20, 2, dtype=D64)
    before, mu = mr.reward(s), mr.mu.clone()
    mr.update(_blob([4.0, -3.0], 2.0, 200, 2), progress=False)
    assert (mr.mu - mu).abs().max() > 0.5
    torch.testing.assert_close(mr.reward(s), before, atol=1e-12, rtol=0)


def test_hot_path_maps_nan_to_zero_without_validation(fitted_meta):
    s = torch.randn(4, 3, 2)
    s[1, 2] = float("nan")
    s[2, 0, 0] = float("inf")
    r = fitted_meta(s, torch.zeros(4, 3, 2), s)
    assert r.shape == (4, 3) and torch.isfinite(r).all() and (r >= 0).all() and (r <= 1).all()
    assert r[1, 2] == 0.0
    ok = torch.isfinite(s).all(-1)
    torch.testing.assert_close(r[ok], fitted_meta.reward(s[ok]))
    rb = fitted_meta(s.bfloat16(), None, s.bfloat16())  # other dtypes are cast, not rejected
    assert rb.dtype == torch.float32 and rb.shape == (4, 3)
    with pytest.raises(ValueError, match="states"):  # the public query validates
        fitted_meta.reward(s)


def test_presets():
    assert MuralConfig.published() == MuralConfig()
    assert MuralConfig.published().hidden == (2048, 2048)
    name, cfg = MuralConfig.for_device("cpu", 2)
    assert name == "small" and cfg == MuralConfig.small()
    assert MuralConfig.for_device("cpu", 6)[1].hidden == (64, 64)
    assert MuralConfig.for_device("cuda", 2)[0] == "published"
    mr = MuralReward(np.zeros((3, 2)))
    assert mr.preset == "small" and mr.config.hidden == (32, 32)
    with pytest.raises(ValueError, match="meta_steps_incremental"):
        MuralConfig(meta_steps_incremental=-1)


def test_checkpoint_metadata_must_match_tensors(fitted_meta, tmp_path):
    import json

    fitted_meta.save(tmp_path / "ok")
    MuralReward.load(tmp_path / "ok")

    def tampered(name, edit):
        import shutil

        shutil.copytree(tmp_path / "ok", tmp_path / name)
        meta_path = tmp_path / name / "meta.json"
        meta = json.loads(meta_path.read_text())
        edit(meta)
        meta_path.write_text(json.dumps(meta))
        return tmp_path / name

    cases = {
        "hidden": lambda m: m["config"].update(hidden=[16, 16]),
        "method": lambda m: m.update(method="classifier"),
        "updates": lambda m: m.update(n_updates=0),
        "dtype": lambda m: m.update(dtype="float64"),
        "slice": lambda m: m.update(state_slice=[0, 1]),
        "bogus": lambda m: m.update(method="bogus"),
    }
    for name, edit in cases.items():
        with pytest.raises(ValueError, match="path"):
            MuralReward.load(tampered(name, edit))


def test_wrapper_bad_inputs():
    ex, *_ = _data()
    mr = MuralReward(ex, method="classifier", config=MuralConfig.small(classifier_steps=5), dtype=D64)
    with pytest.raises(ValueError, match="retrain_every"):
        MuralRewardWrapper(_Point2D(), mr, retrain_every=0)
    with pytest.raises(ValueError, match="update_steps"):
        MuralRewardWrapper(_Point2D(), mr, update_steps=-3)
    with pytest.raises(ValueError, match="mural_reward"):
        MuralRewardWrapper(_Point2D(), object())
    mr3 = MuralReward(np.zeros((2, 3)), method="classifier", config=MuralConfig.small(classifier_steps=5))
    with pytest.raises(ValueError, match="env"):
        MuralRewardWrapper(_Point2D(), mr3)
    env = MuralRewardWrapper(_Point2D(), mr3, feature_fn=lambda o: o)  # maps 2 -> 2 entries, not 3
    with pytest.raises(ValueError, match="observation"):
        env.reset(seed=0)

    class _NaNEnv(_Point2D):
        def step(self, action):
            obs, *rest = super().step(action)
            return np.array([np.nan, 0.0]), *rest

    env = MuralRewardWrapper(_NaNEnv(), mr, retrain_every=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="observation"):
        env.step(np.zeros(2))


def test_wrapper_retrains_at_its_period():
    ex, *_ = _data()
    mr = MuralReward(ex, method="meta_nml", config=MuralConfig.small(classifier_steps=5, meta_steps=3,
                                                                     meta_steps_incremental=1), dtype=D64)
    env = MuralRewardWrapper(_Point2D(), mr, retrain_every=7)
    env.reset(seed=0)
    seen = []
    for t in range(1, 23):
        cache = mr.cache
        _, _, _, _, info = env.step(np.full(2, 0.1))
        seen.append((t, mr.n_updates, mr.cache is not cache))
        assert 0.0 <= info["shaped_reward"] <= 1.0
    assert [t for t, _, changed in seen if changed] == [7, 14, 21]
    assert mr.n_updates == 4 and env.n_retrains == 4 and mr.visited.shape == (1 + 21, 2)


def test_outer_batch_keeps_class_weights():
    """A meta-update's data batch smaller than the data keeps the total weight and the class balance (10 success
    examples among 1000 points: half the weight is on examples), and is the whole data when it fits."""
    from safe_density.mural.meta_nml import outer_batch

    y = torch.cat([torch.ones(10), torch.zeros(990)])
    x, c = torch.randn(1000, 2), balanced_weights(y)
    xb, yb, cb = outer_batch(x, y, c, 200, torch.Generator().manual_seed(0))
    assert xb.shape == (200, 2) and torch.isclose(cb.sum(), c.sum())
    share = float((cb * yb).sum() / cb.sum())
    assert 0.4 < share < 0.6, share  # a uniform draw gives ~1 %
    assert outer_batch(x, y, c, 1000, torch.Generator())[0] is x


# ---------------------------------------------------------------------- the defaults keep the CNML shape (issue 19)
@pytest.fixture(scope="module", params=["blob", "disc"])
def default_rewards(request):
    ex, vis, novel, grid = shape_problem(request.param)
    out = {m: MuralReward(ex, method=m).update(vis, progress=False) for m in ("cnml", "meta_nml")}
    return request.param, ex, vis, novel, grid, out


@pytest.mark.parametrize("method", ["cnml", "meta_nml"])
def test_default_reward_keeps_cnml_shape(default_rewards, method):
    """At ``MuralReward(success, method)`` defaults: high at the examples, low where the agent has been, about
    1/2 on novel states in every direction, beyond the examples and far away too (exact CNML first)."""
    kind, ex, vis, novel, _, out = default_rewards
    mr = out[method]
    assert float(mr(ex).mean()) >= 0.8, (kind, method)
    assert float(mr(vis[::5]).mean()) <= 0.2, (kind, method)   # every 5th visited state (CNML is slow)
    rn = mr(novel)
    assert float(rn.min()) >= 0.4 and float(rn.max()) <= 0.6, (kind, method, rn)


def test_default_meta_nml_agrees_with_exact_cnml(default_rewards):
    kind, *_, grid, out = default_rewards
    corr = np.corrcoef(out["meta_nml"](grid).numpy(), out["cnml"](grid).numpy())[0, 1]
    assert corr >= 0.9, (kind, corr)


def test_states_beyond_the_box_get_the_reward_of_its_edge(default_rewards):
    """``clip_to_box``: a state far outside the trained box gets the reward of its projection on the box."""
    *_, out = default_rewards
    mr = out["meta_nml"]
    x, *_ = mr.training_data
    lo, hi = x[:-mr.config.prior_points].min(0).values, x[:-mr.config.prior_points].max(0).values
    far = torch.tensor([[1e3, -1e3], [-50.0, 0.0]], dtype=torch.float32)
    f = mr.standardise(far)
    box_lo, box_hi = mr.feature_box
    edge = torch.maximum(torch.minimum(f, box_hi), box_lo)
    assert torch.all(edge <= hi + mr.config.meta_nml.box_margin * (hi - lo) + 1e-4)
    raw_edge = edge * mr.sd + mr.mu
    assert torch.allclose(mr(far), mr(raw_edge), atol=1e-5)
