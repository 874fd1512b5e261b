"""Every gymnasium wrapper of the library passes gymnasium's and Stable-Baselines3's env checkers, over a plain box
env, a MuJoCo task and a goal-conditioned maze (Dict observations, ``compute_reward`` for HER)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

from mbrl.tasks import make_task
from mbrl.wrappers import RewardShaperWrapper
from safe_density.ldm import DensityConstrainedActionWrapper
from safe_density.mural import MuralConfig, MuralReward, MuralRewardWrapper

sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")


class Point2D(gym.Env):
    """Deterministic 2-D point: obs = position, action = displacement, reward -1 per step."""

    observation_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float64)
    action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.array([-1.0, -1.0]) + self.np_random.uniform(-0.1, 0.1, 2)
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + np.asarray(action, np.float64), -5, 5)
        return self.pos.copy(), -1.0, False, False, {}


class DistanceShaper:
    """A user's own reward shaper: ``-||next_obs||`` added with weight 0.5."""

    mode, weight = "add", 0.5

    def __call__(self, obs, act, next_obs):
        return -torch.linalg.vector_norm(next_obs, dim=-1)


def check_both(env: gym.Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the env is wrapped", float32 bounds precision, ...
        gym_check_env(env, skip_render_check=True)
        sb3_env_checker.check_env(env, warn=False, skip_render_check=True)


def small_mural(examples) -> MuralReward:
    return MuralReward(examples, method="classifier", config=MuralConfig.small(classifier_steps=5),
                       dtype=torch.float64)


def test_generic_wrapper_on_a_box_env_shapes_by_the_one_rule():
    env = RewardShaperWrapper(Point2D(), DistanceShaper())
    check_both(env)
    obs, _ = env.reset(seed=0)
    nxt, r, *_, info = env.step(np.array([0.2, 0.1], np.float32))
    assert info["task_reward"] == -1.0
    assert info["shaped_reward"] == pytest.approx(-np.linalg.norm(nxt))
    assert r == pytest.approx(-1.0 + 0.5 * info["shaped_reward"])


def test_mural_wrapper_on_a_box_env_passes_the_checkers():
    check_both(MuralRewardWrapper(Point2D(), small_mural(np.ones((4, 2))), retrain_every=5))


def test_wrappers_on_a_mujoco_task_pass_the_checkers():
    task = make_task("InvertedPendulum-v5")
    check_both(RewardShaperWrapper(task.make_env(), DistanceShaper()))

    def cost(obs, act):  # a cheap stand-in for an LDM: large actions are "out of the data"
        return act.square().sum(-1)

    check_both(DensityConstrainedActionWrapper(task.make_env(), cost, threshold=1.0, n_samples=16))


def test_maze_task_env_passes_gymnasiums_checker():
    """The MPC task's flattened maze (a Box observation) passes gymnasium's checker. SB3's checker treats every
    env whose unwrapped env has ``compute_reward`` as a goal env that must keep its Dict observation, so SB3 agents
    take the Dict env itself with the reward wrapper (next test), which passes both."""
    pytest.importorskip("gymnasium_robotics")
    env = make_task("PointMaze_UMaze-v3").make_env()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env, skip_render_check=True)


def goal_env() -> gym.Env:
    gymnasium_robotics = pytest.importorskip("gymnasium_robotics")
    gym.register_envs(gymnasium_robotics)
    return gym.make("PointMaze_UMaze-v3", max_episode_steps=50)


def test_goal_env_keeps_its_dict_and_compute_reward_reproduces_the_step_reward():
    """HER relabels with ``compute_reward``: it must give the step's reward, single and batched."""
    env = MuralRewardWrapper(goal_env(), small_mural(np.zeros((4, 2))), retrain_every=10,
                             feature_fn=lambda o: o["achieved_goal"])
    check_both(env)
    obs, _ = env.reset(seed=1)
    assert isinstance(obs, dict) and set(obs) >= {"achieved_goal", "desired_goal"}
    for _ in range(3):
        obs, r, _, _, info = env.step(env.action_space.sample())
        assert r == env.compute_reward(obs["achieved_goal"], obs["desired_goal"], info)
    batch = env.compute_reward(np.stack([obs["achieved_goal"], obs["desired_goal"]]),
                               np.stack([obs["desired_goal"]] * 2), np.array([info, info]))
    assert batch.shape == (2,) and batch[0] == r
    assert batch[1] == 1.0 * 1 if env.mural_reward.mode == "add" else batch[1] == info["shaped_reward"]


def test_dict_observations_without_feature_fn_name_it():
    with pytest.raises(ValueError, match="feature_fn"):
        RewardShaperWrapper(goal_env(), DistanceShaper())
    with pytest.raises(ValueError, match="feature_fn"):
        MuralRewardWrapper(goal_env(), small_mural(np.zeros((4, 2))))


def test_generic_wrapper_rejects_what_is_not_a_shaper():
    class BadMode(DistanceShaper):
        mode = "multiply"

    with pytest.raises(ValueError, match="shaper"):
        RewardShaperWrapper(Point2D(), BadMode())
    with pytest.raises(ValueError, match="shaper"):
        RewardShaperWrapper(Point2D(), object())


def test_generic_wrapper_retrains_any_shaper_with_update():
    """retrain_every works for any shaper with update(states): the reward of a step is the one before the
    retraining that step triggers, and the first reset trains an unfitted shaper on its state."""

    class Counting(DistanceShaper):
        mode = "replace"

        def __init__(self):
            self.seen, self.fitted = [], False

        def update(self, states, progress=False):
            self.seen.append(np.asarray(states).shape[0])
            self.fitted = True

        def __call__(self, obs, act, next_obs):
            return torch.full(next_obs.shape[:-1], float(len(self.seen)), dtype=next_obs.dtype)

    shaper = Counting()
    env = RewardShaperWrapper(Point2D(), shaper, retrain_every=3)
    env.reset(seed=0)
    rewards = [env.step(np.zeros(2, np.float32))[1] for _ in range(7)]
    assert shaper.seen == [1, 3, 3] and env.n_retrains == 3
    assert rewards == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="update"):
        RewardShaperWrapper(Point2D(), DistanceShaper(), retrain_every=3)
    with pytest.raises(ValueError, match="retrain_every"):
        RewardShaperWrapper(Point2D(), shaper, retrain_every=0)


def test_the_rl_extra_brings_sb3s_progress_bar():
    """``pip install safe-density[rl]`` includes what ``model.learn(progress_bar=True)`` needs (tqdm and rich)."""
    from stable_baselines3.common.callbacks import ProgressBarCallback

    ProgressBarCallback()  # raises ImportError without tqdm and rich
