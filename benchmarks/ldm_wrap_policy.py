"""Wrap an *existing* controller with a density constraint (the first use our users named): the shipped
forward-hopping policy, perturbed until it falls, bare vs inside ``DensityConstrainedController``.

1. **Data and models.** The forward policy (``mbrl.policies.load_hopper_policy("forward")``) at small
   action-noise levels (it hops without falling there) gives the behaviour data: what a user of an existing
   controller has. A Gaussian-mixture density over (s without x, a) and the LDM ``G(s, a)`` are fitted on
   them. Each filter's threshold is the same percentile of its *own* cost on the data (``G`` for the LDM, ``E``
   for the density: ``LyapunovDensityModel.calibrate``), so both let the same fraction of the data's own
   pairs through; a high percentile, so that the unperturbed controller is left alone.
2. **Perturbations.** Gaussian action noise of growing scale inside the controller (the noisy controller is
   what gets wrapped), a heavier torso and lower friction (Hopper-v5's own MuJoCo parameters:
   ``body_mass["torso"]`` and ``geom_friction``), alone and with noise.
3. **Controllers**, in every cell: the bare policy; the policy inside ``DensityConstrainedController`` with
   the LDM (``G <= c``); the same wrapper with the one-step density ``E(s, a) = -log p(s, a) <= c`` as its
   cost; and the LDM through ``DensityConstrainedActionWrapper`` around the gymnasium env (the same filter
   seen from a model-free agent's side: the same numbers are expected).
4. **Metrics**, ``episodes`` per cell: falls, distance travelled, how often the filter changed the action,
   and milliseconds per filtered action. The grid runs through Ray (``mbrl.sweep.run_grid``). Written to
   ``results/ldm_wrap_policy/ldm_wrap_policy.json``, ``.md`` and ``.png``.

    python -m benchmarks.ldm_wrap_policy                # CPU, 2 cores, Ray local processes
    python -m benchmarks.ldm_wrap_policy --preset tiny  # a smoke test
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
    WrapSettings,
    machine,
    out_dir,
    prepare_wrap,
    pyplot,
    ray_runtime_env,
    save_figure,
    wrap_episode,
    write_json,
)
from mbrl.sweep import run_grid
from safe_density.ldm import LDMConfig

METHODS = ("bare", "ldm", "density", "ldm-env-wrapper")

#: ``--preset quick``: the defaults of ``WrapSettings`` (CPU, 2 cores)
QUICK = WrapSettings()
TINY = WrapSettings(ldm=LDMConfig(steps=20, hidden=(32, 32), density_components=2), data_noises=(0.1,),
                    data_episodes=1, data_steps=40, episode_steps=5, episodes=1, quantiles=(0.5, 0.9), cells=(
                        ("noise 0.5", 0.5, 1.0, 1.0), ("torso x1.5", 0.0, 1.5, 1.0)), n_samples=32)
PRESETS = {"quick": QUICK, "tiny": TINY}


def filters(s: WrapSettings, which=METHODS) -> list[tuple[str, float | None]]:
    """``(method, quantile)`` pairs: the bare policy once, each filter at each quantile, the env wrapper at one."""
    out = [("bare", None)] if "bare" in which else []
    out += [(m, q) for m in ("ldm", "density") if m in which for q in s.quantiles]
    if "ldm-env-wrapper" in which:
        out.append(("ldm-env-wrapper", s.env_wrapper_quantile))
    return out


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for cell in dict.fromkeys(r["cell"] for r in rows):
        for m, q in dict.fromkeys((r["method"], r["quantile"]) for r in rows):
            rs = [r for r in rows if r["cell"] == cell and r["method"] == m and r["quantile"] == q]
            table.append({"cell": cell, "method": m if q is None else f"{m} q{q:g}", "episodes": len(rs),
                          "falls": int(sum(r["fell"] for r in rs)),
                          "distance": float(np.mean([r["distance"] for r in rs])),
                          "steps": float(np.mean([r["steps"] for r in rs])),
                          "changed_fraction": float(np.mean([r["changed_fraction"] for r in rs])),
                          "ms_per_action": float(np.median([r["ms_per_action"] for r in rs]))})
    return table


def markdown(table: list[dict]) -> str:
    methods = list(dict.fromkeys(t["method"] for t in table))
    head = "| perturbation | " + " | ".join(f"{m}: falls, distance (m), changed" for m in methods) + " |"
    lines = [head, "|---|" + "---|" * len(methods)]
    for cell in dict.fromkeys(t["cell"] for t in table):
        cells = []
        for m in methods:
            t = next(t for t in table if t["cell"] == cell and t["method"] == m)
            ch = "-" if m == "bare" else f"{t['changed_fraction']:.0%}"
            cells.append(f"{t['falls']}/{t['episodes']}, {t['distance']:+.2f}, {ch}")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    plt = pyplot()
    cells = list(dict.fromkeys(t["cell"] for t in table))
    methods = list(dict.fromkeys(t["method"] for t in table))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        ts = [next(t for t in table if t["cell"] == c and t["method"] == m) for c in cells]
        x = np.arange(len(cells)) + (i - (len(methods) - 1) / 2) * w
        axes[0].bar(x, [t["falls"] / t["episodes"] for t in ts], w, label=m)
        axes[1].bar(x, [t["distance"] for t in ts], w, label=m)
    for ax, lab in zip(axes, ["falls per episode", "distance travelled (m)"]):
        ax.set_xticks(np.arange(len(cells)), cells, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel(lab)
        ax.legend(fontsize=7)
    fig.suptitle("The forward hopper policy, perturbed: bare, LDM-wrapped (G <= c) and density-wrapped (E <= c)",
                 fontsize=10)
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="quick (default) or tiny")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the LDM (default 0)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per cell (default 10)")
    p.add_argument("--out", default=None, help="output folder (default results/ldm_wrap_policy)")
    p.add_argument("--reuse", action="store_true", help="reuse the LDM in OUT/cache when present")
    p.add_argument("--backend", choices=["ray", "serial"], default="ray", help="ray (default) or serial")
    p.add_argument("--address", default=None,
                   help="a Ray cluster to run the grid on, e.g. auto (default: local processes)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="controllers to compare (default all)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    s = PRESETS[a.preset]
    if a.episodes is not None:
        s = dataclasses.replace(s, episodes=a.episodes)
    torch.set_num_threads(1)
    out = out_dir("ldm_wrap_policy", a.out)
    cache = out / "cache"
    t0 = time.perf_counter()
    if a.reuse and (cache / "prep.json").is_file():
        meta = json.loads((cache / "prep.json").read_text())
    else:
        meta = prepare_wrap(s, a.seed, cache)
    grid = {"cell": list(s.cells), "filt": filters(s, a.methods), "seed": list(range(s.episodes))}
    rows = run_grid(wrap_episode, grid, backend=a.backend, address=a.address, runtime_env=ray_runtime_env(),
                    cache=str(cache), settings=s, threshold=meta["threshold"])
    table = summarise(rows)
    md = markdown(table)
    print("\n" + md)
    res = {"settings": dataclasses.asdict(s), "preset": a.preset, "machine": machine(), "prep": meta, "rows": rows,
           "table": table, "seconds": time.perf_counter() - t0}
    write_json(out / "ldm_wrap_policy.json", res)
    (out / "ldm_wrap_policy.md").write_text(md + "\n")
    plot(table, out / "ldm_wrap_policy.png")
    return res


if __name__ == "__main__":
    main()
