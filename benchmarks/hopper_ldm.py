"""The LDM paper's Hopper experiment (Kang et al., ICML 2022, Sec. 6): MPC with a learned model, hopping to
target x positions, with and without density constraints.

Pipeline (``--quick`` sizes are the defaults of :class:`Settings`):

1. **Behaviour data that hop without falling** (the paper's setting): the scripted gaits of
   ``mbrl.tasks.hopper_gait`` (forward and backward), at several action-noise levels. The quiet copies never
   fall, the noisier ones sometimes do, so falling is what leaves the data.
2. **Models**, all fitted on the gait data only: a PETS ensemble (dynamics), a Gaussian-mixture density over
   (s without x, a) and the learned LDM ``G(s, a)`` on the same features (``obs_indices`` drops x: the gait is
   translation invariant and a target x outside the data must not count as leaving it). The density and the
   LDM leave out the last ``drop_before_fall`` steps before each fall. Thresholds come from
   ``LyapunovDensityModel.calibrate``: quantiles of ``G`` on the data for the LDM, quantiles of ``E`` (its own
   energy) for the greedy constraint, plus thresholds far past the data's largest ``G`` (where falls return).
3. **Control.** MPC (CEM + TS-inf) hops from the start to a target x with reward ``1 - min(|x - x*|, 2) / 2``
   (positive, so falling, which ends the episode, is never attractive), under (a) no constraint, (b) the
   greedy density constraint ``E(s, a) <= c`` (the single-step baseline), (c) the ensemble-disagreement
   penalty, (d) the LDM constraint ``G(s, a) <= c`` on the real current state-action, (e) the same LDM
   wrapped around the unconstrained MPC with ``DensityConstrainedController`` (the first use users asked for).
4. **Metrics** per row (``seeds`` x ``targets`` episodes): falls per episode, steps survived, final distance to
   the target, progress toward it, the real ``G`` of the executed state-actions (fraction within ``c``), the
   agent's infeasible-plan counter and seconds per action. Written to ``results/hopper_ldm/hopper_ldm.json``
   and ``hopper_ldm.png``.

The published shape: too loose a threshold and the hopper falls (it exploits the model), right and it
reaches the target, too tight and it stands still; the LDM falls less than the greedy density constraint
and the ensemble penalty.

    python benchmarks/hopper_ldm.py --quick          # 2 CPU cores, < 20 min
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

from mbrl import train  # noqa: E402
from mbrl.agent import MPCAgent  # noqa: E402
from mbrl.models import ProbabilisticEnsemble  # noqa: E402
from mbrl.penalties import EnsembleDisagreement  # noqa: E402
from mbrl.tasks import make_task  # noqa: E402
from mbrl.tasks.hopper_gait import collect_gait_data  # noqa: E402
from mbrl.train import PETSConfig  # noqa: E402
from safe_density.density import GaussianMixtureDensity  # noqa: E402
from safe_density.ldm import DensityConstrainedController, LDMConfig, LyapunovDensityModel  # noqa: E402

#: The CPU-sized planner and model: overrides of the library's PETS defaults (``mbrl.train.PETSConfig``).
_QUICK_PETS = PETSConfig(hidden=(128, 128, 128), epochs_per_episode=25, population=64, elites=8, iterations=3,
                         horizon=8, particles=4)
#: The LDM: the library's defaults (``LDMConfig``) with more steps and a faster target network on this data.
_QUICK_LDM = LDMConfig(steps=4000, tau=0.05, density_components=16)


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run's settings. ``pets`` (model, optimiser, horizon, particles; ``epochs_per_episode`` is the
    ensemble's training epochs on the gait data) and ``ldm`` are overrides of the library's configs; the other
    fields are this experiment's own."""

    pets: PETSConfig = _QUICK_PETS
    ldm: LDMConfig = _QUICK_LDM
    gait_noises: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    gait_episodes: int = 2
    gait_steps: int = 400
    drop_before_fall: int = 10
    episode_steps: int = 100
    seeds: int = 5
    targets: tuple[float, ...] = (1.0, -1.0)
    ldm_quantiles: tuple[float, ...] = (0.5, 0.9)
    # the authors' rule, c = a percentile of E on the data, shared by the greedy rows: LDM vs greedy at equal c
    ldm_energy_quantiles: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    loose_offsets: tuple[float, ...] = (20.0, 200.0)
    greedy_quantiles: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    wrap_quantiles: tuple[float, ...] = (0.5,)
    disagreement_weight: float = 10.0


