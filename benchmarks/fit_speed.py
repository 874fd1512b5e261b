"""Seconds per PETS ensemble fit, ours against mbrl-lib's ``ModelTrainer``, alternating in one run (issue 20, item 5).

The canonical PETS model (5 members, 4 x 200 SiLU, learned variance) is fitted from scratch on the same
``--transitions`` transitions (:func:`benchmarks._common.fit_data`, HalfCheetah's sizes: 17 + 6 inputs) for
``--epochs`` epochs with PETS' settings on both sides: bootstrapped members, minibatch 32 per member, Adam
lr 1e-3, 10 % held out and scored after every epoch, no early stop within the epochs. Ours:
:meth:`mbrl.models.ProbabilisticEnsemble.fit`; mbrl-lib 0.2.0: ``OneDTransitionRewardModel`` + ``ModelTrainer``
(``benchmarks/_mbrl_lib_anchor.py``, its ``fit`` command, in the interpreter of ``.venv-mbrllib``: ``make
mbrl-lib-env``). Each round fits ours, then mbrl-lib's; ratios are taken within rounds and their median reported.
The holdout MSEs printed are each library's own (ours on standardised targets, mbrl-lib's on raw deltas): a check
that both fits learn, not a comparison.

Thread counts: both processes use torch's setting from the environment (``OMP_NUM_THREADS``). Without it, our fit
runs at one thread (:mod:`mbrl.common.threads`) while mbrl-lib uses every core, so set it for a like-for-like run.

    OMP_NUM_THREADS=1 python -m benchmarks.fit_speed --rounds 3
    OMP_NUM_THREADS=2 python -m benchmarks.fit_speed --rounds 3

Writes ``results/fit_speed/fit_speed_<threads>t.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks._common import Anchor, HelpFormatter, fit_data, machine, out_dir, pyplot, save_figure, write_json
from mbrl.models import ProbabilisticEnsemble
from mbrl.tasks import make_task
from mbrl.train import PETSConfig


def fit_ours(obs, act, nxt, cfg: PETSConfig, epochs: int, seed: int = 0) -> dict:
    """One fit of a fresh ensemble (the timer covers ``fit`` only, as on mbrl-lib's side)."""
    model = ProbabilisticEnsemble(obs.shape[1], act.shape[1], ensemble_size=cfg.ensemble_size, hidden=cfg.hidden,
                                  seed=seed)
    data = tuple(torch.as_tensor(x) for x in (obs, act, nxt))
    t0, c0 = time.perf_counter(), time.process_time()
    hist = model.fit(data, epochs=epochs, batch_size=32, lr=1e-3, holdout=0.1, patience=epochs + 1, seed=seed,
                     progress=False)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu_seconds": dc, "val_mse": float(np.mean(hist["holdout_mse"][-1]))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--transitions", type=int, default=10_000, help="transitions to fit on")
    p.add_argument("--epochs", type=int, default=5, help="epochs per fit (PETS: 5 after every episode)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (one fit of each per round)")
    p.add_argument("--no-anchor", action="store_true", help="time ours only (no mbrl-lib environment)")
    p.add_argument("--out", default=None, help="output folder (default results/fit_speed)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    if a.transitions < 20 or a.epochs < 1 or a.rounds < 1:
        raise ValueError("--transitions must be >= 20, --epochs and --rounds >= 1")
    task, cfg = make_task("HalfCheetah-v5"), PETSConfig()
    obs, act, nxt = fit_data(a.transitions, task.obs_dim, task.act_dim)
    spec = dict(ensemble=cfg.ensemble_size, hidden=list(cfg.hidden), population=1, elites=1, iterations=1,
                horizon=1, particles=1)
    anchor = None if a.no_anchor else Anchor(task, spec, torch.device("cpu"), fit_only=True,
                                             fit_transitions=a.transitions, fit_epochs=a.epochs)
    rec: dict[str, list] = {"ours": [], **({"mbrl-lib": []} if anchor else {})}
    for r in range(a.rounds):
        rec["ours"].append(fit_ours(obs, act, nxt, cfg, a.epochs, seed=r))
        if anchor:
            rec["mbrl-lib"].append(anchor.ask("fit"))
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(
            f"{k} {v[-1]['seconds']:.1f} s (holdout MSE {v[-1]['val_mse']:.4f})" for k, v in rec.items()), flush=True)
    if anchor:
        anchor.close()
    threads = torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else 1
    res = {"transitions": a.transitions, "epochs": a.epochs, "model": spec, "machine": machine(),
           "threads": threads, "load_average": os.getloadavg(), "rounds": rec, "summary": {}}
    for k, v in rec.items():
        row = {"seconds": float(np.median([x["seconds"] for x in v])),
               "cpu_seconds": float(np.median([x["cpu_seconds"] for x in v]))}
        if anchor:
            row["x_mbrl_lib"] = float(np.median([x["seconds"] / y["seconds"] for x, y in zip(v, rec["mbrl-lib"])]))
        res["summary"][k] = row
    print(f"\nPETS ensemble fit, {a.transitions} transitions, {a.epochs} epochs, {threads} thread(s), "
          f"{a.rounds} alternating rounds (medians)")
    for k, row in res["summary"].items():
        vs = f", {row['x_mbrl_lib']:.2f}x mbrl-lib" if "x_mbrl_lib" in row else ""
        print(f"  {k:>9}: {row['seconds']:.2f} s wall, {row['cpu_seconds']:.2f} s CPU{vs}")
    out = out_dir("fit_speed", a.out)
    write_json(out / f"fit_speed_{threads}t.json", res)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    names = list(res["summary"])
    ax.bar(names, [res["summary"][k]["seconds"] for k in names], color=["C0", "0.6"][: len(names)])
    ax.set_ylabel("seconds per fit (median)")
    ax.set_title(f"PETS fit, {a.transitions} transitions x {a.epochs} epochs, {threads} thread(s)", fontsize=8)
    save_figure(fig, out / f"fit_speed_{threads}t.png")
    return res


if __name__ == "__main__":
    main()
