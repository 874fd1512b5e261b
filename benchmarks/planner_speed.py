"""Seconds per MPC action against the matrix-product floor and mbrl-lib, measured side by side in one run.

Canonical PETS configuration (docs/design.md): 5 members, 4 x 200 SiLU, CEM population 500, 50 elites,
5 iterations, horizon 30, 20 particles, TS-inf. Every action costs ``iterations * horizon`` ensemble
forwards over ``population * particles`` rows. The *floor* is the time of exactly those batched matrix
products alone (``torch.bmm`` per layer, fp32 with TF32 off, same shapes, same count, nothing else),
so ``action_time / floor`` says how much the rest of the planner (sampling, activations, rewards,
elite selection, Python) costs on top of the arithmetic. On CPU the same products through oneDNN (the
kernel of the fused path, ``torch.ops.mkldnn._linear_pointwise`` per member, no bias, no activation) are
reported as a second floor: on CPUs where MKL's ``bmm`` does not use AVX-512 (e.g. AMD) it is faster.

Modes (``--modes``):
    fp32-eager   the eager model path (``model.fused = False``: ``baddbmm`` on a broadcast bias + SiLU)
    fp32         the fused inference path of ``ProbabilisticEnsemble`` (mbrl/models/ensemble.py)
    bf16         ``MPCAgent(dtype=torch.bfloat16)``: a bf16 model copy, states fed to it in bf16
    bf16-matmul  float32 agent and states, ``model.matmul_dtype = torch.bfloat16`` (bf16 products only)
    fp32+disagreement           fp32 with ``EnsembleDisagreement`` as a reward shaper, its default form (from the
                                propagating members' own predictions, no extra forward)
    fp32+disagreement-candidate the same penalty, every member at each candidate's mean state
    fp32+disagreement-particle  the same penalty on every particle (its form before issue 20)
    fp32+mural                  fp32 with a fitted ``MuralReward`` (meta-NML, ``small`` preset, 2 features: the
                                forward and vertical velocities) as an added reward shaper on every particle

The plug-in modes are also reported as a ratio to the plain ``fp32`` planner in the same round (``x plain``).

Every round times, in turn, the floor(s), one action of each mode and, with ``--anchor``, one action of
mbrl-lib 0.2.0's ``TrajectoryOptimizerAgent`` (same configuration, run by ``benchmarks/_mbrl_lib_anchor.py`` in
the interpreter of ``.venv-mbrllib``, built by ``make mbrl-lib-env``) and the floor in that process. Ratios
are taken within each round and their median is reported, so a loaded machine slows all of them alike.

    OMP_NUM_THREADS=2 python -m benchmarks.planner_speed --anchor --rounds 3       # CPU, canonical
    python -m benchmarks.planner_speed --device cuda [--no-cuda-graphs]            # GPU
    python -m benchmarks.planner_speed --quick --profile                           # small, with op profiles

Writes ``results/planner_speed/planner_speed.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import (
    Anchor,
    HelpFormatter,
    machine,
    matmul_floor,
    out_dir,
    pyplot,
    save_figure,
    write_json,
)
from mbrl.agent import MPCAgent
from mbrl.models import ProbabilisticEnsemble, onednn_fused_available
from mbrl.penalties import EnsembleDisagreement
from mbrl.planning import CEM
from mbrl.tasks import make_task
from mbrl.train import PETSConfig


def planner_spec(c: PETSConfig) -> dict:
    """The planner fields of a library config, as the plain dict that mbrl-lib's side also reads."""
    return dict(ensemble=c.ensemble_size, hidden=c.hidden, population=c.population, elites=c.elites,
                iterations=c.iterations, horizon=c.horizon, particles=c.particles)


