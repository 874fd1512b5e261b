"""MURAL vs a plain success classifier (VICE-like) vs the sparse task reward, planned by PETS-style MPC.

design.md, "MURAL" and "PETS". On each goal task (PointMaze U-maze, Meta-World push-v3; fixed start and
goal, see ``mbrl/tasks/maze.py`` and ``mbrl/tasks/metaworld_push.py``) and for each reward:

* ``sparse``: the task's own success reward (1 inside the goal region, 0 elsewhere);
* ``classifier``: ``MuralReward(method="classifier")``, the maximum-likelihood success classifier;
* ``mural``: ``MuralReward(method="meta_nml")``, MURAL's meta-NML reward,

the loop is: one random warm-up episode; then, before every MPC episode, refit the dynamics ensemble on
the whole replay buffer and update the reward classifier with the states of the last episode (it keeps
all visited states, up to its ``max_visited``) -- MURAL's "retrain on all visited states" -- and act
with ``MPCAgent`` (CEM, TS-inf), the classifier reward replacing the task reward inside the planner.
The classifiers see the task's ``goal_features`` (maze: ball xy; push: hand and puck xyz) and K success
examples from ``task.success_examples``.

Reported per episode: whether the true success test fired at any step (``success``), the final and the
smallest distance to the goal, and the environment steps so far. JSON + PNG go to
``results/mural_tasks/`` (or ``--out``).

Presets. ``--quick`` (CPU, 2 cores, < 15 min for both tasks): small nets, CEM 100/10 x 3 iterations,
horizon 15 (maze) / 10 (push), 4 particles, 3 MPC episodes (maze: 300 steps; push: 150 steps, shortened
from 500), one seed, ``MuralConfig.small()`` with 200 meta-/classifier steps per update.
``--preset paper`` (GPU advised): the PETS code's sizes (4 x 200 ensemble, CEM 500/50 x 5, horizon 30,
20 particles), full-length episodes and MURAL's own classifier sizes (``MuralConfig()``: 2 x 2048,
official-code learning rates).

Paper numbers (Li et al., ICML 2021, arXiv 2107.07184): the paper reports learning curves (distance to
goal / success vs environment steps, SAC as the RL algorithm, millions of steps) in figures, not
tables; we could not retrieve the curves' values with our search tools, so no number is quoted. Its
qualitative claim -- MURAL solves the mazes and Sawyer push, where VICE-style classifiers and sparse
rewards stall -- is what ``claim_from_paper`` in the JSON records.

Optional: ``--sac`` runs SB3 SAC through :class:`safe_density.mural.MuralRewardWrapper` when
``stable_baselines3`` is importable (it is not a dependency; the run is skipped otherwise).

CLI: ``python benchmarks/mural_tasks.py --quick`` or ``python benchmarks/mural_tasks.py --preset paper
--device cuda --seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, out_dir, write_json  # noqa: E402

from mbrl.agent import MPCAgent  # noqa: E402
from mbrl.buffer import ReplayBuffer  # noqa: E402
from mbrl.models.ensemble import PETS_WEIGHT_DECAY, ProbabilisticEnsemble  # noqa: E402
from mbrl.planning import CEM  # noqa: E402
from mbrl.tasks.maze import GoalTask, make_maze_task  # noqa: E402
from mbrl.tasks.metaworld_push import make_push_task  # noqa: E402
from mbrl.util.seeding import seed_everything  # noqa: E402
from safe_density.mural import MuralConfig, MuralReward  # noqa: E402

METHODS = ("mural", "classifier", "sparse")
TASKS = {"maze": lambda: make_maze_task("PointMaze_UMaze-v3"),
         "maze_medium": lambda: make_maze_task("PointMaze_Medium-v3"),
         "push": lambda: make_push_task()}
PAPER_CLAIM = ("MURAL (meta-NML reward, SAC) reaches the goal on its mazes and on Sawyer push, where "
               "VICE-style classifier rewards and sparse rewards fail or are much slower "
               "(Li et al. 2021, Sec. 6, learning-curve figures; no tabulated numbers retrieved).")


@dataclass(frozen=True)
class BenchConfig:
    """One run's sizes (see module doc for the presets)."""

    hidden: tuple[int, ...] = (200, 200, 200, 200)
    ensemble_size: int = 5
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    population: int = 500
    elites: int = 50
    iterations: int = 5
    horizon: int = 30
    particles: int = 20
    episodes: int = 30
    episode_steps: int | None = None  # None: the task's max_episode_steps
    n_examples: int = 64
    mural_small: bool = False  # MuralConfig.small() (CPU) instead of MuralConfig() (paper sizes)
    mural_update_steps: int | None = None

    def replace(self, **kw) -> BenchConfig:
        return dataclasses.replace(self, **kw)


