"""Pusher-v5 (7-DoF arm pushing a cylinder) with exact batched reward (gymnasium ``pusher_v5.py``).

Observation (23 entries, float64)::

    0..6 qpos of the 7 arm joints   7..13 their qvel
    14..16 tips_arm COM (x, y, z)   17..19 object COM   20..22 goal COM          (after the step)

Reward, computed after the step (``PusherEnv._get_rew``); it never terminates::

    r = -reward_near_weight * ||object - tips_arm|| - reward_dist_weight * ||object - goal||
        - reward_control_weight * sum(act**2)                        (weights 0.5, 1, 0.1; 3-D norms)

(The three "COM" triples are ``get_body_com``, which in gymnasium 1.x returns the body frame's origin: the
object's and the goal's centres, and for ``tips_arm`` the centre of the crossbar of the end effector's fork,
whose two prongs reach 0.1 m further along the body's x axis.)

Sparse goal variant, :func:`make_pusher_goal_task` (``"Pusher-goal-v5"``, for MURAL; docs/design.md, "MURAL"):
reward ``1[success(next_obs)]``, never terminates, Pusher-v5's own 100-step limit (dt 0.05 s). Facts of
``pusher_v5.py`` (gymnasium 1.x) it rests on:

* the goal is fixed: its slides are reset to 0 and never move (its geom does not collide), so obs[20:23] is
  always (0.45, -0.05, -0.323);
* the object starts uniformly in x in [0.25, 0.65], y in [-0.35, -0.05] (world; offsets U(-0.2, 0.2) and
  U(-0.3, 0) from the goal), redrawn until it is more than 0.17 from the goal; the arm starts at its zero
  joint angles (``tips_arm`` at (0.821, -0.6, 0)) with joint velocities U(-0.005, 0.005);
* the object only slides (two slide joints), so its height is always -0.275 (the cylinder stands on the table at
  -0.325), 0.048 above the goal marker's -0.323. Success is therefore measured in the table plane (xy): a 3-D
  threshold of 0.05 would need the centres within 0.014 of each other in xy. Gravity is zero in this model.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from mbrl.tasks.base import Task, make_gym_task, never_terminates
from mbrl.tasks.goal import GoalTask, disc_samples, goal_obs, sparse_goal_fns

__all__ = ["FEATURES", "GOAL_NAME", "GOAL_RADIUS", "OBS_NAMES", "PusherGoalWrapper", "REWARD_PARAMS",
           "make_pusher_goal_task", "make_pusher_task", "pusher_distance", "pusher_success"]

NAME = "Pusher-v5"
REWARD_PARAMS = {"reward_near_weight": 0.5, "reward_dist_weight": 1.0, "reward_control_weight": 0.1}
OBS_NAMES = (tuple(f"qpos{i}" for i in range(7)) + tuple(f"qvel{i}" for i in range(7))
             + tuple(f"{body}_{c}" for body in ("tips_arm", "object", "goal") for c in "xyz"))
TIPS, OBJECT, GOAL = slice(14, 17), slice(17, 20), slice(20, 23)


def _build(p: dict, dt: float):
    w_near, w_dist = float(p["reward_near_weight"]), float(p["reward_dist_weight"])
    w_ctrl = float(p["reward_control_weight"])

    def reward(obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Pusher-v5 reward ``[...]``: -0.5 ||object - tip|| - ||object - goal|| - 0.1 |a|^2 (after step)."""
        obj = next_obs[..., OBJECT]
        near = torch.linalg.vector_norm(obj - next_obs[..., TIPS], dim=-1)
        dist = torch.linalg.vector_norm(obj - next_obs[..., GOAL], dim=-1)
        return -w_near * near - w_dist * dist - w_ctrl * act.square().sum(dim=-1)

    return reward, never_terminates


def make_pusher_task(**options) -> Task:
    """Pusher-v5 :class:`~mbrl.tasks.base.Task` (obs 23, act 7 in [-2, 2]); see module doc.

    ``options`` are ``gymnasium.make`` kwargs (``reward_near_weight``, ``reward_dist_weight``,
    ``reward_control_weight``, ``frame_skip``, ``max_episode_steps``).
    """
    return make_gym_task(
        NAME, options, reward_params=REWARD_PARAMS, forced={}, build=_build, obs_names=OBS_NAMES,
        description="Pusher-v5: reward = -0.5||object - tip|| - ||object - goal|| - 0.1|a|^2 "
        "(after the step); never terminates.",
    )


