"""Control tasks with exact batched torch reward and termination functions (docs/design.md, "PETS").

``make_task(name, **options)`` builds a :class:`Task` for one of :data:`TASKS`; ``options`` are the env's
``gymnasium.make`` kwargs (reward weights, ``frame_skip``, ...), shared by the env and the functions so
that they stay exact. Goal-reaching tasks for MURAL (:data:`GOAL_TASKS`) live in :mod:`mbrl.tasks.maze` and
:mod:`mbrl.tasks.metaworld_push` (optional dependencies) and :mod:`mbrl.tasks.pusher` (``"Pusher-goal-v5"``).
"""

from __future__ import annotations

from collections.abc import Callable

from mbrl.tasks.base import Task, make_gym_task
from mbrl.tasks.half_cheetah import make_half_cheetah_task
from mbrl.tasks.hopper import make_hopper_task
from mbrl.tasks.inverted_pendulum import make_inverted_pendulum_task
from mbrl.tasks.pusher import make_pusher_goal_task, make_pusher_task
from mbrl.tasks.reacher import make_reacher_task

__all__ = ["GOAL_TASKS", "TASKS", "Task", "make_gym_task", "make_task"]

_MAKERS: dict[str, Callable[..., Task]] = {
    "Hopper-v5": make_hopper_task,
    "HalfCheetah-v5": make_half_cheetah_task,
    "InvertedPendulum-v5": make_inverted_pendulum_task,
    "Reacher-v5": make_reacher_task,
    "Pusher-v5": make_pusher_task,
}


def _maze(name: str) -> Callable[..., Task]:
    def make(**options) -> Task:
        from mbrl.tasks.maze import make_maze_task  # needs the optional gymnasium-robotics

        return make_maze_task(name, **options)

    return make


def _push(**options) -> Task:
    from mbrl.tasks.metaworld_push import make_push_task  # needs the optional metaworld

    return make_push_task(**options)


TASKS: tuple[str, ...] = tuple(_MAKERS)  # the MuJoCo control tasks (gymnasium[mujoco] only)

_MAKERS.update({"PointMaze_UMaze-v3": _maze("PointMaze_UMaze-v3"),
                "PointMaze_Medium-v3": _maze("PointMaze_Medium-v3"),
                "MetaWorld-push-v3": _push,
                "Pusher-goal-v5": make_pusher_goal_task})
GOAL_TASKS: tuple[str, ...] = tuple(k for k in _MAKERS if k not in TASKS)  # sparse goal tasks for MURAL


def make_task(name: str, **options) -> Task:
    """Build the :class:`Task` ``name`` (one of :data:`TASKS`).

    Args:
        name: gymnasium id, e.g. ``"Hopper-v5"``.
        **options: ``gymnasium.make`` kwargs for the env (e.g. ``ctrl_cost_weight=0.2``,
            ``max_episode_steps=200``); reward-relevant ones also set the reward/termination functions.
    Raises:
        ValueError: for an unknown ``name`` (the message lists the known ones) or an invalid option.
    """
    maker = _MAKERS.get(name) if isinstance(name, str) else None
    if maker is None:
        raise ValueError(f"name must be one of {list(_MAKERS)}, got {name!r}")
    return maker(**options)
