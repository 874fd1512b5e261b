"""Reward heat-maps on a 2-D maze: plain classifier vs exact CNML vs meta-NML (MURAL, Fig. 2 style).

The maze is the unit square with two walls; the goal (10 success examples) is behind the second wall;
the "agent" explored only the first corridor (visited states, label 0). Writes
``results/mural_reward_shape/reward_shape.png`` and ``reward_shape.json`` (Pearson correlation of
meta-NML with exact CNML on the free cells of the grid).

    python -m benchmarks.mural_reward_shape [--quick]
    python -m benchmarks.mural_reward_shape --defaults   # the shape at MuralReward's defaults (README table)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import HelpFormatter, machine, out_dir, pyplot, save_figure, write_json
from safe_density.mural import MuralConfig, MuralReward

# walls: (x0, x1, y0, y1) rectangles in [0, 1]^2
WALLS = [(0.3, 0.35, 0.0, 0.7), (0.65, 0.7, 0.3, 1.0)]


def free(p: np.ndarray) -> np.ndarray:
    ok = np.ones(len(p), bool)
    for x0, x1, y0, y1 in WALLS:
        ok &= ~((p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1))
    return ok


def maze_data(rng: np.random.Generator, n_visited: int):
    goal = np.array([0.85, 0.15]) + 0.03 * rng.standard_normal((10, 2))
    # the agent explored the first corridor and the top of the second one
    v = rng.uniform([0.0, 0.0], [0.6, 1.0], (4 * n_visited, 2))
    v = v[free(v) & ((v[:, 0] < 0.3) | (v[:, 1] > 0.6))][:n_visited]
    return goal, v


def shape_problem(kind: str, seed: int = 0):
    """Two small 2-D problems as a new user builds them: success examples and visited states placed off the
    origin, in the units the user happens to have (``blob``: 20 examples beside 200 visited states; ``disc``:
    300 visited states filling a disc, 30 examples at its edge)."""
    rng = np.random.default_rng(seed)
    if kind == "blob":
        ex = np.array([2.0, 1.0]) + 0.15 * rng.standard_normal((20, 2))
        vis = 0.5 * rng.standard_normal((200, 2))
    else:
        th, r = rng.uniform(0, 2 * np.pi, 300), 3 * np.sqrt(rng.uniform(0, 1, 300))
        vis = np.stack([r * np.cos(th), r * np.sin(th)], 1)
        ex = np.array([3.5, 0.0]) + 0.2 * rng.standard_normal((30, 2))
    allp = np.concatenate([ex, vis])
    c, span = allp.mean(0), allp.std(0).mean()
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    reach = ((allp - c) @ dirs.T).max(0)   # the data's extent in each direction
    novel = np.concatenate([c + dirs * (reach + k * span)[:, None] for k in (2.0, 6.0, 50.0)])
    lo, hi = allp.min(0) - 0.5 * np.ptp(allp, 0), allp.max(0) + 0.5 * np.ptp(allp, 0)
    g = [np.linspace(a, b, 9) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*g, indexing="xy"), -1).reshape(-1, 2)
    return ex, vis, novel, grid


def defaults_table() -> list[dict]:
    """The reward at the examples, at visited states and on novel states, and the correlation with exact CNML on the
    grid, of each method at ``MuralReward(success, method)`` defaults on both :func:`shape_problem` s (what
    ``tests/safe_density/test_mural.py`` asserts)."""
    rows = []
    for kind in ("blob", "disc"):
        ex, vis, novel, grid = shape_problem(kind)
        maps = {}
        for m in ("cnml", "meta_nml", "classifier"):
            t = time.perf_counter()
            mr = MuralReward(ex, method=m).update(vis, progress=False)
            fit_s = time.perf_counter() - t
            maps[m], rn = mr(grid).numpy(), mr(novel).numpy()
            rows.append({"problem": kind, "method": m, "examples": float(mr(ex).mean()),
                         "visited": float(mr(vis).mean()), "novel_min": float(rn.min()),
                         "novel_max": float(rn.max()), "fit_s": fit_s})
        for r in rows[-3:]:
            r["corr_with_cnml"] = float(np.corrcoef(maps[r["method"]], maps["cnml"])[0, 1])
            print(" | ".join(f"{k} {v:.2f}" if isinstance(v, float) else str(v) for k, v in r.items()), flush=True)
    return rows




def history_sweep(sizes=(300, 3000, 10000), seed: int = 0) -> dict:
    """Meta-NML reward at the examples, at visited states and at novel states as the visited history grows
    (one first fit on 300 states, then incremental updates), with ``support_size=64`` (the default, as the
    official code's 64-point meta-tasks) and ``support_size=None`` (data weights sum to N)."""
    rng = np.random.default_rng(seed)
    goal = np.array([0.85, 0.15]) + 0.03 * rng.standard_normal((10, 2))
    novel = np.array([[0.85, 0.85], [0.5, 0.15], [0.95, 0.5]])  # free, never visited
    out = {}
    for support in (64.0, None):
        mr = MuralReward(goal, method="meta_nml", seed=seed, config=MuralConfig.small(support_size=support))
        rows, have = [], 0
        for n in sizes:
            _, v = maze_data(rng, n - have)
            mr.update(v, progress=False)
            have = n
            hist = mr.visited.numpy()
            rows.append({"history": int(len(hist)), "r_examples": float(mr(goal).mean()),
                         "r_visited": float(mr(hist[-500:]).mean()), "r_novel": float(mr(novel).mean())})
            print(f"support_size={support}: {rows[-1]}")
        out[str(support)] = rows
    return out


def plot(maps: dict, n: int, visited: np.ndarray, goal: np.ndarray, corr: float, corr_clf: float,
         path: Path) -> None:
    """The three reward maps side by side, walls, visited states and success examples on each."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (name, m) in zip(axes, maps.items()):
        im = ax.imshow(m.reshape(n, n), origin="lower", extent=(0, 1, 0, 1), vmin=0, vmax=1, cmap="viridis")
        for x0, x1, y0, y1 in WALLS:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, color="k"))
        ax.scatter(*visited.T, s=3, c="w", alpha=0.5, label="visited")
        ax.scatter(*goal.T, s=12, c="r", marker="*", label="success examples")
        ax.set_title(name)
    axes[0].legend(loc="upper right", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.8, label="reward")
    fig.suptitle(f"MURAL rewards; corr(meta-NML, CNML) = {corr:.2f}, corr(classifier, CNML) = {corr_clf:.2f}")
    save_figure(fig, path, dpi=110, tight=False)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a 25 x 25 grid, 150 visited states and 400 meta-steps (instead of 50 x 50, 400, 1000)")
    ap.add_argument("--history", action="store_true", help="also sweep the visited-history size (support_size)")
    ap.add_argument("--defaults", action="store_true",
                    help="only the table of the reward's shape at MuralReward's defaults on two 2-D problems")
    ap.add_argument("--out", default=None, help="output folder (default results/mural_reward_shape)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.defaults:
        d = out_dir("mural_reward_shape", args.out)
        write_json(d / "defaults.json", {"machine": machine(), "rows": defaults_table()})
        return
    rng = np.random.default_rng(0)
    goal, visited = maze_data(rng, 150 if args.quick else 400)
    n = 25 if args.quick else 50
    g = np.linspace(0, 1, n)
    grid = np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    mask = free(grid)
    cfg = MuralConfig.small(meta_steps=400 if args.quick else 1000)
    maps, times = {}, {}
    for method in ("classifier", "cnml", "meta_nml"):
        mr = MuralReward(goal, method=method, seed=0, config=cfg)
        t = time.perf_counter()
        mr.update(visited, progress=False)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        r = mr(grid).numpy()
        times[method] = {"fit_s": t_fit, "reward_s": time.perf_counter() - t}
        maps[method] = np.where(mask, r, np.nan)
        print(method, times[method])
    corr = float(np.corrcoef(maps["meta_nml"][mask], maps["cnml"][mask])[0, 1])
    corr_clf = float(np.corrcoef(maps["classifier"][mask], maps["cnml"][mask])[0, 1])
    d = out_dir("mural_reward_shape", args.out)
    write_json(d / "reward_shape.json", {"machine": machine(), "quick": args.quick, "grid": n,
                                         "corr_meta_nml_vs_cnml": corr, "corr_classifier_vs_cnml": corr_clf,
                                         "times": times, "n_visited": len(visited),
                                         "history_sweep": history_sweep() if args.history else None})
    plot(maps, n, visited, goal, corr, corr_clf, d / "reward_shape.png")
    print(f"corr(meta-NML, CNML) = {corr:.3f}")


if __name__ == "__main__":
    main()
