"""MURAL vs exact CNML vs a plain success classifier (VICE-like) vs the sparse task reward, same agent and budget.

docs/design.md, "MURAL" and "Published recipes". Claim checked (Li et al., ICML 2021): MURAL's reward stays
near 1/2 on states nobody has tried, so an agent keeps looking where a plain classifier leads it greedily
into a wall, and reaches goals that sparse rewards and plain classifiers miss.

Tasks: PointMaze U-maze and Medium (gymnasium-robotics; analogues of the authors' zigzag and spiral mazes,
fixed start and goal, ``mbrl/tasks/maze.py``) and Meta-World push-v3 (``mbrl/tasks/metaworld_push.py``).
Rewards (``--rewards``):

* ``mural``: ``MuralReward(method="meta_nml")``, MURAL's meta-NML reward;
* ``cnml``: exact CNML (two classifiers retrained per query), tabulated once per update on a grid over the
  2-D maze features and interpolated bilinearly (the planner queries ~10^5 states per episode; exact CNML
  per query is not affordable on CPU; on the grid points it is exact, on at most ``cnml_max_data``
  training points subsampled with their class weights). Mazes only;
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
time. A run stops at its first success. Figures: visited-state heat maps over the maze per reward (all
seeds), and the reward map of seed 0 at a few moments. JSON + PNG go to ``results/mural_tasks/`` (or ``--out``).

    python -m benchmarks.mural_tasks --quick                       # maze table, CPU, both mazes, 3 seeds
    python -m benchmarks.mural_tasks --quick --agents sac --tasks umaze
    python -m benchmarks.mural_tasks --preset paper --device cuda --seeds 0 1 2 3 4 --tasks umaze medium push
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import HelpFormatter, machine, out_dir, pyplot, save_figure, write_json
from mbrl.tasks import make_task
from mbrl.tasks.goal import GoalTask
from mbrl.train import EpisodeEnd, PETSConfig, run_pets
from safe_density.mural import CNMLConfig, MuralConfig, MuralReward, cnml_batched

REWARDS = ("mural", "cnml", "classifier", "sparse")
AGENTS = ("mpc", "sac")
TASKS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "push": "MetaWorld-push-v3"}
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
    cnml: CNMLConfig = field(default_factory=lambda: CNMLConfig(steps=100, lr=1e-2))
    sac_steps: int = 20_000
    sac_episode_steps: int = 100  # the authors' maze episodes
    retrain_every: int = 1000  # SAC: the authors' epoch length
    snapshots: tuple[int, ...] = (1, 3, 6)  # episodes (mpc) after which the reward map is kept
    action_repeat: int = 1  # mazes, MPC agent: env steps per agent step (horizon H sees H * k env steps)
    stop_at_success: bool = True

    def replace(self, **kw) -> BenchConfig:
        return dataclasses.replace(self, **kw)


_QUICK_PETS = PETSConfig(hidden=(64, 64), ensemble_size=5, epochs_per_episode=10, population=100, elites=10,
                         iterations=3, horizon=15, particles=4, episodes=10)
PRESETS: dict[str, dict[str, BenchConfig]] = {
    "quick": {
        "umaze": BenchConfig(pets=_QUICK_PETS, sac_steps=8000, action_repeat=10, snapshots=(0, 2, 5, 10)),
        "medium": BenchConfig(pets=_QUICK_PETS, sac_steps=8000, sac_episode_steps=200, action_repeat=10,
                              snapshots=(0, 2, 5, 10)),
        "push": BenchConfig(pets=_QUICK_PETS.replace(horizon=10, episodes=4, max_episode_steps=150),
                            sac_steps=5000, sac_episode_steps=150),
    },
    "paper": {  # GPU: the PETS code's sizes, MURAL's published classifier sizes
        "umaze": BenchConfig(pets=PETSConfig(episodes=30, max_episode_steps=300), mural=MuralConfig.published(),
                             sac_steps=200_000, snapshots=(1, 5, 10, 20, 30)),
        "medium": BenchConfig(pets=PETSConfig(episodes=40, max_episode_steps=600), mural=MuralConfig.published(),
                              sac_steps=500_000, sac_episode_steps=200, snapshots=(1, 5, 10, 20, 40)),
        "push": BenchConfig(pets=PETSConfig(hidden=(200,) * 3, horizon=25, episodes=30, max_episode_steps=500),
                            mural=MuralConfig.published(), sac_steps=500_000, sac_episode_steps=500,
                            snapshots=(1, 10, 30)),
    },
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


def _maze_obs(task: GoalTask, xy: np.ndarray) -> torch.Tensor:
    """Observations ``[M, 6]`` at positions ``xy[M, 2]`` with zero velocity and the task's goal."""
    goal = np.tile(np.asarray(task.info["goal"]), (len(xy), 1))
    return torch.as_tensor(np.concatenate([xy, np.zeros_like(xy), goal], 1), dtype=torch.float32)


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


