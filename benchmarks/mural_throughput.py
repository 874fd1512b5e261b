"""Meta-NML reward throughput: naive per-query adaptation vs the closed-form batched path.

Writes ``results/mural_throughput/throughput.json`` and ``throughput.png``; also times one incremental
``MuralReward.update`` with 10,000 new visited states (2-D maze features, 6-D push features). The equality check runs in
float64 (max abs difference between the two paths on the same states).

    python -m benchmarks.mural_throughput [--quick] [--device cuda] [--hidden 256 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import HelpFormatter, machine, out_dir, pyplot, save_figure, write_json
from safe_density.mural import (
    MetaNMLConfig,
    MuralReward,
    SuccessClassifier,
    balanced_weights,
    meta_nml_fast,
    meta_nml_naive,
)
from safe_density.mural.classifier import init_params


def _timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def update_timing(dev: torch.device, n_visited: int = 10_000, quick: bool = False) -> dict:
    """Wall and CPU seconds of one incremental ``MuralReward.update`` with ``n_visited`` new states (the history
    then holds ``max_visited``), for 2-D maze features and the 6 push features (hand and puck xyz), with the
    preset ``MuralConfig.for_device`` picks; the first (from-scratch) fit is timed too."""
    out = {}
    for dim, name in ((2, "maze_xy"), (6, "push_hand_puck")):
        g = torch.Generator().manual_seed(dim)
        ex = 1.0 + 0.1 * torch.randn(150, dim, generator=g)
        mr = MuralReward(ex, method="meta_nml", seed=0, device=dev)
        t, c = time.perf_counter(), time.process_time()
        mr.update(torch.randn(1000, dim, generator=g) - 1.0, progress=False)
        first = (time.perf_counter() - t, time.process_time() - c)
        rows = []
        for _ in range(2 if quick else 5):
            v = torch.randn(n_visited, dim, generator=g) * 2.0 - 1.0
            t, c = time.perf_counter(), time.process_time()
            mr.update(v, progress=False)
            rows.append((time.perf_counter() - t, time.process_time() - c))
        wall, cpu = np.median(np.array(rows), axis=0)
        out[name] = {"preset": mr.preset, "hidden": list(mr.config.hidden), "history": int(mr.visited.shape[0]),
                     "first_fit_wall_s": first[0], "first_fit_cpu_s": first[1],
                     "incremental_wall_s_median": float(wall), "incremental_cpu_s_median": float(cpu),
                     "threads": torch.get_num_threads()}
        print(name, out[name])
    return out


def plot(res: dict, dev: torch.device, hidden: list[int], n_data: int, path: Path) -> None:
    """States per second of the naive and the fast path, float32 and float64 (log scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = ["float32", "float64"]
    ax.bar([0, 3], [res[n]["naive_states_per_s"] for n in names], label="naive (loop, autograd)")
    ax.bar([1, 4], [res[n]["fast_states_per_s"] for n in names], label="fast (closed form, batched)")
    ax.set_xticks([0.5, 3.5], names)
    ax.set_yscale("log")
    ax.set_ylabel("states / s")
    ax.set_title(f"meta-NML rewards on {dev.type}, MLP {hidden}, N={n_data}")
    ax.legend()
    save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="50 naive and 20,000 fast queries (instead of 300 and 200,000), 2 timed updates (not 5)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden widths of the classifier MLP")
    ap.add_argument("--n-data", type=int, default=1000, help="labelled training states (20 of them successes)")
    ap.add_argument("--out", default=None, help="output folder (default results/mural_throughput)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    dev = torch.device(args.device)
    n_naive, n_fast = (50, 20_000) if args.quick else (300, 200_000)
    g = torch.Generator().manual_seed(0)
    k = 20
    x = torch.cat([torch.tensor([1.0, 1.0]) + 0.1 * torch.randn(k, 2, generator=g),
                   torch.tensor([-1.0, -1.0]) + 0.5 * torch.randn(args.n_data - k, 2, generator=g)])
    y = torch.cat([torch.ones(k), torch.zeros(args.n_data - k)])
    c = balanced_weights(y)
    cfg = MetaNMLConfig(inner_lr=1.0, inner_query_weight=10.0)
    model = SuccessClassifier(2, tuple(args.hidden))
    res = {"machine": machine(), "device": str(dev), "hidden": args.hidden, "n_data": args.n_data}
    for dtype in (torch.float32, torch.float64):
        p = init_params(model, 0, dtype, dev)
        xd, yd, cd = x.to(dev, dtype), y.to(dev, dtype), c.to(dev, dtype)
        s = (3 * torch.randn(n_fast, 2, generator=g)).to(dev, dtype)
        meta_nml_fast(model, p, xd, yd, cd, s[:100], cfg)  # warm-up
        args_ = (model, p, xd, yd, cd)
        r_naive, t_naive = _timed(lambda a=args_, s=s: meta_nml_naive(*a, s[:n_naive], cfg), dev)
        r_fast, t_fast = _timed(lambda a=args_, s=s: meta_nml_fast(*a, s, cfg), dev)
        name = str(dtype).replace("torch.", "")
        res[name] = {"naive_states_per_s": n_naive / t_naive, "fast_states_per_s": n_fast / t_fast,
                     "speedup": (n_fast / t_fast) / (n_naive / t_naive),
                     "max_abs_diff": float((r_naive - r_fast[:n_naive]).abs().max())}
        print(name, res[name])
    res["incremental_update"] = update_timing(dev, n_visited=10_000, quick=args.quick)
    d = out_dir("mural_throughput", args.out)
    write_json(d / "throughput.json", res)
    plot(res, dev, args.hidden, args.n_data, d / "throughput.png")


if __name__ == "__main__":
    main()
