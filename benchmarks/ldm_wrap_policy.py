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

    python benchmarks/ldm_wrap_policy.py                # CPU, 2 cores, Ray local processes
    python benchmarks/ldm_wrap_policy.py --preset tiny  # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, out_dir, write_json  # noqa: E402

from mbrl.policies import collect_hopper_data, keep_before_falls, load_hopper_policy  # noqa: E402
from mbrl.sweep import run_grid  # noqa: E402
from mbrl.tasks import make_task  # noqa: E402
from safe_density.density import GaussianMixtureDensity  # noqa: E402
from safe_density.ldm import (  # noqa: E402
    DensityConstrainedActionWrapper,
    DensityConstrainedController,
    LDMConfig,
    LyapunovDensityModel,
)

METHODS = ("bare", "ldm", "density", "ldm-env-wrapper")


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run's settings: the LDM is an override of the library's ``LDMConfig``."""

    ldm: LDMConfig = LDMConfig(steps=4000, tau=0.05, density_components=16)
    data_noises: tuple[float, ...] = (0.0, 0.05, 0.1)
    data_episodes: int = 4
    data_steps: int = 500
    drop_before_fall: int = 10
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)  # c = these percentiles of each filter's own cost on the data
    env_wrapper_quantile: float = 0.9               # the ActionWrapper row (the same filter as "ldm") at this one
    episode_steps: int = 500
    episodes: int = 10
    # (name, action-noise std, torso-mass scale, friction scale)
    cells: tuple[tuple[str, float, float, float], ...] = (
        ("noise 0", 0.0, 1.0, 1.0), ("noise 0.15", 0.15, 1.0, 1.0), ("noise 0.25", 0.25, 1.0, 1.0),
        ("noise 0.5", 0.5, 1.0, 1.0), ("torso x1.5", 0.0, 1.5, 1.0), ("friction x0.7", 0.0, 1.0, 0.7))
    n_samples: int = 256                           # candidates per filtering round


QUICK = Settings()
TINY = Settings(ldm=LDMConfig(steps=20, hidden=(32, 32), density_components=2), data_noises=(0.1,), data_episodes=1,
                data_steps=40, episode_steps=5, episodes=1, quantiles=(0.5, 0.9), cells=(
                    ("noise 0.5", 0.5, 1.0, 1.0), ("torso x1.5", 0.0, 1.5, 1.0)), n_samples=32)
PRESETS = {"quick": QUICK, "tiny": TINY}


def prepare(s: Settings, seed: int, cache: Path) -> dict:
    """Forward-policy data, density and LDM, saved to ``cache``; returns the thresholds and data summary."""
    task = make_task("Hopper-v5")
    t0 = time.perf_counter()
    data = collect_hopper_data(policies=("forward",), noises=s.data_noises, episodes_per_setting=s.data_episodes,
                               max_steps=s.data_steps, seed=seed, task=task)
    t_data = time.perf_counter() - t0
    keep = keep_before_falls(data["terminated"], data["episode"], s.drop_before_fall)
    o, a, o2 = (torch.as_tensor(data[k][keep]) for k in ("obs", "act", "next_obs"))
    ldm = LyapunovDensityModel(task.obs_dim, task.act_dim, task.action_low, task.action_high,
                               density=GaussianMixtureDensity(s.ldm.density_components, seed=seed), config=s.ldm,
                               obs_indices=range(1, task.obs_dim), seed=seed)
    ldm.fit(o, a, o2)
    c = {}
    for q in s.quantiles:   # c for G (the LDM) and for E (the density): the same quantile of each
        ldm.calibrate(o, a, q)
        c[f"{q:g}"] = {"ldm": float(ldm.calibration["ldm"]), "density": float(ldm.calibration["energy"])}
    ldm.save(cache / "ldm")
    meta = {"threshold": c, "transitions": int(data["obs"].shape[0]),
            "ldm_transitions": int(o.shape[0]), "episodes": int(data["fell"].size),
            "falls": int(data["fell"].sum()), "data_seconds": t_data}
    write_json(cache / "prep.json", meta)
    print(f"forward-policy data: {meta['transitions']} transitions, {meta['falls']}/{meta['episodes']} episodes "
          f"fell ({t_data:.1f} s); c (G, E) by quantile: {c}")
    return meta


def perturbed_env(task, mass_scale: float, friction_scale: float):
    """Hopper-v5 with its torso mass and every geom's sliding friction scaled (MuJoCo model parameters)."""
    env = task.make_env()
    model = env.unwrapped.model
    model.body_mass[model.body("torso").id] *= mass_scale
    model.geom_friction[:, 0] *= friction_scale
    return env


