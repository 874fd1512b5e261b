"""Particle rollouts (TS-inf, TS-1, expectation) and the MPC agent, on fake ensembles with known dynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl.agent import MPCAgent
from mbrl.planning import CEM, ICEM, MPPI
from mbrl.rollout import cast_model, rollout


class FakeEnsemble:
    """``next = obs + act @ gain + offset[e]`` (+ noise unless deterministic): member ``e`` adds its offset.

    ``nan_above``: rows whose first action exceeds it predict NaN (a diverged model).
    """

    def __init__(self, obs_dim, act_dim, offsets, gain=None, noise=0.0, nan_above=None):
        self.offsets = torch.as_tensor(offsets, dtype=torch.float32).reshape(-1, obs_dim)
        self.ensemble_size, self.obs_dim, self.act_dim = self.offsets.shape[0], obs_dim, act_dim
        gain = torch.zeros(act_dim, obs_dim) if gain is None else gain
        self.gain = torch.as_tensor(gain, dtype=torch.float32)
        self.noise, self.nan_above = noise, nan_above
        self.calls = []

    def predict(self, obs, act, deterministic=False, generator=None):
        E = self.ensemble_size
        assert obs.ndim == 3 and obs.shape[0] == E and act.shape[:2] == obs.shape[:2]
        self.calls.append((tuple(obs.shape), deterministic))
        nxt = obs + (act.float() @ self.gain).to(obs.dtype) + self.offsets[:, None, :].to(obs.dtype)
        if not deterministic and self.noise:
            nxt = nxt + self.noise * torch.randn(nxt.shape, generator=generator).to(obs.dtype)
        if self.nan_above is not None:
            nxt = torch.where(act[..., :1] > self.nan_above, torch.nan, nxt)
        return nxt


OFFSETS = [[1.0, 1.0], [2.0, 1.0], [4.0, 1.0], [8.0, 1.0], [16.0, 1.0]]  # dim 1 counts time steps


def final_square(obs, act, next_obs, H=6):
    """Reward ``x_H^2`` at the last step only (dim 1 is the step counter): nonlinear in the whole path."""
    return torch.where(next_obs[..., 1] >= H - 0.5, next_obs[..., 0].square(), 0.0)


def zero_actions(B, N, H, A=1):
    return torch.zeros(B, N, H, A)


# ------------------------------------------------------------------------------------------------ rollout
def test_ts_inf_keeps_each_particle_on_one_member():
    """With P = 7 particles and E = 5 members (not divisible), particle p must use member p % 5 throughout:
    its final x is H * offset[p % 5], so the mean of x_H^2 over particles is known exactly."""
    model = FakeEnsemble(2, 1, OFFSETS)
    H, P = 6, 7
    ret, viol = rollout(model, torch.zeros(2, 2), zero_actions(2, 3, H), reward_fn=final_square, particles=P,
                        propagation="ts_inf")
    off = torch.tensor([o[0] for o in OFFSETS])
    expected = (H * off[torch.arange(P) % 5]).square().mean()
    assert ret.shape == viol.shape == (2, 3)
    torch.testing.assert_close(ret, expected.expand(2, 3))
    assert (viol == 0).all()
    assert all(shape[0] == 5 for shape, _ in model.calls)


def test_ts_inf_records_one_member_per_slot():
    """Direct check on every particle: its per-step increment is the same member offset at every step."""
    seen = []

    def record(obs, act, next_obs):
        seen.append((next_obs - obs)[..., 0].reshape(-1))
        return torch.zeros(obs.shape[:-1])

    rollout(FakeEnsemble(2, 1, OFFSETS), torch.zeros(1, 2), zero_actions(1, 4, 5), reward_fn=record,
            particles=10, propagation="ts_inf")
    steps = torch.stack(seen)                       # [H, rows]
    assert (steps == steps[0]).all()               # the same member along the whole horizon
    counts = torch.stack([(steps[0] == o[0]).sum() for o in OFFSETS])
    assert (counts == 4 * 10 // 5).all()           # balanced over members


def test_ts_1_mixes_members():
    model = FakeEnsemble(2, 1, OFFSETS)
    H, P = 6, 10
    inf, _ = rollout(model, torch.zeros(1, 2), zero_actions(1, 8, H), reward_fn=final_square, particles=P,
                     propagation="ts_inf")
    one, _ = rollout(model, torch.zeros(1, 2), zero_actions(1, 8, H), reward_fn=final_square, particles=P,
                     propagation="ts_1", generator=torch.Generator().manual_seed(0))
    # mixing members shrinks the spread of the sums, so E[x_H^2] drops (Jensen); never a single member's
    assert (one < inf - 1).all()
    assert (one > (H * 1.0) ** 2).all()
    # the per-step mean over all rows is still the member mean (balanced permutation)
    lin, _ = rollout(model, torch.zeros(1, 2), zero_actions(1, 8, H), particles=P, propagation="ts_1",
                     reward_fn=lambda o, a, n: n[..., 0] - o[..., 0],
                     generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lin.mean(), torch.tensor(H * 31.0 / 5))


def test_expectation_is_the_member_mean():
    model = FakeEnsemble(2, 1, OFFSETS, noise=5.0)  # noise would show up unless deterministic
    H = 6
    ret, _ = rollout(model, torch.zeros(3, 2), zero_actions(3, 2, H), reward_fn=final_square, particles=4,
                     propagation="expectation")
    torch.testing.assert_close(ret, torch.full((3, 2), (H * 31.0 / 5) ** 2))
    assert all(det for _, det in model.calls)


def test_termination_zeroes_later_rewards_and_holds_violations():
    model = FakeEnsemble(2, 1, [[1.0, 1.0]] * 3)
    one = lambda o, a, n: torch.ones(o.shape[:-1])  # noqa: E731
    stop3 = lambda o, a, n: n[..., 1] >= 3          # noqa: E731  terminates on the 3rd transition

    class Cost:
        threshold = 1.5

        def cost(self, obs, act):
            return obs[..., 0]                      # x_t = t: violations relu(t - 1.5) for t = 0, 1, 2

    ret, viol = rollout(model, torch.zeros(2, 2), zero_actions(2, 3, 8), reward_fn=one, termination_fn=stop3,
                        particles=4, constraints=[Cost()])
    torch.testing.assert_close(ret, torch.full((2, 3), 3.0))
    # the last state before termination (x = 2) keeps violating for the rest of the horizon: 6 x 0.5, so
    # terminating early is never a way to escape a constraint
    torch.testing.assert_close(viol, torch.full((2, 3), 3.0))
    free, viol_free = rollout(model, torch.zeros(2, 2), zero_actions(2, 3, 8), reward_fn=one, particles=4,
                              constraints=[Cost()])
    torch.testing.assert_close(free, torch.full((2, 3), 8.0))
    torch.testing.assert_close(viol_free, torch.full((2, 3), sum(max(t - 1.5, 0) for t in range(8))))


def test_reward_shapers_add_and_replace():
    model = FakeEnsemble(2, 1, [[1.0, 1.0]] * 2)
    one = lambda o, a, n: torch.ones(o.shape[:-1])  # noqa: E731

    class Shaper:
        def __init__(self, mode, weight=1.0, value=10.0):
            self.mode, self.weight, self.value = mode, weight, value

        def __call__(self, obs, act, next_obs):
            return torch.full(obs.shape[:-1], self.value)

    kw = dict(reward_fn=one, particles=2)
    ret = lambda shapers: rollout(model, torch.zeros(1, 2), zero_actions(1, 1, 4), reward_shapers=shapers, **kw)[0]  # noqa: E731,E501
    assert ret([]).item() == 4.0
    assert ret([Shaper("add", weight=0.5)]).item() == 4 * (1 + 5)
    assert ret([Shaper("replace")]).item() == 40.0
    assert ret([Shaper("replace"), Shaper("add", weight=2.0, value=1.0)]).item() == 4 * 12


def test_diverged_particles_make_the_return_nan():
    model = FakeEnsemble(2, 1, [[1.0, 1.0]] * 5, nan_above=0.5)
    acts = torch.zeros(1, 3, 4, 1)
    acts[0, 1, 2] = 0.9                               # candidate 1 diverges at step 2
    ret, _ = rollout(model, torch.zeros(1, 2), acts, reward_fn=lambda o, a, n: -n[..., 0], particles=3)
    assert torch.isnan(ret[0, 1]) and torch.isfinite(ret[0, [0, 2]]).all()


def test_bf16_rollout_accumulates_in_fp32():
    model = FakeEnsemble(2, 1, OFFSETS)
    kw = dict(reward_fn=lambda o, a, n: n[..., 0] * 1.001, particles=5)
    r32, _ = rollout(model, torch.zeros(1, 2), zero_actions(1, 2, 6), **kw)
    r16, _ = rollout(model, torch.zeros(1, 2), zero_actions(1, 2, 6), dtype=torch.bfloat16, **kw)
    assert r16.dtype == torch.float32
    torch.testing.assert_close(r16, r32, rtol=1e-2, atol=0)


def test_cast_model_copies_modules_once():
    net = torch.nn.Linear(2, 2)
    assert cast_model(net, torch.float32) is net
    half = cast_model(net, torch.bfloat16)
    assert half is not net and half.weight.dtype == torch.bfloat16 and net.weight.dtype == torch.float32


def test_rollout_rejects_bad_input():
    model = FakeEnsemble(2, 1, OFFSETS)
    r = lambda o, a, n: n[..., 0]  # noqa: E731
    with pytest.raises(ValueError, match="propagation"):
        rollout(model, torch.zeros(1, 2), zero_actions(1, 2, 3), reward_fn=r, propagation="ts_2")
    with pytest.raises(ValueError, match="particles"):
        rollout(model, torch.zeros(1, 2), zero_actions(1, 2, 3), reward_fn=r, particles=0)
    with pytest.raises(ValueError, match="obs0"):
        rollout(model, torch.zeros(1, 3), zero_actions(1, 2, 3), reward_fn=r)
    with pytest.raises(ValueError, match="actions"):
        rollout(model, torch.zeros(1, 2), zero_actions(2, 2, 3), reward_fn=r)


# ------------------------------------------------------------------------------------------------ agent
GOAL = torch.tensor([0.5, -0.3])


def point_model(ensemble_size=5, **kw):
    """2-D point: next = obs + 0.2 * act (members agree), act in [-1, 1]^2."""
    return FakeEnsemble(2, 2, [[0.0, 0.0]] * ensemble_size, gain=0.2 * torch.eye(2), **kw)


def goal_reward(obs, act, next_obs):
    return -(next_obs - GOAL.to(next_obs)).square().sum(-1)


def small_agent(model=None, optimizer=None, **kw):
    kw = {"horizon": 4, "particles": 2, "seed": 0, **kw}
    return MPCAgent(model or point_model(), goal_reward, None, -np.ones(2), np.ones(2),
                    optimizer=optimizer or CEM(64, 8, 4), **kw)


@pytest.mark.parametrize("optimizer", [lambda: CEM(64, 8, 4), lambda: ICEM(64, 8, 3), lambda: MPPI(64, 3)])
def test_agent_steers_to_goal(optimizer):
    agent = small_agent(optimizer=optimizer())
    obs = np.zeros(2, dtype=np.float32)
    for _ in range(12):
        a = agent.act(obs)
        assert a.shape == (2,) and a.dtype == np.float32
        assert np.all(a >= -1) and np.all(a <= 1)
        obs = obs + 0.2 * a
    assert np.linalg.norm(obs - GOAL.numpy()) < 0.08


def test_agent_batch_of_start_states():
    starts = np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]], dtype=np.float32)
    agent = small_agent()
    obs = starts.copy()
    for _ in range(15):
        a = agent.act(obs)
        assert a.shape == (3, 2)
        obs = obs + 0.2 * a
    assert np.linalg.norm(obs - GOAL.numpy(), axis=1).max() < 0.08
    plan = agent.plan(starts)
    assert plan.shape == (3, 4, 2) and plan.dtype == torch.float32
    assert agent.plan(starts[0]).shape == (4, 2)
    # one-by-one gives the same kind of answer: the first action points toward the goal
    single = small_agent().act(starts[1])
    assert single.shape == (2,) and np.all(single < 0)


def test_agent_seeded_warm_start_and_reset():
    a1 = small_agent(seed=3)
    a2 = small_agent(seed=3)
    obs = np.zeros(2)
    x = [a1.act(obs) for _ in range(3)]
    y = [a2.act(obs) for _ in range(3)]
    assert all(np.array_equal(p, q) for p, q in zip(x, y))
    assert a1._plan is not None
    a1.reset()
    assert a1._plan is None


def test_agent_replan_every_reuses_the_plan():
    model = point_model()
    agent = small_agent(model, replan_every=3)
    obs = np.zeros(2)
    plan = None
    for k in range(3):
        act = agent.act(obs)
        if k == 0:
            plan = agent._plan[0].clone()
        np.testing.assert_allclose(act, plan[k].numpy())
    n_calls = len(model.calls)
    agent.act(obs)                                   # fourth step replans
    assert len(model.calls) > n_calls


def test_agent_bf16_mode_keeps_one_copy():
    net = torch.nn.Linear(4, 2)

    class ModuleModel(torch.nn.Module):
        """A tiny nn.Module ensemble: next = obs + 0.2 * act (the Linear only carries the dtype)."""

        ensemble_size, obs_dim, act_dim = 3, 2, 2

        def __init__(self):
            super().__init__()
            self.net = net

        def predict(self, obs, act, deterministic=False, generator=None):
            assert self.net.weight.dtype == torch.bfloat16 and obs.dtype == torch.bfloat16
            return obs + 0.2 * act.to(obs.dtype)

    model = ModuleModel()
    agent = MPCAgent(model, goal_reward, None, -np.ones(2), np.ones(2), optimizer=CEM(64, 8, 4), horizon=4,
                     particles=2, dtype=torch.bfloat16)
    run = agent._run_model
    assert run is not model and model.net.weight.dtype == torch.float32
    obs = np.zeros(2)
    for _ in range(12):
        obs = obs + 0.2 * agent.act(obs)
    assert agent._run_model is run                   # made once, not per call
    assert np.linalg.norm(obs - GOAL.numpy()) < 0.1


@pytest.mark.parametrize("make", [lambda: CEM(64, 8, 4), lambda: ICEM(64, 8, 3), lambda: MPPI(64, 3)])
def test_diverged_model_never_gives_nan_or_out_of_bounds(make):
    # everywhere NaN
    agent = small_agent(point_model(nan_above=-2.0), optimizer=make())
    for obs in (np.zeros(2), np.ones((3, 2))):
        a = agent.act(obs)
        assert np.isfinite(a).all() and (np.abs(a) <= 1).all()
    # NaN only for first actions above 0.5; the reward wants large first actions: stay below the cliff
    agent = MPCAgent(point_model(nan_above=0.5), lambda o, a, n: a[..., 0], None, -np.ones(2), np.ones(2),
                     optimizer=make(), horizon=3, particles=2)
    a = agent.act(np.zeros(2))
    assert np.isfinite(a).all() and 0.0 < a[0] <= 0.5


def test_agent_sanitises_a_bad_optimizer_result():
    class Broken:
        """An optimiser returning NaN and out-of-bounds entries."""

        def optimize(self, objective, init_mean, box=None, generator=None):
            plan = torch.full_like(init_mean, 5.0)
            plan[..., 0] = torch.nan
            return plan

    agent = MPCAgent(point_model(), goal_reward, None, [-1.0, 0.0], [0.5, 2.0], optimizer=Broken(), horizon=3,
                     particles=2)
    np.testing.assert_array_equal(agent.act(np.zeros(2)), np.array([-0.25, 2.0], dtype=np.float32))


def test_agent_rejects_bad_input():
    with pytest.raises(ValueError, match="action_low"):
        MPCAgent(point_model(), goal_reward, None, np.ones(2), -np.ones(2))
    with pytest.raises(ValueError, match="action_high"):
        MPCAgent(point_model(), goal_reward, None, -np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="particles"):
        small_agent(particles=0)
    with pytest.raises(ValueError, match="horizon"):
        small_agent(horizon=0)
    with pytest.raises(ValueError, match="propagation"):
        small_agent(propagation="ts_2")
    with pytest.raises(ValueError, match="dtype"):
        small_agent(dtype=torch.int32)
    with pytest.raises(ValueError, match="replan_every"):
        small_agent(replan_every=10)
    agent = small_agent()
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.zeros(3))
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.zeros((2, 2, 2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_planning_matches_eager_quality(dtype):
    from mbrl.models import ProbabilisticEnsemble

    g = torch.Generator().manual_seed(0)
    obs = torch.rand(400, 2, generator=g) * 2 - 1
    act = torch.rand(400, 2, generator=g) * 2 - 1
    model = ProbabilisticEnsemble(2, 2, hidden=(32, 32), device="cuda", seed=0)
    model.fit((obs, act, obs + 0.2 * act), epochs=30, progress=False)
    goal = GOAL.cuda()  # a CPU tensor copied inside the reward would make capture fail (then: eager)

    def reward(o, a, o2):
        return -(o2 - goal.to(o2.dtype)).square().sum(-1)

    finals = {}
    for graphs in (False, True):
        agent = MPCAgent(model, reward, None, -np.ones(2), np.ones(2), optimizer=CEM(64, 8, 4), horizon=4,
                         particles=5, device="cuda", dtype=dtype, seed=0, cuda_graphs=graphs)
        o = np.zeros((3, 2), dtype=np.float32)
        for _ in range(12):
            a = agent.act(o)
            assert np.isfinite(a).all() and (np.abs(a) <= 1).all()
            o = o + 0.2 * a
        finals[graphs] = np.linalg.norm(o - GOAL.numpy(), axis=1).max()
        if graphs:
            assert agent._use_graphs and len(agent._graphs) >= 1  # the graph path really ran
    assert finals[True] < 0.15 and finals[False] < 0.15


def test_agent_bounds_are_checked_once_not_at_every_plan(monkeypatch):
    """The agent's ActionBox is validated once, at construction, and handed to the optimiser as it is: no
    per-plan validation (no host sync), while bounds given to the optimiser as low/high are checked."""
    import mbrl.common.action_box as action_box

    calls = []
    real = action_box.check_bounds
    monkeypatch.setattr(action_box, "check_bounds", lambda *a, **k: calls.append(1) or real(*a, **k))
    agent = MPCAgent(FakeEnsemble(2, 1, OFFSETS), final_square, None, [-1.0], [1.0],
                     optimizer=CEM(population=16, elites=4, iterations=2), horizon=3, particles=5, seed=0)
    seen = []
    inner = agent.optimizer.optimize
    monkeypatch.setattr(agent.optimizer, "optimize", lambda *a, **k: seen.append(k["box"]) or inner(*a, **k))
    for _ in range(4):
        a = agent.act(np.zeros(2, np.float32))
        assert -1.0 <= float(a[0]) <= 1.0
    assert len(calls) == 1
    assert all(b is agent.action_box for b in seen) and len(seen) == 4
    with pytest.raises(ValueError, match="low must be <= high"):
        inner(lambda x: x.sum((-1, -2)), torch.zeros(3, 1), low=torch.ones(1), high=-torch.ones(1))
    assert len(calls) == 2
