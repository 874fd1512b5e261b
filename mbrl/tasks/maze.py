"""PointMaze goal-reaching tasks (gymnasium-robotics) with a sparse reward, for MURAL (docs/design.md, "MURAL").

The env's dict observation is flattened by :class:`FlattenGoalObservation` into one vector

    obs = [x, y, vx, vy, gx, gy]        (observation 4 + desired_goal 2, float64)

so that the MPC agent and the dynamics ensemble see a ``Box``. The reward is the env's own sparse
reward, ``1`` when the ball is within ``0.45`` of the goal (``MazeEnv.compute_reward``, reward_type
"sparse"), computed on ``next_obs``. The registered envs are continuing tasks (``continuing_task=True``,
``reset_target=False``): they never terminate and the goal stays put, so ``termination_fn`` is always
``False`` (pass ``continuing_task=False`` to :func:`make_maze_task` for the episodic variant, which
terminates on success, and its ``termination_fn`` then does the same).

Fixed start and goal. The wrapper resets with fixed ``reset_cell``/``goal_cell`` and sets the maze's
``position_noise_range`` to ``position_noise`` (default 0), so every reset, whatever its seed, puts the
ball at rest at the centre of the start cell and the goal at the centre of the goal cell (MURAL's maze
tasks also use one fixed start and goal). With ``position_noise > 0`` both get the env's uniform noise
(``+-position_noise`` per coordinate), drawn from the env RNG seeded by ``reset(seed=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.tasks.goal import GoalTask, disc_samples, goal_obs, sparse_goal_fns
from mbrl.wrappers import ActionRepeat, check_action_repeat, env_steps_kwargs

__all__ = [
    "GOAL_RADIUS",
    "ActionRepeat",
    "MAZES",
    "FlattenGoalObservation",
    "MazeLayout",
    "make_maze_task",
    "maze_distance",
    "maze_success",
]

GOAL_RADIUS = 0.45  # MazeEnv: success / sparse reward when ||achieved_goal - desired_goal|| <= 0.45
_POS = slice(0, 2)  # ball position (= achieved_goal) in the flattened observation
_GOAL = slice(4, 6)  # desired goal in the flattened observation
OBS_DIM, ACT_DIM = 6, 2


@dataclass(frozen=True)
class MazeLayout:
    """Fixed ``(row, col)`` cells of the start and the goal in the maze map (``maps.py`` indexing)."""

    reset_cell: tuple[int, int]
    goal_cell: tuple[int, int]


# U-maze: start bottom-left, goal top-left (the ball must go round the wall, ~6 units of path).
# Medium: opposite corners (D4RL maze2d-medium's layout, path of ~10 cells).
MAZES: dict[str, MazeLayout] = {
    "PointMaze_UMaze-v3": MazeLayout(reset_cell=(3, 1), goal_cell=(1, 1)),
    "PointMaze_Medium-v3": MazeLayout(reset_cell=(1, 1), goal_cell=(6, 6)),
}


class FlattenGoalObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Dict observation -> ``[observation(4), desired_goal(2)]`` with a fixed start and goal.

    ``reset(options=None)`` uses the layout's ``reset_cell``/``goal_cell`` (an explicit ``options`` dict
    is passed through unchanged). ``position_noise`` replaces the maze's ``position_noise_range``.
    """

    def __init__(self, env: gym.Env, layout: MazeLayout | None, position_noise: float = 0.0):
        gym.utils.RecordConstructorArgs.__init__(self, layout=layout, position_noise=position_noise)
        gym.ObservationWrapper.__init__(self, env)
        if position_noise < 0:
            raise ValueError(f"position_noise must be >= 0, got {position_noise}")
        self.layout = layout
        self.env.unwrapped.position_noise_range = float(position_noise)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options is None and self.layout is not None:
            options = {"reset_cell": np.array(self.layout.reset_cell),
                       "goal_cell": np.array(self.layout.goal_cell)}
        return super().reset(seed=seed, options=options)

    def observation(self, observation: dict) -> np.ndarray:
        return np.concatenate([observation["observation"], observation["desired_goal"]]).astype(np.float64)


def maze_distance(obs: torch.Tensor) -> torch.Tensor:
    """``||pos - goal||``: ``obs[..., 6] -> [...]`` (the quantity ``MazeEnv`` thresholds at 0.45)."""
    obs = goal_obs("obs", obs, OBS_DIM)
    return torch.linalg.vector_norm(obs[..., _POS] - obs[..., _GOAL], dim=-1)