QUICK = Settings()
FULL = Settings(pets=PETSConfig(hidden=(200, 200, 200, 200), epochs_per_episode=100),  # the PETS planner
                ldm=dataclasses.replace(_QUICK_LDM, steps=10000),
                gait_episodes=5, gait_steps=1000, episode_steps=500, seeds=10,
                ldm_quantiles=(0.25, 0.5, 0.75, 0.9, 0.99), greedy_quantiles=(0.25, 0.5, 0.75, 0.9, 0.99),
                ldm_energy_quantiles=(0.25, 0.5, 0.75, 0.9, 0.99),
                wrap_quantiles=(0.5, 0.9))


def target_reward(target: float):
    def reward_fn(obs, act, next_obs):
        return 1.0 - (next_obs[..., 0] - target).abs().clamp(max=2.0) / 2.0
    return reward_fn


def safe_mask(terminated: np.ndarray, episode: np.ndarray, k: int) -> np.ndarray:
    """``[N]`` bool: transitions not among the last ``k`` of an episode that ended in a fall (so that falling,
    and what leads straight to it, is what leaves the density's and the LDM's data)."""
    keep = np.ones(terminated.shape[0], dtype=bool)
    for end in np.flatnonzero(terminated):
        same = episode[: end + 1] == episode[end]
        idx = np.flatnonzero(same)[-k:]
        keep[idx] = False
    return keep


def prepare(s: Settings, seed: int, device, progress: bool = True) -> dict:
    """Gait data, dynamics ensemble, density and LDM (steps 1-2 of the module docstring)."""
    task = make_task("Hopper-v5")
    t0 = time.perf_counter()
    data = collect_gait_data(noises=s.gait_noises, episodes_per_setting=s.gait_episodes, max_steps=s.gait_steps,
                             seed=seed, task=task)
    t_data = time.perf_counter() - t0
    n, eps = data["obs"].shape[0], data["fell"].shape[0]
    print(f"gait data: {n} transitions, {eps} episodes, {int(data['fell'].sum())} falls ({t_data:.1f} s)")
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=s.pets.ensemble_size,
                                  hidden=s.pets.hidden, device=device, seed=seed)
    fit = model.fit((data["obs"], data["act"], data["next_obs"]), epochs=s.pets.epochs_per_episode,
                    batch_size=s.pets.batch_size, lr=s.pets.lr, holdout=s.pets.holdout, progress=progress, seed=seed)
    keep = safe_mask(data["terminated"], data["episode"], s.drop_before_fall)
    o, a, o2 = (torch.as_tensor(data[k][keep]) for k in ("obs", "act", "next_obs"))
    density = GaussianMixtureDensity(s.ldm.density_components, device=device, seed=seed)
    ldm = LyapunovDensityModel(task.obs_dim, task.act_dim, task.action_low, task.action_high, density=density,
                               config=s.ldm, obs_indices=range(1, task.obs_dim), device=device,
                               seed=seed)
    ldm.fit(o, a, o2, progress=progress)
    with torch.no_grad():
        g_data = ldm.value(o, a).cpu().numpy()
        e_data = ldm.energy(o, a).cpu().numpy()
    thresholds = {}
    for q in s.ldm_quantiles:
        thresholds[f"q{q:g}"] = ("ldm", q, float(np.quantile(g_data, q)))
    for q in s.ldm_energy_quantiles:  # the same c as the greedy row of that quantile: a like-for-like comparison
        thresholds[f"E-q{q:g}"] = ("ldm", q, float(np.quantile(e_data, q)))
    for off in s.loose_offsets:
        thresholds[f"max+{off:g}"] = ("ldm", None, float(g_data.max() + off))
    greedy = {f"q{q:g}": ("greedy", q, float(np.quantile(e_data, q))) for q in s.greedy_quantiles}
    ldm.calibrate(o, a, 0.5)   # stored with the model: the default threshold of ldm.constraint()
    print("LDM thresholds (quantile of G on the data -> c):", {k: round(v[2], 2) for k, v in thresholds.items()})
    print("greedy thresholds (quantile of E):", {k: round(v[2], 2) for k, v in greedy.items()})
    return {"task": task, "data": data, "model": model, "ldm": ldm, "thresholds": thresholds, "greedy": greedy,
            "g_data": g_data, "e_data": e_data, "ldm_transitions": int(keep.sum()), "data_seconds": t_data,
            "model_holdout_mse": float(np.mean(fit["holdout_mse"][-1]))}