PRESETS: dict[str, dict[str, BenchConfig]] = {
    "paper": {
        "maze": BenchConfig(episodes=30),
        "maze_medium": BenchConfig(episodes=30),
        "push": BenchConfig(hidden=(200, 200, 200), horizon=25, episodes=30),
    },
    "quick": {
        "maze": BenchConfig(hidden=(64, 64), epochs=10, population=100, elites=10, iterations=3, horizon=15,
                            particles=4, episodes=3, episode_steps=300, n_examples=32, mural_small=True,
                            mural_update_steps=200),
        "maze_medium": BenchConfig(hidden=(64, 64), epochs=10, population=100, elites=10, iterations=3,
                                   horizon=15, particles=4, episodes=3, episode_steps=300, n_examples=32,
                                   mural_small=True, mural_update_steps=200),
        "push": BenchConfig(hidden=(64, 64), epochs=10, population=100, elites=10, iterations=3, horizon=10,
                            particles=4, episodes=3, episode_steps=150, n_examples=32, mural_small=True,
                            mural_update_steps=200),
    },
}


def _weight_decay(n_hidden: int) -> tuple[float, ...]:
    """PETS' per-layer L2 (hidden layers ramp 2.5e-5 .. 7.5e-5, output 1e-4) for ``n_hidden`` layers."""
    hidden = PETS_WEIGHT_DECAY[:-1]
    return tuple(hidden[min(i, len(hidden) - 1)] for i in range(n_hidden)) + (PETS_WEIGHT_DECAY[-1],)


def _episode(env, task: GoalTask, policy, seed: int, steps: int, buffer: ReplayBuffer) -> dict:
    obs, _ = env.reset(seed=seed)
    visited, success, t0 = [], False, time.perf_counter()
    dmin = float(task.distance_fn(torch.as_tensor(obs)))
    for _ in range(steps):
        act = np.asarray(policy(obs), dtype=np.float32)
        nxt, rew, term, trunc, info = env.step(act)
        buffer.add(obs, act, nxt, float(rew), bool(term), bool(trunc))
        visited.append(np.asarray(nxt, dtype=np.float64))
        success |= bool(info.get("success", False))
        dmin = min(dmin, float(task.distance_fn(torch.as_tensor(nxt))))
        obs = nxt
        if term or trunc:
            break
    return {"success": success, "final_distance": float(task.distance_fn(torch.as_tensor(obs))),
            "min_distance": dmin, "steps": len(visited), "seconds": time.perf_counter() - t0,
            "_visited": np.stack(visited)}


