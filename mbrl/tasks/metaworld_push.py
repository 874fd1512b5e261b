"""Meta-World ``push-v3`` (Sawyer push, MURAL's manipulation task family) with a sparse success reward.

Observation (39-D, float64; layout of ``SawyerXYZEnv._get_obs`` in metaworld 3.x, with the goal shown
as in every MT1 task, ``partially_observable=False``):

    obs[0:3]   hand (end-effector) position        obs[3]     gripper opening in [0, 1]
    obs[4:7]   puck position                        obs[7:11]  puck quaternion; obs[11:18] zero padding
    obs[18:36] the same 18 numbers one step earlier obs[36:39] goal position

Actions (4-D in [-1, 1]): hand displacement xyz and gripper effort. Episodes last 500 steps (truncation;
MT1 does not terminate on success). Sparse reward = success =
``||obs[4:7] - obs[36:39]|| <= 0.05`` of ``next_obs`` (``SawyerPushEnvV3.evaluate_state``: ``info["success"]``
is ``target_to_obj <= TARGET_RADIUS``, computed on the clipped observation, whose goal entries equal
the env's ``_target_pos``).

Fixed start and goal. ``gym.make('Meta-World/MT1', env_name='push-v3', seed=mt1_seed)`` draws 50
(puck, goal) configurations from ``mt1_seed`` and, by default, picks one at random on every reset. The
:class:`FixedTaskWrapper` instead sets configuration ``task_index`` once and stops resampling, so every
reset gives the same hand, puck and goal positions whatever ``reset(seed=...)`` is (metaworld's reset
itself ignores the seed). Defaults ``mt1_seed=0, task_index=0``: puck at ~(-0.013, 0.689, 0.019), goal at
~(-0.023, 0.879, 0.019), 0.19 apart.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.tasks.goal import GoalTask, disc_samples, goal_obs, sparse_goal_fns
from mbrl.wrappers import ActionRepeat, check_action_repeat, env_steps_kwargs

__all__ = [
    "FEATURES",
    "FixedTaskWrapper",
    "PUSH_RADIUS",
    "make_push_task",
    "push_distance",
    "push_success",
]

PUSH_RADIUS = 0.05  # SawyerPushEnvV3.TARGET_RADIUS
OBS_DIM, ACT_DIM = 39, 4
_HAND, _GRIP, _OBJ, _QUAT, _GOAL = slice(0, 3), 3, slice(4, 7), slice(7, 11), slice(36, 39)
_NAMES = {0: "hand_x", 1: "hand_y", 2: "hand_z", 4: "puck_x", 5: "puck_y", 6: "puck_z"}
#: Reward features (``goal_features``): ``"hand+puck"`` hand xyz and puck xyz; ``"puck"`` the puck's xy (it slides on
#: the table), which leaves the reward constant until the puck moves but keeps a novelty bonus from sending the
#: hand to unvisited places far from the puck (docs/design.md, "MURAL").
FEATURES = {"hand+puck": (0, 1, 2, 4, 5, 6), "puck": (4, 5)}


class FixedTaskWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pins an MT1 env to configuration ``task_index`` (no resampling on reset) and gives it a correct
    39-D ``observation_space`` (MT1 leaves the goal bounds of the partially observable space, all 0)."""

    def __init__(self, env: gym.Env, task_index: int = 0):
        gym.utils.RecordConstructorArgs.__init__(self, task_index=task_index)
        gym.Wrapper.__init__(self, env)
        tasks = env.get_wrapper_attr("tasks")
        if not 0 <= int(task_index) < len(tasks):
            raise ValueError(f"task_index must be in [0, {len(tasks)}), got {task_index}")
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
        env.unwrapped.set_task(tasks[int(task_index)])
        self.task_index = int(task_index)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)


def push_distance(obs: torch.Tensor) -> torch.Tensor:
    """Puck-to-goal distance ``||obs[4:7] - obs[36:39]||``: ``obs[..., 39] -> [...]``."""
    obs = goal_obs("obs", obs, OBS_DIM)
    return torch.linalg.vector_norm(obs[..., _OBJ] - obs[..., _GOAL], dim=-1)


def push_success(obs: torch.Tensor) -> torch.Tensor:
    """``info["success"]`` of ``push-v3``: ``obs[..., 39] -> bool[...]``, puck within 0.05 of the goal."""
    return push_distance(obs) <= PUSH_RADIUS


_reward, _never, _ = sparse_goal_fns(push_success, OBS_DIM, ACT_DIM)  # MT1 never terminates (500-step limit)