CANONICAL = planner_spec(PETSConfig())  # the PETS defaults: 5 x 200^4, CEM 500/50 x 5, horizon 30, 20 particles
QUICK = planner_spec(PETSConfig(population=100, elites=10, iterations=3, horizon=15, particles=5))
MODES = ("fp32-eager", "fp32", "bf16", "bf16-matmul")
PLUGIN_MODES = ("fp32+disagreement", "fp32+disagreement-candidate", "fp32+disagreement-particle", "fp32+mural")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def onednn_floor(in_dim: int, out_dim: int, cfg: dict, dtype: torch.dtype) -> tuple[float, float]:
    """``(wall, CPU)`` seconds for one action's products through oneDNN (CPU): per member, no bias."""
    op = torch.ops.mkldnn._linear_pointwise
    e, rows = cfg["ensemble"], cfg["population"] * cfg["particles"]
    dims = [in_dim, *cfg["hidden"], 2 * out_dim]
    per = -(-rows // e)
    ws = [[(torch.randn(b, a) * 0.05).to(dtype) for _ in range(e)] for a, b in zip(dims[:-1], dims[1:])]
    xs = [[torch.randn(per, a).to(dtype) for _ in range(e)] for a in dims[:-1]]
    steps = cfg["iterations"] * cfg["horizon"]

    def one_action():
        for _ in range(steps):
            for x, w in zip(xs, ws):
                for m in range(e):
                    op(x[m], w[m], None, "none", [], "")

    one_action()
    t0, c0 = time.perf_counter(), time.process_time()
    one_action()
    return time.perf_counter() - t0, time.process_time() - c0


def make_agent(task, cfg: dict, mode: str, device: torch.device, seed: int = 0,
               cuda_graphs: bool | None = None) -> MPCAgent:
    """The MPC agent of ``mode`` (module docstring) on a model with normalisers fitted to a little random data."""
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=cfg["ensemble"], hidden=cfg["hidden"],
                                  device=device, seed=seed)
    g = torch.Generator().manual_seed(seed)
    n = 256
    obs = torch.randn(n, task.obs_dim, generator=g)
    act = torch.rand(n, task.act_dim, generator=g) * 2 - 1
    model.fit((obs, act, obs + 0.01 * torch.randn(n, task.obs_dim, generator=g)), epochs=1, progress=False)
    model.fused = mode != "fp32-eager"
    if mode == "bf16-matmul":
        model.matmul_dtype = torch.bfloat16
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    opt = CEM(population=cfg["population"], elites=cfg["elites"], iterations=cfg["iterations"], alpha=0.1)
    return MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high, optimizer=opt,
                    horizon=cfg["horizon"], particles=cfg["particles"], propagation="ts_inf", dtype=dtype,
                    device=device, seed=seed, cuda_graphs=cuda_graphs, reward_shapers=plugin_shapers(mode, model))


def mural_shaper(obs_dim: int, seed: int = 0):
    """A fitted ``MuralReward`` on two features (observation entries 8-9: HalfCheetah's forward and vertical
    velocities): 20 success examples at forward speed 3-4, 1,000 visited states near rest; ``small`` preset with
    100 classifier steps and 100 meta-updates (enough for timing: a reward's cost does not depend on training)."""
    from safe_density.mural import MuralConfig, MuralReward

    g = torch.Generator().manual_seed(seed)
    ex = torch.zeros(20, obs_dim)
    ex[:, 8], ex[:, 9] = 3 + torch.rand(20, generator=g), 0.3 * torch.randn(20, generator=g)
    visited = 0.5 * torch.randn(1000, obs_dim, generator=g)
    mr = MuralReward(ex, method="meta_nml", seed=seed, mode="add", weight=1.0, state_slice=(8, 10),
                     config=MuralConfig.small(classifier_steps=100, meta_steps=100))
    return mr.update(visited, progress=False)


def plugin_shapers(mode: str, model) -> list:
    """The reward shapers of a plug-in mode (module docstring); none for the plain modes."""
    if mode == "fp32+disagreement":
        return [EnsembleDisagreement(model, 1.0)]
    if mode == "fp32+disagreement-candidate":
        return [EnsembleDisagreement(model, 1.0, granularity="candidate")]
    if mode == "fp32+disagreement-particle":
        return [EnsembleDisagreement(model, 1.0, granularity="particle")]
    if mode == "fp32+mural":
        return [mural_shaper(model.obs_dim)]
    return []


def time_act(agent: MPCAgent, obs, device: torch.device, task) -> tuple[float, float, bool]:
    """``(wall seconds, process CPU seconds, action finite and in bounds)`` of one ``agent.act``."""
    t0, c0 = time.perf_counter(), time.process_time()
    a = np.asarray(agent.act(obs))
    _sync(device)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    ok = bool(np.isfinite(a).all() and (a >= task.action_low - 1e-6).all() and (a <= task.action_high + 1e-6).all())
    return dt, dc, ok


_GROUPS = {"matrix products": ("baddbmm", "bmm", "addmm", "mm", "_linear_pointwise", "matmul", "linear"),
           "activation": ("silu", "relu", "tanh", "elu"), "copy_ (bias broadcast, casts)": ("copy_",)}


