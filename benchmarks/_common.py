"""Code shared by the benchmark scripts (the only module of ``benchmarks`` that a script imports).

* output folders, JSON, figures and the help formatter of every script;
* :func:`matmul_floor`, the matrix-product floor of ``planner_speed``, also measured by ``_mbrl_lib_anchor``
  in mbrl-lib's interpreter, and :func:`fit_data`, the transitions both sides of ``fit_speed`` train on;
* the Hopper LDM pipeline that ``hopper_ldm`` and ``demo`` run (behaviour data, dynamics ensemble, density,
  LDM, thresholds, the MPC agent and one episode toward a target);
* the wrapped-policy pipeline that ``ldm_wrap_policy`` and ``demo`` run (the forward policy's data and LDM, one
  episode of the perturbed policy, bare or filtered).

Only the standard library, numpy and torch are imported at module level: ``_mbrl_lib_anchor.py`` loads this
file for :func:`matmul_floor` under mbrl-lib's interpreter, where ``mbrl`` is mbrl-lib and ``safe_density`` is
not installed. The library (``mbrl``, ``safe_density``) is imported inside the functions that use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

ANCHOR_PY = Path(__file__).resolve().parents[1] / ".venv-mbrllib" / "bin" / "python"

if TYPE_CHECKING:  # annotations only (see the module docstring)
    from mbrl.agent import MPCAgent
    from mbrl.train import PETSConfig
    from safe_density.ldm import LDMConfig, LyapunovDensityModel

os.environ.setdefault("MPLBACKEND", "Agg")


# ------------------------------------------------------------------------------------ output, help, figures
def out_dir(name: str, out: str | None) -> Path:
    """``results/<name>`` (or ``out``), created."""
    p = Path(out) if out else Path("results") / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
            "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, data: dict) -> None:
    from mbrl.common.serialization import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=float))
    print(f"wrote {path}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every script's ``--help``: the description's line breaks kept, and ``(default: X)`` after an option's
    help unless the help already names its default or there is no value to show (a flag, or ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (the scripts write PNG files and never open windows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120, tight: bool = True) -> None:
    """Write ``fig`` to ``path`` (after ``tight_layout`` unless ``tight=False``), close it and say where."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    print(f"wrote {path}")


def ray_runtime_env() -> dict:
    """Ray's runtime environment for a grid's workers: they import ``benchmarks.*`` (the grid's function and
    this module) from the folder that holds the package: a checkout's root or the wheel's share/safe-density."""
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}}


# ------------------------------------------------------------------------------------ planner_speed's floor
class Anchor:
    """mbrl-lib 0.2.0 in its own interpreter (benchmarks/_mbrl_lib_anchor.py): its planner (``planner_speed``) and
    its ``ModelTrainer`` (``fit_speed``), asked one JSON command at a time; ``extra`` joins the spec it is sent."""

    def __init__(self, task, cfg: dict, device: torch.device, python: Path | None = None, **extra):
        python = Path(python) if python is not None else ANCHOR_PY
        if not Path(python).exists():
            raise FileNotFoundError(f"{python} not found: run `make mbrl-lib-env` first")
        spec = {**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                "obs_dim": task.obs_dim, "act_dim": task.act_dim, "device": str(device),
                "action_low": np.asarray(task.action_low, float).tolist(),
                "action_high": np.asarray(task.action_high, float).tolist(), "warmup": 1, **extra}
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # cwd outside the repository, so that `import mbrl` finds mbrl-lib and not this project
        self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve().parent / "_mbrl_lib_anchor.py"),
                                      json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd="/", env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mbrl-lib anchor exited (code {self.proc.poll()})")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def fit_data(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(obs[n, O], act[n, A], next_obs[n, O])`` float32, the same in any process for the same arguments: the
    transitions on which ``fit_speed`` times our ensemble fit and mbrl-lib's ``ModelTrainer`` (a smooth random
    map plus noise, so the models have something to learn)."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, act_dim)).astype(np.float32)
    w = rng.standard_normal((obs_dim + act_dim, obs_dim)).astype(np.float32) / np.sqrt(obs_dim + act_dim)
    nxt = obs + 0.1 * np.tanh(np.concatenate([obs, act], 1) @ w) + 0.01 * rng.standard_normal((n, obs_dim))
    return obs, act, nxt.astype(np.float32)


