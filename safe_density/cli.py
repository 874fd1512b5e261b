"""``safe-density``: the command-line interface.

    safe-density pets --task InvertedPendulum-v5 --episodes 5 --out runs/ip    # train/evaluate PETS
    safe-density fit-ldm --buffer runs/ip/checkpoint/buffer --out runs/ip/ldm  # LDM from a saved buffer
    safe-density mural-reward --examples ex.npy --visited seen.npy --states q.npy --out rewards/
    safe-density bench hopper_ldm --quick                                      # any benchmark script
    safe-density demo                                                          # the main job

``bench NAME`` and ``demo`` run ``python -m benchmarks.NAME`` (``benchmarks.demo``) from a checkout's
``benchmarks/`` package or, from an installed wheel, the copy it ships under
``<prefix>/share/safe-density/benchmarks``; every option after NAME is the script's own (``bench NAME --help``,
``demo --help``), and results go to ``./results``.

Every command writes its results as JSON (and a PNG where a picture helps) and prints where they are.
A user error (a missing file, a nonsense value, an option that does not fit the data) is reported as one
line naming the option, with exit status 2; set SAFE_DENSITY_DEBUG=1 to see the Python traceback instead.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mbrl.common.argtypes import device as _device
from mbrl.common.argtypes import int_at_least as _int_at_least
from mbrl.common.argtypes import real as _real
from mbrl.train import task_name as _task_name
from safe_density.ldm.learned import THRESHOLD_RULES, LDMConfig

__all__ = ["UsageError", "build_parser", "main"]

#: ``fit-ldm``'s defaults are the library's (:class:`~safe_density.ldm.LDMConfig`): 2000 gradient steps take about a
#: minute on 2 CPU cores for a few thousand transitions (README "Used by"); ``--steps`` asks for more.
LDM_DEFAULTS = LDMConfig()


class UsageError(Exception):
    """A user error in a command-line option: reported as ``argument OPTION: message`` with exit status 2."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"argument {option}: {message}")
        self.option = option


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (``prog: error: message``) with exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        message = " ".join(str(message).split())  # one line, whatever the library's message looked like
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default (unless the help text already says it, or there is none to
    show: a flag, or ``None``) and keeps the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        no_default = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or no_default or not action.option_strings:
            return text
        return super()._get_help_string(action)


