"""Seconds per MPC action against the matrix-product floor measured in the same run.

Canonical PETS configuration (design.md): 5 members, 4 x 200 SiLU, CEM population 500, 50 elites,
5 iterations, horizon 30, 20 particles, TS-inf. Every action costs ``iterations * horizon`` ensemble
forwards over ``population * particles`` rows. The *floor* is the time of exactly those batched matrix
products alone (``torch.bmm`` per layer, fp32 with TF32 off, same shapes, same count, nothing else),
so ``action_time / floor`` says how much the rest of the planner (sampling, activations, rewards,
elite selection, Python) costs on top of the unavoidable arithmetic.

    python benchmarks/planner_speed.py --device cuda            # canonical configuration
    python benchmarks/planner_speed.py --quick                  # CPU-sized configuration

Writes ``results/planner_speed/planner_speed.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, out_dir, write_json  # noqa: E402

from mbrl.agent import MPCAgent  # noqa: E402
from mbrl.models import ProbabilisticEnsemble  # noqa: E402
from mbrl.planning import CEM  # noqa: E402
from mbrl.tasks import make_task  # noqa: E402

CANONICAL = dict(ensemble=5, hidden=(200, 200, 200, 200), population=500, elites=50, iterations=5,
                 horizon=30, particles=20)
QUICK = dict(ensemble=5, hidden=(200, 200, 200, 200), population=100, elites=10, iterations=3,
             horizon=15, particles=5)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_floor(in_dim: int, out_dim: int, cfg: dict, device: torch.device, repeats: int,
                 graph: bool = False) -> float:
    """Seconds for the batched products of one action: iterations * horizon forwards, fp32, no TF32.

    ``graph=True`` (CUDA): the products replayed from a CUDA graph, i.e. their GPU time alone."""
    e, rows = cfg["ensemble"], cfg["population"] * cfg["particles"]
    dims = [in_dim, *cfg["hidden"], 2 * out_dim]
    per = -(-rows // e)
    ws = [torch.randn(e, a, b, device=device) * 0.05 for a, b in zip(dims[:-1], dims[1:])]
    xs = [torch.randn(e, per, a, device=device) for a in dims[:-1]]
    outs = [torch.empty(e, per, b, device=device) for b in dims[1:]]
    steps = cfg["iterations"] * cfg["horizon"]

    def one_action():
        for _ in range(steps):
            for x, w, o in zip(xs, ws, outs):
                torch.bmm(x, w, out=o)

    run = one_action
    if graph and device.type == "cuda":  # the products' GPU time alone, without launch overhead
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            one_action()
        torch.cuda.current_stream(device).wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            one_action()
        run = g.replay
    run()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def action_time(task, cfg: dict, dtype: torch.dtype, device: torch.device, repeats: int, seed: int = 0,
                cuda_graphs: bool | None = None) -> dict:
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=cfg["ensemble"], hidden=cfg["hidden"],
                                  device=device, seed=seed)
    # normalisers from a little random data so the forward is the trained-model forward
    g = torch.Generator().manual_seed(seed)
    n = 256
    obs = torch.randn(n, task.obs_dim, generator=g)
    act = torch.rand(n, task.act_dim, generator=g) * 2 - 1
    model.fit((obs, act, obs + 0.01 * torch.randn(n, task.obs_dim, generator=g)), epochs=1, progress=False)
    opt = CEM(population=cfg["population"], elites=cfg["elites"], iterations=cfg["iterations"], alpha=0.1)
    agent = MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high, optimizer=opt,
                     horizon=cfg["horizon"], particles=cfg["particles"], propagation="ts_inf", dtype=dtype,
                     device=device, seed=seed, cuda_graphs=cuda_graphs)
    env = task.make_env()
    o, _ = env.reset(seed=seed)
    agent.act(o)  # warm-up (allocations, kernels, graphs)
    agent.act(o)
    _sync(device)
    times, actions = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = agent.act(o)
        _sync(device)
        times.append(time.perf_counter() - t0)
        actions.append(np.asarray(a))
    env.close()
    return {"seconds_per_action": float(np.median(times)), "all": times,
            "finite_and_in_bounds": bool(all(np.isfinite(x).all() and (x >= task.action_low - 1e-6).all()
                                             and (x <= task.action_high + 1e-6).all() for x in actions))}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized configuration instead of the canonical one")
    p.add_argument("--task", default="HalfCheetah-v5", help="task whose reward/termination and sizes are used")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="planner precisions to time")
    p.add_argument("--repeats", type=int, default=5, help="timed actions per setting (median reported)")
    p.add_argument("--out", default=None, help="output folder (default results/planner_speed)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = QUICK if a.quick else CANONICAL
    task = make_task(a.task)
    floor = matmul_floor(task.obs_dim + task.act_dim, task.obs_dim, cfg, device, a.repeats)
    res = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "task": a.task,
           "device": str(device), "machine": machine(), "fp32_matmul_floor_s": floor, "modes": {}}
    print(f"fp32 matrix-product floor (eager products): {floor * 1e3:.2f} ms per action")
    if device.type == "cuda":
        gfloor = matmul_floor(task.obs_dim + task.act_dim, task.obs_dim, cfg, device, a.repeats, graph=True)
        res["fp32_matmul_floor_graphed_s"] = gfloor
        print(f"fp32 matrix-product floor (products replayed from a CUDA graph): {gfloor * 1e3:.2f} ms per action")
    graph_modes = [None] if device.type != "cuda" else [False, True]
    for name in a.dtypes:
        for g in graph_modes:
            label = name if g is None else f"{name}{'+graphs' if g else ' eager'}"
            r = action_time(task, cfg, getattr(torch, name), device, a.repeats, cuda_graphs=g)
            r["ratio_to_fp32_floor"] = r["seconds_per_action"] / floor
            if "fp32_matmul_floor_graphed_s" in res:
                r["ratio_to_graphed_floor"] = r["seconds_per_action"] / res["fp32_matmul_floor_graphed_s"]
            res["modes"][label] = r
            extra = f", {r['ratio_to_graphed_floor']:.2f} x graphed floor" if "ratio_to_graphed_floor" in r else ""
            print(f"{label:>16}: {r['seconds_per_action'] * 1e3:.2f} ms per action = "
                  f"{r['ratio_to_fp32_floor']:.2f} x floor{extra} (finite & in bounds: {r['finite_and_in_bounds']})")
    out = out_dir("planner_speed", a.out)
    write_json(out / "planner_speed.json", res)
    _plot(res, out / "planner_speed.png")
    return res


def _plot(res: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = ["fp32 floor", *res["modes"]]
    vals = [res["fp32_matmul_floor_s"] * 1e3, *[m["seconds_per_action"] * 1e3 for m in res["modes"].values()]]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(names, vals, color=["0.6", "C0", "C1", "C2", "C3", "C4"][: len(names)])
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per action")
    ax.set_title(f"MPC action time on {res['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