def matmul_floor(in_dim: int, out_dim: int, cfg: dict, device: torch.device, repeats: int,
                 graph: bool = False, cpu_time: bool = False) -> float | tuple[float, float]:
    """Seconds for the batched products of one action: ``iterations * horizon`` forwards, fp32, no TF32.

    One ``torch.bmm`` per layer over ``[E, ceil(population * particles / E), .]`` rows into preallocated
    outputs, nothing else (median of ``repeats``). ``graph=True`` (CUDA): replayed from a CUDA graph, i.e.
    the products' GPU time alone. ``cpu_time=True``: ``(wall seconds, process CPU seconds)`` medians."""
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
    if graph and device.type == "cuda":
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
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    if cpu_time:
        return float(np.median(times)), float(np.median(cpus))
    return float(np.median(times))


# ------------------------------------------------------------------------------------ Hopper: MPC and the LDM
def _quick_pets() -> PETSConfig:
    """The CPU-sized planner and model: overrides of the library's PETS defaults (``mbrl.train.PETSConfig``)."""
    from mbrl.train import PETSConfig

    return PETSConfig(hidden=(128, 128, 128), epochs_per_episode=25, population=64, elites=8, iterations=3,
                      horizon=8, particles=4)


def _quick_ldm() -> LDMConfig:
    """The LDM: the library's defaults (``LDMConfig``) with more steps and a faster target network on this data."""
    from safe_density.ldm import LDMConfig

    return LDMConfig(steps=4000, tau=0.05, density_components=16)


@dataclasses.dataclass(frozen=True)
class HopperSettings:
    """One run's settings of the Hopper LDM pipeline (``hopper_ldm``'s module docstring); the defaults are its
    ``--preset quick``. ``pets`` (model, optimiser, horizon, particles; ``epochs_per_episode`` is the
    ensemble's training epochs on the behaviour data) and ``ldm`` are overrides of the library's configs; the
    other fields are this experiment's own."""

    pets: PETSConfig = dataclasses.field(default_factory=_quick_pets)
    ldm: LDMConfig = dataclasses.field(default_factory=_quick_ldm)
    data: str = "policies"                      # "policies" (shipped PPO hoppers) or "gait" (scripted fallback)
    data_noises: tuple[float, ...] = (0.1, 0.2, 0.3)
    data_episodes: int = 4                      # per policy and noise level
    data_steps: int = 400
    drop_before_fall: int = 10
    density: str = "gmm"                        # "gmm" or "flow" (the authors' neural-spline flow)
    episode_steps: int = 400                    # the backward data reach x = -1 at about step 280
    reach_tol: float = 0.2
    seeds: int = 5
    targets: tuple[float, ...] = (2.0, -1.0)
    # the authors' rule: c = a percentile of E on the data, the same c for the LDM and the greedy rows
    quantiles: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 0.99)
    loose_offsets: tuple[float, ...] = (20.0, 200.0)   # c = the data's largest cost + offset: past the data
    disagreement_weights: tuple[float, ...] = (1.0, 10.0)
    wrap_quantiles: tuple[float, ...] = (0.5,)
    projection_samples: int = 2048              # actions sampled at the real state to project an infeasible plan


def target_reward(target: float):
    def reward_fn(obs, act, next_obs):
        return 1.0 - (next_obs[..., 0] - target).abs().clamp(max=2.0) / 2.0
    return reward_fn


def collect(s: HopperSettings, seed: int, task) -> dict:
    """Behaviour data (step 1): the shipped policies, or the scripted gait with ``data="gait"``."""
    from mbrl.policies import collect_hopper_data
    from mbrl.policies.gait import collect_gait_data

    if s.data == "gait":
        return collect_gait_data(noises=s.data_noises, episodes_per_setting=s.data_episodes,
                                 max_steps=s.data_steps, seed=seed, task=task)
    if s.data != "policies":
        raise ValueError(f"data must be 'policies' or 'gait', got {s.data!r}")
    return collect_hopper_data(noises=s.data_noises, episodes_per_setting=s.data_episodes, max_steps=s.data_steps,
                               seed=seed, task=task)


def make_density(s: HopperSettings, seed: int, device):
    from safe_density.density import FlowDensity, GaussianMixtureDensity

    if s.density == "flow":   # the authors' neural-spline flow (8 coupling layers, hidden 256)
        return FlowDensity("nsf", transforms=8, hidden=(256, 256), steps=20_000, device=device, seed=seed)
    return GaussianMixtureDensity(s.ldm.density_components, device=device, seed=seed)


def fit_ldm(s: HopperSettings, data: dict, task, seed: int, device, progress: bool = True):
    """Density and LDM on ``data`` without the steps just before falls; returns ``(ldm, obs, act)``."""
    from mbrl.policies import keep_before_falls
    from safe_density.ldm import LyapunovDensityModel

    keep = keep_before_falls(data["terminated"], data["episode"], s.drop_before_fall)
    o, a, o2 = (torch.as_tensor(data[k][keep]) for k in ("obs", "act", "next_obs"))
    ldm = LyapunovDensityModel(task.obs_dim, task.act_dim, task.action_low, task.action_high,
                               density=make_density(s, seed, device), config=s.ldm,
                               obs_indices=range(1, task.obs_dim), device=device, seed=seed)
    ldm.fit(o, a, o2, progress=progress)
    return ldm, o, a


