"""The LDM paper's Hopper experiment (Kang et al., ICML 2022, Sec. 6): MPC with a learned model, hopping to
target x positions ahead of and behind the start, with and without density constraints.

Pipeline (``--preset quick`` sizes are the defaults of :class:`benchmarks._common.HopperSettings`, where the
pipeline's steps 1-3 live: ``demo`` runs them too):

1. **Behaviour data that hop without falling** (the paper's setting): the shipped PPO hoppers of
   ``mbrl.policies`` (forward at > 1 m/s and backward, trained by ``benchmarks/train_hopper_behaviour.py``) at
   several action-noise levels, as the authors' medium/expert mix. The quiet copies never fall, the noisiest
   sometimes do, so falling is what leaves the data. ``--data gait`` uses the old scripted gait instead.
2. **Models**, all fitted on those data only: a PETS ensemble (dynamics), a density over (s without x, a) and
   the learned LDM ``G(s, a)`` on the same features (``obs_indices`` drops x: hopping is translation invariant
   and a target x outside the data must not count as leaving it). The density and the LDM leave out the last
   ``drop_before_fall`` steps before each fall. Thresholds follow the authors' rule: percentiles of the
   data's own energies ``E = -log p(s, a)``, shared by the LDM (``G <= c``) and the greedy constraint
   (``E <= c``), so that the two are compared at equal ``c``; plus thresholds far past the data.
3. **Control.** MPC (CEM + TS-inf) hops from the start toward a target x with reward
   ``1 - min(|x - x*|, 2) / 2`` (positive, so falling, which ends the episode, is never attractive), under
   (a) no constraint, (b) the greedy density constraint, (c) the ensemble-disagreement penalty at several
   weights, (d) the LDM constraint ``G(s, a) <= c`` on the real current state-action and (e) the same LDM
   wrapped around the unconstrained MPC (``DensityConstrainedController``). An episode ends when the hopper
   falls, when it is within ``reach_tol`` of the target (reached), or after ``episode_steps`` steps.
4. **Metrics** per row (``seeds`` x ``targets`` episodes): falls, targets reached, steps, progress toward the
   target, the real cost of the executed state-actions (fraction within ``c``), how often the next real state
   still had a feasible action after a feasible step (the LDM's promise), and seconds per action. The grid of
   rows x targets x seeds runs through Ray (``mbrl.sweep.run_grid``: local processes by default, ``--address``
   for a cluster). Written to ``results/hopper_ldm/hopper_ldm.json``, ``.md`` and ``.png``.

The published shape: too loose a threshold and the hopper falls (it exploits the model), right and it
reaches the target, too tight and it stands still; the LDM does better than the greedy density constraint
and the ensemble penalty.

    python -m benchmarks.hopper_ldm                      # CPU preset, 2 cores, Ray local processes
    python -m benchmarks.hopper_ldm --preset paper --device cuda   # the authors' sizes (flow, 2 x 1024, 150k)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import (
    HelpFormatter,
    HopperSettings,
    machine,
    make_agent,
    out_dir,
    prepare_hopper,
    pyplot,
    ray_runtime_env,
    run_episode,
    save_figure,
    write_json,
)
from mbrl.models import ProbabilisticEnsemble
from mbrl.penalties import EnsembleDisagreement
from mbrl.sweep import run_grid
from mbrl.tasks import make_task
from safe_density.ldm import DensityConstrainedController, LDMConfig, LyapunovDensityModel

METHODS = ("none", "disagreement", "greedy", "ldm", "wrap")


#: ``--preset quick``: the defaults of ``HopperSettings`` (the CPU sizes)
QUICK = HopperSettings()
TINY = HopperSettings(pets=dataclasses.replace(QUICK.pets, hidden=(32, 32), epochs_per_episode=1, population=16,
                                               elites=4, iterations=1, horizon=3, particles=2),
                      ldm=dataclasses.replace(QUICK.ldm, steps=20, hidden=(32, 32), density_components=2),
                      data_noises=(0.1, 0.5), data_episodes=1, data_steps=40, episode_steps=5, seeds=1,
                      quantiles=(0.5,), loose_offsets=(20.0,), disagreement_weights=(1.0,), projection_samples=64)
#: The authors' sizes (docs/design.md, "Published recipes"): flow density, 2 x 1,024 double critic, ~150k backup steps
#: at tau 0.005, batch 1,024, lr 1e-4, 5,000 action samples at the real state, 1,000-step episodes.
PAPER = HopperSettings(pets=dataclasses.replace(QUICK.pets, hidden=(200, 200, 200, 200), epochs_per_episode=50,
                                                population=500, elites=50, iterations=5, horizon=15, particles=20),
                       ldm=LDMConfig(hidden=(1024, 1024), n_critics=2, steps=150_000, tau=0.005, lr=1e-4,
                                     batch_size=1024),
                       density="flow", data_episodes=20, data_steps=1000, episode_steps=1000, seeds=10,
                       quantiles=(0.1, 0.25, 0.4, 0.5, 0.75, 0.9, 0.99), projection_samples=5000)
PRESETS = {"quick": QUICK, "tiny": TINY, "paper": PAPER}


def save_prep(prep: dict, path: Path) -> None:
    """Cache the data and models of :func:`prepare` (the Ray workers load them from here)."""
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "data.npz", **prep["data"], g_data=prep["g_data"], e_data=prep["e_data"])
    prep["model"].save(path / "model")
    prep["ldm"].save(path / "ldm")
    write_json(path / "prep.json", {k: prep[k] for k in ("thresholds", "wrap_thresholds", "ldm_transitions",
                                                         "data_seconds", "model_holdout_mse")})


_LOADED: dict[str, dict] = {}


def load_prep(path: Path, device=None) -> dict:
    """The cache written by :func:`save_prep` (memoised per process: a Ray worker loads it once)."""
    device = torch.device(device or "cpu")
    key = f"{Path(path).resolve()}@{device}"
    if key not in _LOADED:
        z = np.load(Path(path) / "data.npz", allow_pickle=False)
        meta = json.loads((Path(path) / "prep.json").read_text())
        meta["thresholds"] = {k: tuple(v) for k, v in meta["thresholds"].items()}
        data = {k: z[k] for k in z.files if k not in ("g_data", "e_data")}
        _LOADED[key] = {"task": make_task("Hopper-v5"), "data": data,
                        "model": ProbabilisticEnsemble.load(Path(path) / "model", device),
                        "ldm": LyapunovDensityModel.load(Path(path) / "ldm", device=device),
                        "g_data": z["g_data"], "e_data": z["e_data"], **meta}
    return _LOADED[key]


def rows_for(s: HopperSettings, prep: dict, which=METHODS) -> list[dict]:
    """The rows of the table: ``{"method", "label", "quantile", "threshold", "weight"}`` (plain data, so that
    they travel to Ray workers; :func:`build_controller` turns one into a controller there)."""
    rows = []
    if "none" in which:
        rows.append({"method": "none", "label": "-", "quantile": None, "threshold": None, "weight": None})
    if "disagreement" in which:
        rows += [{"method": "disagreement", "label": f"w={w:g}", "quantile": None, "threshold": None, "weight": w}
                 for w in s.disagreement_weights]
    for m, col in (("greedy", 2), ("ldm", 1)):
        if m in which:
            rows += [{"method": m, "label": lab, "quantile": v[0], "threshold": v[col], "weight": None}
                     for lab, v in prep["thresholds"].items()]
    if "wrap" in which:
        rows += [{"method": "ldm-wrap", "label": f"q{q:g}", "quantile": q,
                  "threshold": prep["wrap_thresholds"][f"{q:g}"], "weight": None} for q in s.wrap_quantiles]
    return rows


def build_controller(s: HopperSettings, prep: dict, row: dict, target: float, seed: int, device=None):
    """The controller of one table row (:func:`rows_for`)."""
    ldm, m, c = prep["ldm"], row["method"], row["threshold"]
    if m == "none":
        return make_agent(s, prep, target, seed=seed, device=device)
    if m == "disagreement":
        return make_agent(s, prep, target, reward_shapers=[EnsembleDisagreement(prep["model"], row["weight"])],
                          seed=seed, device=device)
    if m in ("greedy", "ldm"):
        return make_agent(s, prep, target, [ldm.constraint(c, greedy=m == "greedy")], seed=seed, device=device)
    if m == "ldm-wrap":
        inner = make_agent(s, prep, target, seed=seed, device=device)
        return DensityConstrainedController(inner, ldm, threshold=c, method="sample", seed=seed, warn=False)
    raise ValueError(f"unknown method {m!r}")


def episode(row: dict, target: float, seed: int, cache: str, settings: HopperSettings, device=None,
            threads: int = 1) -> dict:
    """One grid point (a Ray task): ``row``'s controller hops toward ``target`` with evaluation seed ``seed``."""
    torch.set_num_threads(threads)
    prep = load_prep(Path(cache), device)
    ctl = build_controller(settings, prep, row, target, seed, device)
    r = run_episode(prep["task"], ctl, prep["model"], prep["ldm"], target, settings.episode_steps, seed=1000 + seed,
                    threshold=row["threshold"], greedy=row["method"] == "greedy", reach_tol=settings.reach_tol)
    return {**{k: v for k, v in row.items() if k != "weight"}, **r}