def make_reward(kind: str, task: GoalTask, cfg: BenchConfig, seed: int, device: str):
    """The reward object of ``kind`` (``None`` for the sparse task reward)."""
    if kind == "sparse":
        return None
    ex = task.success_examples(cfg.n_examples, seed=seed)
    method = {"mural": "meta_nml", "cnml": "cnml", "classifier": "classifier"}[kind]
    mcfg = cfg.mural
    if kind == "cnml":
        mcfg = dataclasses.replace(mcfg or MuralConfig.small(), cnml=cfg.cnml)
    mr = MuralReward(ex, method=method, seed=seed, device=device, config=mcfg, feature_fn=task.goal_features)
    if kind == "cnml":
        grid = MazeGrid(task)
        return GridCNML(mr, (grid.x_lo, grid.y_lo), (grid.x_hi, grid.y_hi), cfg.cnml_grid, cfg.cnml_max_data, seed)
    return mr


def reward_map(task: GoalTask, shaper, n: int = 41) -> np.ndarray | None:
    """``[n, n]`` reward over the maze's (x, y) (rows: y), or None for the sparse reward."""
    if shaper is None or not shaper.fitted:
        return None
    g = MazeGrid(task)
    gx = np.linspace(g.x_lo, g.x_hi, n)
    gy = np.linspace(g.y_lo, g.y_hi, n)
    xy = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    with torch.no_grad():
        r = shaper.reward(_maze_obs(task, xy))
    return r.reshape(n, n).cpu().numpy()


# ---------------------------------------------------------------------------------------------- MPC agent
class GoalTracker:
    """Episode-end callback of :func:`run_pets`: success, first-success step, coverage, reward retraining."""

    def __init__(self, task: GoalTask, shaper, cfg: BenchConfig, is_maze: bool, tag: str = ""):
        self.task, self.shaper, self.cfg, self.is_maze, self.tag = task, shaper, cfg, is_maze, tag
        self.grid = MazeGrid(task) if is_maze else None
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
        if self.is_maze:
            self.positions.append(end.next_obs[:, :2].copy())
            end.row["coverage"] = self.grid.coverage(np.concatenate(self.positions))
        if self.shaper is not None:
            t0 = time.perf_counter()
            self.shaper.update(end.next_obs, progress=False)
            end.row["reward_update_seconds"] = time.perf_counter() - t0
        if self.is_maze and end.episode in self.cfg.snapshots:
            m = reward_map(self.task, self.shaper)
            if m is not None:
                self.maps[end.episode] = m.tolist()
        print(f"    [{self.task.name}/{self.tag}] ep {end.episode} ({end.phase}) steps {self.env_steps} "
              f"success {any(succ)} "
              f"min_d {d.min():.2f} cov {end.row.get('coverage', float('nan')):.2f} act {end.row['seconds']:.0f}s "
              f"rew-update {end.row.get('reward_update_seconds', 0):.1f}s", flush=True)
        return not (self.cfg.stop_at_success and self.first_success is not None)


def _task(task_key: str, action_repeat: int = 1) -> GoalTask:
    return make_task(TASKS[task_key], action_repeat=action_repeat) if action_repeat > 1 else make_task(TASKS[task_key])


def run_mpc(task_key: str, kind: str, cfg: BenchConfig, seed: int, device: str) -> dict:
    task = _task(task_key, cfg.action_repeat)
    shaper = make_reward(kind, task, cfg, seed, device)
    tracker = GoalTracker(task, shaper, cfg, task_key != "push", tag=f"{kind}/seed{seed}")
    t0 = time.perf_counter()
    log = run_pets(task, cfg.pets, seed=seed, device=device, progress=False,
                   reward_shapers=[shaper] if shaper is not None else [], callbacks=[tracker])
    out = {"log": log, "first_success": tracker.first_success, "warmup_success": tracker.warmup_success,
           "seconds": time.perf_counter() - t0,
           "env_steps": tracker.env_steps, "maps": tracker.maps}
    if tracker.positions:
        out["positions"] = np.concatenate(tracker.positions)[::2].round(3).tolist()
        out["coverage"] = log[-1]["coverage"]
    return out