# ------------------------------------------------------------------------------------ helpers
def _load_array(path: str, option: str) -> np.ndarray:
    """``.npy`` (never unpickled) or ``.csv``/``.txt`` (comma or whitespace separated) -> float32 ``[N, D]``.

    Raises :class:`UsageError` naming ``option`` for a missing file, a pickled (object) array, text that
    does not parse as numbers, NaN/inf, or an empty array.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(option, f"no such file {path}")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise UsageError(option, f"{path} holds pickled Python objects; only numeric arrays are read "
                                         "(np.load(allow_pickle=False))") from None
            raise UsageError(option, f"{path} is not a readable .npy array: {exc}") from None
        except (OSError, EOFError) as exc:
            raise UsageError(option, f"{path} is not a readable .npy array: {exc}") from None
        if not isinstance(arr, np.ndarray):  # an .npz archive saved under a .npy name
            raise UsageError(option, f"{path} holds an .npz archive, not one array")
    else:
        try:
            text = p.read_text()
            arr = np.loadtxt(p, delimiter="," if "," in text else None, ndmin=2)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(option, f"{path} does not parse as a table of numbers: {exc}") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UsageError(option, f"{path} must hold real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UsageError(option, f"{path} must hold a non-empty [N, D] array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UsageError(option, f"{path} contains NaN or infinite values")
    return arr


#: Where the wheel installs the benchmark scripts, below the installation prefix (pyproject.toml, data-files).
BENCHMARKS_DATA = Path("share") / "safe-density" / "benchmarks"


def _benchmarks_dir() -> Path:
    """The ``benchmarks`` package: a checkout's ``benchmarks/`` (editable install), else the copy the wheel
    installed under ``<prefix>/share/safe-density/benchmarks`` (``sys.prefix``, or the user base for
    ``pip install --user``). A folder without ``__init__.py`` (the loose scripts of an older wheel) is passed
    over: its scripts cannot run as ``python -m benchmarks.NAME``."""
    import site

    candidates = [Path(__file__).resolve().parent.parent / "benchmarks"]
    candidates += [Path(base) / BENCHMARKS_DATA for base in (sys.prefix, sys.base_prefix, site.USER_BASE) if base]
    for d in candidates:
        if (d / "__init__.py").is_file() and (d / "demo.py").is_file():
            return d
    raise UsageError("name", "the benchmark scripts were not found (looked in "
                             f"{', '.join(str(c) for c in candidates)}): install the safe-density wheel, which "
                             "ships them, or run from a checkout of the repository")


def _save_png(fig, path: Path) -> None:
    from mbrl.common.serialization import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # a command line writes PNG files; it never opens windows
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------ commands
def cmd_pets(args: argparse.Namespace, rest: list[str]) -> int:
    from mbrl.train import main as pets_main

    if args.resume and args.out is None:
        raise UsageError("--resume", "needs --out (the folder holding the checkpoint to continue)")
    if args.resume and not (Path(args.out) / "checkpoint").is_dir():
        raise UsageError("--resume", f"no checkpoint to continue in {Path(args.out) / 'checkpoint'}")
    pets_main(args.pets_argv)
    if args.out is None:
        print("no --out given: the per-episode log above is all that was kept (nothing was written; pass "
              "--out DIR to keep logs and checkpoints)")
    else:
        out = Path(args.out)
        print(f"wrote {out / 'log.jsonl'}, {out / 'log.csv'} and the checkpoint {out / 'checkpoint'}")
    return 0


def _kept_obs(drop: list[int] | None, o_dim: int) -> list[int]:
    """The observation indices the LDM keeps (its ``obs_indices``) after ``--drop-obs``."""
    drop = sorted(set(drop or []))
    bad = [i for i in drop if not 0 <= i < o_dim]
    if bad:
        raise UsageError("--drop-obs", f"indices must lie in [0, {o_dim - 1}] (the buffer's observations have "
                                       f"{o_dim} dimensions), got {bad}")
    keep = [i for i in range(o_dim) if i not in drop]
    if not keep:
        raise UsageError("--drop-obs", f"would drop all {o_dim} observation dimensions")
    return keep


def _task_of(args: argparse.Namespace) -> str | None:
    """The task the buffer's transitions come from: ``--task``, else the PETS run that saved the buffer (its
    ``checkpoint/run`` metadata next to ``checkpoint/buffer``), else None."""
    if args.task:
        return args.task
    run = Path(args.buffer).parent / "run"
    if (run / "meta.json").is_file():
        from mbrl.common.serialization import load_state

        try:
            return load_state(run)[1].get("task")
        except (ValueError, OSError):
            return None
    return None


def _action_box(args: argparse.Namespace, act):
    """``(box, where it came from)``: the LDM's ``ActionBox`` from ``--action-low/--action-high`` (1 value or one
    per dimension); what is not given comes from the task's box (``--task``, or the PETS run that saved the
    buffer), else from the data's range. Validated by the library's one bounds rule."""
    from mbrl.common.action_box import ActionBox

    a_dim, bounds = act.shape[1], {}
    task = _task_of(args)
    if task is not None:
        from mbrl.tasks import make_task

        low, high = make_task(task).action_box.numpy()
        if low.shape[0] != a_dim:
            raise UsageError("--task", f"{task} has {low.shape[0]}-D actions but the buffer's have {a_dim}")
        source = f"task {task}"
    else:
        low, high = act.min(0).values.cpu().numpy(), act.max(0).values.cpu().numpy()
        source = "the data's range (pass --task for the task's box)"
    for opt, given, default in (("--action-low", args.action_low, low), ("--action-high", args.action_high, high)):
        if given is None:
            bounds[opt] = default.tolist()
        elif len(given) in (1, a_dim):
            bounds[opt] = list(given) * (a_dim // len(given))
        else:
            want = "1 value" if a_dim == 1 else f"1 value or {a_dim} (one per action dimension)"
            raise UsageError(opt, f"needs {want}, got {len(given)}")
    if args.action_low is not None and args.action_high is not None:
        source = "--action-low/--action-high"
    try:
        return ActionBox(bounds["--action-low"], bounds["--action-high"], a_dim, names=("--action-low",
                                                                                        "--action-high")), source
    except ValueError as exc:
        opt = "--action-low" if args.action_low is not None else "--action-high"
        raise UsageError(opt, str(exc)) from None


def cmd_fit_ldm(args: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from mbrl.buffer import ReplayBuffer
    from mbrl.common.serialization import atomic_write_text
    from safe_density.density import FlowDensity, GaussianKDE, GaussianMixtureDensity
    from safe_density.ldm import LyapunovDensityModel

    if not Path(args.buffer).is_dir():
        raise UsageError("--buffer", f"no such folder {args.buffer} (a folder written by ReplayBuffer.save)")
    try:
        buf = ReplayBuffer.load(args.buffer)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError("--buffer", str(exc)) from None
    if len(buf) == 0:
        raise UsageError("--buffer", f"the buffer at {args.buffer} is empty")
    data = buf.all()
    o_dim, a_dim = data.obs.shape[1], data.act.shape[1]
    keep = _kept_obs(args.drop_obs, o_dim)
    box, box_source = _action_box(args, data.act)
    if args.density == "gmm" and args.components > len(buf):
        raise UsageError("--components", f"must be <= the number of transitions ({len(buf)}), got "
                                         f"{args.components}")
    dens = {"gmm": lambda: GaussianMixtureDensity(args.components, seed=args.seed),
            "flow": lambda: FlowDensity(seed=args.seed), "kde": lambda: GaussianKDE()}[args.density]()
    ldm = LyapunovDensityModel(o_dim, a_dim, box, density=dens, gamma=args.gamma, steps=args.steps,
                               obs_indices=None if len(keep) == o_dim else keep, device=args.device or "cpu",
                               seed=args.seed)
    print(f"fitting an LDM on {len(buf)} transitions: {args.density} density, {args.steps} gradient steps "
          f"(--steps for more); action box {box.low.tolist()} .. {box.high.tolist()} from {box_source}",
          file=sys.stderr)
    hist = ldm.fit(data.obs, data.act, data.next_obs, terminated=data.terminated if args.use_terminated else None,
                   steps=args.steps, progress=True)
    c = ldm.calibrate(data.obs, data.act, args.quantile, rule=args.rule)   # saved with the model: the default c
    out = Path(args.out)
    ldm.save(out / "ldm")
    with torch.no_grad():
        e = ldm.energy(data.obs, data.act).cpu().numpy()
        g = ldm.value(data.obs, data.act).cpu().numpy()
    summary = {"transitions": len(buf), "kept_obs_dims": keep, "steps": args.steps,
               "calibration": ldm.calibration, "threshold": c, "energy_quantiles":
               {q: float(np.quantile(e, q)) for q in (0.1, 0.5, 0.9, 0.99)},
               "ldm_quantiles": {q: float(np.quantile(g, q)) for q in (0.1, 0.5, 0.9, 0.99)},
               "final_loss": hist["loss"][-1] if hist["loss"] else None, "model": str(out / "ldm")}
    atomic_write_text(out / "ldm_summary.json", json.dumps(summary, indent=1))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(e, bins=50, alpha=0.6, label="energy E(s,a)")
    ax.hist(g, bins=50, alpha=0.6, label="LDM G(s,a)")
    of = "G" if args.rule == "ldm" else "E"
    ax.axvline(c, color="k", ls="--", lw=1, label=f"threshold c (q={args.quantile:g} of {of})")
    ax.set_xlabel("value on the data")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, out / "ldm_values.png")
    plt.close(fig)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out / 'ldm'}, {out / 'ldm_summary.json'}, {out / 'ldm_values.png'}")
    return 0


def _background(ex: np.ndarray, states: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` states drawn uniformly from the box around the examples and the scored states (10 % margin)."""
    both = np.concatenate([ex, states])
    lo, hi = both.min(0), both.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    rng = np.random.default_rng(seed)
    return rng.uniform(lo - pad, hi + pad, size=(n, ex.shape[1])).astype(np.float32)


