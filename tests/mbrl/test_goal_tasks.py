"""Goal-reaching tasks (PointMaze, Meta-World push-v3, Pusher-goal-v5): torch reward/success vs the envs themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.tasks import GOAL_TASKS, make_task
from mbrl.tasks.maze import MAZES, make_maze_task, maze_distance
from mbrl.tasks.metaworld_push import make_push_task, push_distance
from mbrl.tasks.pusher import make_pusher_goal_task

_MAZE = make_maze_task("PointMaze_UMaze-v3")
_PUSH = make_push_task()
_PUSHER = make_task("Pusher-goal-v5")


@pytest.fixture(scope="module")
def umaze():
    return _MAZE


@pytest.fixture(scope="module")
def push():
    return _PUSH


@pytest.fixture(scope="module")
def pusher():
    return _PUSHER


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


@pytest.mark.parametrize("which", ["umaze", "push", "pusher"])
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


@pytest.mark.parametrize("which", ["umaze", "push", "pusher"])
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
    for task, scale in ((_MAZE, 1.0), (_PUSH, 0.1), (_PUSHER, 0.05)):
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



_REPEATABLE = {"maze": (lambda k: make_maze_task("PointMaze_UMaze-v3", action_repeat=k), _MAZE),
               "push": (lambda k: make_push_task(action_repeat=k), _PUSH)}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("which", list(_REPEATABLE))
def test_action_repeat_matches_inner_steps(which):
    """One agent step of ``action_repeat=k`` is k env steps with the same action; success is any inner one; the
    episode limit is in agent steps (maze: the env's rounded up; push: 500 // k, MT1 refuses a 501st step)."""
    k = 4
    build, plain = _REPEATABLE[which]
    rep = build(k)
    want = -(-plain.max_episode_steps // k) if which == "maze" else plain.max_episode_steps // k
    assert rep.max_episode_steps == want and rep.info["action_repeat"] == k
    a, b = rep.make_env(), plain.make_env()
    oa, _ = a.reset(seed=0)
    ob, _ = b.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.uniform(-1, 1, plain.act_dim)
        oa, ra, *_, ia = a.step(act)
        succ = False
        for _ in range(k):
            ob, rb, *_, ib = b.step(act)
            succ |= bool(ib["success"])
        np.testing.assert_allclose(oa, ob)
        assert ra == rb and ia["success"] == succ and ia["inner_steps"] == k
        # the sparse reward of the last inner step (push's env reward is Meta-World's shaped one)
        assert float(rep.reward_fn(torch.as_tensor(oa), torch.as_tensor(act), torch.as_tensor(oa))) == ib["success"]
    env = rep.make_env(max_episode_steps=3)  # limits are given in agent steps
    env.reset(seed=0)
    n = 0
    while True:
        *_, trunc, _ = env.step(np.zeros(plain.act_dim))
        n += 1
        if trunc:
            break
    assert n == 3
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="action_repeat"):
            build(bad)
    if which == "push":
        with pytest.raises(ValueError, match="features"):
            make_push_task(features="hand")


# ------------------------------------------------------------------ agreement with the simulators' own data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_push_features_and_success_match_mujoco(push):
    """Meta-World push-v3: ``goal_features`` are the hand body and the puck body as MuJoCo has them,
    and the success test is the puck body within 0.05 of the env's target, on a scripted push that succeeds; the
    ``"puck"`` features are the puck body's xy."""
    from metaworld.policies import SawyerPushV3Policy

    puck_only = make_push_task(features="puck")
    assert puck_only.info["feature_names"] == ["puck_x", "puck_y"]
    env = push.make_env()
    u, scripted = env.unwrapped, SawyerPushV3Policy()
    obs, _ = env.reset(seed=0)
    seen = set()
    for _ in range(110):
        obs, _, _, _, info = env.step(np.clip(scripted.get_action(obs), -1, 1))
        hand, puck, goal = u.data.body("hand").xpos, u.get_body_com("obj"), u._target_pos
        feats = push.goal_features(torch.as_tensor(obs)).numpy()
        np.testing.assert_allclose(feats, np.concatenate([hand, puck]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(puck_only.goal_features(torch.as_tensor(obs)).numpy(), puck[:2], rtol=0, atol=1e-12)
        np.testing.assert_allclose(obs[36:39], goal, rtol=0, atol=1e-12)
        truth = bool(np.linalg.norm(puck - goal) <= 0.05)
        assert bool(push.success_fn(torch.as_tensor(obs))) == truth == bool(info["success"])
        seen.add(truth)
    env.close()
    assert seen == {False, True}


def _pusher_truth(u) -> tuple[bool, np.ndarray, np.ndarray]:
    """(object within 0.05 of the goal in xy, object xy, tips_arm xy), read from the MuJoCo data."""
    obj, goal = u.get_body_com("object"), u.get_body_com("goal")
    return bool(np.hypot(*(obj[:2] - goal[:2])) <= 0.05), obj[:2].copy(), u.get_body_com("tips_arm")[:2].copy()


def _pusher_episode(env, rng, steps: int, slide=None) -> list[tuple]:
    """Random torques for ``steps`` steps; ``slide=((dy, dx), vy)`` first puts the object at that offset from the
    goal (its slide joints) moving at ``vy`` m/s, so that it slides through the goal disc."""
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    u = env.unwrapped
    if slide is not None:
        qpos, qvel = u.data.qpos.copy(), np.zeros(u.model.nv)
        qpos[7:9], qvel[7] = slide
        u.set_state(qpos, qvel)
        obs = u._get_obs()
    rows = []
    for _ in range(steps):
        act = rng.uniform(-2, 2, 7).astype(np.float32)
        nxt, rew, term, _, info = env.step(act)
        rows.append((obs, act, nxt, rew, term, info["success"], *_pusher_truth(u)))
        obs = nxt
    return rows


def test_pusher_success_and_features_match_mujoco(pusher):
    env = pusher.make_env()
    rng = np.random.default_rng(0)
    rows = _pusher_episode(env, rng, 100) + _pusher_episode(env, rng, 15, slide=((-0.17, 0.02), 2.5))
    env.close()
    obs, act, nxt, obj_xy, tip_xy = (torch.as_tensor(np.stack([r[i] for r in rows])) for i in (0, 1, 2, 7, 8))
    rew, term, info_success, truth = (torch.as_tensor([r[i] for r in rows]) for i in (3, 4, 5, 6))
    assert 0 < truth.sum() < len(truth)  # both outcomes
    assert torch.equal(pusher.success_fn(nxt), truth) and torch.equal(info_success, truth)
    assert torch.equal(pusher.reward_fn(obs, act, nxt), truth.double()) and torch.equal(rew, truth.double())
    assert not pusher.termination_fn(obs, act, nxt).any() and not term.any()
    assert torch.equal(pusher.goal_features(nxt), obj_xy)
    torch.testing.assert_close(pusher.distance_fn(nxt), torch.linalg.vector_norm(obj_xy - nxt[:, 20:22], dim=-1))
    both = make_pusher_goal_task(features="object+tip")
    assert torch.equal(both.goal_features(nxt), torch.cat([obj_xy, tip_xy], -1))


def test_pusher_success_boundary_matches_mujoco(pusher):
    """The object put at xy distances around 0.05 from the goal (its slide joints), in three directions."""
    env = pusher.make_env()
    env.reset(seed=0)
    u = env.unwrapped
    for r in (0.0, 0.03, 0.0499, 0.0501, 0.08):
        for ang in (0.0, 2.0, 4.0):
            qpos = u.data.qpos.copy()
            qpos[7:9] = r * np.sin(ang), r * np.cos(ang)  # obj_slidey, obj_slidex
            u.set_state(qpos, np.zeros(u.model.nv))
            got = bool(pusher.success_fn(torch.as_tensor(u._get_obs())))
            assert got == _pusher_truth(u)[0] == (r <= 0.05), (r, ang)
    env.close()


def test_pusher_reset_facts(pusher):
    """Fixed goal, object start range and height as recorded in ``info``; the arm starts at zero joint angles."""
    info = pusher.info
    assert "Pusher-goal-v5" in GOAL_TASKS and pusher.max_episode_steps == 100
    lo, hi = np.asarray(info["object_start_low"]), np.asarray(info["object_start_high"])
    env = pusher.make_env()
    assert env.spec.max_episode_steps == 100
    starts = np.stack([env.reset(seed=s)[0] for s in range(300)])
    env.close()
    np.testing.assert_allclose(starts[:, 20:23], np.tile(info["goal"], (300, 1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(info["goal"], [0.45, -0.05, -0.323])
    np.testing.assert_allclose(starts[:, 19], info["object_height"])
    assert info["object_height"] - info["goal"][2] == pytest.approx(0.048)  # why success is measured in xy
    np.testing.assert_array_equal(starts[:, :7], 0.0)
    obj = starts[:, 17:19]
    assert (obj >= lo).all() and (obj <= hi).all()
    assert (obj.min(0) < lo + 0.03).all() and (obj.max(0) > hi - 0.03).all()  # the range is the whole box
    assert (np.hypot(*(obj - starts[:, 20:22]).T) > info["object_start_min_distance"]).all()
    assert not pusher.success_fn(torch.as_tensor(starts)).any()


def test_pusher_success_examples_are_physical(pusher):
    """Each example, set into the real env (joint angles, object slides), gives back its own observation, keeps
    the joints inside their limits, touches nothing but the table (object on it), holds the object between
    the fork's prongs, and stays a success after a zero-torque step."""
    ex = pusher.success_examples(24, seed=0).double().numpy()
    env = pusher.make_env()
    env.reset(seed=0)
    u = env.unwrapped
    m, d = u.model, u.data
    goal = np.asarray(pusher.info["goal"])
    for row in ex:
        assert ((row[:7] >= m.jnt_range[:7, 0]) & (row[:7] <= m.jnt_range[:7, 1])).all()
        qpos = np.zeros(m.nq)
        qpos[:7], qpos[7], qpos[8] = row[:7], row[18] - goal[1], row[17] - goal[0]
        u.set_state(qpos, np.zeros(m.nv))
        np.testing.assert_allclose(u._get_obs(), row, rtol=0, atol=1e-6)
        assert all(d.contact[i].geom1 == 0 for i in range(d.ncon))  # only table-object contacts
        rot = d.body("tips_arm").xmat.reshape(3, 3)
        in_fork = rot.T @ (d.body("object").xpos - d.body("tips_arm").xpos)
        np.testing.assert_allclose(in_fork, [pusher.info["contact_gap"], 0.0, 0.0], atol=1e-5)
        nxt, rew, *_ = env.step(np.zeros(7, np.float32))
        assert rew == 1.0 and np.abs(nxt - row).max() < 1e-3
    env.close()
    assert (ex[:, 7:14] == 0).all()
    assert np.hypot(*(ex[:, 17:19] - goal[:2]).T).max() <= 0.02


def test_pusher_bad_options_name_the_argument(pusher):
    with pytest.raises(ValueError, match="features"):
        make_pusher_goal_task(features="tip")
    with pytest.raises(ValueError, match="radius"):
        pusher.success_examples(4, radius=0.05)
    with pytest.raises(ValueError, match="obs"):
        pusher.goal_features(torch.zeros(2, 22))
    with pytest.raises(ValueError, match="obs"):
        pusher.distance_fn(torch.zeros(22))
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_pusher_goal_task(max_episode_steps=0)
    assert make_pusher_goal_task(features="object+tip").goal_features(torch.zeros(3, 23)).shape == (3, 4)