def profile_act(agent: MPCAgent, obs, top: int = 12) -> dict:
    """Per-op split (self CPU time) of one ``agent.act`` with ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        agent.act(obs)
    rows = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
    total = sum(r[1] for r in rows) or 1.0
    rows.sort(key=lambda r: -r[1])
    groups = {g: 0.0 for g in (*_GROUPS, "other")}
    for key, t, _ in rows:
        name = key.split("::")[-1]
        g = next((g for g, names in _GROUPS.items() if name in names), "other")
        groups[g] += t / total
    return {"total_self_cpu_s": total / 1e6, "groups": groups,
            "top": [{"op": k, "self_share": t / total, "calls": c} for k, t, c in rows[:top]]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized configuration instead of the canonical one")
    p.add_argument("--task", default="HalfCheetah-v5", help="task whose reward/termination and sizes are used")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES + PLUGIN_MODES,
                   help="planner modes to time (plug-in modes: add fp32, their x-plain reference)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (one action per mode per round)")
    p.add_argument("--anchor", action="store_true", help="also time mbrl-lib 0.2.0 (make mbrl-lib-env)")
    p.add_argument("--profile", action="store_true", help="torch.profiler split of one action per mode")
    p.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, plan eagerly (no CUDA graphs)")
    p.add_argument("--out", default=None, help="output folder (default results/planner_speed)")
    return p


def warm_agents(task, cfg: dict, modes, device: torch.device, cuda_graphs: bool | None) -> tuple[dict, np.ndarray]:
    """``(mode -> agent, start state)``: each agent has acted at the start state (allocations, weight caches,
    kernels; CUDA graphs need two calls)."""
    agents = {m: make_agent(task, cfg, m, device, cuda_graphs=cuda_graphs) for m in modes}
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    env.close()
    for ag in agents.values():
        for _ in range(2 if device.type == "cuda" else 1):
            ag.act(obs)
    return agents, obs


def time_rounds(agents: dict, obs, task, cfg: dict, device: torch.device, rounds: int, cpu_dnn: bool,
                anchor: Anchor | None) -> tuple[dict, dict]:
    """``rounds`` alternating rounds (module docstring): the floor(s), one action of each mode and, with ``anchor``,
    mbrl-lib's action right after the first mode and the floor in its process. Returns ``(name -> [(wall, cpu)
    per round], name -> every action finite and in bounds)``."""
    in_dim, out_dim = task.obs_dim + task.act_dim, task.obs_dim
    modes = list(agents)
    rec: dict[str, list] = {"floor": [], **({"onednn fp32 floor": [], "onednn bf16 floor": []} if cpu_dnn else {}),
                            **({"floor (CUDA graph)": []} if device.type == "cuda" else {}),
                            **{m: [] for m in modes}, **({"mbrl-lib": [], "mbrl-lib floor": []} if anchor else {})}
    ok = {m: True for m in (*modes, *(["mbrl-lib"] if anchor else []))}
    for r in range(rounds):
        rec["floor"].append(matmul_floor(in_dim, out_dim, cfg, device, 1, cpu_time=True))
        if device.type == "cuda":  # the products' GPU time alone, without launch overhead
            rec["floor (CUDA graph)"].append(matmul_floor(in_dim, out_dim, cfg, device, 1, graph=True, cpu_time=True))
        if cpu_dnn:
            rec["onednn fp32 floor"].append(onednn_floor(in_dim, out_dim, cfg, torch.float32))
            rec["onednn bf16 floor"].append(onednn_floor(in_dim, out_dim, cfg, torch.bfloat16))
        for m, ag in agents.items():
            dt, dc, good = time_act(ag, obs, device, task)
            rec[m].append((dt, dc))
            ok[m] &= good
            if anchor and m == modes[0]:  # mbrl-lib right after our first mode: same load
                ans = anchor.ask("act")
                rec["mbrl-lib"].append((ans["seconds"], ans["cpu_seconds"]))
                ok["mbrl-lib"] &= ans["finite_and_in_bounds"]
        if anchor:
            ans = anchor.ask("floor")
            rec["mbrl-lib floor"].append((ans["seconds"], ans["cpu_seconds"]))
        print(f"round {r + 1}/{rounds} (wall ms): " + ", ".join(f"{k} {v[-1][0] * 1e3:.0f}" for k, v in rec.items()),
              flush=True)
    return rec, ok


def ratio_table(rec: dict, ci: int, modes, cpu_dnn: bool, anchor: bool) -> dict:
    """Each timer's median seconds on clock ``ci`` (0: wall, 1: process CPU) and its median within-round ratios:
    to the fp32 floor, to the oneDNN floor (CPU), to mbrl-lib (our modes, with the anchor) and, for mbrl-lib, to
    the floor measured in its own process."""
    def col(k):
        return np.asarray([x[ci] for x in rec[k]])

    floor = col("floor")
    tab = {}
    for k in rec:
        t = col(k)
        row = {"seconds": float(np.median(t)), "x_fp32_floor": float(np.median(t / floor))}
        if cpu_dnn:
            row["x_onednn_fp32_floor"] = float(np.median(t / col("onednn fp32 floor")))
        if anchor and k in modes:
            row["x_mbrl_lib"] = float(np.median(t / col("mbrl-lib")))
        if k in PLUGIN_MODES and "fp32" in rec:
            row["x_plain"] = float(np.median(t / col("fp32")))
        if k == "mbrl-lib":
            row["x_own_process_floor"] = float(np.median(t / col("mbrl-lib floor")))
        tab[k] = row
    return tab


def print_table(tab: dict, ok: dict, title: str) -> None:
    """One clock's :func:`ratio_table` under ``title``."""
    print(title)
    print(f"{'':>26} | {'ms per action':>13} | {'x fp32 floor':>12} | {'x oneDNN floor':>14} | "
          f"{'x mbrl-lib':>10} | {'x plain':>7} | ok")
    for k, row in tab.items():
        if k == "mbrl-lib floor":
            continue
        dnn = f"{row['x_onednn_fp32_floor']:14.2f}" if "x_onednn_fp32_floor" in row else " " * 14
        vs = f"{row['x_mbrl_lib']:10.2f}" if "x_mbrl_lib" in row else " " * 10
        pl = f"{row['x_plain']:7.2f}" if "x_plain" in row else " " * 7
        print(f"{k:>26} | {row['seconds'] * 1e3:13.1f} | {row['x_fp32_floor']:12.2f} | {dnn} | {vs} | {pl} | "
              f"{ok.get(k, '')}")
    if "mbrl-lib" in tab:
        print(f"(mbrl-lib: {tab['mbrl-lib']['x_own_process_floor']:.2f} x the floor measured in its own process)")