def thresholds(s: HopperSettings, ldm, o: torch.Tensor, a: torch.Tensor) -> tuple[dict[str, tuple], dict[str, float]]:
    """By the library's one threshold rule (:meth:`LyapunovDensityModel.calibrate`): ``label -> (quantile, c_ldm,
    c_greedy)`` for the authors' rule (``rule="energy"``: a percentile of the data's E, the same c for both), then
    thresholds past the data (the largest G / E on the data, quantile 1, plus an offset); and the wrapper rows'
    ``quantile -> c`` (the same rule). Leaves ``ldm`` calibrated at the median G (its default threshold)."""
    out = {}
    for q in s.quantiles:
        c = ldm.calibrate(o, a, q, rule="energy")
        out[f"q{q:g}"] = (q, c, c)
    if s.loose_offsets:
        g_max = ldm.calibrate(o, a, 1.0)
        e_max = ldm.calibration["energy"]
        out.update({f"max+{off:g}": (None, g_max + off, e_max + off) for off in s.loose_offsets})
    wrap = {f"{q:g}": ldm.calibrate(o, a, q, rule="energy") for q in s.wrap_quantiles}
    ldm.calibrate(o, a, 0.5)   # stored with the model: the default threshold of ldm.constraint()
    return out, wrap


def prepare_hopper(s: HopperSettings, seed: int, device, progress: bool = True) -> dict:
    """Behaviour data, dynamics ensemble, density and LDM (steps 1-2 of ``hopper_ldm``'s module docstring)."""
    from mbrl.models import ProbabilisticEnsemble
    from mbrl.tasks import make_task

    task = make_task("Hopper-v5")
    t0 = time.perf_counter()
    data = collect(s, seed, task)
    t_data = time.perf_counter() - t0
    n, eps = data["obs"].shape[0], data["fell"].shape[0]
    print(f"behaviour data ({s.data}): {n} transitions, {eps} episodes, {int(data['fell'].sum())} falls "
          f"({t_data:.1f} s)")
    model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=s.pets.ensemble_size,
                                  hidden=s.pets.hidden, device=device, seed=seed)
    fit = model.fit((data["obs"], data["act"], data["next_obs"]), epochs=s.pets.epochs_per_episode,
                    batch_size=s.pets.batch_size, lr=s.pets.lr, holdout=s.pets.holdout, progress=progress, seed=seed)
    ldm, o, a = fit_ldm(s, data, task, seed, device, progress)
    with torch.no_grad():
        g_data, e_data = ldm.value(o, a).cpu().numpy(), ldm.energy(o, a).cpu().numpy()
    th, wrap = thresholds(s, ldm, o, a)
    print("thresholds (label -> c for G and for E):", {k: (round(v[1], 2), round(v[2], 2)) for k, v in th.items()})
    return {"task": task, "data": data, "model": model, "ldm": ldm, "thresholds": th, "wrap_thresholds": wrap,
            "g_data": g_data,
            "e_data": e_data, "ldm_transitions": int(o.shape[0]), "data_seconds": t_data,
            "model_holdout_mse": float(np.mean(fit["holdout_mse"][-1]))}


def make_agent(s: HopperSettings, prep: dict, target: float, constraints=(), reward_shapers=(), seed: int = 0,
               device=None, reward_fn=None) -> MPCAgent:
    """The library's PETS agent (:func:`mbrl.train.make_agent` with ``s.pets``) hopping to ``target``."""
    from mbrl import train

    agent = train.make_agent(prep["task"], prep["model"], s.pets, device, seed, constraints, reward_shapers,
                             reward_fn=reward_fn or target_reward(target))
    agent.projection_samples = s.projection_samples
    return agent


def next_feasible_fraction(ldm, obs: np.ndarray, act: np.ndarray, cost: np.ndarray, c: float, greedy: bool,
                           n: int = 1024, seed: int = 0) -> float | None:
    """Of the executed pairs with cost <= c, the fraction whose next real state has a sampled action with cost
    <= c (``n`` uniform actions; the LDM promises one exists). ``None`` when no executed pair was feasible."""
    idx = np.flatnonzero(cost[:-1] <= c)
    if idx.size == 0:
        return None
    nxt = torch.as_tensor(obs[idx + 1], dtype=torch.float32)
    box = ldm.action_box
    cand = box.sample(idx.size, n, generator=torch.Generator().manual_seed(seed))
    cand = torch.cat([cand, torch.as_tensor(act[idx + 1], dtype=torch.float32)[:, None]], 1)
    fn = ldm.energy if greedy else ldm.value
    with torch.no_grad():
        best = fn(nxt[:, None].expand(-1, n + 1, -1), cand).min(1).values.numpy()
    return float(np.mean(best <= c))