def cmd_mural(args: argparse.Namespace, rest: list[str]) -> int:
    from mbrl.common.serialization import atomic_write_bytes, atomic_write_text
    from safe_density.mural import MuralConfig, MuralReward

    ex = _load_array(args.examples, "--examples")
    states = _load_array(args.states, "--states")
    if states.shape[1] != ex.shape[1]:
        raise UsageError("--states", f"states have {states.shape[1]} dimensions but the examples have "
                                     f"{ex.shape[1]}")
    if args.visited:
        visited = _load_array(args.visited, "--visited")
        if visited.shape[1] != ex.shape[1]:
            raise UsageError("--visited", f"visited states have {visited.shape[1]} dimensions but the examples "
                                          f"have {ex.shape[1]}")
        source = args.visited
    else:
        visited = _background(ex, states, args.background, args.seed)
        source = f"{args.background} uniform background states around the examples and the scored states"
        print(f"no --visited given: label-0 data are {source}", file=sys.stderr)
    # default: the library's choice for the device (published sizes on CUDA, CPU presets otherwise)
    cfg = MuralConfig.small() if args.small else None
    mr = MuralReward(ex, method=args.method, seed=args.seed, config=cfg, device=args.device or "cpu")
    mr.update(visited, progress=True)
    r = mr(states).detach().cpu().numpy()
    out = Path(args.out)
    npy = io.BytesIO()
    np.save(npy, r.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out / "rewards.npy", npy.getvalue())
    summary = {"method": args.method, "config": mr.preset, "n": int(r.shape[0]), "visited": source,
               "mean": float(r.mean()), "min": float(r.min()), "max": float(r.max()), "rewards": r.tolist()}
    atomic_write_text(out / "rewards.json", json.dumps(summary))
    plt = _pyplot()
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
    _save_png(fig, out / "rewards.png")
    plt.close(fig)
    print(f"rewards: mean {r.mean():.3f}, min {r.min():.3f}, max {r.max():.3f}")
    print(f"wrote {out / 'rewards.npy'}, {out / 'rewards.json'}, {out / 'rewards.png'}")
    return 0


def cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    """``python -m benchmarks.NAME`` with the script's options (``rest``, ``--help`` included), the folder that
    holds the package first on PYTHONPATH (the scripts import ``benchmarks._common``); its exit status is the
    command's. Without NAME, ``--help`` is bench's own."""
    d = _benchmarks_dir()
    names = sorted(p.stem for p in d.glob("[a-z]*.py"))
    if args.name is None:
        if {"-h", "--help"} & set(rest):
            args.parser.print_help()
            print(f"\nbenchmarks: {', '.join(names)}")
            return 0
        raise UsageError("name", f"which benchmark? available: {', '.join(names)}")
    if args.name not in names:
        raise UsageError("name", f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    path = os.pathsep.join(p for p in (str(d.parent), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path)
    # -P (Python 3.11+): the working directory is not put first on the path, so that a `benchmarks` folder
    # there (another project's) cannot stand in for this one
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return subprocess.call([sys.executable, *safe_path, "-m", f"benchmarks.{args.name}", *rest], env=env)


def cmd_demo(args: argparse.Namespace, rest: list[str]) -> int:
    args.name = "demo"
    return cmd_bench(args, rest)


# ------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="safe-density", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, help: str, func, description: str | None = None) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
        s.set_defaults(func=func, parser=s)
        return s

    s = add("pets", "train and evaluate PETS (the same options as python -m mbrl.train)", cmd_pets)
    from mbrl.train import add_pets_options

    add_pets_options(s)

    s = add("fit-ldm", "fit a Lyapunov density model from a saved replay buffer", cmd_fit_ldm,
            f"Fit a Lyapunov density model (docs/design.md) to the transitions of a saved replay buffer.\n"
            f"With the defaults ({LDM_DEFAULTS.steps} steps, GMM density) a few thousand transitions take about a\n"
            f"minute on 2 CPU cores; --steps asks for more.")
    s.add_argument("--buffer", required=True, help="folder written by ReplayBuffer.save (e.g. RUN/checkpoint/buffer)")
    s.add_argument("--out", required=True, help="output folder: ldm/ checkpoint, ldm_summary.json, ldm_values.png")
    s.add_argument("--density", default="gmm", choices=["gmm", "flow", "kde"],
                   help="density model for the energies E = -log p(s, a)")
    s.add_argument("--components", type=_int_at_least(1), default=LDM_DEFAULTS.density_components,
                   help="Gaussian-mixture components (gmm)")
    s.add_argument("--drop-obs", type=_int_at_least(0), nargs="*", default=None,
                   help="observation indices the LDM ignores (its obs_indices; e.g. 0 for Hopper's x position); "
                        "the saved model still takes full observations")
    s.add_argument("--gamma", type=_real(0.0, 1.0, low_open=True), default=LDM_DEFAULTS.gamma,
                   help="discount of the LDM backup, in (0, 1] (docs/design.md)")
    s.add_argument("--steps", type=_int_at_least(0), default=LDM_DEFAULTS.steps,
                   help="gradient steps (more: a closer fit, proportionally longer)")
    s.add_argument("--action-low", type=_real(), nargs="+", default=None,
                   help="action lower bounds, 1 value or one per action dimension (default: data min)")
    s.add_argument("--action-high", type=_real(), nargs="+", default=None,
                   help="action upper bounds, 1 value or one per action dimension (default: data max)")
    s.add_argument("--quantile", type=_real(0.0, 1.0), default=0.5,
                   help="threshold c = this quantile over the buffer's own (s, a) pairs (of G, or of E with "
                        "--rule energy), stored in the checkpoint (LyapunovDensityModel.calibrate; the wrapper "
                        "and constraint() use it)")
    s.add_argument("--rule", default="ldm", choices=THRESHOLD_RULES,
                   help="ldm: c is a quantile of G; energy: a quantile of the data's E (the LDM authors' rule)")
    s.add_argument("--task", default=None, type=_task_name,
                   help="the task the transitions come from: its action box bounds the LDM's actions (default: "
                        "the PETS run that saved the buffer, else the data's range)")
    s.add_argument("--use-terminated", action="store_true",
                   help="treat terminated transitions as having no future (otherwise: as ordinary transitions)")
    s.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: cpu)")
    s.add_argument("--seed", type=int, default=0, help="seed")

    s = add("mural-reward", "MURAL rewards for a file of states", cmd_mural)
    s.add_argument("--examples", required=True, help="success example states, .npy or .csv [K, D]")
    s.add_argument("--visited", default=None,
                   help="visited states (label 0), .npy or .csv [M, D] (default: --background uniform states "
                        "around the examples and the scored states)")
    s.add_argument("--states", required=True, help="states to score, .npy or .csv [N, D]")
    s.add_argument("--method", default="meta_nml", choices=["meta_nml", "cnml", "classifier"],
                   help="meta_nml (fast, MURAL), cnml (exact, slow), classifier (VICE-like baseline)")
    s.add_argument("--background", type=_int_at_least(1), default=256,
                   help="number of uniform label-0 states used when --visited is not given")
    s.add_argument("--small", action="store_true",
                   help="force the CPU-sized classifier (MuralConfig.small()); default: MuralConfig.for_device "
                        "(the published 2 x 2048 sizes on CUDA, the CPU presets otherwise)")
    s.add_argument("--out", required=True, help="output folder: rewards.npy, rewards.json, rewards.png")
    s.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: cpu)")
    s.add_argument("--seed", type=int, default=0, help="seed")

    # bench and demo have no -h of their own: every option after NAME, --help included, is the script's
    # (parse_known_args leaves them in `rest`, in order)
    bench = "run a benchmark script: python -m benchmarks.NAME [its options]"
    s = sub.add_parser("bench", help=bench + " (bench NAME --help lists them)", description=bench, add_help=False,
                       usage="%(prog)s NAME [the script's options, e.g. --help]", formatter_class=_Formatter)
    s.set_defaults(func=cmd_bench, parser=s)
    s.add_argument("name", nargs="?", default=None,
                   help="benchmark name, e.g. pets, planner_speed, hopper_ldm, mural_tasks, rcad_small_data")
    demo = "the main job (make demo): Hopper MPC unconstrained vs LDM-constrained, and a policy bare vs LDM-wrapped"
    s = sub.add_parser("demo", help=demo + " (demo --help lists its options)", description=demo, add_help=False,
                       formatter_class=_Formatter)
    s.set_defaults(func=cmd_demo, parser=s)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status.

    User errors exit through ``SystemExit(2)`` with one line on stderr naming the option.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    sub: argparse.ArgumentParser = args.parser
    if args.command == "pets":
        if rest:
            sub.error(f"unrecognised arguments: {' '.join(rest)}")
        args.pets_argv = argv[argv.index("pets") + 1:]
    elif rest and args.command not in ("bench", "demo"):
        sub.error(f"unrecognised arguments: {' '.join(rest)}")
    debug = bool(os.environ.get("SAFE_DENSITY_DEBUG"))
    try:
        return int(args.func(args, rest) or 0)
    except UsageError as exc:
        sub.error(str(exc))
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        if debug:
            raise
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        sub.error(f"{lines[0]} (SAFE_DENSITY_DEBUG=1 shows the traceback)")
    except KeyboardInterrupt:
        print(f"{sub.prog}: interrupted", file=sys.stderr)
        return 130
    return 1  # pragma: no cover - error() exits


if __name__ == "__main__":
    sys.exit(main())