def evaluate(s: HopperSettings, prep_dir: Path, rows: list[dict], backend: str, address: str | None,
             device=None) -> list[dict]:
    """``rows`` x ``targets`` x ``seeds`` episodes through :func:`mbrl.sweep.run_grid` (Ray by default)."""
    return run_grid(episode, {"row": rows, "target": list(s.targets), "seed": list(range(s.seeds))},
                    backend=backend, address=address, runtime_env=ray_runtime_env(), cache=str(prep_dir), settings=s,
                    device=None if device is None else str(device))


def measure_overhead(s: HopperSettings, prep: dict, reps: int = 15, seed: int = 0) -> dict:
    """Planning time per action of each plug-in relative to the plain planner, alternating the agents call by
    call on the same states (so that machine load hits all of them alike). Returns median seconds and ratios."""
    ldm, data = prep["ldm"], prep["data"]
    states = data["obs"][np.random.default_rng(seed).choice(data["obs"].shape[0], reps, replace=False)]
    c_g, c_e = ldm.calibration["ldm"], ldm.calibration["energy"]
    agents = {"none": make_agent(s, prep, 1.0, seed=seed),
              "ldm": make_agent(s, prep, 1.0, [ldm.constraint(c_g)], seed=seed),
              "greedy": make_agent(s, prep, 1.0, [ldm.constraint(c_e, greedy=True)], seed=seed),
              "disagreement": make_agent(s, prep, 1.0, reward_shapers=[EnsembleDisagreement(prep["model"], 1.0)],
                                         seed=seed)}
    times: dict[str, list[float]] = {k: [] for k in agents}
    for agent in agents.values():         # warm-up
        agent.act(states[0])
    for o in states:
        for name, agent in agents.items():
            agent.reset()
            t0 = time.perf_counter()
            agent.act(o)
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"median_seconds": med, "ratio_vs_none": {k: v / med["none"] for k, v in med.items()}, "reps": reps}


