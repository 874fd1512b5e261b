"""``safe-density``: the command-line interface.

    safe-density pets --task InvertedPendulum-v5 --episodes 5 --out runs/ip    # train/evaluate PETS
    safe-density fit-ldm --buffer runs/ip/checkpoint/buffer --out runs/ip/ldm  # LDM from a saved buffer
    safe-density mural-reward --examples ex.npy --visited seen.npy --states q.npy --out rewards/
    safe-density bench hopper_ldm --quick                                      # any benchmark script
    safe-density demo                                                          # the main job

Every command writes its results as JSON (and a PNG where a picture helps) and prints where they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _load_array(path: str, name: str) -> np.ndarray:
    """``.npy`` (never unpickled) or ``.csv``/``.txt`` (comma or whitespace separated) -> float32 ``[N, D]``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name}: no such file {path}")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    else:
        text = p.read_text()
        arr = np.loadtxt(p, delimiter="," if "," in text else None, ndmin=2)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must hold a non-empty [N, D] array, got shape {arr.shape}")
    return arr


def _benchmarks_dir() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / "benchmarks").is_dir():
            return base / "benchmarks"
    raise SystemExit("benchmarks/ not found: run from a checkout of the safe_density repository")


def cmd_pets(args: argparse.Namespace, rest: list[str]) -> int:
    from mbrl.train import main as pets_main

    pets_main(rest)
    return 0


