"""Lyapunov density models: the exact finite-MDP solver and the learned G (docs/design.md, LDM section)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safe_density.contracts import Constraint
from safe_density.ldm import LyapunovDensityModel, solve_tabular, solve_tabular_stochastic

torch.set_num_threads(1)
SETTINGS = settings(max_examples=25, deadline=None)


def random_mdp(seed: int, s: int, a: int, integer: bool = True):
    rng = np.random.default_rng(seed)
    e = rng.integers(0, 8, (s, a)).astype(float) if integer else rng.normal(size=(s, a))
    return e, rng.integers(0, s, (s, a))


def brute_minimax(e: np.ndarray, ns: np.ndarray, length: int) -> np.ndarray:
    """min over all action sequences of the max energy along ``length`` further steps, per (s, a)."""
    s_n, a_n = e.shape
    out = np.full_like(e, np.inf)
    for s0, a0 in itertools.product(range(s_n), range(a_n)):
        for seq in itertools.product(range(a_n), repeat=length):
            m, s = e[s0, a0], ns[s0, a0]
            for act in seq:
                m = max(m, e[s, act])
                s = ns[s, act]
            out[s0, a0] = min(out[s0, a0], m)
    return out


# ------------------------------------------------------------------------------------------ tabular
@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.integers(1, 5), a=st.integers(1, 2))
def test_tabular_equals_brute_force_minimax(seed, s, a):
    e, ns = random_mdp(seed, s, a)
    g = solve_tabular(e, ns)
    assert np.all(g >= e)
    # a path longer than S*A pairs repeats a pair, so S*A further steps give the infinite-horizon value
    np.testing.assert_array_equal(g, brute_minimax(e, ns, s * a))
    # it is a fixed point of the LDM equation
    np.testing.assert_array_equal(g, np.maximum(e, g.min(1)[ns]))


@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.integers(1, 4), a=st.integers(1, 2))
def test_tabular_no_continuation_above_g(seed, s, a):
    """From G(s,a) > c no action sequence of length S keeps E <= c (brute force)."""
    e, ns = random_mdp(seed, s, a)
    g = solve_tabular(e, ns)
    for s0, a0 in itertools.product(range(s), range(a)):
        c = g[s0, a0] - 0.5  # integer energies: G > c and nothing in (c, G) is an energy
        for seq in itertools.product(range(a), repeat=s * a):
            st_, ok = ns[s0, a0], e[s0, a0] <= c
            for act in seq:
                ok = ok and e[st_, act] <= c
                st_ = ns[st_, act]
            assert not ok


@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.integers(1, 8), a=st.integers(1, 3))
def test_tabular_sublevel_set_is_invariant(seed, s, a):
    """Start with G <= c, keep choosing any action with G <= c: E <= c forever (S+1 steps simulated)."""
    e, ns = random_mdp(seed, s, a, integer=False)
    g = solve_tabular(e, ns)
    rng = np.random.default_rng(seed + 1)
    for c in np.unique(g):
        for s0, a0 in zip(*np.nonzero(g <= c)):
            st_, act = s0, a0
            for _ in range(s + 1):
                assert e[st_, act] <= c
                st_ = ns[st_, act]
                allowed = np.nonzero(g[st_] <= c)[0]
                assert allowed.size > 0, "a state reached from G <= c must have an action with G <= c"
                act = rng.choice(allowed)


@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.integers(1, 6), a=st.integers(1, 3))
def test_discounted_converges_to_undiscounted(seed, s, a):
    e, ns = random_mdp(seed, s, a, integer=False)
    g1 = solve_tabular(e, ns)
    span = float(e.max() - e.min())
    errs = []
    for gamma in (0.9, 0.99, 0.999):
        gg = solve_tabular(e, ns, gamma=gamma, tol=1e-12)
        assert np.all(gg <= g1 + 1e-9)  # the undiscounted LDM is a super-solution
        assert np.all(gg >= e - 1e-9)
        errs.append(np.abs(gg - g1).max())
        assert errs[-1] <= (1 - gamma) * (s * a + 1) * span + 1e-8
    assert errs[2] <= errs[0] + 1e-12


@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.integers(1, 5), a=st.integers(1, 3))
def test_stochastic_solver(seed, s, a):
    e, ns = random_mdp(seed, s, a, integer=False)
    onehot = np.eye(s)[ns]  # [S, A, S]
    np.testing.assert_allclose(solve_tabular_stochastic(e, onehot), solve_tabular(e, ns))
    rng = np.random.default_rng(seed)
    p = onehot + (rng.random((s, a, s)) < 0.3) * rng.random((s, a, s))
    p /= p.sum(-1, keepdims=True)
    g = solve_tabular_stochastic(e, p)
    assert np.all(g >= solve_tabular(e, ns) - 1e-12)  # more successors can only make things worse
    np.testing.assert_allclose(g, np.maximum(e, np.where(p > 0, g.min(1)[None, None], -np.inf).max(-1)))
    for c in np.unique(g):  # invariance under every sampled successor
        for s0, a0 in zip(*np.nonzero(g <= c)):
            st_, act = s0, a0
            for _ in range(s + 1):
                assert e[st_, act] <= c
                st_ = rng.choice(s, p=p[st_, act])
                allowed = np.nonzero(g[st_] <= c)[0]
                assert allowed.size > 0
                act = rng.choice(allowed)
    gd = solve_tabular_stochastic(e, p, gamma=0.999)
    assert np.abs(gd - g).max() <= 1e-3 * (s * a + 1) * (e.max() - e.min()) + 1e-8


def test_tabular_torch_in_torch_out_and_inf_energy():
    e = torch.tensor([[1.0, math.inf], [2.0, 0.5]], dtype=torch.float64)
    ns = torch.tensor([[1, 0], [0, 1]])
    g = solve_tabular(e, ns)
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
    # state 0 must take action 0 (E=1) to state 1, which can stay with action 1 (E=0.5)
    assert torch.equal(g, torch.tensor([[1.0, math.inf], [2.0, 0.5]], dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(energy=np.zeros((2, 2)), next_state=np.zeros((2, 3), int)), "next_state"),
        (dict(energy=np.zeros((2, 2)), next_state=np.full((2, 2), 2)), "next_state"),
        (dict(energy=np.zeros((2, 2)), next_state=np.full((2, 2), -1)), "next_state"),
        (dict(energy=np.array([[0.0, np.nan], [0, 0]]), next_state=np.zeros((2, 2), int)), "energy"),
        (dict(energy=np.zeros(3), next_state=np.zeros(3, int)), "energy"),
        (dict(energy=np.zeros((2, 2)), next_state=np.zeros((2, 2), int), gamma=0.0), "gamma"),
        (dict(energy=np.zeros((2, 2)), next_state=np.zeros((2, 2), int), gamma=1.5), "gamma"),
        (dict(energy=np.zeros((2, 2)), next_state=np.zeros((2, 2), int), gamma=float("nan")), "gamma"),
        (dict(energy=np.zeros((2, 2)), next_state=np.full((2, 2), 0.5)), "next_state"),
    ],
)
def test_tabular_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        solve_tabular(**kwargs)


def test_stochastic_validation():
    e = np.zeros((2, 2))
    with pytest.raises(ValueError, match="transition"):
        solve_tabular_stochastic(e, np.ones((2, 2, 3)) / 3)
    with pytest.raises(ValueError, match="transition"):
        solve_tabular_stochastic(e, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="transition"):
        solve_tabular_stochastic(e, -np.ones((2, 2, 2)))


# ------------------------------------------------------------------------------------------ learned
# 1-D system s' = clip(s + dt (a + 2 [s > 0.5]), -3, 3): right of 0.5 every action drifts out to the edge.
DT, DRIFT, EDGE, LIM = 0.1, 2.0, 0.5, 3.0
S_GRID = np.round(np.linspace(-LIM, LIM, 301), 10)  # step 0.02 = dt * action step 0.2: exact grid
A_GRID = np.round(np.linspace(-1.0, 1.0, 11), 10)
THRESH = 0.5 + math.log(2 * math.pi)  # c = E(s=1, a=0)


class KnownDensity:
    """Standard normal density over (s, a): E = (s^2 + a^2) / 2 + log(2 pi)."""

    fitted = True

    def fit(self, x):
        return self

    def log_prob(self, x):
        x = torch.as_tensor(x)
        return -0.5 * x.square().sum(-1) - math.log(2 * math.pi)


def step_1d(s, a):
    return np.clip(s + DT * (a + DRIFT * (s > EDGE)), -LIM, LIM)


def grid_ldm(gamma):
    s, a = np.meshgrid(S_GRID, A_GRID, indexing="ij")
    e = 0.5 * (s**2 + a**2) + math.log(2 * math.pi)
    ns = np.clip(np.rint((step_1d(s, a) + LIM) / 0.02).astype(int), 0, len(S_GRID) - 1)
    return s, a, e, solve_tabular(e, ns, gamma=gamma)


@pytest.fixture(scope="module")
def ldm_1d():
    rng = np.random.default_rng(0)
    n = 20_000
    obs = rng.uniform(-LIM, LIM, (n, 1))
    act = rng.uniform(-1, 1, (n, 1))
    ldm = LyapunovDensityModel(
        1, 1, [-1.0], [1.0], KnownDensity(), hidden=(64, 64), tau=0.05, lr=1e-3, n_action_samples=16, seed=0
    )
    hist = ldm.fit(obs, act, step_1d(obs, act), steps=2000, batch_size=256, progress=False)
    assert len(hist["loss"]) == 2000 and np.isfinite(hist["loss"]).all()
    return ldm


def test_learned_matches_grid_ldm(ldm_1d):
    s, a, e, g = grid_ldm(ldm_1d.config.gamma)
    with torch.no_grad():
        gl = ldm_1d.value(
            torch.tensor(s[..., None], dtype=torch.float32), torch.tensor(a[..., None], dtype=torch.float32)
        ).numpy()
    assert gl.shape == s.shape
    assert np.all(gl >= e - 1e-4)  # G >= E by construction
    corr = np.corrcoef(gl.ravel(), g.ravel())[0, 1]
    agree = ((gl <= THRESH) == (g <= THRESH)).mean()
    print(
        f"learned vs grid LDM: corr={corr:.4f} sublevel agreement={agree:.4f} MAE={np.abs(gl - g).mean():.4f}"
    )
    assert corr > 0.95
    assert agree > 0.9


def test_greedy_density_constraint_fails_where_ldm_does_not(ldm_1d):
    """Published failure (Kang et al. Fig. 1): high density now, no safe future."""
    s0, a0 = torch.tensor([[0.8]]), torch.tensor([[0.0]])
    greedy, ldm_c = ldm_1d.constraint(THRESH, greedy=True), ldm_1d.constraint(THRESH)
    assert isinstance(ldm_c, Constraint) and ldm_c.threshold == THRESH
    _, _, _, g_exact = grid_ldm(1.0)
    assert g_exact[190, 5] > THRESH  # exact: (0.8, 0) has no safe future
    assert float(greedy.cost(s0, a0).detach()) <= THRESH  # greedy admits it
    assert float(ldm_c.cost(s0, a0).detach()) > THRESH  # the LDM rejects it

    def rollout(constraint, steps=60):
        """A controller that always pushes right; the filter picks the allowed action closest to it."""
        s, traj = np.array([0.0]), []
        for _ in range(steps):
            cost = (
                constraint.cost(
                    torch.tensor(np.full((11, 1), s[0]), dtype=torch.float32),
                    torch.tensor(A_GRID[:, None], dtype=torch.float32),
                )
                .detach()
                .numpy()
            )
            ok = np.nonzero(cost <= THRESH)[0]
            a = A_GRID[ok[-1]] if ok.size else A_GRID[np.argmin(cost)]  # largest allowed push
            traj.append(KnownDensity().log_prob(torch.tensor([s[0], a])).item())
            s = step_1d(s, a)
        return -np.array(traj)  # energies along the way

    e_greedy, e_ldm = rollout(greedy), rollout(ldm_c)
    assert e_greedy.max() > THRESH + 1.0  # greedy ends up out of the data
    assert e_ldm.max() <= THRESH + 1e-6  # LDM keeps E <= c along the way


def test_learned_save_load_and_batching(ldm_1d, tmp_path):
    obs = torch.randn(3, 4, 1)
    act = torch.rand(3, 4, 1) * 2 - 1
    v = ldm_1d.value(obs, act)
    assert v.shape == (3, 4)
    assert torch.allclose(ldm_1d.value(obs[0], act[0]), v[0])
    assert ldm_1d.energy(obs, act).shape == (3, 4)
    assert ldm_1d.value(torch.zeros(5, 1), torch.zeros(1)).shape == (5,)  # broadcasting
    ldm_1d.save(tmp_path / "m")
    with pytest.raises(ValueError, match="density"):  # KnownDensity cannot be saved: must be passed
        LyapunovDensityModel.load(tmp_path / "m")
    m2 = LyapunovDensityModel.load(tmp_path / "m", density=KnownDensity())
    assert torch.allclose(m2.value(obs, act), v)


def test_learned_with_default_density_and_save_load(tmp_path):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(300, 2))
    act = rng.uniform(-1, 1, (300, 1))
    nxt = obs + 0.1 * act
    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(16,), cem_steps=2, n_action_samples=8, seed=3)
    ldm.fit(obs, act, nxt, terminated=np.zeros(300), steps=20, batch_size=32, progress=False)
    ldm.save(tmp_path / "ldm")
    m2 = LyapunovDensityModel.load(tmp_path / "ldm")
    x, u = torch.randn(7, 2), torch.rand(7, 1)
    assert torch.allclose(m2.value(x, u), ldm.value(x, u), atol=1e-5)
    # same seed, same result
    ldm_b = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(16,), cem_steps=2, n_action_samples=8, seed=3)
    ldm_b.fit(obs, act, nxt, steps=20, batch_size=32, progress=False)
    assert torch.allclose(ldm_b.value(x, u), ldm.value(x, u))


def test_terminated_transitions_back_up_only_their_energy():
    obs = np.zeros((64, 1))
    act = np.zeros((64, 1))
    nxt = np.full((64, 1), 2.5)  # far out, but the episode ends
    ldm = LyapunovDensityModel(1, 1, [-1.0], [1.0], KnownDensity(), hidden=(16,), lr=1e-2, seed=0)
    ldm.fit(obs, act, nxt, terminated=np.ones(64), steps=200, batch_size=64, progress=False)
    e = float(ldm.energy(torch.zeros(1), torch.zeros(1)))
    assert abs(float(ldm.value(torch.zeros(1), torch.zeros(1))) - e) < 0.05


def test_learned_validation():
    with pytest.raises(ValueError, match="action_low"):
        LyapunovDensityModel(1, 2, [-1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="action_high"):
        LyapunovDensityModel(1, 1, [-1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="action_low"):
        LyapunovDensityModel(1, 1, [1.0], [-1.0])
    with pytest.raises(ValueError, match="gamma"):
        LyapunovDensityModel(1, 1, [-1.0], [1.0], gamma=0.0)
    with pytest.raises(ValueError, match="obs_dim"):
        LyapunovDensityModel(0, 1, [-1.0], [1.0])
    with pytest.raises(ValueError, match="density"):
        LyapunovDensityModel(1, 1, [-1.0], [1.0], density=object())
    ldm = LyapunovDensityModel(1, 1, [-1.0], [1.0], KnownDensity(), hidden=(8,))
    with pytest.raises(ValueError, match="obs"):
        ldm.fit(np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1)), steps=1, progress=False)
    with pytest.raises(ValueError, match="obs"):
        ldm.fit(np.array([[np.nan]]), np.zeros((1, 1)), np.zeros((1, 1)), steps=1, progress=False)
    with pytest.raises(ValueError, match="act"):
        ldm.fit(np.zeros((4, 1)), np.zeros((3, 1)), np.zeros((4, 1)), steps=1, progress=False)
    with pytest.raises(ValueError, match="next_obs"):
        ldm.fit(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros((4, 2)), steps=1, progress=False)
    with pytest.raises(ValueError, match="terminated"):
        ldm.fit(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros((4, 1)), terminated=np.zeros(3), progress=False)
    with pytest.raises(RuntimeError):
        ldm.value(torch.zeros(1), torch.zeros(1))
    ldm.fit(np.zeros((4, 1)), np.zeros((4, 1)), np.zeros((4, 1)), steps=1, progress=False)
    with pytest.raises(ValueError, match="threshold"):
        ldm.constraint(float("nan"))
    with pytest.raises(ValueError, match="obs"):
        ldm.value(torch.zeros(2, 3), torch.zeros(2, 1))


def _fitted_ldm(density=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(120, 2, generator=g), torch.rand(120, 1, generator=g) * 2 - 1
    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], density, hidden=(16,), steps=50, seed=0, dtype=dtype)
    ldm.fit(obs.to(dtype), act.to(dtype), (obs + 0.1 * act).to(dtype), progress=False)
    return ldm


def test_constraint_cost_fast_path_matches_value_and_survives_nan():
    g = torch.Generator().manual_seed(1)
    ldm = _fitted_ldm()
    o = torch.randn(3, 7, 2, generator=g) * 2  # [E, M, O], some of it far from the data
    a = torch.rand(3, 7, 1, generator=g) * 2 - 1
    for greedy in (False, True):
        c = ldm.constraint(1.0, greedy=greedy)
        ref = (ldm.energy if greedy else ldm.value)(o.reshape(-1, 2), a.reshape(-1, 1)).reshape(3, 7)
        out = c.cost(o, a)
        assert out.dtype == ldm.dtype and out.shape == (3, 7)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
        # broadcasting one action over the particles, as value does
        torch.testing.assert_close(c.cost(o, a[0, 0]), (ldm.energy if greedy else ldm.value)(o, a[0, 0]),
                                   rtol=1e-6, atol=1e-6)
        bad, bad_a = o.clone(), a.clone()
        bad[0, 0, 0] = float("nan")
        bad[1, 2, 1] = float("inf")
        bad_a[2, 3, 0] = float("-inf")
        out = c.cost(bad, bad_a)  # no exception
        assert torch.isfinite(out).all()
        viol = torch.zeros(3, 7, dtype=torch.bool)
        viol[0, 0] = viol[1, 2] = viol[2, 3] = True
        assert (out[viol] > 1e30).all()  # a diverged state counts as violating...
        torch.testing.assert_close(out[~viol], ref[~viol], rtol=1e-6, atol=1e-6)  # ...the rest is untouched
        # bf16 planner tensors: cast to the model's dtype, same as value on the bf16-rounded inputs
        ob, ab = o.to(torch.bfloat16), a.to(torch.bfloat16)
        ref16 = (ldm.energy if greedy else ldm.value)(ob.float(), ab.float())
        out16 = c.cost(ob, ab)
        assert out16.dtype == torch.float32
        torch.testing.assert_close(out16, ref16, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="obs"):
        ldm.constraint(1.0).cost(torch.zeros(3, 7, 3), a)
    with pytest.raises(ValueError, match="broadcast"):
        ldm.constraint(1.0).cost(o, torch.zeros(4, 1))
    unfitted = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(16,))
    with pytest.raises(RuntimeError, match="fit"):
        unfitted.constraint(1.0).cost(o, a)


class _ForeignDensity:
    """A DensityModel that is not a DensityBase and rejects non-finite input, like a user's own model."""

    fitted = True

    def fit(self, x):
        return self

    def log_prob(self, x):
        x = torch.as_tensor(x)
        if not torch.isfinite(x).all():
            raise ValueError("x has NaN")
        return -0.5 * (x ** 2).sum(-1)