# ---------------------------------------------------------------------------------------------- SAC agent
def run_sac(task_key: str, kind: str, cfg: BenchConfig, seed: int, device: str) -> dict:
    """SB3 SAC (the authors' settings) on the task with ``kind``'s reward, until the first success or the budget."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from mbrl.wrappers import RewardShaperWrapper
    from safe_density.mural import MuralRewardWrapper

    task = make_task(TASKS[task_key])
    env = task.make_env(max_episode_steps=cfg.sac_episode_steps)
    shaper = make_reward(kind, task, cfg, seed, device)
    if isinstance(shaper, MuralReward):
        env = MuralRewardWrapper(env, shaper, retrain_every=cfg.retrain_every)
    elif shaper is not None:   # exact CNML on a grid: the generic wrapper retrains any shaper with update()
        env = RewardShaperWrapper(env, shaper, retrain_every=cfg.retrain_every)
    rec = {"pos": [], "first": None, "steps": 0, "maps": {}}
    is_maze = task_key != "push"
    grid = MazeGrid(task) if is_maze else None

    class Track(gym.Wrapper):
        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            rec["steps"] += 1
            if is_maze:
                rec["pos"].append(np.asarray(obs[:2], dtype=np.float32))
            if info.get("success", False) and rec["first"] is None:
                rec["first"] = rec["steps"]
            if is_maze and shaper is not None and rec["steps"] % (cfg.sac_steps // 4) == 0:
                m = reward_map(task, shaper)
                if m is not None:
                    rec["maps"][rec["steps"]] = m.tolist()
            return obs, r, term, trunc, info

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return not (cfg.stop_at_success and rec["first"] is not None)

    env = Track(env)
    t0 = time.perf_counter()
    model = SAC("MlpPolicy", env, learning_rate=3e-4, batch_size=256, tau=5e-3, gamma=0.99,
                learning_starts=1000, policy_kwargs={"net_arch": [256, 256]}, seed=seed, device=device, verbose=0)
    model.learn(total_timesteps=cfg.sac_steps, callback=Stop())
    out = {"first_success": rec["first"], "env_steps": rec["steps"], "seconds": time.perf_counter() - t0,
           "maps": rec["maps"]}
    if is_maze and rec["pos"]:
        pos = np.stack(rec["pos"])
        out["positions"] = pos[::4].round(3).tolist()
        out["coverage"] = grid.coverage(pos)
    return out


def _run_job(tk: str, ag: str, kind: str, cfg: BenchConfig, seed: int, device: str) -> dict:
    torch.set_num_threads(1) if device == "cpu" else None
    r = (run_mpc if ag == "mpc" else run_sac)(tk, kind, cfg, seed, device)
    print(f"[{tk}/{ag}/{kind}/seed{seed}] first success {r['first_success']} env steps {r['env_steps']} "
          f"coverage {r.get('coverage', float('nan')):.2f} ({r['seconds']:.0f}s)", flush=True)
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


def _budget(agent: str, cfg: BenchConfig, task_steps: int) -> int:
    if agent == "sac":
        return cfg.sac_steps
    steps = cfg.pets.max_episode_steps * cfg.action_repeat if cfg.pets.max_episode_steps else task_steps
    return steps * (cfg.pets.warmup_episodes + cfg.pets.episodes)


def plot(results: dict, path: Path) -> None:
    plt = pyplot()
    panels = [(tk, ag, kind, res) for tk, by_a in results.items() if tk != "push"
              for ag, by_k in by_a.items() for kind, res in by_k.items()]
    if not panels:
        return
    n_maps = max(len(res["runs"][0].get("maps", {})) for *_, res in panels)
    fig, axes = plt.subplots(len(panels), 1 + n_maps, figsize=(3.2 * (1 + n_maps), 3.0 * len(panels)),
                             squeeze=False)
    for i, (tk, ag, kind, res) in enumerate(panels):
        task = make_task(TASKS[tk])
        g = MazeGrid(task)
        ext = (g.x_lo, g.x_hi, g.y_lo, g.y_hi)
        walls = np.ma.masked_where(g.map == 0, g.map)
        pos = np.concatenate([np.asarray(r["positions"]) for r in res["runs"] if r.get("positions")] or
                             [np.zeros((0, 2))])
        ax = axes[i, 0]
        ax.imshow(walls, extent=ext, cmap="Greys", vmin=0, vmax=1.5, alpha=0.9)
        if len(pos):
            h, xe, ye = np.histogram2d(pos[:, 0], pos[:, 1], bins=40, range=[ext[:2], ext[2:]])
            ax.imshow(np.log1p(h.T), origin="lower", extent=ext, cmap="magma", alpha=0.75)
        goal = task.info["goal"]
        ax.plot(*goal, "c*", ms=12)
        s = res["summary"]
        ax.set_title(f"{tk}/{ag}/{kind}: {s['success_rate']:.0%} success", fontsize=8)
        maps = res["runs"][0].get("maps", {})
        for j in range(n_maps):
            axm = axes[i, 1 + j]
            axm.axis("off")
            if j < len(maps):
                k = list(maps)[j]
                axm.imshow(np.asarray(maps[k]), origin="lower", extent=ext, vmin=0, vmax=1, cmap="viridis")
                axm.imshow(walls, extent=ext, cmap="Greys", vmin=0, vmax=1.5, alpha=0.6)
                axm.plot(*goal, "r*", ms=10)
                axm.set_title(f"reward after {'ep' if ag == 'mpc' else 'step'} {k} (seed 0)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path, dpi=80)


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
    p.add_argument("--preset", default=None, choices=list(PRESETS), help="settings (default: paper)")
    p.add_argument("--tasks", nargs="+", default=["umaze", "medium"], choices=list(TASKS),
                   help="tasks: umaze and medium are PointMaze mazes, push is Meta-World push-v3")
    p.add_argument("--agents", nargs="+", default=["mpc"], choices=list(AGENTS),
                   help="mpc: the library's PETS loop; sac: stable-baselines3 SAC (the 'rl' extra)")
    p.add_argument("--rewards", nargs="+", default=list(REWARDS), choices=list(REWARDS),
                   help="rewards to compare (module docstring)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds, one run each")
    p.add_argument("--episodes", type=int, default=None,
                   help="MPC episodes after the warm-up (default: the preset's)")
    p.add_argument("--sac-steps", type=int, default=None, help="SAC's environment-step budget (default: the preset's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel worker processes (one thread each)")
    p.add_argument("--out", default=None, help="output folder (default results/mural_tasks)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    preset = "quick" if a.quick else (a.preset or "paper")
    out = out_dir("mural_tasks", a.out)
    results: dict = {}
    cfgs: dict[str, BenchConfig] = {}
    t0 = time.perf_counter()
    for tk in a.tasks:
        cfg = PRESETS[preset][tk]
        if a.episodes is not None:
            cfg = cfg.replace(pets=cfg.pets.replace(episodes=a.episodes))
        if a.sac_steps is not None:
            cfg = cfg.replace(sac_steps=a.sac_steps)
        cfgs[tk] = cfg
    jobs = [(tk, ag, kind, s) for tk in a.tasks for ag in a.agents for kind in a.rewards for s in a.seeds
            if not (kind == "cnml" and tk == "push")]
    if a.jobs > 1:  # independent runs in worker processes (one torch thread each)
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(_run_job, tk, ag, kind, cfgs[tk], s, a.device) for tk, ag, kind, s in jobs]
            done = [f.result() for f in futs]
    else:
        done = []
        for tk, ag, kind, s in jobs:  # partial results survive an interrupted run
            done.append(_run_job(tk, ag, kind, cfgs[tk], s, a.device))
            short = {k: v for k, v in done[-1].items() if k not in ("log", "maps", "positions")}
            with open(out / "partial.jsonl", "a") as fh:
                fh.write(json.dumps({"task": tk, "agent": ag, "reward": kind, "seed": s, **short}) + "\n")
    for (tk, ag, kind, _s), r in zip(jobs, done):
        results.setdefault(tk, {}).setdefault(ag, {}).setdefault(kind, {"runs": []})["runs"].append(r)
    for tk in a.tasks:
        cfg = cfgs[tk]
        task_steps = make_task(TASKS[tk]).max_episode_steps
        for ag, by_k in results.get(tk, {}).items():
            for res in by_k.values():
                res["summary"] = summarise(res["runs"], _budget(ag, cfg, task_steps))
        results.setdefault(tk, {})["_config"] = {"pets": dataclasses.asdict(cfg.pets), "n_examples": cfg.n_examples,
                                  "mural": dataclasses.asdict(cfg.mural) if cfg.mural else "for_device",
                                  "sac_steps": cfg.sac_steps, "sac_episode_steps": cfg.sac_episode_steps,
                                  "retrain_every": cfg.retrain_every, "cnml_grid": cfg.cnml_grid,
                                  "cnml_max_data": cfg.cnml_max_data, "action_repeat": cfg.action_repeat}
    print_table(results)
    data = {"preset": preset, "seeds": a.seeds, "machine": machine(), "claim_from_paper": PAPER_CLAIM,
            "wall_seconds": time.perf_counter() - t0, "results": results}
    write_json(out / "mural_tasks.json", data)
    plot({tk: {ag: v for ag, v in by_a.items() if not ag.startswith("_")} for tk, by_a in results.items()},
         out / "mural_tasks.png")
    return data


if __name__ == "__main__":
    main()
