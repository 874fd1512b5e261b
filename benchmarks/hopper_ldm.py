"""The LDM paper's Hopper experiment (Kang et al., ICML 2022, Sec. 6): MPC with a learned model, hopping to
target x positions, with and without density constraints.

Pipeline (``--quick`` sizes in brackets):

1. **Offline data.** PETS itself collects Hopper-v5 data on the forward-velocity reward: random warm-up
   steps, then MPC episodes (mbrl.train.run_pets) [2000 random steps + 10 episodes of at most 300 steps].
   Episodes end when the hopper falls, so fallen states appear only as the last ``next_obs`` of an
   episode, never as ``obs``: they get low density.
2. **Models.** A PETS ensemble refitted on all data; a Gaussian-mixture density over (s without x, a) and the
   learned LDM ``G(s, a)`` on the same features (x is excluded: the density is translation invariant), both
   on the MPC episodes only (the behaviour data; random warm-up steps are left out) without the last 20
   steps before each fall (see :func:`safe_mask`).
   Transitions are given to the LDM as non-terminal, so a fall leads to a next state with no data around it
   (high energy) and the backup propagates that danger back along the trajectories.
3. **Control.** MPC (CEM + TS-inf) hops from the start to a target x with reward ``1 - min(|x - x*|, 2) / 2``
   (positive, so falling, which ends the episode, is never attractive), under:
   (a) no constraint, (b) the greedy density constraint ``E(s, a) <= c``, (c) an ensemble-disagreement
   penalty, (d) the LDM constraint ``G(s, a) <= c``; thresholds ``c`` are quantiles of ``G`` over the data's own
   state-action pairs (a fraction q of the data is feasible), the same ``c`` for the greedy constraint.
4. **Metrics** per method and threshold: falls per episode, final distance to the target, and the dynamics
   model's one-step error along the executed trajectory; plus seconds per action (the LDM's planning-time
   overhead). Written to ``results/hopper_ldm/hopper_ldm.json`` and ``hopper_ldm.png``.

The published shape: as the threshold tightens, falls go to zero; too tight and the hopper stands still.

    python benchmarks/hopper_ldm.py --quick          # 2 CPU cores, < 30 min
    python benchmarks/hopper_ldm.py --device cuda    # larger data, models and populations
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, out_dir, write_json  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from mbrl.agent import MPCAgent  # noqa: E402
from mbrl.buffer import ReplayBuffer  # noqa: E402
from mbrl.models import ProbabilisticEnsemble  # noqa: E402
from mbrl.penalties import EnsembleDisagreement  # noqa: E402
from mbrl.planning import CEM  # noqa: E402
from mbrl.tasks import make_task  # noqa: E402
from mbrl.train import PETSConfig, run_pets  # noqa: E402
from mbrl.util.sweep import run_grid  # noqa: E402
from safe_density.density import GaussianMixtureDensity  # noqa: E402
from safe_density.ldm import LyapunovDensityModel  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Settings:
    data_warmup_steps: int = 2000
    data_episodes: int = 10
    data_steps: int = 300
    data_hidden: tuple[int, ...] = (128, 128, 128)
    model_epochs: int = 60
    ldm_steps: int = 3000
    ldm_components: int = 8
    population: int = 150
    elites: int = 15
    iterations: int = 3
    horizon: int = 12
    particles: int = 5
    episode_steps: int = 150
    episodes: int = 2
    targets: tuple[float, ...] = (1.0,)
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    disagreement_weight: float = 10.0
    drop_before_fall: int = 20


QUICK = Settings()
FULL = Settings(data_warmup_steps=10000, data_episodes=30, data_steps=1000, data_hidden=(200, 200, 200, 200),
                model_epochs=100,
                ldm_steps=20000, population=500, elites=50, iterations=5, horizon=30, particles=20,
                episode_steps=500, episodes=5, targets=(1.0, 2.0, 3.0), quantiles=(0.25, 0.5, 0.75, 0.9, 0.99))


class ObsFeatures:
    """A ``Constraint`` that evaluates ``inner`` on ``obs[..., 1:]`` (drops Hopper's x position)."""

    def __init__(self, inner):
        self.inner, self.threshold = inner, float(inner.threshold)

    def cost(self, obs, act):
        return self.inner.cost(obs[..., 1:], act)


def target_reward(target: float):
    def reward_fn(obs, act, next_obs):
        return 1.0 - (next_obs[..., 0] - target).abs().clamp(max=2.0) / 2.0
    return reward_fn


def collect_data(s: Settings, out: Path, seed: int, device) -> tuple[ReplayBuffer, int]:
    """PETS data on the forward-velocity reward; returns the buffer and its number of random warm-up steps."""
    cfg = PETSConfig(hidden=s.data_hidden, horizon=15, population=s.population, elites=s.elites,
                     iterations=s.iterations, particles=s.particles, episodes=s.data_episodes,
                     max_episode_steps=s.data_steps, epochs_per_episode=10, warmup_episodes=1,
                     warmup_steps=s.data_warmup_steps)
    log = run_pets("Hopper-v5", cfg, out_dir=out / "offline", seed=seed, device=device)
    n_random = sum(r["steps"] for r in log if r["phase"] == "random")
    return ReplayBuffer.load(out / "offline" / "checkpoint" / "buffer"), n_random


def run_episode(task, agent, model, target, steps, seed):
    env = task.make_env()
    obs, _ = env.reset(seed=seed)
    fell, errs, times = False, [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        act = agent.act(obs)
        times.append(time.perf_counter() - t0)
        nxt, _, term, trunc, _ = env.step(act)
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            a = torch.as_tensor(act, dtype=torch.float32)[None]
            pred = model.predict(o, a, deterministic=True).mean(0)[0].numpy()
        errs.append(float(np.mean((pred - nxt) ** 2)))
        obs = nxt
        if term:
            fell = True
            break
        if trunc:
            break
    env.close()
    return {"fell": fell, "distance": float(abs(obs[0] - target)), "x": float(obs[0]),
            "model_mse": float(np.mean(errs)), "steps": len(errs), "seconds_per_action": float(np.median(times))}


def safe_mask(terminated: torch.Tensor, truncated: torch.Tensor, k: int) -> torch.Tensor:
    """``[N]`` bool: transitions at least ``k`` steps before the end of an episode that ended in a fall.

    The dynamics model learns from everything (it must know how falls happen); the density and the LDM see
    only the behaviour we want to stay close to, as if an operator had cut each episode ``k`` steps before
    its fall. Then falling is what leaves the data, which is the paper's setting (its data comes from a
    policy that hops without falling)."""
    n = terminated.shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    ends = torch.nonzero(terminated.cpu(), as_tuple=False).flatten().tolist()
    for e in ends:
        start = e
        while start > 0 and not bool(terminated[start - 1]) and not bool(truncated[start - 1]) and e - start < k:
            start -= 1
        keep[start: e + 1] = False
    return keep


def prepare(s: Settings, out: Path, seed: int, device) -> dict:
    """Offline data, the dynamics ensemble, the density and the LDM (steps 1-2 of the module docstring)."""
    task = make_task("Hopper-v5")
    buf, n_random = collect_data(s, out, seed, device)
    data = buf.all()
    print(f"offline data: {len(buf)} transitions")
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, hidden=s.data_hidden, device=device, seed=seed)
    model.fit(buf, epochs=s.model_epochs, progress=True, seed=seed)
    keep = safe_mask(data.terminated, data.truncated, s.drop_before_fall)
    keep[:n_random] = False  # the behaviour to stay close to is the MPC controller's, not random flailing
    print(f"LDM data: {int(keep.sum())} MPC transitions at least {s.drop_before_fall} steps before any fall")
    feats, nfeats, acts = data.obs[keep, 1:], data.next_obs[keep, 1:], data.act[keep]
    density = GaussianMixtureDensity(s.ldm_components, device=device, seed=seed)
    ldm = LyapunovDensityModel(task.obs_dim - 1, task.act_dim, task.action_low, task.action_high, density=density,
                               steps=s.ldm_steps, device=device, seed=seed)
    ldm.fit(feats, acts, nfeats, progress=True)
    with torch.no_grad():
        e_data = ldm.energy(feats, acts).cpu().numpy()
        g_data = ldm.value(feats, acts).cpu().numpy()
    # c at the q-quantile of G on the data: a fraction q of the data's own (s, a) pairs is feasible, so the
    # constraint always leaves the planner somewhere to go (the same c is used for the greedy E <= c).
    thresholds = {q: float(np.quantile(g_data, q)) for q in s.quantiles}
    print("thresholds (quantile of G on data -> c):", {q: round(c, 2) for q, c in thresholds.items()})
    return {"task": task, "buffer": buf, "model": model, "ldm": ldm, "thresholds": thresholds,
            "e_data": e_data, "g_data": g_data}


def make_agent(s: Settings, prep: dict, target: float, constraints=(), reward_shapers=(), seed: int = 0,
               device=None, reward_fn=None) -> MPCAgent:
    task = prep["task"]
    return MPCAgent(prep["model"], reward_fn or target_reward(target), task.termination_fn, task.action_low,
                    task.action_high, optimizer=CEM(population=s.population, elites=s.elites,
                                                    iterations=s.iterations, alpha=0.1),
                    horizon=s.horizon, particles=s.particles, propagation="ts_inf", constraints=constraints,
                    reward_shapers=reward_shapers, device=device, seed=seed)


def methods_for(s: Settings, prep: dict, which=("none", "greedy", "disagreement", "ldm")) -> list:
    ldm, thresholds = prep["ldm"], prep["thresholds"]
    methods: list[tuple[str, float | None, list, list]] = []
    if "none" in which:
        methods.append(("none", None, [], []))
    if "greedy" in which:
        methods += [("greedy", q, [ObsFeatures(ldm.constraint(c, greedy=True))], []) for q, c in thresholds.items()]
    if "disagreement" in which:
        methods.append(("disagreement", None, [], [EnsembleDisagreement(prep["model"], s.disagreement_weight)]))
    if "ldm" in which:
        methods += [("ldm", q, [ObsFeatures(ldm.constraint(c))], []) for q, c in thresholds.items()]
    return methods


def evaluate(s: Settings, prep: dict, methods: list, seed: int, device) -> list[dict]:
    """MPC episodes for every method x target x episode (steps 3-4 of the module docstring)."""
    rows = []
    bar = tqdm(total=len(methods) * len(s.targets) * s.episodes, desc="hopper MPC", unit="ep")
    for name, q, cons, shapers in methods:
        for target in s.targets:
            for ep in range(s.episodes):
                agent = make_agent(s, prep, target, cons, shapers, seed=seed + ep, device=device)
                r = run_episode(prep["task"], agent, prep["model"], target, s.episode_steps, seed=1000 + ep)
                rows.append({"method": name, "quantile": q, "threshold": prep["thresholds"].get(q),
                             "target": target, "episode": ep, **r})
                bar.update(1)
    bar.close()
    return rows


def print_table(table: list[dict]) -> None:
    print(f"\n{'method':>13} {'q':>5} {'c':>7} {'falls/ep':>9} {'dist':>6} {'model mse':>10} {'s/action':>9} "
          f"{'overhead':>9}")
    for t in table:
        qs = "-" if t["quantile"] is None else f"{t['quantile']:.2f}"
        cs = "-" if t["threshold"] is None else f"{t['threshold']:.2f}"
        print(f"{t['method']:>13} {qs:>5} {cs:>7} {t['falls_per_episode']:>9.2f} {t['distance']:>6.2f} "
              f"{t['model_mse']:>10.4f} {t['seconds_per_action']:>9.4f} {t.get('overhead_vs_none', 0.0):>+9.1%}")


def run_seed(seed: int, settings: Settings, out: str, device: str, methods: tuple[str, ...]) -> dict:
    """The whole experiment for one seed (a grid point of ``mbrl.util.sweep.run_grid``)."""
    dev = torch.device(device)
    prep = prepare(settings, Path(out) / f"seed{seed}", seed, dev)
    rows = evaluate(settings, prep, methods_for(settings, prep, methods), seed, dev)
    return {"rows": [{**r, "seed": seed} for r in rows], "data_transitions": len(prep["buffer"]),
            "thresholds": prep["thresholds"],
            "ldm_minus_energy_on_data_mean": float(np.mean(prep["g_data"] - prep["e_data"]))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized settings (< 30 min on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of data collection, models and planning")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default results/hopper_ldm)")
    p.add_argument("--episodes", type=int, default=None, help="evaluation episodes per method and target")
    p.add_argument("--methods", nargs="+", default=["none", "greedy", "disagreement", "ldm"],
                   choices=["none", "greedy", "disagreement", "ldm"], help="which controllers to compare")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run the whole experiment for each seed and merge the tables (overrides --seed)")
    p.add_argument("--backend", default="serial", choices=["serial", "ray"],
                   help="run the seed grid in this process or as Ray tasks (pip install 'safe-density[sweep]')")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    a = p.parse_args(argv)
    s = QUICK if a.quick else FULL
    if a.episodes is not None:
        s = dataclasses.replace(s, episodes=a.episodes)
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("hopper_ldm", a.out)
    t_start = time.perf_counter()
    seeds = a.seeds or [a.seed]
    grid = run_grid(run_seed, {"seed": seeds}, backend=a.backend, address=a.address, settings=s, out=str(out),
                    device=str(device), methods=tuple(a.methods))
    rows = [r for g in grid for r in g["rows"]]
    table = summarise(rows)
    base = next((t for t in table if t["method"] == "none"), table[0])["seconds_per_action"]
    for t in table:
        t["overhead_vs_none"] = t["seconds_per_action"] / base - 1.0
    print_table(table)
    res = {"settings": dataclasses.asdict(s), "machine": machine(), "seeds": seeds, "backend": a.backend,
           "per_seed": [{k: v for k, v in g.items() if k != "rows"} for g in grid], "rows": rows,
           "table": table, "seconds": time.perf_counter() - t_start,
           "paper": "Kang et al. 2022, Hopper: falls drop to zero as the LDM threshold tightens; too tight and "
                    "the hopper does not move. The greedy density constraint and the ensemble penalty still fall."}
    write_json(out / "hopper_ldm.json", res)
    plot(table, out / "hopper_ldm.png")
    return res


def summarise(rows: list[dict]) -> list[dict]:
    keys = []
    for r in rows:
        k = (r["method"], r["quantile"])
        if k not in keys:
            keys.append(k)
    table = []
    for m, q in keys:
        rs = [r for r in rows if (r["method"], r["quantile"]) == (m, q)]
        thr = [r["threshold"] for r in rs if r["threshold"] is not None]
        table.append({"method": m, "quantile": q, "threshold": float(np.mean(thr)) if thr else None,
                      "episodes": len(rs),
                      "falls_per_episode": float(np.mean([r["fell"] for r in rs])),
                      "distance": float(np.mean([r["distance"] for r in rs])),
                      "model_mse": float(np.mean([r["model_mse"] for r in rs])),
                      "seconds_per_action": float(np.mean([r["seconds_per_action"] for r in rs]))})
    return table


def plot(table: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, label in zip(axes, ["falls_per_episode", "distance", "model_mse"],
                              ["falls per episode", "final distance to target", "model MSE along trajectory"]):
        for m, style in [("ldm", "o-"), ("greedy", "s--")]:
            rs = [t for t in table if t["method"] == m]
            ax.plot([t["quantile"] for t in rs], [t[key] for t in rs], style, label=m)
        for m, c in [("none", "k"), ("disagreement", "C3")]:
            rs = [t for t in table if t["method"] == m]
            if rs:
                ax.axhline(rs[0][key], color=c, ls=":", label=m)
        ax.set_xlabel("threshold c (quantile q of G on the data)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Hopper-v5: MPC to a target x with density constraints (looser threshold to the right)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
