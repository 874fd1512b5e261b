"""Goal-reaching tasks (PointMaze, Meta-World push-v3): torch reward/success vs the envs themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.tasks.maze import MAZES, make_maze_task, maze_distance
from mbrl.tasks.metaworld_push import make_push_task, push_distance

_MAZE = make_maze_task("PointMaze_UMaze-v3")
_PUSH = make_push_task()


@pytest.fixture(scope="module")
def umaze():
    return _MAZE


@pytest.fixture(scope="module")
def push():
    return _PUSH


def _rollout(env, policy, steps, reset_kw):
    obs, _ = env.reset(**reset_kw)
    rows = []
    for _ in range(steps):
        act = np.asarray(policy(obs), dtype=np.float32)
        nxt, rew, term, trunc, info = env.step(act)
        rows.append((obs, act, nxt, float(rew), bool(term), float(info["success"])))
        obs = nxt
        if term or trunc:
            break
    o, a, n, r, te, s = (np.stack([row[i] for row in rows]) for i in range(6))
    return (torch.as_tensor(o), torch.as_tensor(a), torch.as_tensor(n), torch.as_tensor(r),
            torch.as_tensor(te), torch.as_tensor(s))


def _maze_transitions(task, continuing=True):
    env = task.make_env()
    rng = np.random.default_rng(0)
    goal_cell = np.array(MAZES[task.name].goal_cell)
    policy = lambda _o: rng.uniform(-1, 1, 2)  # noqa: E731
    at_goal = {"reset_cell": goal_cell, "goal_cell": goal_cell}
    parts = [_rollout(env, policy, 60, dict(seed=0)),
             # start at the goal: random pushes drift in and out of the 0.45 disc -> both labels
             _rollout(env, policy, 150, dict(seed=1, options=at_goal))]
    env.close()
    return [torch.cat(x) for x in zip(*parts)]


def test_maze_reward_and_success_match_env(umaze):
    obs, act, nxt, rew, term, succ = _maze_transitions(umaze)
    assert obs.shape[-1] == umaze.obs_dim == 6 and act.shape[-1] == umaze.act_dim == 2
    assert 0 < succ.sum() < len(succ)  # both outcomes present
    torch.testing.assert_close(umaze.reward_fn(obs, act, nxt), rew.to(nxt.dtype))
    assert torch.equal(umaze.success_fn(nxt), succ > 0.5)
    assert not umaze.termination_fn(obs, act, nxt).any() and not term.any()


def test_maze_episodic_terminates_on_success():
    task = make_maze_task("PointMaze_UMaze-v3", continuing_task=False)
    env = task.make_env()
    goal_cell = np.array(MAZES[task.name].goal_cell)
    at_goal = {"reset_cell": goal_cell, "goal_cell": goal_cell}
    obs, act, nxt, rew, term, succ = _rollout(env, lambda _o: np.zeros(2), 5, dict(seed=0, options=at_goal))
    env.close()
    assert term[0] and torch.equal(task.termination_fn(obs, act, nxt), term)


def test_maze_fixed_start_and_goal(umaze):
    env = umaze.make_env()
    o0, _ = env.reset(seed=0)
    o1, _ = env.reset(seed=123)
    env.close()
    np.testing.assert_array_equal(o0, o1)
    np.testing.assert_allclose(o0, [-1.0, -1.0, 0.0, 0.0, -1.0, 1.0])  # U-maze: bottom-left -> top-left
    assert umaze.max_episode_steps == 300


def test_medium_maze_builds():
    task = make_maze_task("PointMaze_Medium-v3")
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    env.close()
    assert obs.shape == (6,) and task.max_episode_steps == 600
    assert maze_distance(torch.as_tensor(obs)) > 3.0
    assert bool(task.success_fn(task.success_examples(8)).all())


def _push_transitions(task):
    from metaworld.policies import SawyerPushV3Policy

    env = task.make_env()
    scripted = SawyerPushV3Policy()
    rng = np.random.default_rng(0)
    # scripted pushing (with noise) crosses the success boundary; random steps afterwards leave it.
    scripted_policy = lambda o: np.clip(scripted.get_action(o) + 0.1 * rng.standard_normal(4), -1, 1)  # noqa: E731
    a = _rollout(env, scripted_policy, 110, dict(seed=0))
    b = _rollout(env, lambda _o: rng.uniform(-1, 1, 4), 30, dict(seed=1))
    env.close()
    return [torch.cat(x) for x in zip(a, b)]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_push_reward_and_success_match_env(push):
    obs, act, nxt, rew, term, succ = _push_transitions(push)
    assert obs.shape[-1] == push.obs_dim == 39 and act.shape[-1] == push.act_dim == 4
    assert 0 < succ.sum() < len(succ)
    assert torch.equal(push.success_fn(nxt), succ > 0.5)
    torch.testing.assert_close(push.reward_fn(obs, act, nxt), (succ > 0.5).to(nxt.dtype))
    assert not push.termination_fn(obs, act, nxt).any() and not term.any()
    # the observation's goal is the env's target
    assert torch.allclose(nxt[:, 36:39], nxt[:1, 36:39].expand(len(nxt), 3))


def test_push_fixed_reset(push):
    env = push.make_env()
    o0, _ = env.reset(seed=0)
    o1, _ = env.reset(seed=5)
    env.close()
    np.testing.assert_array_equal(o0, o1)
    assert push_distance(torch.as_tensor(o0)) > 0.1  # not solved at reset


@pytest.mark.parametrize("which", ["umaze", "push"])
def test_success_examples_are_successes(which, request):
    task = request.getfixturevalue(which)
    ex = task.success_examples(64, seed=3)
    assert ex.shape == (64, task.obs_dim) and ex.dtype == torch.float32
    assert bool(task.success_fn(ex).all())
    assert torch.equal(ex, task.success_examples(64, seed=3))
    assert not torch.equal(ex, task.success_examples(64, seed=4))
    assert task.goal_features(ex).shape[0] == 64
    assert torch.equal(task.reward_fn(ex, torch.zeros(64, task.act_dim), ex), torch.ones(64))
    with pytest.raises(ValueError, match="k"):
        task.success_examples(0)


@pytest.mark.parametrize("which", ["umaze", "push"])
def test_bad_input_names_argument(which, request):
    task = request.getfixturevalue(which)
    bad, good = torch.zeros(3, task.obs_dim + 1), torch.zeros(3, task.obs_dim)
    with pytest.raises(ValueError, match="next_obs"):
        task.reward_fn(good, torch.zeros(3, task.act_dim), bad)
    with pytest.raises(ValueError, match="act"):
        task.termination_fn(good, torch.zeros(3, task.act_dim + 1), good)
    with pytest.raises(ValueError, match="obs"):
        task.success_fn(bad)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), seed=st.integers(0, 2**16))
def test_batch_invariance(shape, seed):
    for task, scale in ((_MAZE, 1.0), (_PUSH, 0.1)):
        gen = torch.Generator().manual_seed(seed)
        n = int(np.prod(shape)) if shape else 1
        base = task.success_examples(n, seed=seed).double()
        nxt = base + scale * torch.randn(n, task.obs_dim, generator=gen, dtype=torch.float64)
        act = torch.zeros(n, task.act_dim, dtype=torch.float64)
        flat_r = task.reward_fn(nxt, act, nxt)
        flat_s = task.success_fn(nxt)
        shaped = nxt.reshape(*shape, task.obs_dim)
        r = task.reward_fn(shaped, act.reshape(*shape, task.act_dim), shaped)
        assert r.shape == tuple(shape) and r.dtype == torch.float64
        assert torch.equal(r.reshape(-1), flat_r)
        assert torch.equal(task.success_fn(shaped).reshape(-1), flat_s)
        assert task.termination_fn(shaped, act.reshape(*shape, task.act_dim), shaped).shape == tuple(shape)
        # each row alone gives the same answer as in the batch
        assert torch.equal(torch.stack([task.success_fn(x) for x in nxt]), flat_s)



def test_maze_action_repeat_matches_inner_steps():
    """One agent step of ``action_repeat=k`` is k env steps with the same action; success is any inner one."""
    k = 4
    rep = make_maze_task("PointMaze_UMaze-v3", action_repeat=k)
    assert rep.max_episode_steps == -(-_MAZE.max_episode_steps // k) and rep.info["action_repeat"] == k
    a, b = rep.make_env(), _MAZE.make_env()
    oa, _ = a.reset(seed=0)
    ob, _ = b.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.uniform(-1, 1, 2)
        oa, ra, *_, ia = a.step(act)
        succ = False
        for _ in range(k):
            ob, rb, *_, ib = b.step(act)
            succ |= bool(ib["success"])
        np.testing.assert_allclose(oa, ob)
        assert ra == rb and ia["success"] == succ and ia["inner_steps"] == k
        assert float(rep.reward_fn(torch.as_tensor(oa), torch.as_tensor(act), torch.as_tensor(oa))) == ra
    env = rep.make_env(max_episode_steps=3)  # limits are given in agent steps
    env.reset(seed=0)
    n = 0
    while True:
        *_, trunc, _ = env.step(np.zeros(2))
        n += 1
        if trunc:
            break
    assert n == 3
    with pytest.raises(ValueError, match="action_repeat"):
        make_maze_task("PointMaze_UMaze-v3", action_repeat=0)