def cmd_fit_ldm(args: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from mbrl.buffer import ReplayBuffer
    from mbrl.util.serialization import atomic_write_text
    from safe_density.density import FlowDensity, GaussianKDE, GaussianMixtureDensity
    from safe_density.ldm import LyapunovDensityModel

    buf = ReplayBuffer.load(args.buffer)
    data = buf.all()
    drop = list(args.drop_obs or [])
    keep = [i for i in range(data.obs.shape[1]) if i not in drop]
    obs, nxt = data.obs[:, keep], data.next_obs[:, keep]
    low = args.action_low if args.action_low is not None else data.act.min(0).values.tolist()
    high = args.action_high if args.action_high is not None else data.act.max(0).values.tolist()
    dens = {"gmm": lambda: GaussianMixtureDensity(args.components, seed=args.seed),
            "flow": lambda: FlowDensity(seed=args.seed), "kde": lambda: GaussianKDE()}[args.density]()
    ldm = LyapunovDensityModel(obs.shape[1], data.act.shape[1], low, high, density=dens, gamma=args.gamma,
                               steps=args.steps, device=args.device or "cpu", seed=args.seed)
    hist = ldm.fit(obs, data.act, nxt, terminated=data.terminated if args.use_terminated else None)
    out = Path(args.out)
    ldm.save(out / "ldm")
    with torch.no_grad():
        e = ldm.energy(obs, data.act).cpu().numpy()
        g = ldm.value(obs, data.act).cpu().numpy()
    summary = {"transitions": len(buf), "kept_obs_dims": keep, "energy_quantiles":
               {q: float(np.quantile(e, q)) for q in (0.1, 0.5, 0.9, 0.99)},
               "ldm_quantiles": {q: float(np.quantile(g, q)) for q in (0.1, 0.5, 0.9, 0.99)},
               "final_loss": hist["loss"][-1] if hist["loss"] else None, "model": str(out / "ldm")}
    atomic_write_text(out / "ldm_summary.json", json.dumps(summary, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(e, bins=50, alpha=0.6, label="energy E(s,a)")
    ax.hist(g, bins=50, alpha=0.6, label="LDM G(s,a)")
    ax.set_xlabel("value on the data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ldm_values.png", dpi=120)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out / 'ldm'}, {out / 'ldm_summary.json'}, {out / 'ldm_values.png'}")
    return 0


def cmd_mural(args: argparse.Namespace, rest: list[str]) -> int:
    from mbrl.util.serialization import atomic_write_text
    from safe_density.mural import MuralConfig, MuralReward

    ex = _load_array(args.examples, "--examples")
    states = _load_array(args.states, "--states")
    cfg = MuralConfig.small() if args.small else MuralConfig()
    mr = MuralReward(ex, method=args.method, seed=args.seed, config=cfg, device=args.device)
    visited = _load_array(args.visited, "--visited") if args.visited else ex[:0]
    mr.update(visited, progress=True)
    r = mr(states).detach().cpu().numpy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "rewards.npy", r.astype(np.float32))
    atomic_write_text(out / "rewards.json", json.dumps({"method": args.method, "n": int(r.shape[0]),
                                                        "mean": float(r.mean()), "min": float(r.min()),
                                                        "max": float(r.max()), "rewards": r.tolist()}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    if states.shape[1] >= 2:
        sc = ax.scatter(states[:, 0], states[:, 1], c=r, cmap="viridis", vmin=0, vmax=1, s=12)
        ax.scatter(ex[:, 0], ex[:, 1], marker="*", c="r", s=60, label="success examples")
        fig.colorbar(sc, label="MURAL reward")
        ax.legend(fontsize=7)
    else:
        ax.hist(r, bins=30)
        ax.set_xlabel("MURAL reward")
    fig.tight_layout()
    fig.savefig(out / "rewards.png", dpi=120)
    print(f"rewards: mean {r.mean():.3f}, min {r.min():.3f}, max {r.max():.3f}")
    print(f"wrote {out / 'rewards.npy'}, {out / 'rewards.json'}, {out / 'rewards.png'}")
    return 0


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    d = _benchmarks_dir()
    script = d / f"{args.name}.py"
    if not script.is_file():
        names = sorted(p.stem for p in d.glob("[a-z]*.py"))
        raise SystemExit(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.call([sys.executable, str(script), *rest], env=env)


def cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    args.name = "demo"
    return cmd_bench(args, rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safe-density", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("pets", help="train and evaluate PETS (options: safe-density pets --help)", add_help=False)
    s.set_defaults(func=cmd_pets)

    s = sub.add_parser("fit-ldm", help="fit a Lyapunov density model from a saved replay buffer")
    s.add_argument("--buffer", required=True, help="folder written by ReplayBuffer.save (e.g. RUN/checkpoint/buffer)")
    s.add_argument("--out", required=True, help="output folder: ldm/ checkpoint, ldm_summary.json, ldm_values.png")
    s.add_argument("--density", default="gmm", choices=["gmm", "flow", "kde"],
                   help="density model for the energies E = -log p(s, a)")
    s.add_argument("--components", type=int, default=16, help="Gaussian-mixture components (--density gmm)")
    s.add_argument("--drop-obs", type=int, nargs="*", default=None,
                   help="observation indices left out of the density (e.g. 0 for Hopper's x position)")
    s.add_argument("--gamma", type=float, default=0.99, help="discount of the LDM backup (design.md)")
    s.add_argument("--steps", type=int, default=10_000, help="gradient steps")
    s.add_argument("--action-low", type=float, nargs="+", default=None, help="action lower bounds (default: data min)")
    s.add_argument("--action-high", type=float, nargs="+", default=None, help="action upper bounds (default: data max)")
    s.add_argument("--use-terminated", action="store_true",
                   help="treat terminated transitions as having no future (default: as ordinary transitions)")
    s.add_argument("--device", default=None, help="cpu or cuda")
    s.add_argument("--seed", type=int, default=0, help="seed")
    s.set_defaults(func=cmd_fit_ldm)

    s = sub.add_parser("mural-reward", help="MURAL rewards for a file of states")
    s.add_argument("--examples", required=True, help="success example states, .npy or .csv [K, D]")
    s.add_argument("--visited", default=None, help="visited states (label 0), .npy or .csv [M, D]")
    s.add_argument("--states", required=True, help="states to score, .npy or .csv [N, D]")
    s.add_argument("--method", default="meta_nml", choices=["meta_nml", "cnml", "classifier"],
                   help="meta_nml (fast, MURAL), cnml (exact, slow), classifier (VICE-like baseline)")
    s.add_argument("--small", action="store_true", help="CPU-sized classifier (MuralConfig.small())")
    s.add_argument("--out", required=True, help="output folder: rewards.npy, rewards.json, rewards.png")
    s.add_argument("--device", default=None, help="cpu or cuda")
    s.add_argument("--seed", type=int, default=0, help="seed")
    s.set_defaults(func=cmd_mural)

    s = sub.add_parser("bench", help="run a benchmark script: safe-density bench NAME [its options]")
    s.add_argument("name", help="benchmark name, e.g. pets, planner_speed, hopper_ldm, mural_tasks, rcad_small_data")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="the main job (Hopper: PETS vs LDM-constrained, MURAL-shaped run)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("pets", "bench", "demo"):
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return int(args.func(args, rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
