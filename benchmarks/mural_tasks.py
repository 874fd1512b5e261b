"""MURAL vs exact CNML vs a plain success classifier (VICE-like) vs the sparse task reward, same agent and budget.

docs/design.md, "MURAL" and "Published recipes". Claim checked (Li et al., ICML 2021): MURAL's reward stays
near 1/2 on states nobody has tried, so an agent keeps looking where a plain classifier leads it greedily
into a wall, and reaches goals that sparse rewards and plain classifiers miss.

Tasks (``--tasks``): PointMaze U-maze and Medium (``umaze``, ``medium``; gymnasium-robotics; analogues of the
authors' zigzag and spiral mazes, fixed start and goal, ``mbrl/tasks/maze.py``), Meta-World push-v3 (``push``,
``mbrl/tasks/metaworld_push.py``, features the hand's and the puck's xyz; ``push-puck``, the puck's xy; the MPC agent
repeats each action 4 env steps) and Pusher-v5's sparse goal variant (``pusher``, ``Pusher-goal-v5`` in
``mbrl/tasks/pusher.py``: the object within 5 cm of the fixed goal in xy, 100-step episodes, features the
object's xy; ``pusher-tip``: the same task with the object's and the arm tip's xy as features). Rewards (``--rewards``):

* ``mural``: ``MuralReward(method="meta_nml")``, MURAL's meta-NML reward;
* ``cnml``: exact CNML (two classifiers retrained per query), tabulated once per update on a grid over the
  2-D features (the mazes' ball, Pusher's object, push-puck's puck) and interpolated bilinearly (the planner
  queries ~10^5 states per episode; exact CNML per query is not affordable on CPU; on the grid points it is exact,
  on at most ``cnml_max_data`` training points subsampled with their class weights). Not for push (6-D features);
* ``classifier``: ``MuralReward(method="classifier")``, the maximum-likelihood classifier (VICE-like);
* ``sparse``: the task's own success reward (1 inside the goal region, 0 elsewhere).

Agents (``--agents``): ``mpc``, the library's PETS loop (:func:`mbrl.train.run_pets`: random warm-up
episode, then the ensemble refitted and an MPC episode per iteration) with the reward as a
``RewardShaper`` retrained by an episode-end callback on the episode's states; ``sac``, Stable-Baselines3
SAC (optional extra ``rl``) through :class:`safe_density.mural.MuralRewardWrapper`, retrained every
``retrain_every`` environment steps (the authors' SAC settings: 256 x 256, lr 3e-4, batch 256, 1,000
initial random steps).

Reported per (task, agent, reward): success rate over seeds (the goal region reached at least once within
the budget, during the agent's own episodes: a success of the random warm-up, identical for every reward, is
recorded as ``warmup_success`` and not counted), environment steps to the first success (per seed, and the
median over seeds counting a miss as the budget), the fraction of the maze's free cells visited, and the
time. A run stops at its first success. Figures, next to the JSON (``figures`` in it lists them):
``mural_tasks.png``, per (task, agent, reward) the visited positions of the ball / puck / object over the
plane it moves in (all seeds; walls for mazes, the start region and goal disc for the manipulation tasks) and
the reward over that plane for seed 0 at a few moments (the other state entries as in a success example: for
push the hand moved with the puck; for pusher with ``object`` features the reward depends on the object's xy
alone); ``mural_tasks_success_<task>.png``, the fraction of seeds that have reached success by each
environment step, one line per reward, one panel per agent. JSON + PNG go to ``results/mural_tasks/`` (or
``--out``).

Runs are independent: ``--backend ray`` (or ``--jobs N`` with N > 1) runs them as Ray tasks through
:func:`mbrl.sweep.run_grid` (``--jobs`` at once on a local Ray, or on the cluster at ``--address``);
the default is a serial loop, which also appends each finished run to ``partial.jsonl``.

    python -m benchmarks.mural_tasks --quick                       # maze table, CPU, both mazes, 3 seeds
    python -m benchmarks.mural_tasks --quick --tasks pusher --jobs 2       # Pusher, 2 runs at once on Ray
    python -m benchmarks.mural_tasks --quick --agents sac --tasks umaze
    python -m benchmarks.mural_tasks --preset tiny --tasks pusher --seeds 0   # smoke test (seconds)
    python -m benchmarks.mural_tasks --preset paper --device cuda --seeds 0 1 2 3 4 --tasks umaze medium push pusher
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from benchmarks._common import HelpFormatter, machine, out_dir, pyplot, ray_runtime_env, save_figure, write_json
from mbrl.common.argtypes import int_at_least
from mbrl.sweep import run_grid
from mbrl.tasks import make_task
from mbrl.tasks.goal import GoalTask
from mbrl.train import EpisodeEnd, PETSConfig, run_pets
from safe_density.mural import CNMLConfig, MuralConfig, MuralReward, cnml_batched

REWARDS = ("mural", "cnml", "classifier", "sparse")
AGENTS = ("mpc", "sac")
TASKS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "push": "MetaWorld-push-v3",
         "push-puck": "MetaWorld-push-v3", "pusher": "Pusher-goal-v5", "pusher-tip": "Pusher-goal-v5"}
# Options of make_task per task key: ``pusher`` rewards the object's xy, ``pusher-tip`` the object's and the arm tip's
# xy (the object alone is constant until the tip touches it, so its reward cannot lead the tip there).
# ``push`` rewards the hand's and the puck's xyz, ``push-puck`` the puck's xy only (its reward is constant until the
# puck moves, so the hand is not sent exploring away from it).
TASK_OPTIONS = {"pusher-tip": {"features": "object+tip"}, "push-puck": {"features": "puck"}}
MAZES = ("umaze", "medium")
CNML_TASKS = ("umaze", "medium", "pusher", "push-puck")  # 2-D features: exact CNML tabulated on a grid
PAPER_CLAIM = ("MURAL (meta-NML reward, SAC) reaches the goal on its mazes and on Sawyer push, where "
               "VICE-style classifier rewards and sparse rewards fail or are much slower "
               "(Li et al. 2021, Sec. 6, learning-curve figures; no tabulated numbers retrieved).")


@dataclass(frozen=True)
class BenchConfig:
    """One (task, preset)'s settings. ``pets`` is an override of the library's :class:`PETSConfig`."""

    pets: PETSConfig = field(default_factory=PETSConfig)
    n_examples: int = 150  # the authors' 150 success examples
    mural: MuralConfig | None = None  # None: MuralConfig.for_device (logged)
    cnml_grid: int = 12
    cnml_max_data: int = 200
    cnml: CNMLConfig = field(default_factory=CNMLConfig)
    sac_steps: int = 20_000
    # SAC's episode limit in env steps; None: the env's own (U-maze 300, Medium 600, Pusher 100, push 500). The
    # authors' 100-step maze episodes do not fit these mazes: a waypoint controller at full force needs 113 steps
    # from the U-maze's start to its goal (tests/benchmarks/test_mural_tasks.py), so 100 could never succeed.
    sac_episode_steps: int | None = None
    retrain_every: int = 1000  # SAC: the authors' epoch length
    snapshots: tuple[int, ...] = (1, 3, 6)  # episodes (mpc) after which the reward map is kept
    action_repeat: int = 1  # mazes and push, MPC agent: env steps per agent step (horizon H sees H * k env steps)
    stop_at_success: bool = True

    def replace(self, **kw) -> BenchConfig:
        return dataclasses.replace(self, **kw)


_QUICK_PETS = PETSConfig(hidden=(64, 64), ensemble_size=5, epochs_per_episode=10, population=100, elites=10,
                         iterations=3, horizon=15, particles=4, episodes=10)
# Pusher on one CPU core: the PETS paper's Pusher horizon (25) with a CPU-sized planner and model (its CEM is
# 500 / 50 x 5 with 20 particles and 3 x 200; docs/design.md's table): CEM 100 / 10 x 3, 4 particles, 3 x 128,
# about 0.26 s per step with the MURAL reward on one core of the busy 2-core machine; a random warm-up and 15 MPC
# episodes of 100 steps (1,600 environment steps) keep one run under ~10 minutes.
_PUSHER_PETS = PETSConfig(hidden=(128, 128, 128), ensemble_size=5, epochs_per_episode=10, population=100,
                          elites=10, iterations=3, horizon=25, particles=4, episodes=15, max_episode_steps=100)
# A smoke test: every code path at the smallest sizes (seconds per run), not a measurement.
_TINY_PETS = PETSConfig(hidden=(16, 16), ensemble_size=2, epochs_per_episode=1, batch_size=16, population=8,
                        elites=2, iterations=1, horizon=3, particles=2, episodes=1, max_episode_steps=10)
_TINY = dict(pets=_TINY_PETS, n_examples=16, cnml_grid=4, cnml_max_data=32, cnml=CNMLConfig(steps=5, lr=1e-2),
             mural=MuralConfig.small(classifier_steps=10, classifier_steps_incremental=2, meta_steps=4,
                                     meta_steps_incremental=1, cnml=CNMLConfig(steps=5, lr=1e-2)),
             sac_steps=40, sac_episode_steps=10, retrain_every=20, snapshots=(0, 1))
# push: the hand moves at most 1 cm an env step; 4 env steps an agent step let a 10-step horizon reach 40 cm (the puck
# is 19 cm below and 9 cm ahead of the hand's start); 100 agent steps = 400 env steps an episode
_PUSH_QUICK = BenchConfig(pets=_QUICK_PETS.replace(horizon=10, episodes=20, max_episode_steps=100), action_repeat=4,
                          sac_steps=5000, sac_episode_steps=150)
_PUSH_PAPER = BenchConfig(pets=PETSConfig(hidden=(200,) * 3, horizon=25, episodes=30, max_episode_steps=500),
                          mural=MuralConfig.published(), sac_steps=500_000, sac_episode_steps=500,
                          snapshots=(1, 10, 30))
PRESETS: dict[str, dict[str, BenchConfig]] = {
    "quick": {
        "umaze": BenchConfig(pets=_QUICK_PETS, sac_steps=8000, action_repeat=10, snapshots=(0, 2, 5, 10)),
        "medium": BenchConfig(pets=_QUICK_PETS, sac_steps=8000, action_repeat=10,
                              snapshots=(0, 2, 5, 10)),
        "push": _PUSH_QUICK, "push-puck": _PUSH_QUICK,
        "pusher": BenchConfig(pets=_PUSHER_PETS, sac_steps=10_000, sac_episode_steps=100, snapshots=(0, 3, 8, 15)),
        "pusher-tip": BenchConfig(pets=_PUSHER_PETS, sac_steps=10_000, sac_episode_steps=100,
                                  snapshots=(0, 3, 8, 15)),
    },
    "paper": {  # GPU: the PETS code's sizes, MURAL's published classifier sizes
        "umaze": BenchConfig(pets=PETSConfig(episodes=30, max_episode_steps=300), mural=MuralConfig.published(),
                             sac_steps=200_000, snapshots=(1, 5, 10, 20, 30)),
        "medium": BenchConfig(pets=PETSConfig(episodes=40, max_episode_steps=600), mural=MuralConfig.published(),
                              sac_steps=500_000, snapshots=(1, 5, 10, 20, 40)),
        "push": _PUSH_PAPER, "push-puck": _PUSH_PAPER,
        "pusher": BenchConfig(pets=PETSConfig(hidden=(200,) * 3, horizon=25, episodes=150, max_episode_steps=100),
                              mural=MuralConfig.published(), sac_steps=500_000, sac_episode_steps=100,
                              snapshots=(1, 10, 50, 150)),
        "pusher-tip": BenchConfig(pets=PETSConfig(hidden=(200,) * 3, horizon=25, episodes=150, max_episode_steps=100),
                                  mural=MuralConfig.published(), sac_steps=500_000, sac_episode_steps=100,
                                  snapshots=(1, 10, 50, 150)),
    },
    "tiny": {k: BenchConfig(**_TINY) for k in TASKS},
}


# ---------------------------------------------------------------------------------------------- maze geometry
class MazeGrid:
    """Free cells of a PointMaze layout and a grid over its (x, y) extent (for coverage and maps)."""

    def __init__(self, task: GoalTask):
        env = task.make_env()
        maze = env.unwrapped.maze
        self.map = np.asarray(maze.maze_map)
        self.scale = float(maze.maze_size_scaling)
        rows, cols = self.map.shape
        self.x_lo, self.x_hi = -cols * self.scale / 2, cols * self.scale / 2
        self.y_lo, self.y_hi = -rows * self.scale / 2, rows * self.scale / 2
        env.close()

    def cell(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        col = np.clip(((xy[:, 0] - self.x_lo) / self.scale).astype(int), 0, self.map.shape[1] - 1)
        row = np.clip(((self.y_hi - xy[:, 1]) / self.scale).astype(int), 0, self.map.shape[0] - 1)
        return row, col

    def coverage(self, xy: np.ndarray) -> float:
        """Fraction of the free cells with at least one visited state."""
        row, col = self.cell(xy)
        seen = np.zeros_like(self.map, dtype=bool)
        seen[row, col] = True
        free = self.map == 0
        return float((seen & free).sum() / free.sum())

    def grid(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        gx = np.linspace(self.x_lo + self.scale, self.x_hi - self.scale, n)
        gy = np.linspace(self.y_lo + self.scale, self.y_hi - self.scale, n)
        return gx, gy


# ---------------------------------------------------------------------------------------------- the object's plane
@dataclass(frozen=True)
class ObjectPlane:
    """The (x, y) plane in which a task's goal object moves (the maze's ball, push's puck, Pusher's object): where
    visited positions are drawn and the reward is mapped.

    Fields: ``lo``, ``hi`` the drawn extent ``(x, y)``; ``xy`` the observation indices of the object's (x, y);
    ``template`` a state ``[O]`` (a success example: the ball at rest, the arm/hand beside the object) from which
    :meth:`states` builds the map's states; ``move`` index pairs shifted with the object (the tip or hand, which
    stays beside it); ``walls`` the maze map (``None`` elsewhere); ``goal`` and ``radius`` the goal disc;
    ``start_lo``/``start_hi`` the object's start region (a point when equal); ``contact`` the observation indices
    of the effector's and the object's (x, y, z), whose distance says whether the effector came near enough to push
    (``None`` in mazes)."""

    lo: tuple[float, float]
    hi: tuple[float, float]
    xy: tuple[int, int]
    template: np.ndarray
    goal: tuple[float, float]
    radius: float
    move: tuple[tuple[int, int], ...] = ()
    walls: np.ndarray | None = None
    start_lo: tuple[float, float] | None = None
    start_hi: tuple[float, float] | None = None
    contact: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return (self.lo[0], self.hi[0], self.lo[1], self.hi[1])

    def object_xy(self, obs: np.ndarray) -> np.ndarray:
        """``obs[N, O] -> [N, 2]`` the object's (x, y)."""
        return np.asarray(obs)[:, list(self.xy)]

    def states(self, xy: np.ndarray) -> torch.Tensor:
        """``[M, O]`` float32 states: the template with the object at ``xy[M, 2]`` (and ``move`` shifted alike)."""
        out = np.tile(self.template, (len(xy), 1))
        shift = xy - self.template[list(self.xy)]
        for pair in (self.xy, *self.move):
            out[:, list(pair)] += shift
        return torch.as_tensor(out, dtype=torch.float32)