def profile_agents(agents: dict, obs) -> dict:
    """:func:`profile_act` of every mode, printed."""
    out = {}
    for m, ag in agents.items():
        prof = profile_act(ag, obs)
        out[m] = prof
        print(f"\nprofile of one action, {m} (self CPU {prof['total_self_cpu_s']:.2f} s): " +
              ", ".join(f"{g} {s * 100:.0f}%" for g, s in prof["groups"].items()))
        for row in prof["top"]:
            print(f"    {row['op']:<34} {row['self_share'] * 100:5.1f}%  {row['calls']:6d} calls")
    return out


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = QUICK if a.quick else CANONICAL
    task = make_task(a.task)
    cpu_dnn = device.type == "cpu" and onednn_fused_available()
    agents, obs = warm_agents(task, cfg, a.modes, device, False if a.no_cuda_graphs else None)
    anchor = Anchor(task, cfg, device) if a.anchor else None
    rec, ok = time_rounds(agents, obs, task, cfg, device, a.rounds, cpu_dnn, anchor)
    anchor_info = anchor.info if anchor else None
    if anchor:
        anchor.close()

    res = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "task": a.task,
           "device": str(device), "machine": machine(), "threads": torch.get_num_threads(),
           "load_average": os.getloadavg(), "rounds": a.rounds, "raw_seconds_wall_cpu": rec,
           "anchor": anchor_info, "finite_and_in_bounds": ok, "clocks": {}}
    for ci, clock in enumerate(("wall", "cpu")):
        tab = res["clocks"][clock] = ratio_table(rec, ci, list(agents), cpu_dnn, anchor is not None)
        what = "wall clock" if clock == "wall" else "process CPU time (all threads)"
        print_table(tab, ok, f"\n{a.task}, {device}, {torch.get_num_threads()} threads, load average "
                             f"{os.getloadavg()[0]:.1f}, {a.rounds} alternating rounds, {what} (medians; ratios "
                             "taken within each round)")

    out = out_dir("planner_speed", a.out)
    write_json(out / "planner_speed.json", res)  # the timings are kept even if a profile below is cut short
    if a.profile:
        res["profile"] = profile_agents(agents, obs)
    write_json(out / "planner_speed.json", res)
    _plot(res, out / "planner_speed.png")
    return res


def _plot(res: dict, path: Path) -> None:
    plt = pyplot()
    tab = res["clocks"]["wall"]
    names = [k for k in tab if k != "mbrl-lib floor"]
    vals = [tab[k]["seconds"] * 1e3 for k in names]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.bar(names, vals, color=[f"C{i}" if i else "0.6" for i in range(len(names))])
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("ms per action (median)")
    ax.set_title(f"MPC action time, {res['device']}, {res['threads']} threads", fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