# ------------------------------------------------------------------------------------------ sparse goal variant
GOAL_NAME = "Pusher-goal-v5"
GOAL_RADIUS = 0.05  # success: the object's centre within 5 cm of the goal's, in the table plane (xy)
#: ``PusherEnv.reset_model``: the object's slide joints get ``obj_slidey ~ U(-0.3, 0)``, ``obj_slidex ~ U(-0.2,
#: 0.2)``, redrawn until ``||offset|| > 0.17``; the goal's slides stay 0. In world coordinates (the bodies sit at
#: (0.45, -0.05) when their slides are 0) the object starts in this box, outside this disc around the goal.
OBJECT_START_OFFSET = ((-0.2, -0.3), (0.2, 0.0))  # (low, high) of the (x, y) offset from the goal
OBJECT_START_MIN_DISTANCE = 0.17
PUSH_DIRECTION = (0.0, 1.0, 0.0)  # from the start box's centre towards the goal: the arm pushes along +y
#: ``tips_arm`` (the centre of the fork's crossbar, a capsule of radius 0.02) to the object's centre (a cylinder
#: of radius 0.05) in the success examples: touching plus a 5 mm gap (beyond the model's 2 mm contact margin).
CONTACT_GAP = 0.075
FEATURES = {"object": (17, 18), "object+tip": (17, 18, 14, 15)}
_ARM = 7


def pusher_distance(obs: torch.Tensor) -> torch.Tensor:
    """Object-to-goal distance in the table plane, ``||obs[17:19] - obs[20:22]||``: ``obs[..., 23] -> [...]``."""
    obs = goal_obs("obs", obs, len(OBS_NAMES))
    return torch.linalg.vector_norm(obs[..., OBJECT][..., :2] - obs[..., GOAL][..., :2], dim=-1)


def pusher_success(obs: torch.Tensor) -> torch.Tensor:
    """Success of :data:`GOAL_NAME`: ``obs[..., 23] -> bool[...]``, the object within 0.05 of the goal (xy)."""
    return pusher_distance(obs) <= GOAL_RADIUS


_goal_reward, _goal_never, _ = sparse_goal_fns(pusher_success, len(OBS_NAMES), 7)


class PusherGoalWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Pusher-v5 with the sparse goal reward: ``reward = 1[success(next_obs)]``, ``info["success"]``,
    ``info["distance"]`` (object to goal, xy) and the env's own reward as ``info["dense_reward"]``."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action):
        obs, dense, term, trunc, info = self.env.step(action)
        dist = float(np.hypot(*(obs[17:19] - obs[20:22])))
        info = {**info, "success": dist <= GOAL_RADIUS, "distance": dist, "dense_reward": float(dense)}
        return obs, float(info["success"]), term, trunc, info


def _ik(model, data, target: np.ndarray, q: np.ndarray, iters: int) -> np.ndarray:
    """Arm joint angles ``[7]`` (inside their limits) that put ``tips_arm`` at ``target[3]`` with its x axis
    (the fork's prongs) along :data:`PUSH_DIRECTION` and its z axis up (the fork flat over the table), by
    damped least squares from ``q[7]`` (position in metres, the two axes weighted 0.3)."""
    import mujoco

    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "tips_arm")
    lo, hi = model.jnt_range[:_ARM, 0], model.jnt_range[:_ARM, 1]
    fwd, up, w = np.asarray(PUSH_DIRECTION), np.array([0.0, 0.0, 1.0]), 0.3
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    q = np.array(q, dtype=np.float64)
    for _ in range(iters):
        data.qpos[:_ARM] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_jacBody(model, data, jp, jr, body)
        rot = data.xmat[body].reshape(3, 3)
        err = np.concatenate([data.xpos[body] - target, w * (rot[:, 0] - fwd), w * (rot[:, 2] - up)])
        jac = np.vstack([jp[:, :_ARM]] + [-w * _skew(rot[:, k]) @ jr[:, :_ARM] for k in (0, 2)])
        q = np.clip(q - jac.T @ np.linalg.solve(jac @ jac.T + 1e-2 * np.eye(9), err), lo, hi)
    data.qpos[:_ARM] = q
    mujoco.mj_kinematics(model, data)
    return q