def maze_success(obs: torch.Tensor) -> torch.Tensor:
    """``info["success"]`` of ``MazeEnv``: ``obs[..., 6] -> bool[...]``, distance <= 0.45."""
    return maze_distance(obs) <= GOAL_RADIUS


_reward, _never, _on_success = sparse_goal_fns(maze_success, OBS_DIM, ACT_DIM)


def _features(obs: torch.Tensor) -> torch.Tensor:
    """Ball position ``[..., 2]``: what MURAL's maze classifiers see (the goal is fixed)."""
    return goal_obs("obs", obs, OBS_DIM)[..., _POS]


def make_maze_task(name: str = "PointMaze_UMaze-v3", continuing_task: bool = True,
                   position_noise: float = 0.0, action_repeat: int = 1) -> GoalTask:
    """Build the sparse-reward PointMaze :class:`GoalTask` ``name`` (one of :data:`MAZES`).

    Args:
        name: gymnasium-robotics id (``PointMaze_UMaze-v3``: 300 steps; ``PointMaze_Medium-v3``: 600 steps).
        continuing_task: the env's flag; True (the registered default) never terminates.
        position_noise: start/goal noise (0: one fixed start and goal for every reset, see module doc).
        action_repeat: each agent step repeats its action this many env steps (:class:`ActionRepeat`);
            ``max_episode_steps`` is then in agent steps (the env's limit divided by ``action_repeat``,
            rounded up) and ``info["action_repeat"]`` records it.
    """
    action_repeat = check_action_repeat(action_repeat)
    if name not in MAZES:
        raise ValueError(f"name must be one of {sorted(MAZES)}, got {name!r}")
    if position_noise < 0:
        raise ValueError(f"position_noise must be >= 0, got {position_noise}")
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    layout = MAZES[name]
    spec = gym.spec(name)
    max_steps = -(-int(spec.max_episode_steps) // action_repeat)

    def make_env(**kw) -> gym.Env:
        kw.setdefault("continuing_task", continuing_task)
        kw.setdefault("reward_type", "sparse")
        kw = env_steps_kwargs(kw, action_repeat)
        env = FlattenGoalObservation(gym.make(name, **kw), layout, position_noise)
        return ActionRepeat(env, action_repeat) if action_repeat > 1 else env

    # Goal position of the fixed layout (cell centre), read from the maze geometry once.
    probe = gym.make(name).unwrapped
    goal_xy = np.asarray(probe.maze.cell_rowcol_to_xy(np.array(layout.goal_cell)), dtype=np.float64)
    probe.close()

    def success_examples(k: int, seed: int | torch.Generator | None = 0, device=None,
                         radius: float = 0.15) -> torch.Tensor:
        """``k`` successful states ``[k, 6]`` (float32): ball uniformly within ``radius`` of the goal
        (``radius < 0.45``, so every example is a success), zero velocity, goal dims = the goal."""
        offset, _ = disc_samples(k, radius, GOAL_RADIUS, seed)
        goal = torch.as_tensor(goal_xy).expand(int(k), 2)
        pos = goal + offset
        out = torch.cat([pos, torch.zeros(int(k), 2, dtype=torch.float64), goal], dim=-1)
        return out.to(dtype=torch.float32, device=device)

    description = (f"{name}: point mass in a maze, fixed start cell {layout.reset_cell} and goal cell "
                   f"{layout.goal_cell}; obs = [x, y, vx, vy, goal_x, goal_y]; sparse reward 1 within "
                   f"{GOAL_RADIUS} of the goal; " + ("never terminates." if continuing_task else
                                                     "terminates on success."))
    if action_repeat > 1:
        description += f" Each agent step repeats its action {action_repeat} env steps."
    info = {"goal": goal_xy.tolist(), "goal_radius": GOAL_RADIUS, "reset_cell": layout.reset_cell,
            "action_repeat": action_repeat,
            "goal_cell": layout.goal_cell, "obs_names": ["x", "y", "vx", "vy", "goal_x", "goal_y"]}
    return GoalTask(name=name, obs_dim=OBS_DIM, act_dim=ACT_DIM,
                    action_box=ActionBox([-1.0] * ACT_DIM, [1.0] * ACT_DIM),
                    max_episode_steps=max_steps, make_env=make_env, reward_fn=_reward,
                    termination_fn=_never if continuing_task else _on_success,
                    description=description, info=info, success_fn=maze_success, distance_fn=maze_distance,
                    success_examples=success_examples, goal_features=_features)
