"""The main job (``make demo``): the library's three ideas on Hopper-v5, in minutes on a laptop CPU.

1. PETS collects Hopper data and learns an ensemble dynamics model (``mbrl``).
2. A Lyapunov density model is learned from the same data (``safe_density.ldm``).
3. MPC hops towards a target x position: unconstrained, and with the LDM constraint ``G(s, a) <= c``.
4. MURAL: success examples (the furthest-forward upright states in the data) give an uncertainty-aware
   reward (meta-NML), which replaces the hand-written reward in the same planner, under the same LDM
   constraint: the composition the library is for.

Writes ``results/demo/demo.json``, ``results/demo/demo.md`` (the table) and ``results/demo/demo.png``.

    python benchmarks/demo.py            # ~5 min on 2 CPU cores
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
from hopper_ldm import (  # noqa: E402
    ObsFeatures,
    Settings,
    evaluate,
    make_agent,
    methods_for,
    prepare,
    run_episode,
    summarise,
)

from mbrl.util.serialization import atomic_write_text  # noqa: E402
from safe_density.mural import MuralConfig, MuralReward  # noqa: E402

DEMO = Settings(data_warmup_steps=1000, data_episodes=3, data_steps=200, data_hidden=(128, 128, 128),
                model_epochs=40, ldm_steps=1500,
                population=100, elites=10, iterations=3, horizon=10, particles=5, episode_steps=120, episodes=1,
                targets=(1.0,), quantiles=(0.95,))


def mural_run(s: Settings, prep: dict, seed: int, device) -> dict:
    """MPC with the MURAL reward (replacing the task reward) under the LDM constraint."""
    data = prep["buffer"].all()
    obs = data.obs
    upright = (obs[:, 1] > 1.0) & (obs[:, 2].abs() < 0.15)
    cand = obs[upright] if int(upright.sum()) >= 10 else obs
    k = max(10, int(0.05 * cand.shape[0]))
    examples = cand[torch.argsort(cand[:, 0], descending=True)[:k]]
    target = float(examples[:, 0].mean())
    mural = MuralReward(examples, method="meta_nml", seed=seed, config=MuralConfig.small(), device=device)
    mural.update(obs, progress=True)
    q, c = next(iter(prep["thresholds"].items()))
    agent = make_agent(s, prep, target, constraints=[ObsFeatures(prep["ldm"].constraint(c))],
                       reward_shapers=[mural], seed=seed, device=device)
    r = run_episode(prep["task"], agent, prep["model"], target, s.episode_steps, seed=1000)
    with torch.no_grad():
        rew = mural(torch.as_tensor(np.stack([obs[0].numpy(), examples[0].numpy()]), dtype=torch.float32))
    return {"method": "mural+ldm", "quantile": q, "threshold": c, "target": target, "episode": 0,
            "n_examples": int(examples.shape[0]), "reward_at_start": float(rew[0]),
            "reward_at_example": float(rew[1]), **r}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of everything")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--out", default=None, help="output folder (default results/demo)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    device = torch.device(a.device) if a.device else torch.device("cpu")
    out = out_dir("demo", a.out)
    t0 = time.perf_counter()
    s = DEMO
    prep = prepare(s, out, a.seed, device)
    rows = evaluate(s, prep, methods_for(s, prep, ("none", "ldm")), a.seed, device)
    rows.append(mural_run(s, prep, a.seed, device))
    table = summarise(rows)
    lines = ["| controller | threshold c | falls / episode | final distance to target | model MSE | s / action |",
             "|---|---|---|---|---|---|"]
    for t in table:
        c = "-" if t["threshold"] is None else f"{t['threshold']:.2f}"
        lines.append(f"| {t['method']} | {c} | {t['falls_per_episode']:.2f} | {t['distance']:.2f} | "
                     f"{t['model_mse']:.4f} | {t['seconds_per_action']:.3f} |")
    md = "\n".join(lines)
    res = {"settings": dataclasses.asdict(s), "machine": machine(), "rows": rows, "table": table,
           "seconds": time.perf_counter() - t0}
    write_json(out / "demo.json", res)
    atomic_write_text(out / "demo.md", md + "\n")
    _plot(rows, out / "demo.png")
    print("\n" + md)
    print(f"\nresults in {out.resolve()}: demo.json, demo.md, demo.png ({res['seconds']:.0f} s)")
    return res


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [r["method"] for r in rows]
    xs = [r["x"] for r in rows]
    colors = ["C3" if r["fell"] else "C2" for r in rows]
    ax.barh(labels, xs, color=colors)
    for i, r in enumerate(rows):
        ax.text(r["x"], i, " fell" if r["fell"] else " upright", va="center", fontsize=8)
    ax.axvline(rows[0]["target"], color="k", ls="--", lw=1, label="target x")
    ax.set_xlabel("final x position")
    ax.set_title("Hopper-v5 MPC: unconstrained vs LDM-constrained vs MURAL reward", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
