"""DensityConstrainedController and its gymnasium ActionWrapper (docs/design.md, LDM controller wrapper)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.common.action_box import ActionBox
from safe_density.ldm import (
    DensityConstrainedActionWrapper,
    DensityConstrainedController,
    LyapunovDensityModel,
)

torch.set_num_threads(1)
LOW, HIGH = np.array([-1.0, -1.0]), np.array([1.0, 1.0])


class BallLDM:
    """G(s, a) = offset + ||a - s||^2: feasible actions form a ball around the observation."""

    obs_dim = act_dim = 2
    dtype = torch.float64
    device = torch.device("cpu")
    action_box = ActionBox(LOW, HIGH, dtype=torch.float64)

    def __init__(self, offset=0.0):
        self.offset = offset

    def value(self, obs, act):
        obs, act = torch.as_tensor(obs, dtype=torch.float64), torch.as_tensor(act, dtype=torch.float64)
        return self.offset + (act - obs).square().sum(-1)


def projection(s, a0, c):
    d = a0 - s
    n = np.linalg.norm(d)
    return a0 if n * n <= c else s + np.sqrt(c) * d / n


@pytest.mark.parametrize("method", ["sample", "qp"])
def test_feasible_actions_pass_through_unchanged(method):
    f = DensityConstrainedController(lambda o: np.array([0.3, -0.2]), BallLDM(), 0.25, method=method)
    a = f(np.array([0.2, -0.1]))
    np.testing.assert_array_equal(a, [0.3, -0.2])
    assert f.last_feasible and not f.last_modified
    assert f.infeasible_count == 0


@pytest.mark.parametrize("method, tol", [("sample", 0.08), ("qp", 2e-3)])
def test_infeasible_actions_projected_to_nearest_feasible(method, tol):
    rng = np.random.default_rng(0)
    obs = rng.uniform(-0.5, 0.5, (16, 2))
    a0 = rng.uniform(-1, 1, (16, 2))
    c = 0.09
    f = DensityConstrainedController(lambda o: a0, BallLDM(), c, method=method, seed=0)
    a = f(obs)
    assert a.shape == (16, 2)
    g = BallLDM().value(obs, a).numpy()
    assert np.all(g <= c + 1e-9)  # feasible with the real G
    assert np.all(a >= LOW) and np.all(a <= HIGH)  # in bounds
    assert np.all(f.last_feasible) and f.last_feasible.shape == (16,)
    ref = np.stack([projection(o, u, c) for o, u in zip(obs, a0)])
    assert np.abs(np.linalg.norm(a - a0, axis=1) - np.linalg.norm(ref - a0, axis=1)).max() < tol
    changed = np.linalg.norm(a0 - obs, axis=1) ** 2 > c
    np.testing.assert_array_equal(f.last_modified, changed)
    np.testing.assert_array_equal(a[~changed], a0[~changed])


def test_qp_respects_action_bounds():
    """The unconstrained projection lies outside the box: the QP must stay inside it and stay feasible."""
    obs = np.array([1.05, 0.0])
    f = DensityConstrainedController(
        lambda o: np.array([0.9, 0.9]),
        BallLDM(),
        0.04,
        method="qp",
        action_low=[-1.0, -1.0],
        action_high=[0.9, 1.0],
    )
    a = f(obs)
    assert a[0] <= 0.9 + 1e-9 and float(BallLDM().value(obs, a)) <= 0.04 + 1e-9 and f.last_feasible
    # optimum on the ball boundary with a_0 = 0.9: a_1 = sqrt(0.04 - 0.15^2)
    np.testing.assert_allclose(a, [0.9, np.sqrt(0.04 - 0.15**2)], atol=2e-3)


@pytest.mark.parametrize("method", ["sample", "qp"])
def test_infeasible_everywhere_reports_and_returns_least_violating(method):
    f = DensityConstrainedController(
        lambda o: np.array([-1.0, -1.0]), BallLDM(offset=10.0), 1.0, method=method
    )
    obs = np.array([[0.5, 0.5], [0.2, -0.3]])
    with pytest.warns(RuntimeWarning, match="least-violating"):
        a = f(obs)
    assert not f.last_feasible.any() and f.infeasible_count == 2
    np.testing.assert_allclose(a, obs, atol=0.05)  # argmin G = obs itself
    assert np.all(f.last_cost >= 10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DensityConstrainedController(lambda o: o, BallLDM(offset=10.0), 1.0, warn=False)(obs)


def test_controller_kinds_and_batching():
    obs = np.array([[0.0, 0.0], [0.5, 0.5], [-0.5, 0.2]])

    class Agent:  # mbrl MPCAgent-like: single observation in, action out
        def __init__(self):
            self.resets = 0

        def act(self, o):
            assert o.shape == (2,)
            return np.array([1.0, 1.0])

        def reset(self):
            self.resets += 1

    class SB3Like:
        def predict(self, o, deterministic=False):
            assert deterministic
            return np.ones_like(o), None

    for ctrl in (lambda o: np.ones_like(o), Agent(), SB3Like()):
        f = DensityConstrainedController(ctrl, BallLDM(), 0.25, seed=1)
        a = f(obs)
        assert a.shape == (3, 2)
        assert np.all(BallLDM().value(obs, a).numpy() <= 0.25)
        act, state = f.predict(obs[0])
        assert act.shape == (2,) and state is None
        np.testing.assert_array_equal(f.act(np.array([0.8, 0.9])), [1.0, 1.0])  # feasible: unchanged
    agent = Agent()
    f = DensityConstrainedController(agent, BallLDM(), 0.25)
    f.reset()
    assert agent.resets == 1
    # seeded: same seed, same filtered actions
    a1 = DensityConstrainedController(lambda o: -np.ones_like(o), BallLDM(), 0.1, seed=3)(obs)
    a2 = DensityConstrainedController(lambda o: -np.ones_like(o), BallLDM(), 0.1, seed=3)(obs)
    np.testing.assert_array_equal(a1, a2)


def test_with_learned_ldm_constraint():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(200, 2)) * 0.5
    act = rng.uniform(-1, 1, (200, 2))
    ldm = LyapunovDensityModel(2, 2, LOW, HIGH, hidden=(16,), n_action_samples=8, seed=0)
    ldm.fit(obs, act, obs + 0.1 * act, steps=30, batch_size=64, progress=False)
    c = float(ldm.value(torch.tensor(obs), torch.tensor(act)).detach().quantile(0.5))
    for method in ("sample", "qp"):
        for target in (ldm, ldm.constraint(c)):
            f = DensityConstrainedController(
                lambda o: np.full_like(o, 0.9), target, None if target is not ldm else c, method=method
            )
            a = f(obs[:5])
            g = ldm.value(torch.tensor(obs[:5]), torch.tensor(a)).detach().numpy()
            assert np.all(g[f.last_feasible] <= c + 1e-5)
            assert np.all(np.abs(a) <= 1.0)


def test_validation():
    ldm = BallLDM()
    ok = lambda o: np.zeros(2)  # noqa: E731
    with pytest.raises(ValueError, match="threshold"):
        DensityConstrainedController(ok, ldm, float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        DensityConstrainedController(ok, ldm, None)
    with pytest.raises(ValueError, match="method"):
        DensityConstrainedController(ok, ldm, 1.0, method="lp")
    with pytest.raises(ValueError, match="action_low"):
        DensityConstrainedController(ok, ldm, 1.0, action_low=[-1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="action_high"):
        DensityConstrainedController(ok, ldm, 1.0, action_high=[1.0])
    with pytest.raises(ValueError, match="action_low"):
        DensityConstrainedController(ok, ldm, 1.0, action_low=[2.0, 2.0])
    with pytest.raises(ValueError, match="ldm"):
        DensityConstrainedController(ok, object(), 1.0)
    with pytest.raises(ValueError, match="controller"):
        DensityConstrainedController(object(), ldm, 1.0)
    f = DensityConstrainedController(ok, ldm, 1.0)
    with pytest.raises(ValueError, match="obs"):
        f(np.zeros(3))
    with pytest.raises(ValueError, match="obs"):
        f(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="obs"):
        f(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="act"):
        f.filter(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="act"):
        f.filter(np.zeros((4, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="obs"):  # empty data set for the LDM
        LyapunovDensityModel(2, 2, LOW, HIGH).fit(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)))


class PointEnv(gym.Env):
    """2-D point, s' = s + 0.1 a."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = np.zeros(2)
        return self.s.copy(), {}

    def step(self, action):
        self.s = self.s + 0.1 * np.asarray(action, dtype=np.float64)
        return self.s.copy(), 0.0, False, False, {}