_LDM: dict[str, LyapunovDensityModel] = {}


def _ldm(cache: str) -> LyapunovDensityModel:
    if cache not in _LDM:
        _LDM[cache] = LyapunovDensityModel.load(Path(cache) / "ldm")
    return _LDM[cache]


def filters(s: Settings, which=METHODS) -> list[tuple[str, float | None]]:
    """``(method, quantile)`` pairs: the bare policy once, each filter at each quantile, the env wrapper at one."""
    out = [("bare", None)] if "bare" in which else []
    out += [(m, q) for m in ("ldm", "density") if m in which for q in s.quantiles]
    if "ldm-env-wrapper" in which:
        out.append(("ldm-env-wrapper", s.env_wrapper_quantile))
    return out


def episode(cell: tuple, filt: tuple, seed: int, cache: str, settings: Settings, threshold: dict) -> dict:
    """One grid point (a Ray task): filter ``(method, quantile)`` around the noisy forward policy in perturbed
    Hopper-v5."""
    torch.set_num_threads(1)
    name, noise, mass, friction = cell
    task = make_task("Hopper-v5")
    ldm = _ldm(cache)
    policy = load_hopper_policy("forward").controller(noise=noise, seed=seed)
    env = perturbed_env(task, mass, friction)
    method, q = filt
    c = threshold.get(f"{q:g}", {}) if q is not None else {}
    filt, c_g, c_e = None, c.get("ldm"), c.get("density")
    if method == "ldm-env-wrapper":
        env = DensityConstrainedActionWrapper(env, ldm, c_g, n_samples=settings.n_samples, seed=seed, warn=False)
    elif method == "ldm":
        filt = DensityConstrainedController(policy, ldm, c_g, n_samples=settings.n_samples, seed=seed, warn=False)
    elif method == "density":
        filt = DensityConstrainedController(policy, ldm.constraint(c_e, greedy=True), c_e,
                                            n_samples=settings.n_samples, seed=seed, warn=False)
    ctl = filt or policy
    obs, _ = env.reset(seed=10_000 + seed)
    x0, fell, changed, times, xs = float(obs[0]), False, [], [], [float(obs[0])]
    for _ in range(settings.episode_steps):
        t0 = time.perf_counter()
        act = ctl.act(obs)
        times.append(time.perf_counter() - t0)
        obs, _, term, trunc, info = env.step(act)
        xs.append(float(obs[0]))
        if filt is not None:
            changed.append(bool(filt.last_modified))
        elif "density_filter" in info:
            changed.append(bool(info["density_filter"]["modified"]))
        if term or trunc:
            fell = bool(term)
            break
    env.close()
    return {"cell": name, "method": method, "quantile": q, "noise": noise, "mass_scale": mass,
            "friction_scale": friction, "fell": fell,
            "steps": len(times), "distance": float(obs[0]) - x0,
            "changed_fraction": float(np.mean(changed)) if changed else 0.0,
            "ms_per_action": 1e3 * float(np.median(times)), "xs": xs}


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
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="quick (default) or tiny")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the LDM (default 0)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per cell (default 10)")
    p.add_argument("--out", default=None, help="output folder (default results/ldm_wrap_policy)")
    p.add_argument("--reuse", action="store_true", help="reuse the LDM in OUT/cache when present")
    p.add_argument("--backend", choices=["ray", "serial"], default="ray", help="ray (default) or serial")
    p.add_argument("--address", default=None, help="a Ray cluster to run the grid on (e.g. auto)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="controllers to compare (default all)")
    a = p.parse_args(argv)
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
        meta = prepare(s, a.seed, cache)
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent),
                                                       os.environ.get("PYTHONPATH", "")])}}
    rows = run_grid(episode, {"cell": list(s.cells), "filt": filters(s, a.methods), "seed": list(range(s.episodes))},
                    backend=a.backend, address=a.address, runtime_env=env, cache=str(cache), settings=s,
                    threshold=meta["threshold"])
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