def save_prep(prep: dict, path: Path) -> None:
    """Cache the data and models of :func:`prepare` (so that several processes can share one fit)."""
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "data.npz", **prep["data"], g_data=prep["g_data"], e_data=prep["e_data"])
    prep["model"].save(path / "model")
    prep["ldm"].save(path / "ldm")
    meta = {k: prep[k] for k in ("thresholds", "greedy", "ldm_transitions", "data_seconds", "model_holdout_mse")}
    write_json(path / "prep.json", meta)


def load_prep(path: Path, device) -> dict:
    import json

    z = np.load(path / "data.npz", allow_pickle=False)
    data = {k: z[k] for k in z.files if k not in ("g_data", "e_data")}
    meta = json.loads((path / "prep.json").read_text())
    meta["thresholds"] = {k: tuple(v) for k, v in meta["thresholds"].items()}
    meta["greedy"] = {k: tuple(v) for k, v in meta["greedy"].items()}
    return {"task": make_task("Hopper-v5"), "data": data, "model": ProbabilisticEnsemble.load(path / "model", device),
            "ldm": LyapunovDensityModel.load(path / "ldm", device=device), "g_data": z["g_data"],
            "e_data": z["e_data"], **meta}


def make_agent(s: Settings, prep: dict, target: float, constraints=(), reward_shapers=(), seed: int = 0,
               device=None, reward_fn=None) -> MPCAgent:
    """The library's PETS agent (:func:`mbrl.train.make_agent` with ``s.pets``) walking to ``target``."""
    return train.make_agent(prep["task"], prep["model"], s.pets, device, seed, constraints, reward_shapers,
                            reward_fn=reward_fn or target_reward(target))


def methods_for(s: Settings, prep: dict, which=("none", "greedy", "disagreement", "ldm", "wrap")) -> list[dict]:
    """One dict per row: ``name``, ``label`` (threshold label), ``threshold``, ``quantile`` and a ``build``
    function ``(target, seed) -> controller``."""
    ldm, rows = prep["ldm"], []

    def agent(cons=(), shapers=()):
        return lambda target, seed: make_agent(s, prep, target, cons, shapers, seed=seed)

    if "none" in which:
        rows.append({"name": "none", "label": "-", "threshold": None, "quantile": None, "build": agent()})
    if "disagreement" in which:
        pen = EnsembleDisagreement(prep["model"], s.disagreement_weight)
        rows.append({"name": "disagreement", "label": f"w={s.disagreement_weight:g}", "threshold": None,
                     "quantile": None, "build": agent(shapers=[pen])})
    if "greedy" in which:
        for label, (_, q, c) in prep["greedy"].items():
            rows.append({"name": "greedy", "label": label, "threshold": c, "quantile": q,
                         "build": agent([ldm.constraint(c, greedy=True)])})
    if "ldm" in which:
        for label, (_, q, c) in prep["thresholds"].items():
            rows.append({"name": "ldm", "label": label, "threshold": c, "quantile": q,
                         "build": agent([ldm.constraint(c)])})
    if "wrap" in which:
        for q in s.wrap_quantiles:
            c = prep["thresholds"].get(f"q{q:g}", (None, q, float(np.quantile(prep["g_data"], q))))[2]

            def build(target, seed, c=c):
                inner = make_agent(s, prep, target, seed=seed)
                return DensityConstrainedController(inner, ldm, threshold=c, method="sample", seed=seed, warn=False)
            rows.append({"name": "ldm-wrap", "label": f"q{q:g}", "threshold": c, "quantile": q, "build": build})
    return rows