def test_constraint_cost_fast_path_other_densities():
    from safe_density.density import GaussianMixtureDensity

    g = torch.Generator().manual_seed(2)
    o, a = torch.randn(4, 5, 2, generator=g), torch.rand(4, 5, 1, generator=g) * 2 - 1
    bad = o.clone()
    bad[1, 1, 0] = float("nan")
    dens64 = GaussianMixtureDensity(3, dtype=torch.float64, seed=0)  # density in float64, LDM in float32
    for density in (_ForeignDensity(), dens64):
        ldm = _fitted_ldm(density)
        for greedy in (False, True):
            c = ldm.constraint(1.0, greedy=greedy)
            ref = (ldm.energy if greedy else ldm.value)(o, a)
            torch.testing.assert_close(c.cost(o, a), ref, rtol=1e-6, atol=1e-6)
            out = c.cost(bad, a)
            assert torch.isfinite(out).all() and out[1, 1] > 1e30


# ------------------------------------------------------------------------------------------------ features, calibration
def test_obs_indices_calibration_and_checkpoint_round_trip(tmp_path):
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(400, 4, generator=g)
    act = torch.rand(400, 2, generator=g) * 2 - 1
    ldm = LyapunovDensityModel(4, 2, -np.ones(2), np.ones(2), steps=30, obs_indices=[1, 2, 3], seed=0)
    ldm.fit(obs, act, obs + 0.05 * torch.randn(400, 4, generator=g), progress=False)
    shifted = obs.clone()
    shifted[:, 0] += 1e3                                          # x is not a feature: nothing changes
    assert torch.allclose(ldm.value(shifted[:50], act[:50]), ldm.value(obs[:50], act[:50]))
    c = ldm.calibrate(obs, act, 0.75)
    g_data = ldm.value(obs, act)
    assert float((g_data <= c + 1e-5).float().mean()) == pytest.approx(0.75, abs=0.01)
    assert ldm.calibration["energy"] <= c + 1e-5                  # G >= E, so its quantile is at least E's
    ldm.save(tmp_path / "ldm")
    back = LyapunovDensityModel.load(tmp_path / "ldm")
    assert back.obs_indices == (1, 2, 3) and back.calibration == ldm.calibration
    assert torch.allclose(back.value(obs[:20], act[:20]), ldm.value(obs[:20], act[:20]), atol=1e-5)
    assert back.constraint().threshold == c


