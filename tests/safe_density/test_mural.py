"""Tests for safe_density.mural: CNML shape, batched == naive, fast meta-NML == naive, agreement."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
CNML_CFG = CNMLConfig(steps=100, lr=1e-2)


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
    rcad = pytest.importorskip("safe_density.rcad")
    p = problem
    a = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2,
                         regularizer=rcad.RCAD(step_size=0.5, weight=0.2))
    b = train_classifier(p["model"], p["params"], p["x"], p["y"], steps=5, lr=1e-2)
    assert all(torch.isfinite(v).all() for v in a.values())
    assert any(not torch.allclose(a[k], b[k]) for k in a)
