"""Memory over a long run: a bounded replay buffer fed far more transitions than it holds, with periodic
ensemble fits and checkpoints, and the process's resident memory (RSS) sampled all along.

What a bounded run must show: after the warm-up (buffer filled, first fit done, allocator pools grown) the
RSS stays flat however many more transitions arrive. Reported: peak RSS (``getrusage`` ``ru_maxrss``),
RSS after warm-up and at the end, the growth in between and its slope in MB per 100k transitions.

    python -m benchmarks.memory                 # 200k transitions through a 10k buffer, fit every 20k
    python -m benchmarks.memory --quick         # < 1 min on one CPU core

Writes ``results/memory/memory.json`` and ``memory.png`` (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import HelpFormatter, machine, out_dir, pyplot, save_figure, write_json
from mbrl.buffer import ReplayBuffer
from mbrl.models.ensemble import ProbabilisticEnsemble

try:  # optional: psutil reads the current RSS portably; /proc/self/status is the fallback
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

FULL = dict(transitions=200_000, capacity=10_000, chunk=1000, fit_every=20_000, epochs=2, hidden=(64, 64),
            obs_dim=17, act_dim=6)
QUICK = dict(transitions=60_000, capacity=5_000, chunk=1000, fit_every=10_000, epochs=1, hidden=(32, 32),
             obs_dim=17, act_dim=6)


def rss_mb() -> float:
    """Current resident set size in MB."""
    if psutil is not None:
        return psutil.Process().memory_info().rss / 2**20
    with open("/proc/self/status") as f:  # pragma: no cover - psutil missing
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(cfg: dict, device: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    O, A = cfg["obs_dim"], cfg["act_dim"]
    buf = ReplayBuffer(cfg["capacity"], O, A, device=device)
    model = ProbabilisticEnsemble(O, A, ensemble_size=5, hidden=cfg["hidden"], device=device, seed=seed)
    storage_bytes = sum(t.numel() * t.element_size() for t in buf._storage())
    samples, fits = [], []
    ckpt = Path(tempfile.mkdtemp(prefix="memory_bench_")) / "buffer"
    t0 = time.perf_counter()
    seen, next_fit = 0, cfg["fit_every"]
    obs = torch.zeros(O)
    while seen < cfg["transitions"]:
        n = min(cfg["chunk"], cfg["transitions"] - seen)
        # an "episode": a random walk, as numpy (what env.step returns), the last step added one at a time
        act = torch.rand(n, A, generator=g) * 2 - 1
        steps = 0.05 * torch.randn(n, O, generator=g) + 0.01 * act.sum(-1, keepdim=True)
        nxt = obs + steps.cumsum(0)
        prev = torch.cat([obs[None], nxt[:-1]])
        rew = -nxt.square().sum(-1)
        done = np.zeros(n, dtype=bool)
        buf.add_batch(prev[:-1].numpy(), act[:-1].numpy(), nxt[:-1].numpy(), rew[:-1].numpy(), done[:-1])
        buf.add(prev[-1].numpy(), act[-1].numpy(), nxt[-1].numpy(), float(rew[-1]), True)
        obs = torch.zeros(O) if seen % (5 * cfg["chunk"]) == 0 else nxt[-1]
        seen += n
        batch = buf.sample(256, generator=g)  # what a model-free learner would draw every step
        del batch
        if seen >= next_fit:
            tf = time.perf_counter()
            hist = model.fit(buf, epochs=cfg["epochs"], batch_size=256, seed=seen, progress=False)
            buf.save(ckpt)
            fits.append({"transitions": seen, "seconds": time.perf_counter() - tf,
                         "holdout_mse": float(np.mean(hist["holdout_mse"][-1]))})
            next_fit += cfg["fit_every"]
        samples.append({"transitions": seen, "seconds": time.perf_counter() - t0, "rss_mb": rss_mb(),
                        "peak_rss_mb": peak_rss_mb()})
    assert sum(t.numel() * t.element_size() for t in buf._storage()) == storage_bytes
    assert len(buf) == cfg["capacity"]
    ReplayBuffer.load(ckpt)  # the last checkpoint loads

    # Warm-up: the buffer is full and the first fit + checkpoint have run (pools grown).
    warm_at = max(cfg["capacity"], cfg["fit_every"]) + cfg["chunk"]
    warm = next(s for s in samples if s["transitions"] >= warm_at) if seen >= warm_at else samples[-1]
    after = [s for s in samples if s["transitions"] >= warm["transitions"]]
    x = np.array([s["transitions"] for s in after], dtype=float)
    y = np.array([s["rss_mb"] for s in after])
    slope = float(np.polyfit(x, y, 1)[0] * 1e5) if len(after) > 2 else float("nan")
    return {
        "config": {**cfg, "hidden": list(cfg["hidden"]), "device": device, "seed": seed},
        "machine": machine(),
        "rss_source": "psutil" if psutil is not None else "/proc/self/status VmRSS",
        "buffer_storage_mb": storage_bytes / 2**20,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": samples[-1]["peak_rss_mb"],
        "rss_after_warmup_mb": warm["rss_mb"],
        "warmup_transitions": warm["transitions"],
        "rss_end_mb": samples[-1]["rss_mb"],
        "growth_after_warmup_mb": samples[-1]["rss_mb"] - warm["rss_mb"],
        "max_rss_after_warmup_mb": float(y.max()),
        "slope_mb_per_100k_transitions": slope,
        "fits": fits,
        "samples": samples,
    }


def plot(res: dict, path: Path) -> None:
    plt = pyplot()
    s = res["samples"]
    x = np.array([r["transitions"] for r in s]) / 1000
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, [r["rss_mb"] for r in s], label="RSS")
    ax.plot(x, [r["peak_rss_mb"] for r in s], "--", label="peak RSS (ru_maxrss)")
    for i, f in enumerate(res["fits"]):
        ax.axvline(f["transitions"] / 1000, color="grey", lw=0.6, alpha=0.6,
                   label="ensemble fit + checkpoint" if i == 0 else None)
    ax.axvline(res["warmup_transitions"] / 1000, color="k", lw=1, ls=":", label="end of warm-up")
    c = res["config"]
    ax.set(xlabel="transitions added (thousands)", ylabel="MB",
           title=f"{c['transitions'] // 1000}k transitions through a {c['capacity'] // 1000}k buffer: "
                 f"growth after warm-up {res['growth_after_warmup_mb']:+.1f} MB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU run in < 1 min (the QUICK sizes instead of FULL)")
    ap.add_argument("--transitions", type=int,
                    help=f"transitions added in all (default {FULL['transitions']:,}, {QUICK['transitions']:,} "
                         "with --quick)")
    ap.add_argument("--capacity", type=int,
                    help=f"replay-buffer capacity (default {FULL['capacity']:,}, {QUICK['capacity']:,} with --quick)")
    ap.add_argument("--fit-every", type=int,
                    help=f"transitions between ensemble fits and checkpoints (default {FULL['fit_every']:,}, "
                         f"{QUICK['fit_every']:,} with --quick)")
    ap.add_argument("--device", default="cpu", help="device of the buffer and the ensemble")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data and the ensemble")
    ap.add_argument("--out", default=None, help="output folder (default results/memory)")
    return ap


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("transitions", "capacity", "fit_every"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    torch.manual_seed(args.seed)
    res = run(cfg, args.device, args.seed)
    folder = out_dir("memory", args.out)
    write_json(folder / "memory.json", res)
    plot(res, folder / "memory.png")
    print(f"pid {os.getpid()}: peak RSS {res['peak_rss_mb']:.1f} MB, RSS after warm-up "
          f"{res['rss_after_warmup_mb']:.1f} MB -> end {res['rss_end_mb']:.1f} MB "
          f"({res['growth_after_warmup_mb']:+.1f} MB, {res['slope_mb_per_100k_transitions']:+.2f} MB/100k), "
          f"buffer storage {res['buffer_storage_mb']:.2f} MB, {res['seconds']:.1f} s")
    return res


if __name__ == "__main__":
    main()