@pytest.mark.parametrize("bad", [[], [0, 0], [4], [-1], [1.5], [True], "ab", 3])
def test_obs_indices_validation(bad):
    with pytest.raises(ValueError, match="obs_indices"):
        LyapunovDensityModel(4, 2, -np.ones(2), np.ones(2), obs_indices=bad)


def test_constraint_needs_a_threshold_or_calibration():
    ldm = _fitted_ldm()
    with pytest.raises(ValueError, match="threshold"):
        ldm.constraint()
    with pytest.raises(ValueError, match="quantile"):
        ldm.calibrate(torch.zeros(3, ldm.obs_dim), torch.zeros(3, ldm.act_dim), 1.5)


def test_one_threshold_rule_for_model_constraint_and_wrapper():
    """calibrate(rule=...) is the one threshold rule: "ldm" takes G's quantile, "energy" (the authors') E's for
    both constraints; resolve_threshold gives explicit > the constraint's own > the calibrated one, and the
    controller wrapper follows it."""
    from safe_density.ldm import DensityConstrainedController
    from safe_density.ldm.learned import resolve_threshold

    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(120, 2, generator=g), torch.rand(120, 1, generator=g) * 2 - 1
    ldm = _fitted_ldm()
    e, gv = ldm.energy(obs, act).double(), ldm.value(obs, act).double()
    c = ldm.calibrate(obs, act, 0.4, rule="energy")
    assert c == pytest.approx(float(torch.quantile(e, 0.4)), rel=1e-6) and ldm.calibration["energy"] == c
    assert ldm.constraint().threshold == ldm.constraint(greedy=True).threshold == c
    c_ldm = ldm.calibrate(obs, act, 0.4)
    assert c_ldm == pytest.approx(float(torch.quantile(gv, 0.4)), rel=1e-6) and ldm.calibration["rule"] == "ldm"
    assert resolve_threshold(ldm) == c_ldm and resolve_threshold(ldm, greedy=True) == ldm.calibration["energy"]
    assert resolve_threshold(ldm, 7.0) == 7.0 and resolve_threshold(ldm.constraint(3.0)) == 3.0
    assert DensityConstrainedController(lambda o: np.zeros(1), ldm.constraint(3.0)).threshold == 3.0
    with pytest.raises(ValueError, match="rule"):
        ldm.calibrate(obs, act, 0.4, rule="median")
    with pytest.raises(ValueError, match="threshold"):
        resolve_threshold(ldm, float("nan"))