def _feature_fn(features: str):
    """``goal_features`` of ``features`` (:data:`FEATURES`): ``obs[..., 39] -> [..., F]``."""
    if not isinstance(features, str) or features not in FEATURES:
        raise ValueError(f"features must be one of {list(FEATURES)}, got {features!r}")
    idx = list(FEATURES[features])

    def goal_features(obs: torch.Tensor) -> torch.Tensor:
        """The success classifier's features ``[..., F]`` (goal fixed): hand and puck xyz, or the puck's xy."""
        return goal_obs("obs", obs, OBS_DIM)[..., idx]

    return goal_features


def make_push_task(mt1_seed: int = 0, task_index: int = 0, action_repeat: int = 1,
                   features: str = "hand+puck") -> GoalTask:
    """Build the sparse-reward ``push-v3`` :class:`~mbrl.tasks.goal.GoalTask` (see module doc).

    Args:
        mt1_seed: seed of MT1's 50 (puck, goal) configurations.
        task_index: which of them every reset uses.
        action_repeat: each agent step repeats its action this many env steps (:class:`~mbrl.wrappers.
            ActionRepeat`; the hand moves at most 1 cm an env step, so a planner's horizon of H agent steps
            reaches H * k cm); ``max_episode_steps`` is then in agent steps (500 // k: MT1 refuses a 501st step).
        features: the reward's features, :data:`FEATURES` (``"hand+puck"``, 6-D, default; ``"puck"``, 2-D).
    Raises:
        ValueError: naming ``action_repeat`` or ``features`` when invalid.
    """
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    k = check_action_repeat(action_repeat)
    goal_features = _feature_fn(features)

    def make_env(**kw) -> gym.Env:
        kw.setdefault("disable_env_checker", True)  # its bounds check trips over MT1's stale space
        env = FixedTaskWrapper(gym.make("Meta-World/MT1", env_name="push-v3", seed=mt1_seed,
                                        **env_steps_kwargs(kw, k)), task_index)
        return ActionRepeat(env, k) if k > 1 else env

    probe = make_env()
    obs0, _ = probe.reset(seed=0)
    probe.close()
    goal = torch.as_tensor(obs0[_GOAL], dtype=torch.float64)
    quat0 = torch.as_tensor(obs0[_QUAT], dtype=torch.float64)

    def success_examples(k: int, seed: int | torch.Generator | None = 0, device=None,
                         radius: float = 0.02) -> torch.Tensor:
        """``k`` successful states ``[k, 39]`` (float32): the puck uniformly within ``radius`` (< 0.05) of
        the goal in xy (resting height), the hand 3 cm above the puck (+-5 mm noise), gripper half open
        (as when the scripted ``SawyerPushV3Policy`` succeeds), the reset quaternion, previous frame equal
        to the current one (at rest) and the goal entries equal to the task's goal."""
        offset, gen = disc_samples(k, radius, PUSH_RADIUS, seed)
        k = int(k)
        obj = goal.expand(k, 3).clone()
        obj[:, :2] += offset
        hand = obj + torch.tensor([0.0, 0.0, 0.03], dtype=torch.float64)
        hand = hand + 0.005 * (2 * torch.rand(k, 3, generator=gen, dtype=torch.float64) - 1)
        frame = torch.cat([hand, torch.full((k, 1), 0.5, dtype=torch.float64), obj, quat0.expand(k, 4),
                           torch.zeros(k, 7, dtype=torch.float64)], dim=-1)
        out = torch.cat([frame, frame, goal.expand(k, 3)], dim=-1)
        return out.to(dtype=torch.float32, device=device)

    return GoalTask(name="MetaWorld-push-v3", obs_dim=OBS_DIM, act_dim=ACT_DIM,
                    action_box=ActionBox([-1.0] * ACT_DIM, [1.0] * ACT_DIM), max_episode_steps=500 // k,
                    make_env=make_env, reward_fn=_reward, termination_fn=_never,
                    description=("Meta-World push-v3 (MT1 configuration fixed): push the puck to the goal; "
                                 "sparse reward 1 when the puck is within 0.05 of it; never terminates."
                                 + (f" Each agent step repeats its action {k} env steps." if k > 1 else "")),
                    info={"goal": goal.tolist(), "puck_start": obs0[_OBJ].tolist(),
                          "goal_radius": PUSH_RADIUS, "mt1_seed": mt1_seed, "task_index": task_index,
                          "action_repeat": k, "features": features,
                          "feature_names": [_NAMES[i] for i in FEATURES[features]]},
                    success_fn=push_success,
                    distance_fn=push_distance, success_examples=success_examples, goal_features=goal_features)