def run_episode(task, controller, model, ldm, target: float, steps: int, seed: int, threshold=None,
                greedy: bool = False) -> dict:
    """One episode; returns falls, steps, distance, progress, model error, real G of executed pairs, timing."""
    env = task.make_env()
    obs, _ = env.reset(seed=seed)
    x0 = float(obs[0])
    fell, errs, times, pairs_o, pairs_a, xs = False, [], [], [], [], [x0]
    for _ in range(steps):
        t0 = time.perf_counter()
        act = controller.act(obs) if hasattr(controller, "act") else controller(obs)
        times.append(time.perf_counter() - t0)
        nxt, _, term, trunc, _ = env.step(act)
        pairs_o.append(obs)
        pairs_a.append(act)
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            a = torch.as_tensor(act, dtype=torch.float32)[None]
            pred = model.predict(o, a, deterministic=True).mean(0)[0].numpy()
        errs.append(float(np.mean((pred - nxt) ** 2)))
        obs = nxt
        xs.append(float(obs[0]))
        if term:
            fell = True
            break
        if trunc:
            break
    env.close()
    po, pa = np.asarray(pairs_o, np.float32), np.asarray(pairs_a, np.float32)
    with torch.no_grad():
        g = ldm.value(po, pa).cpu().numpy()
        e = ldm.energy(po, pa).cpu().numpy()
    stats = getattr(getattr(controller, "controller", controller), "stats", {})
    out = {"fell": fell, "steps": len(errs), "distance": float(abs(obs[0] - target)), "x": float(obs[0]),
           "progress": float(abs(x0 - target) - abs(obs[0] - target)), "model_mse": float(np.mean(errs)),
           "seconds_per_action": float(np.median(times)), "g_mean": float(np.mean(g)), "g_max": float(np.max(g)),
           "infeasible_plans": int(stats.get("infeasible", 0)),
           "replaced_by_best": int(stats.get("replaced_by_best", 0)), "xs": xs}
    if threshold is not None:
        out["real_feasible_fraction"] = float(np.mean((e if greedy else g) <= threshold))  # the row's own cost
    if hasattr(controller, "infeasible_count"):
        out["infeasible_plans"] = int(controller.infeasible_count)
    return out


def evaluate(s: Settings, prep: dict, methods: list[dict], seed: int) -> list[dict]:
    """``seeds`` x ``targets`` episodes per method (steps 3-4 of the module docstring)."""
    rows = []
    bar = tqdm(total=len(methods) * len(s.targets) * s.seeds, desc="hopper MPC", unit="ep")
    for m in methods:
        for k in range(s.seeds):
            for target in s.targets:
                ctl = m["build"](target, seed + k)
                r = run_episode(prep["task"], ctl, prep["model"], prep["ldm"], target, s.episode_steps,
                                seed=1000 + k, threshold=m["threshold"], greedy=m["name"] == "greedy")
                rows.append({"method": m["name"], "label": m["label"], "quantile": m["quantile"],
                             "threshold": m["threshold"], "target": target, "seed": k, **r})
                bar.update(1)
    bar.close()
    return rows