def _box(points: list, margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(lo, hi)`` of the 2-D ``points`` widened by ``margin``."""
    p = np.asarray(points, dtype=np.float64)
    return tuple((p.min(0) - margin).tolist()), tuple((p.max(0) + margin).tolist())


def make_plane(task_key: str, task: GoalTask) -> ObjectPlane:
    """The :class:`ObjectPlane` of ``task_key``'s task: the whole maze; around push's puck start and goal; around
    Pusher's object start box and goal."""
    info = task.info
    if task_key in MAZES:
        g = MazeGrid(task)
        goal = tuple(info["goal"])
        return ObjectPlane(lo=(g.x_lo, g.y_lo), hi=(g.x_hi, g.y_hi), xy=(0, 1), goal=goal,
                           radius=info["goal_radius"], template=np.array([*goal, 0.0, 0.0, *goal]), walls=g.map)
    template = task.success_examples(1, seed=0)[0].double().numpy()
    if task_key in ("push", "push-puck"):  # hand and puck, this frame and the previous one
        start = tuple(info["puck_start"][:2])
        lo, hi = _box([start, info["goal"][:2]], 0.12)
        return ObjectPlane(lo=lo, hi=hi, xy=(4, 5), move=((0, 1), (18, 19), (22, 23)), template=template,
                           goal=tuple(info["goal"][:2]), radius=info["goal_radius"], start_lo=start, start_hi=start,
                           contact=((0, 1, 2), (4, 5, 6)))
    lo, hi = _box([info["object_start_low"], info["object_start_high"], info["goal"][:2]], 0.08)
    return ObjectPlane(lo=lo, hi=hi, xy=(17, 18), move=((14, 15),), template=template, goal=tuple(info["goal"][:2]),
                       radius=info["goal_radius"], start_lo=tuple(info["object_start_low"]),
                       start_hi=tuple(info["object_start_high"]), contact=((14, 15, 16), (17, 18, 19)))


# ---------------------------------------------------------------------------------------------- CNML on a grid
class GridCNML:
    """Exact CNML of a ``MuralReward(method="cnml")`` tabulated on an ``n x n`` grid of the 2-D features after
    each update, interpolated bilinearly in between (a ``RewardShaper``: ``(obs, act, next_obs) -> [...]``)."""

    mode, weight = "replace", 1.0

    def __init__(self, mr: MuralReward, lo: tuple[float, float], hi: tuple[float, float], n: int,
                 max_data: int, seed: int):
        if mr.method != "cnml" or mr.feature_dim != 2:
            raise ValueError("GridCNML needs a MuralReward(method='cnml') with 2-D features")
        self.mr, self.n, self.max_data = mr, int(n), int(max_data)
        self.lo, self.hi = torch.tensor(lo), torch.tensor(hi)
        self.gen = torch.Generator().manual_seed(seed)
        self.table: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.table is not None

    def update(self, visited, progress: bool = False) -> GridCNML:
        self.mr.update(visited, progress=progress)
        x, y, c = self.mr.training_data
        if x.shape[0] > self.max_data:  # class-balanced subsample, weights rescaled to the same class totals
            idx = torch.randperm(x.shape[0], generator=self.gen)[: self.max_data]
            xs, ys = x[idx], y[idx]
            n1 = float(ys.sum())
            n0 = float(len(ys) - n1)
            cs = torch.where(ys > 0.5, 0.5 * len(ys) / max(n1, 1.0), 0.5 * len(ys) / max(n0, 1.0))
            x, y, c = xs, ys, cs.to(x)
        t = torch.linspace(0, 1, self.n)
        gx = self.lo[0] + t * (self.hi[0] - self.lo[0])
        gy = self.lo[1] + t * (self.hi[1] - self.lo[1])
        pts = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
        f = self.mr.standardise(pts)
        r = cnml_batched(self.mr.model, self.mr.mle_params, x, y, c, f, self.mr.config.cnml)
        self.table = r.reshape(self.n, self.n)
        return self

    def _interp(self, xy: torch.Tensor) -> torch.Tensor:
        u = ((xy - self.lo.to(xy)) / (self.hi - self.lo).to(xy) * (self.n - 1)).clamp(0, self.n - 1)
        i0 = u.floor().clamp(max=self.n - 2).long()
        w = u - i0
        tab = self.table.to(xy)
        a = tab[i0[..., 0], i0[..., 1]]
        b = tab[i0[..., 0] + 1, i0[..., 1]]
        c = tab[i0[..., 0], i0[..., 1] + 1]
        d = tab[i0[..., 0] + 1, i0[..., 1] + 1]
        wx, wy = w[..., 0], w[..., 1]
        out = a * (1 - wx) * (1 - wy) + b * wx * (1 - wy) + c * (1 - wx) * wy + d * wx * wy
        return torch.nan_to_num(out, nan=0.0)

    def __call__(self, obs, act=None, next_obs=None) -> torch.Tensor:
        s = obs if next_obs is None else next_obs
        return self._interp(self.mr.feature_fn(s.float()))

    def reward(self, states) -> torch.Tensor:
        return self(torch.as_tensor(states, dtype=torch.float32))


def make_reward(kind: str, task: GoalTask, cfg: BenchConfig, seed: int, device: str,
                plane: ObjectPlane | None = None):
    """The reward object of ``kind`` (``None`` for the sparse task reward); ``cnml`` tabulates over ``plane``."""
    if kind == "sparse":
        return None
    ex = task.success_examples(cfg.n_examples, seed=seed)
    method = {"mural": "meta_nml", "cnml": "cnml", "classifier": "classifier"}[kind]
    mcfg = cfg.mural
    if kind == "cnml":
        mcfg = dataclasses.replace(mcfg or MuralConfig.small(), cnml=cfg.cnml)
    mr = MuralReward(ex, method=method, seed=seed, device=device, config=mcfg, feature_fn=task.goal_features)
    if kind == "cnml":
        if plane is None:
            raise ValueError("plane is needed for the cnml reward (its grid covers the plane)")
        return GridCNML(mr, plane.lo, plane.hi, cfg.cnml_grid, cfg.cnml_max_data, seed)
    return mr


def reward_map(plane: ObjectPlane, shaper, n: int = 41) -> np.ndarray | None:
    """``[n, n]`` reward over the plane's (x, y) (rows: y), or None for the sparse reward or before a fit."""
    if shaper is None or not shaper.fitted:
        return None
    gx = np.linspace(plane.lo[0], plane.hi[0], n)
    gy = np.linspace(plane.lo[1], plane.hi[1], n)
    xy = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    with torch.no_grad():
        r = shaper.reward(plane.states(xy))
    return r.reshape(n, n).cpu().numpy()


# ---------------------------------------------------------------------------------------------- MPC agent
class GoalTracker:
    """Episode-end callback of :func:`run_pets`: success, first-success step, visited object positions, coverage
    (mazes), reward retraining and reward-map snapshots."""

    def __init__(self, task: GoalTask, shaper, cfg: BenchConfig, plane: ObjectPlane, tag: str = ""):
        self.task, self.shaper, self.cfg, self.plane, self.tag = task, shaper, cfg, plane, tag
        self.is_maze = plane.walls is not None
        self.grid = MazeGrid(task) if self.is_maze else None
        self.first_success: int | None = None
        self.warmup_success = False
        self.env_steps = 0  # raw env steps (agent steps x action repeat)
        self.positions: list[np.ndarray] = []
        self.maps: dict[int, list] = {}

    def __call__(self, end: EpisodeEnd) -> bool:
        succ = [bool(i.get("success", False)) for i in end.infos]
        inner = np.cumsum([int(i.get("inner_steps", 1)) for i in end.infos])
        if end.phase == "random":  # the random warm-up is the same for every reward: not counted
            self.warmup_success = self.warmup_success or any(succ)
        elif any(succ) and self.first_success is None:
            self.first_success = self.env_steps + int(inner[succ.index(True)])
        self.env_steps += int(inner[-1])
        end.row["raw_env_steps"] = self.env_steps
        d = self.task.distance_fn(torch.as_tensor(end.next_obs)).numpy()
        end.row.update(success=any(succ), min_distance=float(d.min()), final_distance=float(d[-1]))
        xy = self.plane.object_xy(end.next_obs)
        self.positions.append(xy.copy())
        end.row["object_moved"] = float(np.linalg.norm(xy - xy[0], axis=1).max())   # did anything push it?
        if not self.is_maze and self.plane.move:   # the effector (Pusher's tip, push's hand) to the object, closest
            eff = np.asarray(end.next_obs)[:, list(self.plane.move[0])]
            end.row["effector_to_object"] = float(np.linalg.norm(eff - xy, axis=1).min())
        if self.plane.contact is not None:   # the same in 3-D: above the object in xy is not touching it
            o = np.asarray(end.next_obs)
            eff3, obj3 = (o[:, list(ix)] for ix in self.plane.contact)
            end.row["effector_to_object_3d"] = float(np.linalg.norm(eff3 - obj3, axis=1).min())
        if self.is_maze:
            end.row["coverage"] = self.grid.coverage(np.concatenate(self.positions))
        if self.shaper is not None:
            t0 = time.perf_counter()
            self.shaper.update(end.next_obs, progress=False)
            end.row["reward_update_seconds"] = time.perf_counter() - t0
        if end.episode in self.cfg.snapshots:
            m = reward_map(self.plane, self.shaper)
            if m is not None:
                self.maps[end.episode] = m.tolist()
        print(f"    [{self.task.name}/{self.tag}] ep {end.episode} ({end.phase}) steps {self.env_steps} "
              f"success {any(succ)} moved {end.row['object_moved']:.3f} "
              f"eff-obj {end.row.get('effector_to_object', float('nan')):.3f} "
              f"(3-D {end.row.get('effector_to_object_3d', float('nan')):.3f}) "
              f"min_d {d.min():.2f} cov {end.row.get('coverage', float('nan')):.2f} act {end.row['seconds']:.0f}s "
              f"rew-update {end.row.get('reward_update_seconds', 0):.1f}s", flush=True)
        return not (self.cfg.stop_at_success and self.first_success is not None)


def _task(task_key: str, action_repeat: int = 1) -> GoalTask:
    """The :class:`GoalTask` of a task key (:data:`TASKS`, :data:`TASK_OPTIONS`)."""
    opts = dict(TASK_OPTIONS.get(task_key, {}), **({"action_repeat": action_repeat} if action_repeat > 1 else {}))
    return make_task(TASKS[task_key], **opts)


def run_mpc(task_key: str, kind: str, cfg: BenchConfig, seed: int, device: str) -> dict:
    """One PETS run with ``kind``'s reward until the first success or the budget (keys: see :func:`run_job`)."""
    task = _task(task_key, cfg.action_repeat)
    plane = make_plane(task_key, task)
    shaper = make_reward(kind, task, cfg, seed, device, plane)
    tracker = GoalTracker(task, shaper, cfg, plane, tag=f"{kind}/seed{seed}")
    t0 = time.perf_counter()
    log = run_pets(task, cfg.pets, seed=seed, device=device, progress=False,
                   reward_shapers=[shaper] if shaper is not None else [], callbacks=[tracker])
    out = {"log": log, "first_success": tracker.first_success, "warmup_success": tracker.warmup_success,
           "seconds": time.perf_counter() - t0, "env_steps": tracker.env_steps, "maps": tracker.maps,
           "positions": np.concatenate(tracker.positions)[::2].round(3).tolist()}
    if tracker.is_maze:
        out["coverage"] = log[-1]["coverage"]
    return out


# ---------------------------------------------------------------------------------------------- SAC agent
class _SparseSuccessReward(gym.Wrapper):
    """The sparse task reward for a model-free agent: ``float(info["success"])`` on every step."""

    def step(self, action):
        obs, _, term, trunc, info = self.env.step(action)
        return obs, float(bool(info.get("success", False))), term, trunc, info


def run_sac(task_key: str, kind: str, cfg: BenchConfig, seed: int, device: str) -> dict:
    """SB3 SAC (the authors' settings) on the task with ``kind``'s reward, until the first success or the budget."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from mbrl.wrappers import RewardShaperWrapper
    from safe_density.mural import MuralRewardWrapper

    task = _task(task_key)
    plane = make_plane(task_key, task)
    env = task.make_env(max_episode_steps=cfg.sac_episode_steps or task.max_episode_steps)
    shaper = make_reward(kind, task, cfg, seed, device, plane)
    if isinstance(shaper, MuralReward):
        env = MuralRewardWrapper(env, shaper, retrain_every=cfg.retrain_every)
    elif shaper is not None:   # exact CNML on a grid: the generic wrapper retrains any shaper with update()
        env = RewardShaperWrapper(env, shaper, retrain_every=cfg.retrain_every)
    else:   # sparse: 1 on success, whatever the env's own reward is (Meta-World's is shaped)
        env = _SparseSuccessReward(env)
    wrapper = env if isinstance(env, RewardShaperWrapper) else None
    rec = {"pos": [], "first": None, "steps": 0, "maps": {}, "env_seconds": 0.0, "map_seconds": 0.0}
    every = max(cfg.sac_steps // 4, 1)

    class Track(gym.Wrapper):
        def reset(self, **kwargs):   # the reward's first fit happens at the first reset
            t_env = time.perf_counter()
            out = self.env.reset(**kwargs)
            rec["env_seconds"] += time.perf_counter() - t_env
            return out

        def step(self, action):
            t_env = time.perf_counter()
            obs, r, term, trunc, info = self.env.step(action)
            rec["env_seconds"] += time.perf_counter() - t_env   # the env, the reward and its retraining
            rec["steps"] += 1
            rec["pos"].append(plane.object_xy(np.asarray(obs)[None])[0].astype(np.float32))
            if info.get("success", False) and rec["first"] is None:
                rec["first"] = rec["steps"]
            if shaper is not None and rec["steps"] % every == 0:
                t_map = time.perf_counter()
                m = reward_map(plane, shaper)
                if m is not None:
                    rec["maps"][rec["steps"]] = m.tolist()
                rec["map_seconds"] += time.perf_counter() - t_map
            return obs, r, term, trunc, info

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return not (cfg.stop_at_success and rec["first"] is not None)

    env = Track(env)
    t0 = time.perf_counter()
    model = SAC("MlpPolicy", env, learning_rate=3e-4, batch_size=256, tau=5e-3, gamma=0.99,
                learning_starts=min(1000, cfg.sac_steps // 2), policy_kwargs={"net_arch": [256, 256]}, seed=seed,
                device=device, verbose=0)
    model.learn(total_timesteps=cfg.sac_steps, callback=Stop())
    pos = np.stack(rec["pos"])
    total = time.perf_counter() - t0
    reward_s = wrapper.reward_seconds if wrapper else 0.0
    retrain_s = wrapper.retrain_seconds if wrapper else 0.0
    # where a SAC run's time goes: SAC itself (action selection and gradient updates), the env's physics, the
    # reward's per-step calls, its retraining, and this benchmark's reward maps
    profile = {"total": total, "reward_calls": reward_s, "reward_retraining": retrain_s,
               "n_retrains": wrapper.n_retrains if wrapper else 0,
               "env_physics": rec["env_seconds"] - reward_s - retrain_s, "reward_maps": rec["map_seconds"],
               "sac": total - rec["env_seconds"] - rec["map_seconds"]}
    out = {"first_success": rec["first"], "env_steps": rec["steps"], "seconds": total, "profile": profile,
           "maps": rec["maps"], "positions": pos[::4].round(3).tolist()}
    print(f"    [{task.name}/sac/{kind}/seed{seed}] {rec['steps']} steps in {total:.0f} s: " +
          ", ".join(f"{k} {v:.1f}" for k, v in profile.items() if k != "total"), flush=True)
    if plane.walls is not None:
        out["coverage"] = MazeGrid(task).coverage(pos)
    return out


def run_job(job: tuple[str, str, str, int], cfgs: dict[str, BenchConfig], device: str,
            partial: str | None = None) -> dict:
    """One run, ``job = (task key, agent, reward, seed)`` with ``cfgs[task key]``: a module-level function, so that
    Ray's workers import it (:func:`mbrl.sweep.run_grid`). Returns ``first_success`` (env steps, None if never),
    ``env_steps``, ``seconds``, ``positions`` (visited object xy), ``maps`` (reward-map snapshots), the PETS
    ``log`` (mpc) and ``coverage`` (mazes). ``partial``: a JSON-lines file the run's summary is appended to."""
    tk, ag, kind, seed = job
    torch.set_num_threads(1) if device == "cpu" else None
    r = (run_mpc if ag == "mpc" else run_sac)(tk, kind, cfgs[tk], seed, device)
    print(f"[{tk}/{ag}/{kind}/seed{seed}] first success {r['first_success']} env steps {r['env_steps']} "
          f"coverage {r.get('coverage', float('nan')):.2f} ({r['seconds']:.0f}s)", flush=True)
    if partial is not None:  # partial results survive an interrupted run
        short = {k: v for k, v in r.items() if k not in ("log", "maps", "positions")}
        with open(partial, "a") as fh:
            fh.write(json.dumps({"task": tk, "agent": ag, "reward": kind, "seed": seed, **short}) + "\n")
    return r


# ---------------------------------------------------------------------------------------------- report
def summarise(runs: list[dict], budget: int) -> dict:
    firsts = [r["first_success"] for r in runs]
    hits = [f for f in firsts if f is not None]
    med = float(np.median([f if f is not None else budget for f in firsts]))
    out = {"success_rate": len(hits) / len(runs), "first_success_steps": firsts,
           "median_steps_to_success": med if hits else None, "budget_env_steps": budget,
           "seconds": float(sum(r["seconds"] for r in runs))}
    if all("coverage" in r for r in runs):
        out["coverage"] = float(np.mean([r["coverage"] for r in runs]))
    return out


def _episode_steps(cfg: BenchConfig, task_steps: int) -> int:
    """Environment steps of one MPC episode (the agent's steps times the action repeat)."""
    return (cfg.pets.max_episode_steps or task_steps) * cfg.action_repeat


def _budget(agent: str, cfg: BenchConfig, task_steps: int) -> int:
    if agent == "sac":
        return cfg.sac_steps
    return _episode_steps(cfg, task_steps) * (cfg.pets.warmup_episodes + cfg.pets.episodes)


def _draw_plane(ax, plane: ObjectPlane, alpha: float = 0.9) -> None:
    """Walls (mazes), the start region (a box or a point) and the goal disc over ``ax``."""
    plt = pyplot()
    if plane.walls is not None:
        ax.imshow(np.ma.masked_where(plane.walls == 0, plane.walls), extent=plane.extent, cmap="Greys",
                  vmin=0, vmax=1.5, alpha=alpha)
    if plane.start_lo is not None:
        (x0, y0), (x1, y1) = plane.start_lo, plane.start_hi
        if (x0, y0) == (x1, y1):
            ax.plot(x0, y0, "ws", ms=6, mec="k")
        else:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="w", ls="--", lw=1))
    ax.add_patch(plt.Circle(plane.goal, plane.radius, fill=False, ec="c", lw=1.2))
    ax.plot(*plane.goal, "c*", ms=10)
    ax.set_xlim(plane.lo[0], plane.hi[0])
    ax.set_ylim(plane.lo[1], plane.hi[1])
    ax.set_aspect("equal")  # metres on both axes: the goal disc is a disc
    ax.set_xticks([])
    ax.set_yticks([])


