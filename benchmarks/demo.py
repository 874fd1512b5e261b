"""The main job (``make demo``): keep learned Hopper controllers inside their data with a Lyapunov density
model, and still get where they are going.

1. **Data.** The shipped forward and backward hopping policies (``mbrl.policies``, trained once by
   ``benchmarks/train_hopper_behaviour.py``) hop Hopper-v5 at a few action-noise levels.
2. **Models.** From those data only: a PETS ensemble (dynamics), a density of the data's state-action pairs
   and the LDM ``G(s, a)``, the worst future ``-log density`` when acting by ``G <= c`` (``safe_density``).
3. **MPC toward a target.** MPC plans with the learned dynamics to hop to ``x = target``: *unconstrained*
   (it exploits the model's mistakes and falls) and under the *LDM* constraint ``G(s, a) <= c`` on the real
   state (it stays where the model is right and reaches the target).
4. **An existing controller, wrapped.** The forward policy on a floor with 70 % of Hopper-v5's friction, where
   it falls, bare and inside ``DensityConstrainedController`` with an LDM fitted on its own (nominal) data, as
   ``benchmarks/ldm_wrap_policy.py`` does.

Writes ``results/demo/demo.json``, ``demo.md`` (the table) and ``demo.png`` (x over time for every episode,
crosses where the hopper fell).

    python -m benchmarks.demo            # about 5-10 min on 2 CPU cores
    python -m benchmarks.demo --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks._common import (
    HelpFormatter,
    HopperSettings,
    WrapSettings,
    machine,
    make_agent,
    out_dir,
    prepare_hopper,
    prepare_wrap,
    pyplot,
    run_episode,
    save_figure,
    wrap_episode,
    write_json,
)
from mbrl.common.serialization import atomic_write_text

#: the threshold of the LDM rows: this percentile of the data's energies (the authors' rule)
DEMO_QUANTILE = 0.5
#: hopper_ldm's CPU settings (its --preset quick) with one target and 3 episodes per row
DEMO = dataclasses.replace(HopperSettings(), seeds=3, targets=(2.0,), quantiles=(DEMO_QUANTILE,), loose_offsets=())
#: the wrapped-policy rows: (name, action noise, torso-mass scale, friction scale) and the LDM's quantile of G
DEMO_CELL = ("friction x0.7", 0.0, 1.0, 0.7)
DEMO_WRAP_QUANTILE = 0.99


def mpc_rows(s: HopperSettings, prep: dict, c: float, seed: int, device) -> list[dict]:
    ldm, task, target = prep["ldm"], prep["task"], s.targets[0]
    ctls = {"MPC, unconstrained": lambda k: make_agent(s, prep, target, seed=seed + k, device=device),
            "MPC + LDM": lambda k: make_agent(s, prep, target, [ldm.constraint(c)], seed=seed + k, device=device)}
    rows = []
    bar = tqdm(total=len(ctls) * s.seeds, desc="MPC episodes", unit="ep")
    for name, build in ctls.items():
        for k in range(s.seeds):
            r = run_episode(task, build(k), prep["model"], ldm, target, s.episode_steps, seed=1000 + k, threshold=c,
                            reach_tol=s.reach_tol)
            rows.append({"controller": name, "seed": k, "target": target, **r})
            bar.update(1)
    bar.close()
    return rows


def wrap_rows(s: HopperSettings, out: Path, seed: int) -> list[dict]:
    """The forward policy on a slippery floor, bare and LDM-wrapped (``benchmarks/ldm_wrap_policy.py``)."""
    ws = dataclasses.replace(WrapSettings(), quantiles=(DEMO_WRAP_QUANTILE,), episodes=s.seeds)
    meta = prepare_wrap(ws, seed, out / "wrap_cache")
    rows = []
    names = {"bare": f"policy, {DEMO_CELL[0]}", "ldm": f"policy, {DEMO_CELL[0]}, LDM-wrapped"}
    bar = tqdm(total=2 * s.seeds, desc="wrapped-policy episodes", unit="ep")
    for m, q in (("bare", None), ("ldm", DEMO_WRAP_QUANTILE)):
        for k in range(s.seeds):
            r = wrap_episode(DEMO_CELL, (m, q), k, str(out / "wrap_cache"), ws, meta["threshold"])
            rows.append({"controller": names[m], "seed": k, "target": None, "fell": r["fell"], "reached": False,
                         "steps": r["steps"], "xs": r["xs"], "x": r["xs"][-1],
                         "seconds_per_action": r["ms_per_action"] / 1e3, "changed_fraction": r["changed_fraction"]})
            bar.update(1)
    bar.close()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| controller | falls | reached the target | steps | distance travelled (m) | final x (m) | s / action |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["controller"] for r in rows):
        rs = [r for r in rows if r["controller"] == name]
        reached = "-" if rs[0]["target"] is None else f"{sum(r['reached'] for r in rs)} / {len(rs)}"
        dist = np.mean([r["xs"][-1] - r["xs"][0] for r in rs])
        lines.append(f"| {name} | {sum(r['fell'] for r in rs)} / {len(rs)} | {reached} | "
                     f"{np.mean([r['steps'] for r in rs]):.0f} | {dist:+.2f} | {np.mean([r['x'] for r in rs]):+.2f} "
                     f"| {np.mean([r['seconds_per_action'] for r in rs]):.4f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default cpu)")
    p.add_argument("--out", default=None, help="output folder (default results/demo)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per controller (default 3)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    torch.set_num_threads(1)   # small networks and batches: one thread is fastest (and survives a busy core)
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("demo", a.out)
    t0 = time.perf_counter()
    s = DEMO if a.episodes is None else dataclasses.replace(DEMO, seeds=a.episodes)
    prep = prepare_hopper(s, a.seed, device)
    c = prep["thresholds"][f"q{DEMO_QUANTILE:g}"][1]   # calibrate(rule="energy"): the median of the data's E
    rows = mpc_rows(s, prep, c, a.seed, device) + wrap_rows(s, out, a.seed)
    md = table(rows)
    res = {"settings": dataclasses.asdict(s), "machine": machine(), "rows": rows,
           "threshold": {"c": c, "quantile_of_E": DEMO_QUANTILE}, "wrap_cell": DEMO_CELL,
           "wrap_quantile": DEMO_WRAP_QUANTILE,
           "seconds": time.perf_counter() - t0}
    write_json(out / "demo.json", res)
    atomic_write_text(out / "demo.md", md + "\n")
    _plot(rows, out / "demo.png", s.targets[0])
    print("\n" + md)
    print(f"\nresults in {out.resolve()}: demo.json, demo.md, demo.png ({res['seconds']:.0f} s)")
    return res


def _plot(rows: list[dict], path: Path, target: float) -> None:
    plt = pyplot()
    names = list(dict.fromkeys(r["controller"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.3), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        rs = [r for r in rows if r["controller"] == name]
        for r in rs:
            xs = r["xs"]
            col = "C3" if r["fell"] else "C2"
            ax.plot(np.arange(len(xs)) * 0.008, xs, color=col, lw=1.2)
            if r["fell"]:
                ax.plot((len(xs) - 1) * 0.008, xs[-1], "x", color="C3", ms=9, mew=2)
        if rs[0]["target"] is not None:
            ax.axhline(target, color="k", ls="--", lw=0.8)
        ax.set_title(f"{name}\n{sum(r['fell'] for r in rs)}/{len(rs)} fell", fontsize=8)
        ax.set_xlabel("time (s)")
    np.atleast_1d(axes)[0].set_ylabel("x position (m)")
    fig.suptitle(f"Hopper-v5: MPC with a learned model toward x = {target:g} (dashed), and the forward policy on a "
                 "floor with 70 % friction; green = upright at the end, red x = fell", fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