def run_one(task_key: str, method: str, cfg: BenchConfig, seed: int = 0, device: str = "cpu",
            progress: bool = True) -> list[dict]:
    """One (task, reward) run; returns the per-episode log (episode 0 is the random warm-up)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seed_everything(seed)
    task = TASKS[task_key]()
    env = task.make_env()
    steps = cfg.episode_steps or task.max_episode_steps
    dev = torch.device(device)
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=cfg.ensemble_size,
                                  hidden=cfg.hidden, weight_decay=_weight_decay(len(cfg.hidden)),
                                  device=dev, seed=seed)
    buffer = ReplayBuffer((cfg.episodes + 1) * steps, task.obs_dim, task.act_dim)
    shaper = None
    if method != "sparse":
        mcfg = MuralConfig.small() if cfg.mural_small else MuralConfig()
        shaper = MuralReward(task.success_examples(cfg.n_examples, seed=seed),
                             method="meta_nml" if method == "mural" else "classifier", seed=seed, device=dev,
                             config=mcfg, feature_fn=task.goal_features)
    low, high = task.action_low, task.action_high
    log, total = [], 0
    for ep in range(cfg.episodes + 1):
        ep_seed = int(np.random.SeedSequence([seed, ep]).generate_state(1)[0])
        t0 = time.perf_counter()
        if ep == 0:
            rng = np.random.default_rng(ep_seed)
            policy = lambda _o, rng=rng: rng.uniform(low, high).astype(np.float32)  # noqa: E731
        else:
            model.fit(buffer, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, holdout=0.1,
                      seed=ep_seed, progress=False)
            agent = MPCAgent(model, task.reward_fn, task.termination_fn, low, high,
                             optimizer=CEM(population=cfg.population, elites=cfg.elites,
                                           iterations=cfg.iterations, alpha=0.1),
                             horizon=cfg.horizon, particles=cfg.particles, propagation="ts_inf",
                             reward_shapers=[shaper] if shaper is not None else [], dtype=torch.float32,
                             device=dev, seed=ep_seed)
            policy = agent.act
        train_s = time.perf_counter() - t0
        row = _episode(env, task, policy, ep_seed, steps, buffer)
        visited = row.pop("_visited")
        if shaper is not None:  # MURAL / VICE: every visited state is a negative; retrain after each episode
            t1 = time.perf_counter()
            shaper.update(visited, steps=cfg.mural_update_steps, progress=False)
            train_s += time.perf_counter() - t1
        total += row["steps"]
        row.update(episode=ep, phase="random" if ep == 0 else "mpc", env_steps=total, train_seconds=train_s)
        log.append(row)
        if progress:
            print(f"[{task_key}/{method}/seed{seed}] ep {ep:2d} steps {total:6d} "
                  f"success {row['success']!s:5} final_d {row['final_distance']:.3f} "
                  f"min_d {row['min_distance']:.3f} "
                  f"({row['seconds']:.0f}s act, {train_s:.0f}s train)", flush=True)
    env.close()
    return log


def _summary(logs: list[list[dict]]) -> dict:
    mpc = [r for log in logs for r in log if r["phase"] == "mpc"]
    last = [log[-1] for log in logs]
    return {"success_rate": float(np.mean([r["success"] for r in mpc])) if mpc else float("nan"),
            "final_distance_last_episode": float(np.mean([r["final_distance"] for r in last])),
            "min_distance_best": float(np.min([r["min_distance"] for r in mpc])) if mpc else float("nan"),
            "env_steps": int(np.mean([log[-1]["env_steps"] for log in logs])),
            "seconds": float(sum(r["seconds"] + r["train_seconds"] for log in logs for r in log))}


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(results)
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7), squeeze=False)
    for j, tk in enumerate(tasks):
        for method, res in results[tk].items():
            for s, log in enumerate(res["logs"]):
                x = [r["env_steps"] for r in log]
                lab = method if s == 0 else None
                cum = np.cumsum([r["success"] for r in log]) / np.arange(1, len(log) + 1)
                axes[0, j].plot(x, cum, marker="o", label=lab, color=f"C{METHODS.index(method)}")
                axes[1, j].plot(x, [r["final_distance"] for r in log], marker="o", label=lab,
                                color=f"C{METHODS.index(method)}")
        axes[0, j].set_title(tk)
        axes[0, j].set_ylim(-0.05, 1.05)
        axes[0, j].set_ylabel("fraction of episodes reaching the goal")
        axes[1, j].set_ylabel("final distance to goal")
        axes[1, j].set_xlabel("environment steps")
        axes[0, j].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def _maybe_sac(task_key: str, steps: int, seed: int, device: str) -> dict:
    """SB3 SAC on the MURAL-rewarded env, if stable_baselines3 is importable."""
    try:
        from stable_baselines3 import SAC
    except ImportError:
        return {"skipped": "stable_baselines3 is not installed"}
    from safe_density.mural import MuralRewardWrapper

    task = TASKS[task_key]()
    mr = MuralReward(task.success_examples(64, seed=seed), method="meta_nml", seed=seed,
                     config=MuralConfig.small(), feature_fn=task.goal_features)
    successes = []

    class _Track(MuralRewardWrapper):
        def step(self, action):
            out = super().step(action)
            successes.append(bool(out[-1].get("success", False)))
            return out

    env = _Track(task.make_env(), mr, retrain_every=1000)
    SAC("MlpPolicy", env, seed=seed, device=device, verbose=0).learn(total_timesteps=steps)
    return {"steps": steps, "fraction_of_steps_in_goal": float(np.mean(successes))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (same as --preset quick)")
    p.add_argument("--preset", default=None, choices=list(PRESETS), help="settings (default: paper)")
    p.add_argument("--tasks", nargs="+", default=["maze", "push"], choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--episodes", type=int, default=None, help="MPC episodes after the warm-up")
    p.add_argument("--episode-steps", type=int, default=None, help="override the preset's episode length")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sac", type=int, default=0, help="also run SB3 SAC for this many steps (if installed)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    preset = "quick" if a.quick else (a.preset or "paper")
    out = out_dir("mural_tasks", a.out)
    results: dict = {}
    t0 = time.perf_counter()
    for tk in a.tasks:
        cfg = PRESETS[preset][tk]
        if a.episodes is not None:
            cfg = cfg.replace(episodes=a.episodes)
        if a.episode_steps is not None:
            cfg = cfg.replace(episode_steps=a.episode_steps)
        results[tk] = {}
        for m in a.methods:
            logs = [run_one(tk, m, cfg, seed=s, device=a.device) for s in a.seeds]
            results[tk][m] = {"config": dataclasses.asdict(cfg), "logs": logs, "summary": _summary(logs)}
    print(f"\n{'task':12s} {'reward':11s} {'success rate':>12s} {'final dist':>10s} {'best min dist':>13s} "
          f"{'env steps':>9s} {'seconds':>8s}")
    for tk, by_m in results.items():
        for m, res in by_m.items():
            s = res["summary"]
            print(f"{tk:12s} {m:11s} {s['success_rate']:12.2f} {s['final_distance_last_episode']:10.3f} "
                  f"{s['min_distance_best']:13.3f} {s['env_steps']:9d} {s['seconds']:8.0f}")
    data = {"preset": preset, "seeds": a.seeds, "machine": machine(), "claim_from_paper": PAPER_CLAIM,
            "paper_numbers": None, "wall_seconds": time.perf_counter() - t0, "results": results}
    if a.sac:
        data["sac"] = {tk: _maybe_sac(tk, a.sac, a.seeds[0], a.device) for tk in a.tasks}
    write_json(out / "mural_tasks.json", data)
    _plot(results, out / "mural_tasks.png")
    return data


if __name__ == "__main__":
    main()