def test_action_wrapper_keeps_point_in_region():
    class Region:  # G = ||s + 0.1 a||^2: feasible iff the next state stays in a disc
        threshold = 0.25

        def cost(self, obs, act):
            return (torch.as_tensor(obs) + 0.1 * torch.as_tensor(act)).square().sum(-1)

    env = DensityConstrainedActionWrapper(PointEnv(), Region(), method="qp")
    obs, _ = env.reset(seed=0)
    for _ in range(40):
        obs, _, _, _, info = env.step(np.array([1.0, 0.5], dtype=np.float32))
        assert info["density_filter"]["feasible"]
        assert np.linalg.norm(obs) <= 0.5 + 1e-3
    assert np.linalg.norm(obs) > 0.45  # it went as far as allowed
    assert info["density_filter"]["modified"]
    unwrapped = PointEnv()
    unwrapped.reset()
    for _ in range(40):
        s, *_ = unwrapped.step(np.array([1.0, 0.5]))
    assert np.linalg.norm(s) > 4.0


class _RecordingCost:
    """A random cost with a small, scattered feasible set that records every candidate it is asked about:
    ``G(s, a) = min_j ||a - p_j(s)||^2`` over a few centres ``p_j`` per state (``obs[..., 0]`` is the state's id)."""

    obs_dim, act_dim, dtype, device = 2, 2, torch.float64, torch.device("cpu")
    action_box = ActionBox(LOW, HIGH, dtype=torch.float64)

    def __init__(self, centres: torch.Tensor, c: float):
        self.centres, self.c = centres, c          # [B, J, A]
        self.seen_feasible = torch.zeros(centres.shape[0], dtype=torch.bool)

    def value(self, obs, act):
        obs, act = torch.as_tensor(obs, dtype=torch.float64), torch.as_tensor(act, dtype=torch.float64)
        ids = obs[..., 0].round().long()
        g = (act[..., None, :] - self.centres[ids]).square().sum(-1).min(-1).values
        ok = (g <= self.c).reshape(-1)
        hits = torch.zeros(self.seen_feasible.shape[0], dtype=torch.long).index_add_(0, ids.reshape(-1), ok.long())
        self.seen_feasible |= hits > 0
        return g


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(1, 4), st.floats(1e-4, 0.05), st.integers(2, 64),
       st.integers(0, 3))
def test_wrapper_never_returns_an_infeasible_action_when_a_candidate_was_feasible(seed, batch, n_centres, c,
                                                                                    n_samples, rounds):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, n_centres, 2, generator=g, dtype=torch.float64) * 2 - 1
    cost = _RecordingCost(centres, c)
    ctl = DensityConstrainedController(None, cost, threshold=c, n_samples=n_samples, refine_rounds=rounds,
                                       seed=seed, warn=False)
    obs = np.stack([np.arange(batch, dtype=np.float64), np.zeros(batch)], 1)
    act = (torch.rand(batch, 2, generator=g, dtype=torch.float64) * 2 - 1).numpy()
    out = ctl.filter(obs, act)
    got = cost.value(obs, out).numpy()
    seen = cost.seen_feasible.numpy()
    assert np.all(got[seen] <= c), (got, seen)
    np.testing.assert_array_equal(ctl.last_feasible, got <= c)
    assert np.all(out >= LOW) and np.all(out <= HIGH)