def test_ldm_takes_a_config_plus_overrides_and_any_density_model():
    """Defaults live in LDMConfig only; keywords override single fields, unknown ones are named. A DensityModel
    that is not one of the library's (no validate= fast path) still serves the hot path, NaN rows as +inf."""
    from safe_density.ldm import LDMConfig

    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], config=LDMConfig(gamma=0.9), steps=7)
    assert ldm.config.gamma == 0.9 and ldm.config.steps == 7 and ldm.config.hidden == LDMConfig().hidden
    with pytest.raises(ValueError, match="stepz"):
        LyapunovDensityModel(2, 1, [-1.0], [1.0], stepz=7)

    class Foreign:  # a user's density: fit and log_prob only
        def fit(self, x):
            self.mu = torch.as_tensor(x).mean(0)
            return self

        def log_prob(self, x):
            return -(torch.as_tensor(x) - self.mu).square().sum(-1)

    ldm = _fitted_ldm(Foreign())
    o = torch.tensor([[0.0, 0.0], [float("nan"), 0.0]])
    cost = ldm.constraint(1.0).cost(o, torch.zeros(2, 1))
    assert torch.isfinite(cost[0]) and cost[1] > 1e30
    with pytest.raises(ValueError, match="density"):
        LyapunovDensityModel(2, 1, [-1.0], [1.0], density=object())


