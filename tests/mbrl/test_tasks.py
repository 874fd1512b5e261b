"""mbrl.tasks: batched reward/termination functions agree with the real gymnasium envs."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.tasks import TASKS, Task, make_task

EXPECTED = {  # name: (obs_dim, act_dim, max_episode_steps, action bound)
    "Hopper-v5": (12, 3, 1000, 1.0),
    "HalfCheetah-v5": (18, 6, 1000, 1.0),
    "InvertedPendulum-v5": (4, 1, 1000, 3.0),
    "Reacher-v5": (10, 2, 50, 1.0),
    "Pusher-v5": (23, 7, 100, 2.0),
}
TERMINATING = {"Hopper-v5", "InvertedPendulum-v5"}


def rel_err(r_fn: torch.Tensor, r_env: torch.Tensor) -> torch.Tensor:
    return (r_fn.double() - r_env).abs() / r_env.abs().clamp_min(1.0)


def rollout(task: Task, steps: int, seed: int, scales=(1.0,), **env_kwargs):
    """Real transitions with uniform random actions (times a per-episode scale), reset after each end."""
    env = task.make_env(**env_kwargs)
    rng = np.random.default_rng(seed)
    low, high = task.action_low.astype(np.float64), task.action_high.astype(np.float64)
    obs, _ = env.reset(seed=seed)
    episode = 0
    rows = {"obs": [], "act": [], "next_obs": [], "reward": [], "terminated": []}
    for _ in range(steps):
        act = rng.uniform(low, high) * scales[episode % len(scales)]
        nxt, reward, terminated, truncated, _ = env.step(act)
        for key, value in zip(rows, (obs, act, nxt, reward, terminated)):
            rows[key].append(value)
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
            episode += 1
    env.close()
    out = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in rows.items() if k != "terminated"}
    out["terminated"] = torch.as_tensor(np.asarray(rows["terminated"], dtype=bool))
    return out


@functools.cache
def cached_task(name: str) -> Task:
    return make_task(name)


@functools.cache
def task_and_data(name: str):
    task = make_task(name)
    # Hopper: in-bounds random actions already topple it within ~25 steps; scale 3 (clamped by MuJoCo,
    # but charged unclipped in the control cost) and 0.3 (slower falls) vary the episodes.
    scales = (1.0, 3.0, 0.3) if name == "Hopper-v5" else (1.0,)
    return task, rollout(task, 400, seed=sum(map(ord, name)), scales=scales)


@pytest.mark.parametrize("name", TASKS)
def test_fields(name):
    task = make_task(name)
    obs_dim, act_dim, max_steps, bound = EXPECTED[name]
    assert (task.name, task.obs_dim, task.act_dim) == (name, obs_dim, act_dim)
    assert task.max_episode_steps == max_steps
    for arr, value in ((task.action_low, -bound), (task.action_high, bound)):
        assert arr.dtype == np.float32 and arr.shape == (act_dim,) and not arr.flags.writeable
        np.testing.assert_array_equal(arr, np.full(act_dim, value, np.float32))
    assert len(task.info["obs_names"]) == obs_dim and task.description
    env = task.make_env()
    assert env.observation_space.shape == (obs_dim,) and env.spec.max_episode_steps == max_steps
    env.close()


@pytest.mark.parametrize("name", TASKS)
def test_agrees_with_env_on_real_transitions(name):
    task, d = task_and_data(name)
    r = task.reward_fn(d["obs"], d["act"], d["next_obs"])
    term = task.termination_fn(d["obs"], d["act"], d["next_obs"])
    assert r.shape == term.shape == (400,) and r.dtype == torch.float64 and term.dtype == torch.bool
    assert float(rel_err(r, d["reward"]).max()) <= 1e-3
    assert torch.equal(term, d["terminated"])
    if name in TERMINATING:  # both outcomes are covered
        assert 0 < int(d["terminated"].sum()) < 400
    # float32 inputs (what a model predicts) still meet the reward tolerance
    r32 = task.reward_fn(d["obs"].float(), d["act"].float(), d["next_obs"].float())
    assert r32.dtype == torch.float32 and float(rel_err(r32, d["reward"]).max()) <= 1e-3


@pytest.mark.parametrize("name", TASKS)
def test_leading_dims_and_bfloat16(name):
    task, d = task_and_data(name)
    o, a, n = d["obs"], d["act"], d["next_obs"]
    flat_r, flat_t = task.reward_fn(o, a, n), task.termination_fn(o, a, n)
    shaped = [x.reshape(20, 20, x.shape[-1]) for x in (o, a, n)]
    assert torch.equal(task.reward_fn(*shaped), flat_r.reshape(20, 20))
    assert torch.equal(task.termination_fn(*shaped), flat_t.reshape(20, 20))
    # one transition without batch dims, and act broadcast against a batch of states
    assert torch.equal(task.reward_fn(o[3], a[3], n[3]), flat_r[3])
    assert task.termination_fn(o[:5], a[0], n[:5]).shape == (5,)
    bf = [x.reshape(4, 100, x.shape[-1]).to(torch.bfloat16) for x in (o, a, n)]
    r_bf, t_bf = task.reward_fn(*bf), task.termination_fn(*bf)
    assert r_bf.dtype == torch.bfloat16 and r_bf.shape == (4, 100) and bool(torch.isfinite(r_bf).all())
    assert t_bf.dtype == torch.bool and t_bf.shape == (4, 100)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(TASKS), shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       seed=st.integers(0, 2**16))
def test_batch_invariance_random_inputs(name, shape, seed):
    task = cached_task(name)
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if shape else 1
    o, n_o = (torch.randn(n, task.obs_dim, generator=g, dtype=torch.float64) for _ in range(2))
    a = torch.randn(n, task.act_dim, generator=g, dtype=torch.float64)
    for fn in (task.reward_fn, task.termination_fn):
        flat = fn(o, a, n_o)
        batched = fn(*(x.reshape(*shape, x.shape[-1]) for x in (o, a, n_o)))
        assert batched.shape == tuple(shape) and torch.equal(batched.reshape(-1), flat)



@pytest.mark.parametrize("name", TASKS)
def test_bad_inputs_name_the_argument(name):
    task = make_task(name)
    o, a = torch.zeros(2, task.obs_dim), torch.zeros(2, task.act_dim)
    for fn in (task.reward_fn, task.termination_fn):
        with pytest.raises(ValueError, match=r"^obs "):
            fn(torch.zeros(2, task.obs_dim + 1), a, o)
        with pytest.raises(ValueError, match=r"^act "):
            fn(o, torch.zeros(2, task.act_dim + 1), o)
        with pytest.raises(ValueError, match=r"^next_obs "):
            fn(o, a, torch.zeros(2, task.obs_dim - 1))
        with pytest.raises(ValueError, match=r"^obs "):
            fn(torch.tensor(0.0), a, o)
        with pytest.raises(ValueError, match="broadcast"):
            fn(torch.zeros(3, task.obs_dim), a, o)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="Hopper-v5.*Pusher-v5"):
        make_task("Walker2d-v5")


def test_options_reach_env_and_functions():
    task = make_task("HalfCheetah-v5", ctrl_cost_weight=0.5, forward_reward_weight=2.0, max_episode_steps=30)
    assert task.max_episode_steps == 30 and task.info["params"]["ctrl_cost_weight"] == 0.5
    d = rollout(task, 60, seed=1)
    assert float(rel_err(task.reward_fn(d["obs"], d["act"], d["next_obs"]), d["reward"]).max()) <= 1e-3
    # frame_skip changes dt, which the forward reward divides by
    task = make_task("Hopper-v5", frame_skip=2, healthy_z_range=(0.9, 2.0))
    assert task.info["dt"] == pytest.approx(0.004)
    d = rollout(task, 150, seed=2)
    assert float(rel_err(task.reward_fn(d["obs"], d["act"], d["next_obs"]), d["reward"]).max()) <= 1e-3
    assert torch.equal(task.termination_fn(d["obs"], d["act"], d["next_obs"]), d["terminated"])
    assert bool(d["terminated"].any())


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="exclude_current_positions_from_observation"):
        make_task("Hopper-v5", exclude_current_positions_from_observation=True)
    with pytest.raises(ValueError, match="no_such_option"):
        make_task("Reacher-v5", no_such_option=1)
    task = make_task("Pusher-v5")
    with pytest.raises(ValueError, match="reward_dist_weight"):
        task.make_env(reward_dist_weight=3.0)
    env = task.make_env(reward_dist_weight=1.0, max_episode_steps=7)  # same value, other kwargs pass
    assert isinstance(env, gym.Env) and env.spec.max_episode_steps == 7
    env.close()


def test_hopper_health_branches():
    task = make_task("Hopper-v5")
    obs = torch.zeros(4, 12, dtype=torch.float64)
    obs[:, 1] = 1.25  # standing height
    nxt = obs.clone()
    nxt[1, 1] = 0.7  # z on the (strict) bound: unhealthy
    nxt[2, 2] = -0.2  # angle on the bound
    nxt[3, 4] = 150.0  # a joint angle outside the state range
    act = torch.zeros(4, 3, dtype=torch.float64)
    assert task.termination_fn(obs, act, nxt).tolist() == [False, True, True, True]
    assert task.reward_fn(obs, act, nxt).tolist() == [1.0, 0.0, 0.0, 0.0]
    nan_next = torch.full((12,), float("nan"), dtype=torch.float64)
    assert bool(task.termination_fn(obs[0], act[0], nan_next))
    lenient = make_task("Hopper-v5", terminate_when_unhealthy=False)
    assert not bool(lenient.termination_fn(obs, act, nxt).any())
    assert lenient.reward_fn(obs, act, nxt).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_inverted_pendulum_non_finite_terminates():
    task = make_task("InvertedPendulum-v5")
    obs = torch.zeros(3, 4)
    nxt = torch.tensor([[0.0, 0.2, 0.0, 0.0], [0.0, -0.2001, 0.0, 0.0], [float("inf"), 0.0, 0.0, 0.0]])
    act = torch.zeros(3, 1)
    assert task.termination_fn(obs, act, nxt).tolist() == [False, True, True]
    assert task.reward_fn(obs, act, nxt).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", TASKS)
def test_cuda_matches_cpu(name):
    task, d = task_and_data(name)
    args = [d[k].float() for k in ("obs", "act", "next_obs")]
    cuda = [x.cuda() for x in args]
    r, t = task.reward_fn(*cuda), task.termination_fn(*cuda)
    assert r.device.type == "cuda" and t.device.type == "cuda"
    torch.testing.assert_close(r.cpu(), task.reward_fn(*args), rtol=1e-5, atol=1e-5)
    assert torch.equal(t.cpu(), task.termination_fn(*args))