def run_episode(task, controller, model, ldm, target: float, steps: int, seed: int, threshold=None,
                greedy: bool = False, reach_tol: float | None = 0.2) -> dict:
    """One episode until a fall, the target (within ``reach_tol``) or ``steps``; returns falls, reached, steps,
    distance, progress, model error, the real cost of the executed pairs and timing."""
    env = task.make_env()
    obs, _ = env.reset(seed=seed)
    x0 = float(obs[0])
    fell, reached, errs, times, pairs_o, pairs_a, xs = False, False, [], [], [obs], [], [x0]
    for _ in range(steps):
        t0 = time.perf_counter()
        act = controller.act(obs) if hasattr(controller, "act") else controller(obs)
        times.append(time.perf_counter() - t0)
        nxt, _, term, trunc, _ = env.step(act)
        pairs_a.append(act)
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)[None]
            a = torch.as_tensor(act, dtype=torch.float32)[None]
            pred = model.predict(o, a, deterministic=True).mean(0)[0].numpy()
        errs.append(float(np.mean((pred - nxt) ** 2)))
        obs = nxt
        pairs_o.append(obs)
        xs.append(float(obs[0]))
        fell = bool(term)
        reached = reach_tol is not None and abs(obs[0] - target) <= reach_tol
        if term or trunc or reached:
            break
    env.close()
    po, pa = np.asarray(pairs_o[:-1], np.float32), np.asarray(pairs_a, np.float32)
    with torch.no_grad():
        g, e = ldm.value(po, pa).cpu().numpy(), ldm.energy(po, pa).cpu().numpy()
    stats = getattr(getattr(controller, "controller", controller), "stats", {})
    out = {"fell": fell, "reached": bool(reached), "steps": len(errs), "distance": float(abs(obs[0] - target)),
           "x": float(obs[0]), "progress": float(abs(x0 - target) - abs(obs[0] - target)),
           "model_mse": float(np.mean(errs)), "seconds_per_action": float(np.median(times)),
           "g_mean": float(np.mean(g)), "g_max": float(np.max(g)), "infeasible_plans": int(stats.get("infeasible", 0)),
           "projected": int(stats.get("projected", 0)), "xs": xs}
    if threshold is not None:
        cost = e if greedy else g
        out["real_feasible_fraction"] = float(np.mean(cost <= threshold))  # the row's own cost
        out["next_feasible_fraction"] = next_feasible_fraction(ldm, np.asarray(pairs_o[:-1], np.float32), pa, cost,
                                                               threshold, greedy, seed=seed)
    if hasattr(controller, "infeasible_count"):
        out["infeasible_plans"] = int(controller.infeasible_count)
    return out


# ------------------------------------------------------------------------------------ Hopper: a wrapped policy
@dataclasses.dataclass(frozen=True)
class WrapSettings:
    """One run's settings of the wrapped-policy pipeline (``ldm_wrap_policy``'s module docstring); the defaults
    are its ``--preset quick``. The LDM is an override of the library's ``LDMConfig``."""

    ldm: LDMConfig = dataclasses.field(default_factory=_quick_ldm)
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


def prepare_wrap(s: WrapSettings, seed: int, cache: Path) -> dict:
    """Forward-policy data, density and LDM, saved to ``cache``; returns the thresholds and data summary."""
    from mbrl.policies import collect_hopper_data, keep_before_falls
    from mbrl.tasks import make_task
    from safe_density.density import GaussianMixtureDensity
    from safe_density.ldm import LyapunovDensityModel

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
    """The LDM that :func:`prepare_wrap` saved in ``cache`` (loaded once per process: a Ray worker's)."""
    from safe_density.ldm import LyapunovDensityModel

    if cache not in _LDM:
        _LDM[cache] = LyapunovDensityModel.load(Path(cache) / "ldm")
    return _LDM[cache]


def wrap_episode(cell: tuple, filt: tuple, seed: int, cache: str, settings: WrapSettings, threshold: dict) -> dict:
    """One grid point (a Ray task): filter ``(method, quantile)`` around the noisy forward policy in perturbed
    Hopper-v5."""
    from mbrl.policies import load_hopper_policy
    from mbrl.tasks import make_task
    from safe_density.ldm import DensityConstrainedActionWrapper, DensityConstrainedController

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
    if filt is not None:
        filt.reset(seed=10_000 + seed)   # the filter's sampling restarts from the episode's seed, as the env wrapper's
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