def _skew(v: np.ndarray) -> np.ndarray:
    """``[3, 3]`` cross-product matrix: ``_skew(v) @ w == np.cross(v, w)``."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _examples_fn(model, goal: np.ndarray, object_z: float):
    """``success_examples`` of the goal task (its docstring says how they are built)."""
    import mujoco

    data = mujoco.MjData(model)
    tips = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "tips_arm")
    back = CONTACT_GAP * np.asarray(PUSH_DIRECTION)
    centre = np.array([goal[0], goal[1], object_z])
    home = _ik(model, data, centre - back, np.zeros(_ARM), 200)  # the arm holding an object on the goal

    def success_examples(k: int, seed: int | torch.Generator | None = 0, device=None,
                         radius: float = 0.02) -> torch.Tensor:
        """``k`` successful states ``[k, 23]`` (float32), each built as follows:

        * object: uniformly within ``radius`` (``[0, 0.05)``) of the goal in xy (:func:`~mbrl.tasks.goal.
          disc_samples`, seeded by ``seed``), at the object's only height, -0.275;
        * arm: joint angles from inverse kinematics (MuJoCo's kinematics of this model, damped least squares
          from the solution for an object exactly on the goal) that put ``tips_arm`` 0.075 behind the object
          along the push direction +y, at the object's height, with the fork flat and its prongs pointing
          along +y, so the object sits between the prongs, 5 mm from the crossbar (outside MuJoCo's 2 mm
          contact margin: no contact; joint limits kept): the arm at the end of a push from the start box;
        * ``tips_arm`` entries: that pose's forward kinematics; all joint velocities 0 (gravity is zero, so the
          state is at rest); goal entries: the goal.
        """
        offset, _ = disc_samples(k, radius, GOAL_RADIUS, seed)
        rows = []
        for dxy in offset.numpy():
            obj = centre + np.array([dxy[0], dxy[1], 0.0])
            q = _ik(model, data, obj - back, home, 50)
            rows.append(np.concatenate([q, np.zeros(_ARM), data.xpos[tips], obj, goal]))
        return torch.as_tensor(np.stack(rows), dtype=torch.float32, device=device)

    return success_examples


def make_pusher_goal_task(features: str = "object", **options) -> GoalTask:
    """The sparse-reward Pusher :class:`~mbrl.tasks.goal.GoalTask` ``"Pusher-goal-v5"`` (see module doc).

    Success: the object's centre within :data:`GOAL_RADIUS` (0.05 m) of the goal's in the table plane (xy; the
    two centres are 0.048 apart in height forever). Reward ``1[success(next_obs)]``, never terminates; the env
    is Pusher-v5 wrapped by :class:`PusherGoalWrapper` (the same reward, ``info["success"]``). ``distance_fn``
    is the object-goal distance in xy; ``success_examples`` see :func:`_examples_fn`; ``info`` holds the goal,
    the object's start range and the radius.

    Args:
        features: what ``goal_features(obs[..., 23]) -> [..., F]`` returns: ``"object"`` (default), the object's
            xy ``[..., 2]`` (reward maps can be drawn over it); ``"object+tip"``, object xy and ``tips_arm`` xy
            ``[..., 4]``.
        **options: Pusher-v5's ``gymnasium.make`` kwargs (as :func:`make_pusher_task`; e.g.
            ``max_episode_steps``; the reward weights change only ``info["dense_reward"]``).
    Raises:
        ValueError: naming ``features``, or the option, when invalid.
    """
    if not isinstance(features, str) or features not in FEATURES:
        raise ValueError(f"features must be one of {list(FEATURES)}, got {features!r}")
    base = make_pusher_task(**options)
    probe = base.make_env()
    probe.reset(seed=0)
    u = probe.unwrapped
    goal, object_z, tip0 = u.get_body_com("goal").copy(), float(u.get_body_com("object")[2]), u.get_body_com(
        "tips_arm").copy()
    model = u.model
    probe.close()
    idx = list(FEATURES[features])

    def goal_features(obs: torch.Tensor) -> torch.Tensor:
        """``obs[..., 23] -> [..., F]``: object xy (``"object"``) or object xy + ``tips_arm`` xy."""
        return goal_obs("obs", obs, len(OBS_NAMES))[..., idx]

    lo, hi = (goal[:2] + np.asarray(b) for b in OBJECT_START_OFFSET)
    info = {"goal": goal.tolist(), "goal_radius": GOAL_RADIUS, "success_in": "xy", "object_height": object_z,
            "object_start_low": lo.tolist(), "object_start_high": hi.tolist(),
            "object_start_min_distance": OBJECT_START_MIN_DISTANCE, "tip_start": tip0.tolist(),
            "features": features, "feature_names": [OBS_NAMES[i] for i in idx], "obs_names": OBS_NAMES,
            "dt": base.info["dt"], "push_direction": list(PUSH_DIRECTION), "contact_gap": CONTACT_GAP}
    return GoalTask(name=GOAL_NAME, obs_dim=base.obs_dim, act_dim=base.act_dim, action_box=base.action_box,
                    max_episode_steps=base.max_episode_steps,
                    make_env=lambda **kw: PusherGoalWrapper(base.make_env(**kw)),
                    reward_fn=_goal_reward, termination_fn=_goal_never,
                    description=("Pusher-v5, sparse goal: reward 1 when the object is within 0.05 of the fixed "
                                 "goal (0.45, -0.05) in the table plane; never terminates; 100-step episodes."),
                    info=info, success_fn=pusher_success, distance_fn=pusher_distance,
                    success_examples=_examples_fn(model, goal, object_z), goal_features=goal_features)