def plot(results: dict, planes: dict[str, ObjectPlane], path: Path) -> None:
    """Per (task, agent, reward): visited object positions (all seeds) and seed 0's reward maps over the plane."""
    plt = pyplot()
    panels = [(tk, ag, kind, res) for tk, by_a in results.items() for ag, by_k in by_a.items()
              for kind, res in by_k.items()]
    if not panels:
        return
    n_maps = max(len(res["runs"][0].get("maps", {})) for *_, res in panels)
    fig, axes = plt.subplots(len(panels), 1 + n_maps, figsize=(3.2 * (1 + n_maps), 3.0 * len(panels)),
                             squeeze=False)
    for i, (tk, ag, kind, res) in enumerate(panels):
        plane = planes[tk]
        pos = np.concatenate([np.asarray(r["positions"]).reshape(-1, 2) for r in res["runs"]] or [np.zeros((0, 2))])
        ax = axes[i, 0]
        ax.set_facecolor("black")
        if len(pos):
            h, _, _ = np.histogram2d(pos[:, 0], pos[:, 1], bins=40, range=[plane.extent[:2], plane.extent[2:]])
            ax.imshow(np.log1p(h.T), origin="lower", extent=plane.extent, cmap="magma")
        _draw_plane(ax, plane)
        ax.set_title(f"{tk}/{ag}/{kind}: {res['summary']['success_rate']:.0%} success\nvisited (all seeds)", fontsize=8)
        maps = res["runs"][0].get("maps", {})
        for j in range(n_maps):
            axm = axes[i, 1 + j]
            axm.axis("off")
            if j < len(maps):
                k = list(maps)[j]
                axm.imshow(np.asarray(maps[k]), origin="lower", extent=plane.extent, vmin=0, vmax=1, cmap="viridis")
                _draw_plane(axm, plane, alpha=0.6)
                axm.set_title(f"reward after {'ep' if ag == 'mpc' else 'step'} {k} (seed 0)", fontsize=8)
    save_figure(fig, path, dpi=80)