def measure_overhead(s: Settings, prep: dict, reps: int = 15, seed: int = 0) -> dict:
    """Planning time per action of each plug-in relative to the plain planner, alternating the agents call by
    call on the same states (so that machine load hits all of them alike). Returns median seconds and ratios."""
    ldm, data = prep["ldm"], prep["data"]
    states = data["obs"][np.random.default_rng(seed).choice(data["obs"].shape[0], reps, replace=False)]
    agents = {"none": make_agent(s, prep, 1.0, seed=seed),
              "ldm": make_agent(s, prep, 1.0, [ldm.constraint(ldm.calibration["ldm"])], seed=seed),
              "greedy": make_agent(s, prep, 1.0, [ldm.constraint(ldm.calibration["energy"], greedy=True)], seed=seed),
              "disagreement": make_agent(s, prep, 1.0, reward_shapers=[EnsembleDisagreement(prep["model"], 1.0)],
                                         seed=seed)}
    times: dict[str, list[float]] = {k: [] for k in agents}
    for agent in agents.values():         # warm-up
        agent.act(states[0])
    for o in tqdm(states, desc="overhead", leave=False):
        for name, agent in agents.items():
            agent.reset()
            t0 = time.perf_counter()
            agent.act(o)
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"median_seconds": med, "ratio_vs_none": {k: v / med["none"] for k, v in med.items()}, "reps": reps}


def summarise(rows: list[dict]) -> list[dict]:
    keys = list(dict.fromkeys((r["method"], r["label"]) for r in rows))
    table = []
    for m, label in keys:
        rs = [r for r in rows if (r["method"], r["label"]) == (m, label)]
        t = {"method": m, "label": label, "quantile": rs[0]["quantile"], "threshold": rs[0]["threshold"],
             "episodes": len(rs), "falls": int(sum(r["fell"] for r in rs))}
        for key in ("fell", "steps", "distance", "progress", "model_mse", "seconds_per_action", "g_mean",
                    "infeasible_plans"):
            t[key] = float(np.mean([r[key] for r in rs]))
        t["falls_per_episode"] = t.pop("fell")
        if "real_feasible_fraction" in rs[0]:
            t["real_feasible_fraction"] = float(np.mean([r["real_feasible_fraction"] for r in rs]))
        table.append(t)
    base = next((t["seconds_per_action"] for t in table if t["method"] == "none"), None)
    for t in table:
        t["overhead_vs_none"] = None if base is None else t["seconds_per_action"] / base - 1.0
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| controller | threshold | c | falls / episode | steps survived | progress to target (m) | "
             "final distance (m) | executed (s,a) with cost <= c | s / action | overhead |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        c = "-" if t["threshold"] is None else f"{t['threshold']:.1f}"
        feas = f"{t['real_feasible_fraction']:.2f}" if "real_feasible_fraction" in t else "-"
        ov = "-" if t["overhead_vs_none"] is None else f"{t['overhead_vs_none']:+.0%}"
        lines.append(f"| {t['method']} | {t['label']} | {c} | {t['falls']}/{t['episodes']} | {t['steps']:.0f} | "
                     f"{t['progress']:+.3f} | {t['distance']:.2f} | {feas} | {t['seconds_per_action']:.3f} | {ov} |")
    return "\n".join(lines)