def test_save_is_atomic_with_the_density(tmp_path, monkeypatch):
    """A crash while the density is written leaves the previous checkpoint loadable (network and density)."""
    ldm = _fitted_ldm()
    ldm.save(tmp_path / "ldm")
    before = LyapunovDensityModel.load(tmp_path / "ldm")
    o, a = torch.zeros(5, ldm.obs_dim), torch.zeros(5, ldm.act_dim)
    ldm.net[0].bias.data += 1.0                                     # a different model to save over the first

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(type(ldm.density), "save", boom)
    with pytest.raises(OSError, match="disk full"):
        ldm.save(tmp_path / "ldm")
    after = LyapunovDensityModel.load(tmp_path / "ldm")
    assert torch.equal(after.value(o, a), before.value(o, a))
    assert [p.name for p in tmp_path.iterdir()] == ["ldm"]           # no temporary folder left behind


def test_two_critics_take_the_pessimistic_maximum_and_round_trip(tmp_path):
    """n_critics=2 (the authors' double critic): G_phi is the larger critic, so G is never below what either
    critic alone says; checkpoints keep both; a one-critic model keeps the old single-MLP layout."""
    from safe_density.ldm import LDMConfig

    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(200, 2, generator=g), torch.rand(200, 1, generator=g) * 2 - 1
    cfg = LDMConfig(hidden=(16,), steps=40, n_critics=2)
    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], config=cfg, seed=0)
    ldm.fit(obs, act, obs + 0.1 * act, progress=False)
    x, u = torch.randn(9, 2, generator=g), torch.rand(9, 1, generator=g) * 2 - 1
    heads = ldm.net(ldm._features(ldm._select(x), u)) * ldm.e_std + ldm.e_mean           # [9, 2]
    assert heads.shape == (9, 2) and not torch.allclose(heads[:, 0], heads[:, 1])
    v = ldm.value(x, u)
    assert torch.allclose(v, torch.maximum(ldm.energy(x, u), heads.max(-1).values), atol=1e-5)
    assert bool((v >= heads.min(-1).values - 1e-5).all())
    ldm.save(tmp_path / "two")
    back = LyapunovDensityModel.load(tmp_path / "two")
    assert back.config.n_critics == 2 and torch.allclose(back.value(x, u), v, atol=1e-6)
    one = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(16,), seed=0)
    assert isinstance(one.net, torch.nn.Sequential)          # the layout of checkpoints saved before n_critics
    with pytest.raises(ValueError, match="n_critics"):
        LDMConfig(n_critics=0)
