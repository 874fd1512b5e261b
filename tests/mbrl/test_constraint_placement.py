"""Where constraints apply in the planner, and what the MPC agent executes under them (issue: LDM on Hopper).

Small systems with known dynamics: a 2-D point ``next = obs + 0.2 * act`` (members may add offsets, so
imagined states differ from the real one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.agent import MPCAgent
from mbrl.planning import CEM, ICEM, MPPI
from mbrl.planning.selection import rank_key
from mbrl.rollout import rollout
from safe_density.ldm import LyapunovDensityModel
from tests.mbrl.test_agent import FakeEnsemble, goal_reward, point_model


class Spy:
    """A constraint that records the states it is evaluated on; ``cost = f(obs, act)``."""

    def __init__(self, f, threshold, placement):
        self.f, self.threshold, self.placement, self.seen = f, threshold, placement, []

    def cost(self, obs, act):
        self.seen.append(obs.detach().clone())
        return self.f(obs, act)


def first_action_gap(obs, act):
    """Feasible iff ``|a_0| >= 0.5``: two disjoint half-boxes, so the mean of feasible elites can be
    infeasible (the goal lies between them)."""
    return 0.5 - act[..., 0].abs()


def test_current_constraint_sees_only_the_real_state():
    model = FakeEnsemble(2, 2, [[1.0, 0.0], [3.0, 0.0]], gain=0.2 * torch.eye(2))   # imagined != real
    spy = Spy(lambda o, a: o[..., 0], 0.0, "current")
    obs0 = torch.tensor([[0.25, -1.0], [-2.0, 0.5]])
    actions = torch.rand(2, 7, 5, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _, viol = rollout(model, obs0, actions, reward_fn=goal_reward, particles=4, constraints=[spy])
    assert len(spy.seen) == 1                                   # once, not once per imagined step
    assert torch.equal(spy.seen[0], obs0[:, None, :].expand(2, 7, 2))
    assert torch.allclose(viol, torch.relu(obs0[:, :1] - 0.0).expand(2, 7))


def test_imagined_constraint_sees_the_imagined_states():
    model = FakeEnsemble(2, 2, [[1.0, 0.0], [3.0, 0.0]], gain=0.2 * torch.eye(2))
    spy = Spy(lambda o, a: o[..., 0], 0.0, "imagined")
    obs0 = torch.zeros(1, 2)
    rollout(model, obs0, torch.zeros(1, 3, 4, 2), reward_fn=goal_reward, particles=2, constraints=[spy])
    assert len(spy.seen) == 4
    assert {round(float(v), 3) for v in spy.seen[-1][..., 0].unique()} == {3.0, 9.0}  # 3 steps of +1 / +3


def test_ldm_constraint_is_placed_on_the_current_state_by_default():
    torch.manual_seed(0)
    obs = torch.randn(300, 3)
    act = torch.rand(300, 2) * 2 - 1
    ldm = LyapunovDensityModel(3, 2, -np.ones(2), np.ones(2), steps=20, obs_indices=[1, 2], seed=0)
    ldm.fit(obs, act, obs + 0.05 * torch.randn(300, 3), progress=False)
    c = ldm.calibrate(obs, act, 0.5)
    con = ldm.constraint()
    assert con.placement == "current" and con.threshold == c
    assert ldm.constraint(greedy=True).threshold == ldm.calibration["energy"]
    with pytest.raises(ValueError, match="placement"):
        ldm.constraint(placement="everywhere")
    # the cost ignores obs[..., 0] (obs_indices) and matches value()
    o2 = obs[:5].clone()
    o2[:, 0] += 100.0
    assert torch.allclose(con.cost(o2, act[:5]), ldm.value(obs[:5], act[:5]), atol=1e-5)
    # in a rollout the violation is exactly relu(G(s0, a0) - c)
    model = FakeEnsemble(3, 2, [[50.0, 50.0, 50.0]] * 2)
    obs0 = obs[:2]
    actions = act[:6].reshape(1, 6, 1, 2).expand(2, 6, 3, 2).contiguous()
    _, viol = rollout(model, obs0, actions, reward_fn=lambda o, a, n: o[..., 0], particles=2, constraints=[con])
    want = torch.relu(ldm.value(obs0[:, None].expand(2, 6, 3), actions[:, :, 0]) - c)
    assert torch.allclose(viol, want, atol=1e-4)


def indifferent_to_a0(obs, act, next_obs):
    """Reward that ignores ``a_0``: feasible elites fall on both sides of the gap, so their mean lands in it."""
    return -(act[..., 1] - 0.3).square()


@pytest.mark.parametrize("make_opt", [lambda: CEM(64, 16, 1), lambda: ICEM(64, 8, 3, return_best=False),
                                      lambda: MPPI(64, 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_executed_action_is_feasible_when_a_feasible_candidate_was_sampled(make_opt, seed):
    con = Spy(first_action_gap, 0.0, "current")
    agent = MPCAgent(point_model(), indifferent_to_a0, None, -np.ones(2), np.ones(2), optimizer=make_opt(),
                     horizon=3, particles=2, constraints=[con], seed=seed)
    obs = np.zeros(2, dtype=np.float32)
    for _ in range(6):
        a = agent.act(obs)
        assert abs(a[0]) >= 0.5 - 1e-6, a
        obs = obs + 0.2 * a
    assert agent.stats["plans"] == 6 and agent.stats["infeasible"] == 0
    # the optimisers' own answer (a mean) fell into the gap at least once: the agent replaced it
    assert agent.stats["replaced_by_best"] >= 1


class MeanInGap(CEM):
    """A stub whose answer is infeasible (a_0 = 0) while its best sample is feasible (a_0 = 0.7)."""

    def optimize(self, objective, init_mean, *, box=None, generator=None):
        super().optimize(objective, init_mean, box=box, generator=generator)
        B = init_mean.shape[0] if init_mean.ndim == 3 else 1
        best = torch.zeros_like(init_mean if init_mean.ndim == 3 else init_mean[None])
        best[..., 0] = 0.7
        self.last_best = (best, torch.zeros(B), torch.zeros(B))
        return torch.zeros_like(init_mean)


def test_agent_executes_the_best_sample_when_the_mean_is_infeasible():
    agent = MPCAgent(point_model(), indifferent_to_a0, None, -np.ones(2), np.ones(2), optimizer=MeanInGap(16, 4, 1),
                     horizon=3, particles=2, constraints=[Spy(first_action_gap, 0.0, "current")], seed=0)
    a = agent.act(np.zeros(2, dtype=np.float32))
    assert a[0] == pytest.approx(0.7) and agent.stats["replaced_by_best"] == 1
    # without constraints the optimiser's answer is executed unchanged
    free = MPCAgent(point_model(), indifferent_to_a0, None, -np.ones(2), np.ones(2), optimizer=MeanInGap(16, 4, 1),
                    horizon=3, particles=2, seed=0)
    assert free.act(np.zeros(2, dtype=np.float32))[0] == 0.0


def test_no_feasible_candidate_is_counted_and_least_violating_executed():
    con = Spy(lambda o, a: a[..., 0], -5.0, "current")      # a_0 <= -5 is impossible in [-1, 1]
    agent = MPCAgent(point_model(), goal_reward, None, -np.ones(2), np.ones(2), optimizer=CEM(64, 8, 4),
                     horizon=3, particles=2, constraints=[con], seed=0)
    a = agent.act(np.zeros(2, dtype=np.float32))
    assert agent.stats["plans"] == 1 and agent.stats["infeasible"] == 1
    assert a[0] < -0.8                                       # as close to the feasible side as possible


@settings(max_examples=25, deadline=None)
@given(lo=st.floats(-4, 1), g=st.floats(2.0, 6.0))
def test_ranking_of_infeasible_candidates_depends_on_the_threshold(lo, g):
    """Per-step costs ``[lo, lo + g]`` (candidate A) and ``[m, m]`` (B) with ``m = lo + g / 2 + 1/4``. Far below
    every cost both violate at both steps and A's total is smaller; with ``c`` between ``lo + 1/2`` and ``m``
    A's first step no longer counts but B's total is now smaller: the order flips with ``c``."""
    m = lo + g / 2 + 0.25
    costs = torch.tensor([[lo, lo + g], [m, m]])

    class StepCost:
        placement = "imagined"

        def __init__(self, c):
            self.threshold = c

        def cost(self, obs, act):
            return act[..., 0]                  # the candidate's action at this step is its cost

    def key(c):
        actions = costs[None, :, :, None].contiguous()                        # [1, 2 candidates, H=2, 1]
        _, viol = rollout(FakeEnsemble(1, 1, [[0.0]]), torch.zeros(1, 1), actions,
                          reward_fn=lambda o, a, n: o[..., 0], particles=1, constraints=[StepCost(c)])
        assert bool((viol > 0).all())          # both candidates infeasible
        return rank_key(torch.zeros_like(viol), viol)[0].tolist()

    low = key(lo - 10.0)
    mid = key((lo + 0.5 + m) / 2)
    assert low[0] > low[1]                     # A ranks first far below the costs
    assert mid[1] > mid[0]                     # B ranks first at the middle threshold


def test_agent_rejects_a_model_and_task_of_different_observation_sizes():
    from mbrl.tasks import make_task

    task = make_task("Hopper-v5")                      # 12-D observations (x kept)
    model = FakeEnsemble(11, 3, [[0.0] * 11])          # a model built on gym.make("Hopper-v5") (11-D)
    with pytest.raises(ValueError, match="make_env"):
        MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high, horizon=2)

    def scalar_reward(obs, act, next_obs):
        return torch.tensor(1.0)
    with pytest.raises(ValueError, match="reward_fn"):
        MPCAgent(point_model(), scalar_reward, None, -np.ones(2), np.ones(2), horizon=2)


def test_infeasible_plan_is_projected_onto_a_small_feasible_set_at_the_current_state():
    """A feasible set the optimiser's few samples miss (a ball of radius 0.1 around (0.9, -0.9)): the agent
    samples actions at the real state and executes the feasible one nearest to its plan (the LDM acting rule)."""
    target = torch.tensor([0.9, -0.9])
    con = Spy(lambda o, a: (a - target).norm(dim=-1), 0.1, "current")
    agent = MPCAgent(point_model(), indifferent_to_a0, None, -np.ones(2), np.ones(2), optimizer=CEM(8, 2, 1),
                     horizon=2, particles=1, constraints=[con], seed=0)
    for _ in range(3):
        a = agent.act(np.zeros(2, dtype=np.float32))
        assert float(torch.norm(torch.as_tensor(a) - target)) <= 0.1 + 1e-6
    assert agent.stats["projected"] >= 1 and agent.stats["infeasible"] == 0
    off = MPCAgent(point_model(), indifferent_to_a0, None, -np.ones(2), np.ones(2), optimizer=CEM(8, 2, 1),
                   horizon=2, particles=1, constraints=[con], seed=0, projection_samples=0)
    off.act(np.zeros(2, dtype=np.float32))
    assert off.stats["infeasible"] == 1 and off.stats["projected"] == 0
