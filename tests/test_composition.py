"""All four parts in one planner: a PETS ensemble (mbrl) plans with a MURAL reward from success examples,
whose classifier is RCAD-regularised, under a Lyapunov-density-model constraint (design.md, diagram)."""

from __future__ import annotations

import numpy as np
import torch

from mbrl import CEM, MPCAgent, ProbabilisticEnsemble, ReplayBuffer, make_task
from mbrl.rollout import rollout
from safe_density import LyapunovDensityModel, MuralReward
from safe_density.density import GaussianMixtureDensity
from safe_density.mural import MuralConfig
from safe_density.rcad import RCAD

OBJ, GOAL = slice(17, 20), slice(20, 23)  # Pusher-v5 observation: object and goal positions


def test_pets_mural_rcad_ldm_compose_on_pusher():
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
    data = buf.all()

    # PETS dynamics
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=3, hidden=(32, 32), seed=0)
    model.fit(buf, epochs=3, progress=False)
    # LDM constraint from the same data
    ldm = LyapunovDensityModel(task.obs_dim, task.act_dim, task.action_low, task.action_high,
                               density=GaussianMixtureDensity(2, seed=0), hidden=(32,), steps=30, seed=0)
    ldm.fit(data.obs, data.act, data.next_obs, progress=False)
    c = float(torch.quantile(ldm.value(data.obs, data.act), 0.9))
    constraint = ldm.constraint(c)
    # MURAL reward on the object position: success = object at the goal; RCAD-regularised classifier
    examples = data.obs[:20].clone()
    examples[:, OBJ] = examples[:, GOAL] + 0.01 * torch.randn(20, 3)
    mural = MuralReward(examples, method="classifier", config=MuralConfig.small(classifier_steps=50), seed=0,
                        state_slice=(17, 20), regularizer=RCAD())
    mural.update(data.obs, progress=False)
    assert float(mural(examples).mean()) > float(mural(data.obs).mean())

    agent = MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high,
                     optimizer=CEM(population=32, elites=4, iterations=2), horizon=4, particles=3,
                     constraints=[constraint], reward_shapers=[mural], seed=0)
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        a = agent.act(obs)
        assert a.shape == (task.act_dim,) and np.isfinite(a).all()
        assert (a >= task.action_low - 1e-6).all() and (a <= task.action_high + 1e-6).all()
        obs, *_ = env.step(a)

    # the planner really scores with the MURAL reward (replace mode) and the LDM violations
    o0 = torch.as_tensor(obs, dtype=torch.float32)[None]
    acts = torch.zeros(1, 5, 4, task.act_dim)
    ret, viol = rollout(model, o0, acts, reward_fn=task.reward_fn, termination_fn=task.termination_fn,
                        particles=3, constraints=[constraint], reward_shapers=[mural])
    assert ret.shape == (1, 5) and ((ret >= 0) & (ret <= 4)).all()  # 4 steps of rewards in [0, 1]
    assert (viol >= 0).all() and torch.isfinite(viol).all()