def plot(table: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, key, label in zip(axes, ["falls_per_episode", "progress"],
                              ["falls per episode", "progress toward the target x (m)"]):
        for m, style in [("ldm", "o-"), ("greedy", "s--"), ("ldm-wrap", "^")]:
            rs = sorted((t for t in table if t["method"] == m), key=lambda t: t["threshold"])
            if rs:
                ax.plot([t["threshold"] for t in rs], [t[key] for t in rs], style, label=m)
        for m, c in [("none", "k"), ("disagreement", "C3")]:
            rs = [t for t in table if t["method"] == m]
            if rs:
                ax.axhline(rs[0][key], color=c, ls=":", label=m)
        ax.set_xscale("symlog", linthresh=30)
        ax.set_xlabel("threshold c (LDM: G <= c, greedy: E <= c), looser ->")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    axes[0].set_ylim(-0.05, 1.05)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized settings (< 20 min on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, models and planning")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default results/hopper_ldm)")
    p.add_argument("--seeds", type=int, default=None, help="evaluation seeds per row (x targets = episodes)")
    p.add_argument("--cache", default=None,
                   help="folder for the data and models: loaded when present, else fitted and saved there")
    p.add_argument("--merge", nargs="+", default=None,
                   help="only merge the rows of these hopper_ldm.json files (runs split by --methods) into one table")
    p.add_argument("--no-overhead", action="store_true", help="skip the alternating overhead measurement")
    p.add_argument("--methods", nargs="+", default=["none", "greedy", "disagreement", "ldm", "wrap"],
                   choices=["none", "greedy", "disagreement", "ldm", "wrap"], help="which controllers to compare")
    a = p.parse_args(argv)
    s = QUICK if a.quick or a.device in (None, "cpu") else FULL
    if a.seeds is not None:
        s = dataclasses.replace(s, seeds=a.seeds)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("hopper_ldm", a.out)
    if a.merge:
        return merge(a.merge, out, s)
    t_start = time.perf_counter()
    cache = Path(a.cache) if a.cache else None
    if cache is not None and (cache / "prep.json").is_file():
        prep = load_prep(cache, device)
    else:
        prep = prepare(s, a.seed, device)
        if cache is not None:
            save_prep(prep, cache)
    t_models = time.perf_counter() - t_start
    overhead = None
    if not a.no_overhead:
        overhead = measure_overhead(s, prep, seed=a.seed)
        print("planning time per action vs the plain planner (alternating calls):",
              {k: f"{v:.2f}x" for k, v in overhead["ratio_vs_none"].items()})
    rows = evaluate(s, prep, methods_for(s, prep, a.methods), a.seed)
    table = summarise(rows)
    md = markdown(table)
    print("\n" + md)
    res = {"settings": dataclasses.asdict(s), "machine": machine(), "rows": rows, "table": table,
           "data": {"transitions": int(prep["data"]["obs"].shape[0]), "episodes": int(prep["data"]["fell"].size),
                    "falls": int(prep["data"]["fell"].sum()), "ldm_transitions": prep["ldm_transitions"],
                    "model_holdout_mse": prep["model_holdout_mse"]},
           "thresholds": {k: v[2] for k, v in prep["thresholds"].items()},
           "greedy_thresholds": {k: v[2] for k, v in prep["greedy"].items()},
           "overhead": overhead, "seconds_models": t_models, "seconds": time.perf_counter() - t_start,
           "paper": "Kang et al. 2022, Hopper: too loose a threshold falls, the right one reaches the target, too "
                    "tight stands still; LDM better than a single-step density constraint and ensemble variance."}
    write_json(out / "hopper_ldm.json", res)
    (out / "hopper_ldm.md").write_text(md + "\n")
    plot(table, out / "hopper_ldm.png", f"Hopper-v5 MPC to x = {s.targets} with density constraints "
                                         f"({len(s.targets) * s.seeds} episodes per point)")
    print(f"total {res['seconds']:.0f} s (models {t_models:.0f} s)")
    return res


def merge(paths: list[str], out: Path, s: Settings) -> dict:
    """One table, JSON and figure from runs that split the methods between processes (``--methods``)."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in paths]
    order = ["none", "disagreement", "greedy", "ldm", "ldm-wrap"]
    rows = sorted((r for run in runs for r in run["rows"]), key=lambda r: order.index(r["method"]))
    table = summarise(rows)
    md = markdown(table)
    print("\n" + md)
    res = {**runs[0], "rows": rows, "table": table, "merged_from": paths,
           "overhead": next((r["overhead"] for r in runs if r.get("overhead")), None),
           "seconds": sum(r["seconds"] for r in runs)}
    write_json(out / "hopper_ldm.json", res)
    (out / "hopper_ldm.md").write_text(md + "\n")
    plot(table, out / "hopper_ldm.png", f"Hopper-v5 MPC to x = {s.targets} with density constraints "
                                         f"({len(s.targets) * s.seeds} episodes per point)")
    return res


if __name__ == "__main__":
    main()
