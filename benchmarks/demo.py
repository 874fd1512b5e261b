"""The main job (``make demo``): keep a learned Hopper controller from falling with a Lyapunov density model.

1. **Data.** A scripted gait hops Hopper-v5 forward and backward at several noise levels: the data hop
   without falling, except the noisiest copies now and then (``mbrl.tasks.hopper_gait``).
2. **Models.** From those data only: a PETS ensemble (dynamics), a density of the data's state-action pairs
   and the LDM ``G(s, a)``, the worst future ``-log density`` when acting by ``G <= c`` (``safe_density``).
3. **Control.** MPC plans with the learned dynamics to hop to ``x = 1``, side by side:
   *unconstrained* (it exploits the model's mistakes and falls), the *greedy* density constraint
   ``-log p(s, a) <= c`` (one step ahead only), the *LDM* constraint ``G(s, a) <= c`` (the whole future),
   and a *MURAL* reward learned from example states at the target, planned under the same LDM constraint.

Writes ``results/demo/demo.json``, ``demo.md`` (the table) and ``demo.png`` (x over time for every episode,
crosses where the hopper fell).

    python benchmarks/demo.py            # ~5-10 min on 2 CPU cores
    python benchmarks/demo.py --device cuda
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
from hopper_ldm import Settings, make_agent, prepare, run_episode  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from mbrl.common.serialization import atomic_write_text  # noqa: E402
from safe_density.mural import MuralConfig, MuralReward  # noqa: E402

# the benchmark's CPU settings (its planner and LDM), with less gait data, 3 episodes and one target
DEMO = Settings(gait_steps=300, seeds=3, targets=(1.0,), ldm_quantiles=(0.5,), ldm_energy_quantiles=(),
                loose_offsets=(), greedy_quantiles=(0.5,), wrap_quantiles=())


def mural_reward(prep: dict, target: float, seed: int, device) -> MuralReward:
    """A MURAL (meta-NML) reward on the x position: success examples are gait states moved to the target
    (upright, x within 5 cm of it); the gait data's own x values are the visited states (label 0)."""
    obs = torch.as_tensor(prep["data"]["obs"])
    rng = np.random.default_rng(seed)
    ex = obs[rng.choice(obs.shape[0], 20, replace=False)].clone()
    ex[:, 0] = target + 0.05 * torch.as_tensor(rng.uniform(-1, 1, 20), dtype=ex.dtype)
    mural = MuralReward(ex, method="meta_nml", seed=seed, config=MuralConfig.small(), device=device,
                        state_slice=(0, 1))
    mural.update(obs[rng.choice(obs.shape[0], min(2000, obs.shape[0]), replace=False)], progress=False)
    return mural


def run_demo(s: Settings, prep: dict, seed: int, device) -> list[dict]:
    ldm, task, target = prep["ldm"], prep["task"], s.targets[0]
    c = ldm.calibration["ldm"]
    c_e = ldm.calibration["energy"]
    mural = mural_reward(prep, target, seed, device)
    ctls = {
        "unconstrained": lambda k: make_agent(s, prep, target, seed=seed + k, device=device),
        "greedy density": lambda k: make_agent(s, prep, target, [ldm.constraint(c_e, greedy=True)], seed=seed + k,
                                               device=device),
        "LDM": lambda k: make_agent(s, prep, target, [ldm.constraint(c)], seed=seed + k, device=device),
        "MURAL reward + LDM": lambda k: make_agent(s, prep, target, [ldm.constraint(c)], [mural], seed=seed + k,
                                                   device=device),
    }
    rows = []
    bar = tqdm(total=len(ctls) * s.seeds, desc="demo episodes", unit="ep")
    for name, build in ctls.items():
        for k in range(s.seeds):
            r = run_episode(task, build(k), prep["model"], ldm, target, s.episode_steps, seed=1000 + k,
                            threshold=c_e if name == "greedy density" else c, greedy=name == "greedy density")
            rows.append({"controller": name, "seed": k, "target": target, **r})
            bar.update(1)
    bar.close()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| controller | falls | steps survived (of {n}) | progress toward x = 1 (m) | final x (m) | s / action |",
             "|---|---|---|---|---|---|"]
    lines[0] = lines[0].format(n=max(r["steps"] for r in rows))
    for name in dict.fromkeys(r["controller"] for r in rows):
        rs = [r for r in rows if r["controller"] == name]
        lines.append(f"| {name} | {sum(r['fell'] for r in rs)} / {len(rs)} | "
                     f"{np.mean([r['steps'] for r in rs]):.0f} | {np.mean([r['progress'] for r in rs]):+.3f} | "
                     f"{np.mean([r['x'] for r in rs]):+.3f} | {np.mean([r['seconds_per_action'] for r in rs]):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of everything")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default results/demo)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per controller (default 3)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("demo", a.out)
    t0 = time.perf_counter()
    s = DEMO if a.episodes is None else dataclasses.replace(DEMO, seeds=a.episodes)
    prep = prepare(s, a.seed, device)
    rows = run_demo(s, prep, a.seed, device)
    md = table(rows)
    res = {"settings": dataclasses.asdict(s), "machine": machine(), "rows": rows,
           "thresholds": {"ldm": prep["ldm"].calibration["ldm"], "energy": prep["ldm"].calibration["energy"],
                          "quantile": prep["ldm"].calibration["quantile"]},
           "seconds": time.perf_counter() - t0}
    write_json(out / "demo.json", res)
    atomic_write_text(out / "demo.md", md + "\n")
    _plot(rows, out / "demo.png", s.targets[0])
    print("\n" + md)
    print(f"\nresults in {out.resolve()}: demo.json, demo.md, demo.png ({res['seconds']:.0f} s)")
    return res


def _plot(rows: list[dict], path: Path, target: float) -> None:
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["controller"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        for r in (r for r in rows if r["controller"] == name):
            xs = r["xs"]
            ax.plot(np.arange(len(xs)) * 0.008, xs, color="C3" if r["fell"] else "C2", lw=1.2)
            if r["fell"]:
                ax.plot((len(xs) - 1) * 0.008, xs[-1], "x", color="C3", ms=9, mew=2)
        falls = sum(r["fell"] for r in rows if r["controller"] == name)
        n = sum(1 for r in rows if r["controller"] == name)
        ax.set_title(f"{name}\n{falls}/{n} fell", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.axhline(0.0, color="0.7", lw=0.8)
    np.atleast_1d(axes)[0].set_ylabel("x position (m)")
    fig.suptitle(f"Hopper-v5, MPC with a learned model toward x = {target:g}: green = still hopping, "
                 "red x = fell", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