def success_curve(first_success: list, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """``(t, fraction)``: the fraction of runs whose first success came at or before environment step ``t``, as a
    step function over ``[0, budget]`` (``None``: no success within the budget)."""
    hits = np.sort([f for f in first_success if f is not None]).astype(float)
    t = np.concatenate([[0.0], hits, [float(budget)]])
    frac = np.concatenate([[0.0], np.arange(1, len(hits) + 1), [len(hits)]]) / max(len(first_success), 1)
    return t, frac


def plot_success(by_agent: dict, warmup_steps: dict[str, int], task_key: str, path: Path) -> None:
    """One panel per agent: per reward, the fraction of seeds that have reached success by each env step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(by_agent), figsize=(4.2 * len(by_agent), 3.2), squeeze=False)
    for ax, (ag, by_k) in zip(axes[0], by_agent.items()):
        for kind, res in by_k.items():
            s = res["summary"]
            n, hits = len(s["first_success_steps"]), sum(f is not None for f in s["first_success_steps"])
            t, frac = success_curve(s["first_success_steps"], s["budget_env_steps"])
            ax.step(t, frac, where="post", lw=1.6, label=f"{kind} ({hits}/{n} seeds)")
        if warmup_steps.get(ag):
            ax.axvline(warmup_steps[ag], color="grey", ls=":", lw=1)
            ax.text(warmup_steps[ag], 1.02, " random warm-up ends", fontsize=7, color="grey", va="bottom")
        ax.set_ylim(-0.03, 1.1)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("fraction of seeds with a success")
        ax.set_title(f"{task_key} / {ag} (runs stop at their first success)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path, dpi=90)


def print_table(results: dict) -> None:
    """The summary of every (task, agent, reward) as a markdown table."""
    print("\n| task | agent | reward | success (seeds) | env steps to first success | median | coverage | "
          "seconds |\n|---|---|---|---|---|---|---|---|")
    for tk, by_a in results.items():
        for ag, by_k in by_a.items():
            if ag.startswith("_"):
                continue
            for kind, res in by_k.items():
                s = res["summary"]
                cov = f"{s['coverage']:.2f}" if "coverage" in s else "-"
                med = "-" if s["median_steps_to_success"] is None else f"{s['median_steps_to_success']:.0f}"
                print(f"| {tk} | {ag} | {kind} | {s['success_rate']:.2f} ({len(res['runs'])}) | "
                      f"{s['first_success_steps']} / {s['budget_env_steps']} | {med} | {cov} | {s['seconds']:.0f} |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized run (same as --preset quick)")
    p.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="settings (default: paper); quick: CPU sizes; tiny: a smoke test of every code path at "
                        "the smallest sizes (seconds per run; its numbers mean nothing)")
    p.add_argument("--tasks", nargs="+", default=["umaze", "medium"], choices=list(TASKS),
                   help="tasks: umaze and medium are PointMaze mazes, push is Meta-World push-v3, pusher is "
                        "Pusher-v5 with a sparse goal (Pusher-goal-v5), rewarded on the object's xy (pusher) or on "
                        "the object's and the arm tip's xy (pusher-tip)")
    p.add_argument("--agents", nargs="+", default=["mpc"], choices=list(AGENTS),
                   help="mpc: the library's PETS loop; sac: stable-baselines3 SAC (the 'rl' extra)")
    p.add_argument("--rewards", nargs="+", default=list(REWARDS), choices=list(REWARDS),
                   help="rewards to compare (module docstring; cnml only on tasks with 2-D features)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds, one run each")
    p.add_argument("--episodes", type=int, default=None,
                   help="MPC episodes after the warm-up (default: the preset's)")
    p.add_argument("--sac-steps", type=int, default=None, help="SAC's environment-step budget (default: the preset's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--backend", default=None, choices=["serial", "ray"],
                   help="serial: a loop in this process (the default unless --jobs > 1); ray: one Ray task per "
                        "run (mbrl.sweep.run_grid; the 'sweep' extra)")
    p.add_argument("--jobs", type=int_at_least(1), default=1,
                   help="runs at once on a local Ray (one CPU and one torch thread each); > 1 implies --backend ray")
    p.add_argument("--address", default=None,
                   help="a Ray cluster to run on, e.g. auto (default: a local Ray with --jobs CPUs)")
    p.add_argument("--out", default=None, help="output folder (default results/mural_tasks)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="instead of runs: merge the mural_tasks.json of runs split over seeds (or machines) into one "
                        "JSON, table and figures in --out (same preset and sizes; default: none, run instead)")
    p.add_argument("--analyse-mazes", action="store_true",
                   help="instead of runs: the mazes' geometry and both rewards along the shortest path after a "
                        "random warm-up (why Medium favours the classifier); writes maze_analysis.json/.png")
    return p


def _configs(a: argparse.Namespace, preset: str) -> dict[str, BenchConfig]:
    """Each task's :class:`BenchConfig` of ``preset``, with the command line's overrides."""
    cfgs = {}
    for tk in a.tasks:
        cfg = PRESETS[preset][tk]
        if a.episodes is not None:
            cfg = cfg.replace(pets=cfg.pets.replace(episodes=a.episodes))
        if a.sac_steps is not None:
            cfg = cfg.replace(sac_steps=a.sac_steps)
        cfgs[tk] = cfg
    return cfgs


def _start_ray(jobs: int, address: str | None) -> None:
    """A local Ray with ``jobs`` CPUs (or the cluster at ``address``) whose workers import ``benchmarks``."""
    import ray

    if not ray.is_initialized():
        where = {"address": address} if address else {"num_cpus": max(int(jobs), 1)}
        ray.init(**where, runtime_env=ray_runtime_env(), log_to_driver=True, ignore_reinit_error=True)


def run_all(jobs: list[tuple], cfgs: dict[str, BenchConfig], a: argparse.Namespace, out: Path) -> list[dict]:
    """Every job's :func:`run_job` result, in ``jobs``' order, serially or on Ray (``--backend``/``--jobs``)."""
    backend = a.backend or ("ray" if a.jobs > 1 else "serial")
    extra: dict = {"partial": str(out / "partial.jsonl")} if backend == "serial" else {}
    if backend == "ray":
        _start_ray(a.jobs, a.address)
        extra = {"address": a.address, "num_gpus_per_task": 1.0 / a.jobs if a.device.startswith("cuda") else 0.0}
    rows = run_grid(run_job, {"job": jobs}, backend=backend, progress=backend == "ray", cfgs=cfgs,
                    device=a.device, **extra)
    return [{k: v for k, v in r.items() if k != "job"} for r in rows]


def _collect(jobs: list[tuple], done: list[dict], cfgs: dict[str, BenchConfig]) -> dict:
    """``results[task][agent][reward] = {"runs": [...], "summary": {...}}`` and ``results[task]["_config"]``."""
    results: dict = {}
    for (tk, ag, kind, _s), r in zip(jobs, done):
        results.setdefault(tk, {}).setdefault(ag, {}).setdefault(kind, {"runs": []})["runs"].append(r)
    for tk, cfg in cfgs.items():
        task_steps = _task(tk, cfg.action_repeat).max_episode_steps   # agent steps
        for ag, by_k in results.get(tk, {}).items():
            for res in by_k.values():
                res["summary"] = summarise(res["runs"], _budget(ag, cfg, task_steps))
        results.setdefault(tk, {})["_config"] = {
            "pets": dataclasses.asdict(cfg.pets), "n_examples": cfg.n_examples,
            "mural": dataclasses.asdict(cfg.mural) if cfg.mural else "for_device", "sac_steps": cfg.sac_steps,
            "sac_episode_steps": cfg.sac_episode_steps, "retrain_every": cfg.retrain_every,
            "cnml_grid": cfg.cnml_grid, "cnml_max_data": cfg.cnml_max_data, "action_repeat": cfg.action_repeat}
    return results


def _figures(results: dict, cfgs: dict[str, BenchConfig], out: Path) -> dict:
    """Write the map figure and one success-curve figure per task; their file names (in ``out``)."""
    runs = {tk: {ag: v for ag, v in by_a.items() if not ag.startswith("_")} for tk, by_a in results.items()}
    planes = {tk: make_plane(tk, _task(tk)) for tk in runs}
    plot(runs, planes, out / "mural_tasks.png")
    names = {"maps": "mural_tasks.png", "success": {}}
    for tk, by_a in runs.items():
        if not by_a:
            continue
        cfg = cfgs[tk]
        warm = {"mpc": _episode_steps(cfg, _task(tk, cfg.action_repeat).max_episode_steps) * cfg.pets.warmup_episodes,
                "sac": min(1000, cfg.sac_steps // 2)}
        names["success"][tk] = f"mural_tasks_success_{tk}.png"
        plot_success(by_a, warm, tk, out / names["success"][tk])
    return names


def shortest_path(grid: MazeGrid, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Breadth-first shortest path of free cells ``(row, col)`` from ``start`` to ``goal`` (both included)."""
    prev: dict = {start: None}
    queue = collections.deque([start])
    while queue:
        c = queue.popleft()
        for d in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (c[0] + d[0], c[1] + d[1])
            if 0 <= n[0] < grid.map.shape[0] and 0 <= n[1] < grid.map.shape[1] and grid.map[n] == 0 and n not in prev:
                prev[n] = c
                queue.append(n)
    if goal not in prev:
        raise ValueError(f"goal cell {goal} is not reachable from {start}")
    path = [goal]
    while prev[path[-1]] is not None:
        path.append(prev[path[-1]])
    return path[::-1]


def analyse_maze(task_key: str, seeds=(0, 1, 2), warmup_steps: int = 100, n_examples: int = 64) -> dict:
    """Why a maze favours one reward (issue 19, item 4): the straight-line distance to the goal along the shortest
    path (does the way lead away from the goal first?), the classifier's and meta-NML's rewards every half cell
    along it after one random warm-up episode (seed ``seeds[0]``), and the warm-up's coverage per seed."""
    from mbrl.tasks.maze import MAZES as LAYOUTS

    cfg = PRESETS["quick"][task_key]
    task = _task(task_key, cfg.action_repeat)
    grid, layout = MazeGrid(task), LAYOUTS[TASKS[task_key]]
    env = task.make_env()
    maze = env.unwrapped.maze
    cells = shortest_path(grid, tuple(layout.reset_cell), tuple(layout.goal_cell))
    xy = np.array([maze.cell_rowcol_to_xy(np.array(c)) for c in cells], dtype=np.float64)
    euclid = np.linalg.norm(xy - xy[-1], axis=1)
    pts = np.concatenate([np.linspace(xy[i], xy[i + 1], 3)[:-1] for i in range(len(xy) - 1)] + [xy[-1:]])
    states = np.zeros((len(pts), task.obs_dim), dtype=np.float32)
    states[:, :2], states[:, 4:6] = pts, xy[-1]
    warm, coverage, closest = {}, [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        rng, visited = np.random.default_rng(seed), [obs]
        for _ in range(warmup_steps):
            obs, *_ = env.step(rng.uniform(-1, 1, task.act_dim))
            visited.append(obs)
        warm[seed] = np.asarray(visited)
        coverage.append(grid.coverage(warm[seed][:, :2]))
        closest.append(float(task.distance_fn(torch.as_tensor(warm[seed])).min()))
    env.close()
    along = {}
    ex = task.success_examples(n_examples, seed=seeds[0])
    for kind, method in (("classifier", "classifier"), ("mural", "meta_nml")):
        mr = MuralReward(ex, method=method, seed=seeds[0], feature_fn=task.goal_features).update(
            warm[seeds[0]], progress=False)
        along[kind] = mr.reward(torch.as_tensor(states)).numpy().round(3).tolist()
    return {"path_cells": [list(map(int, c)) for c in cells], "path_m": float((len(cells) - 1) * grid.scale),
            "euclid_along_path": euclid.round(3).tolist(),
            "largest_rise_m": float(max(max(euclid[j] - euclid[i] for j in range(i, len(euclid)))
                                        for i in range(len(euclid)))),
            "reward_along_path": along, "warmup_coverage": coverage, "warmup_closest_m": closest}


def maze_analysis(out: Path) -> dict:
    """:func:`analyse_maze` of both mazes, printed, written to ``maze_analysis.json`` and drawn."""
    res = {tk: analyse_maze(tk) for tk in MAZES}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(res), figsize=(10, 3.4))
    for ax, (tk, r) in zip(np.atleast_1d(axes), res.items()):
        s = np.arange(len(r["reward_along_path"]["mural"])) * 0.5
        for kind, col in (("classifier", "C1"), ("mural", "C0")):
            ax.plot(s, r["reward_along_path"][kind], col, marker=".", label=f"{kind} reward")
        ax2 = ax.twinx()
        ax2.plot(np.arange(len(r["euclid_along_path"])), r["euclid_along_path"], "k--", label="distance to goal")
        ax2.set_ylabel("straight-line distance to goal (m)", fontsize=8)
        ax.set_xlabel("cells along the shortest path from the start")
        ax.set_ylabel("reward after the warm-up")
        ax.set_title(f"{tk}: largest rise of the distance {r['largest_rise_m']:.2f} m", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        print(f"{tk}: distance to goal along the path {r['euclid_along_path']}; warm-up coverage "
              f"{np.round(r['warmup_coverage'], 2).tolist()}, closest {np.round(r['warmup_closest_m'], 2).tolist()} m")
        for kind, v in r["reward_along_path"].items():
            print(f"    {kind:10s} along the path (every half cell): {np.round(v, 2).tolist()}")
    save_figure(fig, out / "maze_analysis.png")
    write_json(out / "maze_analysis.json", res)
    return res


def merge(paths: list[str], out: Path) -> dict:
    """One JSON, table and figure set from several :func:`main` outputs of the same preset (e.g. seeds 0-2 and 3-4):
    runs are concatenated in the files' order and every summary recomputed."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    presets = {d["preset"] for d in parts}
    if len(presets) != 1:
        raise ValueError(f"merge needs outputs of one preset, got {sorted(presets)}")
    preset, results, cfgs = presets.pop(), {}, {}
    for d in parts:
        for tk, by_a in d["results"].items():
            mine = results.setdefault(tk, {"_config": by_a["_config"]})
            if by_a["_config"] != mine["_config"]:
                raise ValueError(f"merge: {tk} was run with different settings in {paths}")
            for ag, by_k in by_a.items():
                for kind, res in ({} if ag == "_config" else by_k).items():
                    mine.setdefault(ag, {}).setdefault(kind, {"runs": [], "budget": res["summary"]["budget_env_steps"]})
                    mine[ag][kind]["runs"] += res["runs"]
    for tk, by_a in results.items():
        c = by_a["_config"]
        base = PRESETS[preset][tk]
        cfgs[tk] = base.replace(sac_steps=c["sac_steps"], pets=base.pets.replace(episodes=c["pets"]["episodes"]))
        for ag, by_k in by_a.items():
            for res in ({} if ag == "_config" else by_k).values():
                res["summary"] = summarise(res["runs"], res.pop("budget"))
    print_table(results)
    data = {"preset": preset, "seeds": [s for d in parts for s in d["seeds"]], "machine": machine(),
            "claim_from_paper": PAPER_CLAIM, "merged_from": [str(p) for p in paths], "results": results}
    data["figures"] = _figures(results, cfgs, out)
    write_json(out / "mural_tasks.json", data)
    return data


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    if a.analyse_mazes:
        return maze_analysis(out_dir("mural_tasks", a.out))
    if a.merge:
        return merge(a.merge, out_dir("mural_tasks", a.out))
    preset = "quick" if a.quick else (a.preset or "paper")
    out = out_dir("mural_tasks", a.out)
    cfgs = _configs(a, preset)
    t0 = time.perf_counter()
    jobs = [(tk, ag, kind, s) for tk in a.tasks for ag in a.agents for kind in a.rewards for s in a.seeds
            if not (kind == "cnml" and tk not in CNML_TASKS)]
    results = _collect(jobs, run_all(jobs, cfgs, a, out), cfgs)
    print_table(results)
    data = {"preset": preset, "seeds": a.seeds, "machine": machine(), "claim_from_paper": PAPER_CLAIM,
            "wall_seconds": time.perf_counter() - t0, "results": results}
    data["figures"] = _figures(results, cfgs, out)  # file names in the JSON's folder
    write_json(out / "mural_tasks.json", data)
    return data


if __name__ == "__main__":
    main()