def _mean(rs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def summarise(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys((r["method"], r["label"]) for r in rows))
    table = []
    for m, label in keys:
        rs = [r for r in rows if (r["method"], r["label"]) == (m, label)]
        t = {"method": m, "label": label, "quantile": rs[0]["quantile"], "threshold": rs[0]["threshold"],
             "episodes": len(rs), "falls": int(sum(r["fell"] for r in rs)),
             "reached": int(sum(r["reached"] for r in rs))}
        for key in ("steps", "distance", "progress", "model_mse", "seconds_per_action", "g_mean", "infeasible_plans",
                    "real_feasible_fraction", "next_feasible_fraction"):
            t[key] = _mean(rs, key)
        t["falls_per_episode"] = t["falls"] / len(rs)
        t["reached_per_episode"] = t["reached"] / len(rs)
        for tgt in sorted({r["target"] for r in rs}):
            rt = [r for r in rs if r["target"] == tgt]
            t[f"target {tgt:+g}"] = {"falls": int(sum(r["fell"] for r in rt)), "reached": int(sum(r["reached"]
                                     for r in rt)), "episodes": len(rt), "progress": _mean(rt, "progress")}
        table.append(t)
    return table


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(table: list[dict]) -> str:
    lines = ["| controller | threshold | c | falls | reached | steps | progress (m) | final distance (m) | "
             "executed cost <= c | next state feasible | s / action |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['method']} | {t['label']} | {_fmt(t['threshold'], '.1f')} | {t['falls']}/{t['episodes']} "
                     f"| {t['reached']}/{t['episodes']} | {t['steps']:.0f} | {t['progress']:+.2f} | "
                     f"{t['distance']:.2f} | {_fmt(t['real_feasible_fraction'], '.2f')} | "
                     f"{_fmt(t['next_feasible_fraction'], '.2f')} | {t['seconds_per_action']:.3f} |")
    return "\n".join(lines)


def plot(table: list[dict], path: Path, title: str) -> None:
    """Falls, targets reached and progress against the threshold: one line per method."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    keys = [("falls_per_episode", "falls per episode"), ("reached_per_episode", "targets reached per episode"),
            ("progress", "progress toward the target (m)")]
    for ax, (key, label) in zip(axes, keys):
        for m, style in [("ldm", "o-"), ("greedy", "s--"), ("ldm-wrap", "^")]:
            rs = sorted((t for t in table if t["method"] == m), key=lambda t: t["threshold"])
            if rs:
                ax.plot([t["threshold"] for t in rs], [t[key] for t in rs], style, label=m)
        for m, col in [("none", "k"), ("disagreement", "C3")]:
            for i, t in enumerate(t for t in table if t["method"] == m):
                ax.axhline(t[key], color=col, ls=[":", "-.", "--"][i % 3], label=f"{m} {t['label']}".strip(" -"))
        ax.set_xscale("symlog", linthresh=30)
        ax.set_xlabel("threshold c (LDM: G <= c, greedy: E <= c), looser ->")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylim(-0.05, 1.05)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: CPU sizes (default); tiny: a smoke test; paper: the authors' sizes (GPU)")
    p.add_argument("--quick", action="store_true", help="the same as --preset quick (kept for old commands)")
    p.add_argument("--data", choices=["policies", "gait"], default=None,
                   help="behaviour data: the shipped PPO hoppers (default) or the scripted gait")
    p.add_argument("--seed", type=int, default=0, help="seed of data, models and planning (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default cpu)")
    p.add_argument("--out", default=None, help="output folder (default results/hopper_ldm)")
    p.add_argument("--seeds", type=int, default=None,
                   help="evaluation seeds per row and target (default: the preset's, 5 for quick)")
    p.add_argument("--cache", default=None,
                   help="folder for the data and models: loaded when present, else fitted and saved there "
                        "(default OUT/cache, refitted unless --reuse)")
    p.add_argument("--reuse", action="store_true", help="reuse the models in the cache folder when present")
    p.add_argument("--backend", choices=["ray", "serial"], default="ray",
                   help="ray: one Ray task per episode, local processes unless --address (default); serial: a loop")
    p.add_argument("--address", default=None,
                   help="a Ray cluster to run the grid on, e.g. auto (default: local processes)")
    p.add_argument("--no-overhead", action="store_true", help="skip the alternating overhead measurement")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                   help="which controllers to compare (default all)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    s = PRESETS["quick" if a.quick else a.preset]
    s = dataclasses.replace(s, **{k: v for k, v in (("seeds", a.seeds), ("data", a.data)) if v is not None})
    torch.set_num_threads(1)   # small networks and batches: one thread each, the grid's processes use the cores
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("hopper_ldm", a.out)
    t_start = time.perf_counter()
    cache = Path(a.cache) if a.cache else out / "cache"
    if (a.reuse or a.cache) and (cache / "prep.json").is_file():
        prep = load_prep(cache, device)
    else:
        prep = prepare_hopper(s, a.seed, device)
        save_prep(prep, cache)
    t_models = time.perf_counter() - t_start
    overhead = None
    if not a.no_overhead:
        overhead = measure_overhead(s, prep, reps=3 if a.preset == "tiny" else 15, seed=a.seed)
        print("planning time per action vs the plain planner (alternating calls):",
              {k: f"{v:.2f}x" for k, v in overhead["ratio_vs_none"].items()})
    rows = evaluate(s, cache, rows_for(s, prep, a.methods), a.backend, a.address, a.device)
    table = summarise(rows)
    md = markdown(table)
    print("\n" + md)
    res = {"settings": dataclasses.asdict(s), "preset": a.preset, "machine": machine(), "rows": rows, "table": table,
           "data": {"source": s.data, "transitions": int(prep["data"]["obs"].shape[0]),
                    "episodes": int(prep["data"]["fell"].size), "falls": int(prep["data"]["fell"].sum()),
                    "ldm_transitions": prep["ldm_transitions"], "model_holdout_mse": prep["model_holdout_mse"]},
           "thresholds": prep["thresholds"], "overhead": overhead, "seconds_models": t_models,
           "seconds": time.perf_counter() - t_start,
           "paper": "Kang et al. 2022, Hopper: too loose a threshold falls, the right one reaches the target, too "
                    "tight stands still; LDM better than a single-step density constraint and ensemble variance."}
    write_json(out / "hopper_ldm.json", res)
    (out / "hopper_ldm.md").write_text(md + "\n")
    plot(table, out / "hopper_ldm.png", f"Hopper-v5 MPC to x = {s.targets} from {s.data} data "
                                         f"({len(s.targets) * s.seeds} episodes per point)")
    print(f"total {res['seconds']:.0f} s (models {t_models:.0f} s)")
    return res


if __name__ == "__main__":
    main()
