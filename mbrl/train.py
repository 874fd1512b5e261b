"""The PETS training loop: random warm-up, then collect with MPC and retrain after every episode.

Chua et al. 2018 (docs/design.md, "PETS"): the dynamics ensemble is refitted on the whole replay buffer after
every episode (5 epochs in the original code) and the MPC agent replans at every step. Each episode is
logged (JSON lines + CSV) and a checkpoint (model, buffer, run state) is written atomically at every
episode boundary. Every random draw of episode ``k`` is seeded from ``(seed, k)`` and a fresh Adam is
made by each refit (as in the original code, which re-creates its training op per call), so a run
resumed from a checkpoint continues bit-identically to one that never stopped.

CLI: ``python -m mbrl.train --task InvertedPendulum-v5 --episodes 5 --out runs/ip``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mbrl.agent import MPCAgent
from mbrl.buffer import ReplayBuffer
from mbrl.common.argtypes import device, int_at_least
from mbrl.common.serialization import atomic_write_text, load_state, save_state
from mbrl.common.validation import check_int
from mbrl.config import PETSConfig
from mbrl.models import ProbabilisticEnsemble
from mbrl.planning import CEM, ICEM, MPPI
from mbrl.tasks import Task, make_task

__all__ = ["EpisodeEnd", "PETSConfig", "PRESETS", "add_pets_options", "build_parser", "episode_seed", "main",
           "make_agent", "run_pets"]


@dataclass
class EpisodeEnd:
    """What an episode-end callback of :func:`run_pets` receives (one object per finished episode).

    Fields:
        episode: index ``k`` of the episode (0-based; the first ``warmup_episodes`` are random).
        phase: ``"random"`` (warm-up) or ``"mpc"``.
        row: this episode's log row (a dict, already in the returned log); callbacks may add JSON-able
            entries (e.g. ``row["success"]``), which are then written to ``log.jsonl``.
        obs, act, next_obs: ``[T, O]``, ``[T, A]``, ``[T, O]`` numpy arrays of the episode's transitions
            (for a warm-up spanning several env episodes, all of them); reward ``[T]``, terminated
            ``[T]``, truncated ``[T]``; infos: the ``T`` info dicts of ``env.step``.
        task, config, seed: the run's task, :class:`PETSConfig` and seed.
        model, buffer: the dynamics ensemble (fitted before this episode, except during the warm-up) and the
            replay buffer (this episode included).
        agent: the episode's :class:`~mbrl.agent.MPCAgent` (``None`` during the warm-up).
    """

    episode: int
    phase: str
    row: dict
    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list
    task: object
    config: PETSConfig
    seed: int
    model: object
    buffer: ReplayBuffer
    agent: object | None


# Per-task presets: "paper" follows the PETS code where the task is in it (docs/design.md table);
# "quick" is a CPU-sized version (smaller nets and populations, shorter horizon).
PRESETS: dict[str, dict[str, PETSConfig]] = {
    "InvertedPendulum-v5": {
        "paper": PETSConfig(hidden=(500, 500, 500), horizon=25, population=400, elites=40, episodes=10),
        "quick": PETSConfig(hidden=(64, 64), ensemble_size=5, horizon=15, population=100, elites=10,
                            iterations=5, particles=1, propagation="expectation", episodes=5,
                            epochs_per_episode=50, warmup_steps=600),
    },
    "HalfCheetah-v5": {
        "paper": PETSConfig(hidden=(200,) * 4, horizon=30, population=500, elites=50, episodes=300),
        "quick": PETSConfig(hidden=(128, 128, 128), horizon=15, population=150, elites=15, iterations=3,
                            particles=5, episodes=6, max_episode_steps=300, epochs_per_episode=10),
    },
    "Pusher-v5": {
        "paper": PETSConfig(hidden=(200,) * 3, horizon=25, population=500, elites=50, episodes=150),
        "quick": PETSConfig(hidden=(128, 128, 128), horizon=15, population=150, elites=15, iterations=3,
                            particles=5, episodes=6, epochs_per_episode=10),
    },
    "Reacher-v5": {
        "paper": PETSConfig(hidden=(200,) * 4, horizon=25, population=400, elites=40, episodes=300),
        "quick": PETSConfig(hidden=(128, 128), horizon=10, population=150, elites=15, iterations=3,
                            particles=5, episodes=6, epochs_per_episode=10),
    },
    "Hopper-v5": {
        "paper": PETSConfig(hidden=(200,) * 4, horizon=30, population=500, elites=50, episodes=100),
        "quick": PETSConfig(hidden=(128, 128, 128), horizon=15, population=150, elites=15, iterations=3,
                            particles=5, episodes=6, max_episode_steps=300, epochs_per_episode=10),
    },
}


def episode_seed(seed: int, episode: int) -> int:
    """The seed of every random draw of episode ``episode`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def _make_optimizer(cfg: PETSConfig):
    if cfg.optimizer == "cem":
        return CEM(population=cfg.population, elites=cfg.elites, iterations=cfg.iterations, alpha=cfg.alpha)
    if cfg.optimizer == "icem":
        return ICEM(population=cfg.population, elites=cfg.elites, iterations=cfg.iterations, alpha=cfg.alpha)
    if cfg.optimizer == "mppi":
        return MPPI(population=cfg.population, iterations=cfg.iterations)
    raise ValueError(f"optimizer must be 'cem', 'icem' or 'mppi', got {cfg.optimizer!r}")


def _run_episode(env, policy, seed: int, max_steps: int, buffer: ReplayBuffer, min_steps: int = 0
                 ) -> tuple[dict, dict]:
    """One episode (the return is the first episode's); with ``min_steps``, keep resetting until reached.

    Returns the log statistics and the transitions (numpy arrays and the ``info`` dicts)."""
    obs, _ = env.reset(seed=seed)
    ret, steps, t0, first = 0.0, 0, time.perf_counter(), True
    tr: dict[str, list] = {k: [] for k in ("obs", "act", "next_obs", "reward", "terminated", "truncated", "infos")}
    while True:
        ep_steps = 0
        while ep_steps < max_steps:
            act = policy(obs)
            nxt, rew, term, trunc, info = env.step(act)
            buffer.add(obs, act, nxt, float(rew), bool(term), bool(trunc))
            for k, v in zip(tr, (obs, act, nxt, float(rew), bool(term), bool(trunc), info)):
                tr[k].append(v)
            ret += float(rew) if first else 0.0
            steps += 1
            ep_steps += 1
            obs = nxt
            if term or trunc:
                break
        first = False
        if steps >= min_steps:
            break
        obs, _ = env.reset()
    arrays = {k: np.asarray(v) for k, v in tr.items() if k != "infos"}
    arrays["infos"] = tr["infos"]
    return {"return": ret, "steps": steps, "seconds": time.perf_counter() - t0}, arrays


def run_pets(
    task: str | Task = "InvertedPendulum-v5",
    config: PETSConfig | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    constraints: Sequence = (),
    reward_shapers: Sequence = (),
    callbacks: Sequence[Callable[[EpisodeEnd], bool | None]] = (),
) -> list[dict]:
    """Run PETS on ``task`` and return the per-episode log (a list of dicts).

    Args:
        task: a task name (see :func:`mbrl.tasks.make_task`) or a :class:`~mbrl.tasks.base.Task`.
        config: hyper-parameters (default: the task's "quick" preset).
        out_dir: where ``log.jsonl``, ``log.csv`` and ``checkpoint/`` go (nothing is written if ``None``).
        resume: continue from ``out_dir/checkpoint`` (bit-identical to an uninterrupted run when the
            callbacks keep no state of their own; stateful callbacks, e.g. a MURAL reward, must be saved
            and restored by their owner).
        stop_after: stop after this many episodes in this call (to test resuming), ``>= 0``.
        constraints, reward_shapers: passed to :class:`mbrl.agent.MPCAgent` (docs/design.md contracts).
        callbacks: episode-end hooks ``callback(end: EpisodeEnd) -> bool | None``, called in order after
            every episode (warm-up included), after its row is appended to the log and before the logs and
            the checkpoint are written. Returning ``False`` stops the run after this episode (the
            Stable-Baselines3 convention). Typical use: retrain a reward shaper on the episode's states,
            ``lambda end: shaper.update(end.next_obs)``; the next episode's agent plans with it.
    """
    t, name, cfg, callbacks = _check_run(task, config, callbacks)
    if stop_after is not None:
        stop_after = check_int("stop_after", stop_after, low=0)
    device = torch.device(device) if device is not None else torch.device("cpu")
    out = Path(out_dir) if out_dir is not None else None
    model, buffer, log, start = _initial_state(t, cfg, out, resume, device, seed)
    env = t.make_env()
    max_steps = cfg.max_episode_steps or t.max_episode_steps
    total = cfg.warmup_episodes + cfg.episodes
    end = total if stop_after is None else min(total, start + stop_after)
    bar = tqdm(total=end - start, desc=f"PETS {name}", unit="ep", disable=not progress)
    for ep in range(start, end):
        ep_seed = episode_seed(seed, ep)
        if ep < cfg.warmup_episodes:
            rng = np.random.default_rng(ep_seed)
            policy = lambda _o, rng=rng: t.action_box.sample(generator=rng)  # noqa: E731
            phase, fit_hist, agent = "random", None, None
        else:
            fit_hist = model.fit(buffer, epochs=cfg.epochs_per_episode, batch_size=cfg.batch_size, lr=cfg.lr,
                                 holdout=cfg.holdout, seed=ep_seed, progress=False)
            agent = make_agent(t, model, cfg, device, ep_seed, constraints, reward_shapers)
            phase, policy = "mpc", agent.act
        stats, tr = _run_episode(env, policy, ep_seed, max_steps, buffer,
                                 min_steps=cfg.warmup_steps if phase == "random" else 0)
        row = {"episode": ep, "phase": phase, "env_steps": len(buffer), **stats}
        if fit_hist is not None and fit_hist.get("holdout_mse"):
            row["holdout_mse"] = float(np.mean(fit_hist["holdout_mse"][-1]))
        log.append(row)
        end_info = EpisodeEnd(episode=ep, phase=phase, row=row, task=t, config=cfg, seed=seed, model=model,
                              buffer=buffer, agent=agent, **tr)
        stop = [cb(end_info) is False for cb in callbacks]
        bar.update(1)
        bar.set_postfix(ret=f"{stats['return']:.1f}", steps=len(buffer))
        if out is not None:
            _checkpoint(out, log, ep + 1, name, seed, cfg, model, buffer)
        if any(stop):
            break
    bar.close()
    env.close()
    return log


def _check_run(task, config, callbacks) -> tuple[Task, str, PETSConfig, tuple]:
    """Validate :func:`run_pets`'s task, config and callbacks; the config defaults to the task's "quick"."""
    if isinstance(task, str):
        t, name = make_task(task), task
    elif isinstance(task, Task):
        t, name = task, task.name
    else:
        raise ValueError(f"task must be a task name or an mbrl.tasks.Task, got {type(task).__name__}")
    if config is not None and not isinstance(config, PETSConfig):
        raise ValueError(f"config must be a PETSConfig, got {type(config).__name__}")
    callbacks = tuple(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise ValueError(f"callbacks[{i}] must be callable, got {type(cb).__name__}")
    return t, name, config or PRESETS.get(name, {}).get("quick", PETSConfig()), callbacks


def _initial_state(t: Task, cfg: PETSConfig, out: Path | None, resume: bool, device, seed: int):
    """``(model, buffer, log, first episode)``: fresh, or read from ``out/checkpoint`` when resuming."""
    if not resume:
        model = ProbabilisticEnsemble(t.obs_dim, t.act_dim, ensemble_size=cfg.ensemble_size, hidden=cfg.hidden,
                                      device=device, seed=seed)
        return model, ReplayBuffer(cfg.buffer_capacity, t.obs_dim, t.act_dim), [], 0
    if out is None or not (out / "checkpoint").exists():
        raise ValueError("resume=True needs an out_dir holding a checkpoint")
    model = ProbabilisticEnsemble.load(out / "checkpoint" / "model", device=device)
    buffer = ReplayBuffer.load(out / "checkpoint" / "buffer")
    _, meta = load_state(out / "checkpoint" / "run")
    return model, buffer, meta["log"], meta["episode"]


def make_agent(t: Task, model, cfg: PETSConfig, device=None, seed: int = 0, constraints: Sequence = (),
               reward_shapers: Sequence = (), reward_fn: Callable | None = None) -> MPCAgent:
    """The MPC agent of one PETS episode: ``cfg``'s optimiser, horizon, particles and precision on task ``t``
    (``reward_fn`` replaces the task's reward, e.g. a goal-directed one; the termination stays the task's)."""
    return MPCAgent(model, reward_fn or t.reward_fn, t.termination_fn, t.action_box, None,
                    optimizer=_make_optimizer(cfg), horizon=cfg.horizon, particles=cfg.particles,
                    propagation=cfg.propagation, constraints=constraints, reward_shapers=reward_shapers,
                    replan_every=cfg.replan_every, dtype=getattr(torch, cfg.dtype), device=device, seed=seed)


def _checkpoint(out: Path, log: list[dict], next_episode: int, name: str, seed: int, cfg: PETSConfig,
                model, buffer: ReplayBuffer) -> None:
    """Write the logs and the checkpoint (model, buffer, run state) at an episode boundary, atomically."""
    _write_logs(out, log)
    save_state(out / "checkpoint" / "run", {"_": torch.zeros(1)},
               {"log": log, "episode": next_episode, "task": name, "seed": seed, "config": dataclasses.asdict(cfg)})
    model.save(out / "checkpoint" / "model")
    buffer.save(out / "checkpoint" / "buffer")


def _write_logs(out: Path, log: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    keys = sorted({k for r in log for k in r})
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in log]
    atomic_write_text(out / "log.csv", "\n".join(lines) + "\n")


def task_name(text: str) -> str:
    """``argparse`` type: a known task name (:data:`mbrl.tasks.TASKS` or :data:`~mbrl.tasks.GOAL_TASKS`)."""
    from mbrl.tasks import GOAL_TASKS, TASKS

    if text not in (*TASKS, *GOAL_TASKS):
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; known: {', '.join((*TASKS, *GOAL_TASKS))}")
    return text


def add_pets_options(p: argparse.ArgumentParser) -> None:
    """The options of a PETS run, the one home of them (``python -m mbrl.train`` and ``safe-density pets``)."""
    p.add_argument("--task", default="InvertedPendulum-v5", type=task_name, help="task name (see mbrl.make_task)")
    p.add_argument("--preset", default="quick", choices=["quick", "paper"],
                   help="quick: CPU-sized settings; paper: the PETS code's settings (GPU advised)")
    p.add_argument("--episodes", type=int_at_least(0), default=None,
                   help="MPC episodes after the random warm-up (default: the preset's)")
    p.add_argument("--optimizer", default=None, choices=["cem", "icem", "mppi"],
                   help="trajectory optimiser (default: the preset's)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                   help="planner precision (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cpu)")
    p.add_argument("--out", default=None, help="output folder for logs and checkpoints (default: write nothing)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mbrl.train", description="Train and evaluate PETS on a task.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_pets_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> list[dict]:
    p = build_parser()
    a = p.parse_args(argv)
    cfg = PRESETS.get(a.task, {}).get(a.preset, PETSConfig())
    over = {k: v for k, v in {"episodes": a.episodes, "optimizer": a.optimizer, "dtype": a.dtype}.items()
            if v is not None}
    cfg = cfg.replace(**over)
    log = run_pets(a.task, cfg, out_dir=a.out, seed=a.seed, device=a.device, resume=a.resume)
    for r in log:
        print(json.dumps(r))
    return log


if __name__ == "__main__":
    main()
