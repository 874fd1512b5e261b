"""All four parts in one planner: a PETS ensemble (mbrl) plans with a MURAL reward from success examples,
whose classifier is RCAD-regularised, under a Lyapunov-density-model constraint (docs/design.md, diagram)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mbrl import CEM, MPCAgent, ProbabilisticEnsemble, ReplayBuffer, make_task
from mbrl.common import ActionBox
from mbrl.rollout import rollout
from safe_density import LyapunovDensityModel, MuralReward
from safe_density.density import GaussianMixtureDensity
from safe_density.mural import MuralConfig
from safe_density.rcad import RCAD

OBJ, GOAL = slice(17, 20), slice(20, 23)  # Pusher-v5 observation: object and goal positions


@pytest.fixture(scope="module")
def parts():
    """Pusher data from a random policy, and the three learned parts fitted on it (seeded, ~2 s)."""
    torch.manual_seed(0)
    task = make_task("Pusher-v5")
    env = task.make_env()
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(1000, task.obs_dim, task.act_dim)
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        act = (0.5 * rng.uniform(task.action_low, task.action_high)).astype(np.float32)
        nxt, rew, term, trunc, _ = env.step(act)
        buf.add(obs, act, nxt, rew, term, trunc)
        obs = nxt if not (term or trunc) else env.reset()[0]
    env.close()
    data = buf.all()

    # PETS dynamics
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=3, hidden=(32, 32), seed=0)
    model.fit(buf, epochs=3, progress=False)
    # LDM constraint from the same data
    ldm = LyapunovDensityModel(task.obs_dim, task.act_dim, task.action_low, task.action_high,
                               density=GaussianMixtureDensity(2, seed=0), hidden=(32,), steps=30, seed=0)
    ldm.fit(data.obs, data.act, data.next_obs, progress=False)
    # MURAL reward on the object position: success = object at the goal; RCAD-regularised classifier
    examples = data.obs[:20].clone()
    examples[:, OBJ] = examples[:, GOAL] + 0.01 * torch.randn(20, 3)
    mural = MuralReward(examples, method="classifier", config=MuralConfig.small(classifier_steps=50), seed=0,
                        state_slice=(17, 20), regularizer=RCAD())
    mural.update(data.obs, progress=False)
    return SimpleNamespace(task=task, data=data, model=model, ldm=ldm, mural=mural, examples=examples)


def _agent(p, constraints) -> MPCAgent:
    """The composed planner; everything but ``constraints`` is the same for every agent built here."""
    t = p.task
    return MPCAgent(p.model, t.reward_fn, t.termination_fn, t.action_low, t.action_high,
                    optimizer=CEM(population=32, elites=4, iterations=2), horizon=4, particles=3,
                    constraints=constraints, reward_shapers=[p.mural], seed=0)


def test_pets_mural_rcad_ldm_compose_on_pusher(parts):
    p = parts
    task, data, ldm, mural = p.task, p.data, p.ldm, p.mural
    c = float(torch.quantile(ldm.value(data.obs, data.act), 0.9))
    constraint = ldm.constraint(c)
    assert float(mural(p.examples).mean()) > float(mural(data.obs).mean())

    agent = _agent(p, [constraint])
    env = task.make_env()
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        a = agent.act(obs)
        assert a.shape == (task.act_dim,) and np.isfinite(a).all()
        assert (a >= task.action_low - 1e-6).all() and (a <= task.action_high + 1e-6).all()
        obs, *_ = env.step(a)
    env.close()

    # the planner really scores with the MURAL reward (replace mode) and the LDM violations
    o0 = torch.as_tensor(obs, dtype=torch.float32)[None]
    acts = torch.zeros(1, 5, 4, task.act_dim)
    ret, viol = rollout(p.model, o0, acts, reward_fn=task.reward_fn, termination_fn=task.termination_fn,
                        particles=3, constraints=[constraint], reward_shapers=[mural])
    assert ret.shape == (1, 5) and ((ret >= 0) & (ret <= 4)).all()  # 4 steps of rewards in [0, 1]
    assert (viol >= 0).all() and torch.isfinite(viol).all()


@pytest.mark.parametrize("k", [50, 150, 250])  # in-distribution start states (rows of the data)
def test_ldm_constraint_moves_the_plan_to_a_lower_density_level(parts, k):
    """Same model, reward, optimiser and seed, with and without the LDM constraint: where the unconstrained
    plan's first action has ``G(s, a) > c`` (and a feasible action exists), the constrained agent executes
    one with ``G(s, a) <= c``; with a threshold that never binds it executes exactly the unconstrained one."""
    p = parts
    ldm, s = p.ldm, p.data.obs[k]

    def G(a) -> float:
        return float(ldm.value(s[None], torch.as_tensor(a, dtype=torch.float32)[None]))

    free = _agent(p, [])
    a_free = free.act(s.numpy())
    g_free = G(a_free)
    # c: halfway between the lowest G of 4096 actions sampled at s and the unconstrained action's G, so that
    # the unconstrained action is infeasible and feasible actions exist
    box = ActionBox(p.task.action_low, p.task.action_high)
    g_samples = ldm.value(s.expand(4096, -1), box.sample(4096, generator=torch.Generator().manual_seed(k)))
    g_min = float(g_samples.min())
    assert g_min < g_free, "the unconstrained action minimises G among the samples: no binding threshold"
    c = (g_min + g_free) / 2
    assert g_free > c

    constrained = _agent(p, [ldm.constraint(c)])
    a_con = constrained.act(s.numpy())
    assert constrained.stats["plans"] == 1 and constrained.stats["infeasible"] == 0, constrained.stats
    assert G(a_con) <= c + 1e-5 * max(1.0, abs(c)), (G(a_con), c, g_free)  # slack: batched vs single eval
    assert not np.allclose(a_con, a_free)

    # control: the constraint changes the plan only by binding; a threshold above every G changes nothing
    loose = _agent(p, [ldm.constraint(1e9)])
    np.testing.assert_array_equal(loose.act(s.numpy()), a_free)
    assert loose.stats == {"plans": 1, "replaced_by_best": 0, "projected": 0, "infeasible": 0}
