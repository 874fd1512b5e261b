"""Table-driven bad-input suite over the public entry points and every CLI command.

Each row of ``CASES`` calls one entry point with one input and says what must happen:

* ``err(*names)``: a ``ValueError``/``TypeError`` (``FileNotFoundError`` for missing paths) whose message
  names one of ``names`` (the offending argument): no silent acceptance, no obscure error;
* ``OK`` (or ``ok(check)``): the input is legitimate (NumPy scalars, float64, tensors that require grad,
  large batches) and must be accepted (and pass ``check``).

``CLI_CASES`` run ``safe-density ...`` command lines: exit status 2, one line on stderr naming the option, no
traceback. Rows whose entry point belongs to another part of the project and still fails carry an
``owner`` reason and run as ``xfail(strict=True)``: they turn into failures (XPASS) once fixed, so that the
mark is removed. Hypothesis properties at the end cover the shared checks and the CLI's option parsing.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mbrl.common.validation import as_flags, as_tensor, check_int, check_threshold

PROPS = settings(max_examples=40, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Expect:
    names: tuple[str, ...] = ()  # empty: must be accepted
    check: Callable | None = None
    errors: tuple[type, ...] = (ValueError, TypeError)


OK = Expect()


def ok(check: Callable) -> Expect:
    return Expect(check=check)


def err(*names: str, errors: tuple[type, ...] = (ValueError, TypeError)) -> Expect:
    return Expect(names=names, errors=errors)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable  # ctx -> result
    expect: Expect
    owner: str | None = None  # known failure in code this suite does not own: xfail(strict=True)


class Ctx:
    """Small fitted objects, built once per module on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        rng = np.random.default_rng(0)
        self.obs = rng.normal(size=(60, 2)).astype(np.float32)
        self.act = rng.uniform(-1, 1, (60, 1)).astype(np.float32)
        self.nxt = self.obs + 0.1 * self.act

    @functools.cached_property
    def buffer(self):
        from mbrl import ReplayBuffer

        b = ReplayBuffer(100, 2, 1)
        b.add_batch(self.obs, self.act, self.nxt, np.zeros(60), np.zeros(60, bool))
        return b

    @functools.cached_property
    def model(self):
        from mbrl import ProbabilisticEnsemble

        m = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(8,), seed=0)
        m.fit(self.buffer, epochs=1, progress=False)
        return m

    @functools.cached_property
    def ldm(self):
        from safe_density import LyapunovDensityModel
        from safe_density.density import GaussianKDE

        ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], density=GaussianKDE(), hidden=(8,), steps=3, seed=0)
        ldm.fit(self.obs, self.act, self.nxt, progress=False)
        return ldm

    @functools.cached_property
    def mural(self):
        from safe_density import MuralReward
        from safe_density.mural import MuralConfig

        mr = MuralReward(self.obs[:5], method="classifier", config=MuralConfig.small(classifier_steps=5))
        mr.update(self.obs, progress=False)
        return mr

    @functools.cached_property
    def hopper(self):
        from mbrl import make_task

        return make_task("Hopper-v5")

    def fresh_ldm(self, **kw):
        from safe_density import LyapunovDensityModel
        from safe_density.density import GaussianKDE

        kw = {"density": GaussianKDE(), "hidden": (8,), "steps": 3, "seed": 0, **kw}
        return LyapunovDensityModel(2, 1, [-1.0], [1.0], **kw)

    def agent(self, **kw):
        from mbrl import CEM, MPCAgent

        kw = {"optimizer": CEM(population=8, elites=2, iterations=1), "horizon": 2, "particles": 2, **kw}
        reward = kw.pop("reward_fn", lambda o, a, n: -(n**2).sum(-1))
        return MPCAgent(self.model, reward, None, [-1.0], [1.0], **kw)

    def dir(self, name: str) -> Path:
        d = self.tmp / name
        shutil.rmtree(d, ignore_errors=True)
        return d


NAN, INF = math.nan, math.inf
BAD_COUNTS = {"2.7": 2.7, "2.0": 2.0, "nan": NAN, "inf": INF, "true": True, "str": "5", "none": None, "neg": -1}


def _grad(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype, requires_grad=True)


def _not_requires_grad(t) -> bool:
    return not t.requires_grad


CASES: list[Case] = []


def add(id: str, call: Callable, expect: Expect, owner: str | None = None) -> None:
    CASES.append(Case(id, call, expect, owner))


# --- the shared checks (mbrl.common.validation): one integer rule, finite thresholds, 0/1 flags
for k, v in BAD_COUNTS.items():
    add(f"check_int/{k}", lambda c, v=v: check_int("epochs", v, low=0), err("epochs"))
for k, v in {"np.int64": np.int64(5), "np.int32": np.int32(5), "np.uint8": np.uint8(5), "0-d array": np.array(5),
             "tensor": torch.tensor(5), "big int": 10**18}.items():
    add(f"check_int/ok/{k}", lambda c, v=v: check_int("epochs", v), ok(lambda r, v=v: r == int(v) and type(r) is int))
add("check_int/float tensor", lambda c: check_int("n", torch.tensor(5.0)), err("n"))
add("check_int/above high", lambda c: check_int("n", 10**30, high=2**31), err("n"))
for k, v in {"inf": INF, "-inf": -INF, "nan": NAN, "bool": True, "str": "x", "pair": [1.0, 2.0],
             "tensor pair": torch.ones(2)}.items():
    add(f"check_threshold/{k}", lambda c, v=v: check_threshold("threshold", v), err("threshold"))
for k, v in {"np.float64": np.float64(0.5), "np.float32": np.float32(0.5), "np.int64": np.int64(1),
             "tensor": torch.tensor(0.5), "tensor requiring grad": torch.tensor(0.5, requires_grad=True),
             "0-d array": np.array(0.5)}.items():
    add(f"check_threshold/ok/{k}", lambda c, v=v: check_threshold("threshold", v), ok(lambda r: r == 0.5 or r == 1.0))
add("check_threshold/inf allowed", lambda c: check_threshold("high", INF, allow_inf=True), ok(math.isinf))
add("as_tensor/requires grad kept", lambda c: as_tensor("x", _grad(3)), ok(lambda r: r.requires_grad))
add("as_tensor/detach", lambda c: as_tensor("x", _grad(3), detach=True), ok(_not_requires_grad))
for k, v in {"2": 2, "0.5": 0.5, "nan": NAN, "-1": -1, "array with 2": np.array([0, 2])}.items():
    add(f"as_flags/{k}", lambda c, v=v: as_flags("terminated", v, 2), err("terminated"))
_FLAGS_OK = {"np.bool_": np.bool_(True), "0/1 ints": np.array([0, 1]), "1.0": 1.0, "tensor": torch.tensor([1, 0])}
for k, v in _FLAGS_OK.items():
    add(f"as_flags/ok/{k}", lambda c, v=v: as_flags("terminated", v, 2), ok(lambda r: r.dtype == torch.bool))

# --- seeding
for k, v in {"2.5": 2.5, "nan": NAN, "true": True, "str": "0", "2**64": 2**64}.items():
    add(f"make_generator(seed={k})", lambda c, v=v: __import__("mbrl.common.seeding", fromlist=["x"]).make_generator(v),
        err("seed"))
add("make_generator(np.int64 seed)", lambda c: __import__("mbrl.common.seeding", fromlist=["x"]).make_generator(
    np.int64(3)), ok(lambda g: g.initial_seed() == 3))


def _seed_everything_restored(seed):
    """``seed_everything(seed)``, leaving the global generators as they were for the rest of the suite."""
    import random

    from mbrl.common.seeding import seed_everything

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    try:
        return seed_everything(seed)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])  # noqa: NPY002
        torch.set_rng_state(states[2])


add("seed_everything(np.uint32 seed)", lambda c: _seed_everything_restored(np.uint32(7)), OK)
add("seed_everything(2.5)", lambda c: _seed_everything_restored(2.5), err("seed"))

# --- ReplayBuffer
for k, v in BAD_COUNTS.items():
    add(f"ReplayBuffer(capacity={k})", lambda c, v=v: __import__("mbrl").ReplayBuffer(v, 2, 1), err("capacity"))
add("ReplayBuffer(np.int64 sizes)", lambda c: __import__("mbrl").ReplayBuffer(np.int64(10), np.int32(2), np.int64(1)),
    ok(lambda b: b.capacity == 10))
add("buffer.add(terminated=2)", lambda c: c.buffer.add(c.obs[0], c.act[0], c.nxt[0], 0.0, 2), err("terminated"))
add("buffer.add(truncated=0.5)", lambda c: c.buffer.add(c.obs[0], c.act[0], c.nxt[0], 0.0, False, 0.5),
    err("truncated"))
add("buffer.add(reward=nan)", lambda c: c.buffer.add(c.obs[0], c.act[0], c.nxt[0], NAN, False), err("reward"))
add("buffer.add(obs 3-D)", lambda c: c.buffer.add(np.zeros(3), c.act[0], c.nxt[0], 0.0, False), err("obs"))
add("buffer.add_batch(terminated=[0,2,...])",
    lambda c: c.buffer.add_batch(c.obs[:3], c.act[:3], c.nxt[:3], np.zeros(3), np.array([0, 2, 0])), err("terminated"))
add("buffer.add_batch(reward [N-1])", lambda c: c.buffer.add_batch(c.obs[:3], c.act[:3], c.nxt[:3], np.zeros(2),
                                                                    np.zeros(3)), err("reward"))


def _add_grad_batch(c):
    from mbrl import ReplayBuffer

    b = ReplayBuffer(10, 2, 1)
    b.add_batch(_grad(4, 2), _grad(4, 1), _grad(4, 2), _grad(4), np.zeros(4, bool))
    b.add(_grad(2), _grad(1), _grad(2), _grad(()), np.bool_(False), np.float64(0.0))
    return b.all()


add("buffer stores tensors that require grad detached", _add_grad_batch,
    ok(lambda r: not any(t.requires_grad for t in r)))


def _large_batch(c):
    from mbrl import ReplayBuffer

    b = ReplayBuffer(200_000, 2, 1)
    n = 150_000
    b.add_batch(np.zeros((n, 2)), np.zeros((n, 1)), np.zeros((n, 2)), np.zeros(n), np.zeros(n, np.int64))
    return b


add("buffer.add_batch(150k float64 rows)", _large_batch, ok(lambda b: len(b) == 150_000))
for k, v in {"0": 0, "2.5": 2.5, "nan": NAN, "True": True}.items():
    add(f"buffer.sample({k})", lambda c, v=v: c.buffer.sample(v), err("batch_size"))
add("buffer.sample(np.int64)", lambda c: c.buffer.sample(np.int64(4)), ok(lambda r: r.obs.shape == (4, 2)))
add("ReplayBuffer.load(missing)", lambda c: __import__("mbrl").ReplayBuffer.load(c.tmp / "missing"),
    err("missing", errors=(FileNotFoundError,)))

# --- ProbabilisticEnsemble
for k in ("2.7", "nan", "neg", "true"):
    add(f"ProbabilisticEnsemble(ensemble_size={k})",
        lambda c, v=BAD_COUNTS[k]: __import__("mbrl").ProbabilisticEnsemble(2, 1, ensemble_size=v),
        err("ensemble_size"))
add("ProbabilisticEnsemble(np.int64 sizes)",
    lambda c: __import__("mbrl").ProbabilisticEnsemble(np.int64(2), np.int64(1), ensemble_size=np.int64(2),
                                                       hidden=(np.int64(4),)), OK)
for k, v in {"nan": NAN, "inf": INF, "0": 0, "true": True}.items():
    add(f"ensemble.fit(epochs={k})", lambda c, v=v: c.model.fit(c.buffer, epochs=v, progress=False), err("epochs"))
add("ensemble.fit(epochs=2.7)", lambda c: c.model.fit(c.buffer, epochs=2.7, progress=False), err("epochs"))
add("ensemble.fit(batch_size=2.5)", lambda c: c.model.fit(c.buffer, epochs=1, batch_size=2.5, progress=False),
    err("batch_size"))
add("ensemble.fit(holdout=1.5)", lambda c: c.model.fit(c.buffer, epochs=1, holdout=1.5, progress=False), err("holdout"))
add("ensemble.fit(np.int64 epochs)", lambda c: c.model.fit(c.buffer, epochs=np.int64(1), progress=False), OK)
add("ensemble.predict(NaN obs)",  # the hot path (README "Guarantees"): NaN rows in, NaN rows out, others intact
    lambda c: _nan_rows_stay_nan(c.model.predict(torch.tensor([[NAN, 0.0], [0.0, 0.0], [1.0, NAN]]),
                                                 torch.zeros(3, 1)), [True, False, True]), OK)
add("ensemble.predict(3-D obs)", lambda c: c.model.predict(torch.zeros(3, 3), torch.zeros(3, 1)), err("obs"))
add("ensemble.predict(obs requiring grad, float64)",
    lambda c: c.model.predict(_grad(3, 2, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)), OK)
add("ensemble.predict(50k rows)", lambda c: c.model.predict(torch.zeros(50_000, 2), torch.zeros(50_000, 1)), OK)

def _nan_rows_stay_nan(out: torch.Tensor, nan_rows: list[bool]) -> None:
    """``out[E, N, O]`` (every member's prediction): the NaN input rows are NaN for every member, the rest finite."""
    bad = torch.isnan(out).any(-1)                      # [E, N]
    assert (bad == torch.tensor(nan_rows)).all() and bool(torch.isfinite(out[~bad]).all()), out


# --- planners
_PLAN = {"CEM": ("population", "elites", "iterations"), "ICEM": ("population", "elites", "iterations"),
         "MPPI": ("population", "iterations"), "RandomShooting": ("population",)}
for cls, params in _PLAN.items():
    for p in params:
        for k in ("2.7", "nan", "true", "str"):
            add(f"{cls}({p}={k})", lambda c, cls=cls, p=p, v=BAD_COUNTS[k]: getattr(__import__("mbrl"), cls)(**{p: v}),
                err(p))
    add(f"{cls}({params[-1]}=10**30)",
        lambda c, cls=cls, p=params[-1]: getattr(__import__("mbrl"), cls)(**{p: 10**30}), err(params[-1]))
    add(f"{cls}(np.int64 sizes)", lambda c, cls=cls, params=params: getattr(__import__("mbrl"), cls)(
        **{p: np.int64(8 if p == "population" else 2) for p in params}), OK)
add("CEM(alpha=inf)", lambda c: __import__("mbrl").CEM(alpha=INF), err("alpha"))
add("MPPI(temperature=inf)", lambda c: __import__("mbrl").MPPI(temperature=INF), err("temperature"))
add("CEM.optimize(low > high)", lambda c: __import__("mbrl").CEM(8, 2, 1).optimize(
    lambda x: -x.pow(2).sum((-1, -2)), torch.zeros(2, 1), low=1.0, high=-1.0), err("low"))
add("ICEM.advance(2.5)", lambda c: __import__("mbrl").ICEM().advance(2.5), err("steps"))

# --- MPCAgent
for p in ("horizon", "particles", "replan_every"):
    for k in ("2.7", "nan", "neg"):
        add(f"MPCAgent({p}={k})", lambda c, p=p, v=BAD_COUNTS[k]: c.agent(**{p: v}), err(p))
add("MPCAgent(np.int64 horizon/particles)", lambda c: c.agent(horizon=np.int64(3), particles=np.int64(2)), OK)
add("MPCAgent(reward_fn returning a scalar)",
    lambda c: c.agent(reward_fn=lambda o, a, n: torch.tensor(1.0)).act(np.zeros(2)), err("reward_fn"))
add("MPCAgent(reward_fn returning [..., 1])",
    lambda c: c.agent(reward_fn=lambda o, a, n: n[..., :1]).act(np.zeros(2)), err("reward_fn"))


def _mismatched_agent(c):
    """An 11-D model (gym.make observations) with the 12-D task reward: caught at construction."""
    from mbrl import CEM, MPCAgent, ProbabilisticEnsemble

    t = c.hopper
    model = ProbabilisticEnsemble(11, 3, ensemble_size=2, hidden=(4,))
    return MPCAgent(model, t.reward_fn, t.termination_fn, t.action_low, t.action_high,
                    optimizer=CEM(8, 2, 1), horizon=2, particles=2)


add("MPCAgent(11-D model, 12-D task) at construction", _mismatched_agent, err("make_env"))
add("agent.act(obs 3-D)", lambda c: c.agent().act(np.zeros(3)), err("obs"))
add("agent.act(NaN obs)", lambda c: c.agent().act(np.array([NAN, 0.0])), err("obs"))
add("agent.act(obs float64 requiring grad)", lambda c: c.agent().act(_grad(2, dtype=torch.float64)),
    ok(lambda a: np.all(np.abs(np.asarray(a)) <= 1)))
add("agent.act(np.float32 batch of 64 start states)", lambda c: c.agent().act(np.zeros((64, 2), np.float32)),
    ok(lambda a: np.asarray(a).shape == (64, 1)))

# --- tasks and the PETS loop
add("make_task(unknown)", lambda c: __import__("mbrl").make_task("Hopper-v9"), err("name"))
add("make_task(ctrl_cost_weight=nan)", lambda c: __import__("mbrl").make_task("Hopper-v5", ctrl_cost_weight=NAN),
    err("ctrl_cost_weight"))
add("make_task(ctrl_cost_weight=inf)", lambda c: __import__("mbrl").make_task("Hopper-v5", ctrl_cost_weight=INF),
    err("ctrl_cost_weight"))
add("make_task(healthy_z_range=(0.5, inf))",
    lambda c: __import__("mbrl").make_task("Hopper-v5", healthy_z_range=(0.5, INF)), OK)
add("make_task(max_episode_steps=2.5)", lambda c: __import__("mbrl").make_task("Hopper-v5", max_episode_steps=2.5),
    err("max_episode_steps"))
add("make_task(max_episode_steps=np.int64)",
    lambda c: __import__("mbrl").make_task("Hopper-v5", max_episode_steps=np.int64(5)), OK)
add("task.reward_fn(11-D obs)", lambda c: c.hopper.reward_fn(torch.zeros(2, 11), torch.zeros(2, 3),
                                                             torch.zeros(2, 11)), err("obs"))
add("PETSConfig(horizon=0)", lambda c: __import__("mbrl").PETSConfig(horizon=0), err("horizon"))
add("PETSConfig(episodes=2.5)", lambda c: __import__("mbrl").PETSConfig(episodes=2.5), err("episodes"))
add("run_pets(episodes=-1)", lambda c: __import__("mbrl").run_pets(
    "InvertedPendulum-v5", __import__("mbrl").PETSConfig(episodes=-1, warmup_episodes=0), progress=False),
    err("episodes"))

# --- LDM
add("solve_tabular(NaN energy)", lambda c: __import__("safe_density").solve_tabular(
    np.array([[NAN]]), np.array([[0]])), err("energy"))
add("solve_tabular(next_state out of range)", lambda c: __import__("safe_density").solve_tabular(
    np.zeros((2, 1)), np.array([[0], [2]])), err("next_state"))
add("solve_tabular(gamma=inf)", lambda c: __import__("safe_density").solve_tabular(
    np.zeros((1, 1)), np.zeros((1, 1), np.int64), gamma=INF), err("gamma"))
add("solve_tabular(float64 energy, np.int64 next_state)", lambda c: __import__("safe_density").solve_tabular(
    np.zeros((2, 2)), np.array([[0, 1], [1, 0]], np.int64)), OK)
add("LyapunovDensityModel(np.int64 dims)", lambda c: __import__("safe_density").LyapunovDensityModel(
    np.int64(2), np.int64(1), [-1.0], [1.0]), OK)
add("LyapunovDensityModel(steps=2.7)", lambda c: __import__("safe_density").LyapunovDensityModel(
    2, 1, [-1.0], [1.0], steps=2.7),
    err("steps"))
add("LyapunovDensityModel(gamma=inf)", lambda c: c.fresh_ldm(gamma=INF), err("gamma"))
add("LyapunovDensityModel(action_low > high)", lambda c: c.ldm.__class__(2, 1, [1.0], [-1.0]), err("action_low"))
add("ldm.fit(terminated=2)", lambda c: c.fresh_ldm().fit(c.obs, c.act, c.nxt, terminated=np.full(60, 2),
                                                         progress=False), err("terminated"))
add("ldm.fit(steps=2.7)", lambda c: c.fresh_ldm().fit(c.obs, c.act, c.nxt, steps=2.7, progress=False), err("steps"))
add("ldm.fit(steps=nan)", lambda c: c.fresh_ldm().fit(c.obs, c.act, c.nxt, steps=NAN, progress=False), err("steps"))
add("ldm.fit(NaN obs)", lambda c: c.fresh_ldm().fit(np.full((60, 2), NAN), c.act, c.nxt, progress=False), err("obs"))
add("ldm.fit(actions 1e30 outside the box)",
    lambda c: c.fresh_ldm().fit(c.obs, c.act * 1e30, c.nxt, steps=2, progress=False), err("act"))
add("ldm.value(3-D obs)", lambda c: c.ldm.value(torch.zeros(3, 3), torch.zeros(3, 1)), err("obs"))
add("ldm.value(requires grad, float64, 20k rows)",
    lambda c: c.ldm.value(_grad(20_000, 2, dtype=torch.float64), torch.zeros(20_000, 1, dtype=torch.float64)),
    ok(lambda v: v.shape == (20_000,) and bool(torch.isfinite(v).all())))
for k, v in {"inf": INF, "-inf": -INF, "nan": NAN}.items():
    add(f"ldm.constraint({k})", lambda c, v=v: c.ldm.constraint(v), err("threshold"))
    add(f"DensityConstrainedController(threshold={k})", lambda c, v=v: __import__("safe_density")
        .DensityConstrainedController(lambda s: np.zeros(1), c.ldm, threshold=v), err("threshold"))
add("ldm.constraint(np.float64)", lambda c: c.ldm.constraint(np.float64(1.0)), OK)
add("DensityConstrainedController(method='magic')", lambda c: __import__("safe_density")
    .DensityConstrainedController(lambda s: np.zeros(1), c.ldm, threshold=1.0, method="magic"), err("method"))
add("DensityConstrainedController(n_samples=2.5)", lambda c: __import__("safe_density")
    .DensityConstrainedController(lambda s: np.zeros(1), c.ldm, threshold=1.0, n_samples=2.5), err("n_samples"))
add("controller(obs requiring grad)", lambda c: __import__("safe_density").DensityConstrainedController(
    lambda s: np.zeros(1), c.ldm, threshold=1.0)(_grad(2)), OK)


# --- the smaller items of issue 22: each user mistake gets an answer that names what to fix
add("ldm.fit(non-leaf tensors requiring grad)", lambda c: c.fresh_ldm().fit(
    torch.as_tensor(c.obs) * torch.ones(1, requires_grad=True), c.act, c.nxt, steps=2, progress=False), OK)
add("controller(policy returns a float for a 1-D action)", lambda c: __import__("safe_density")
    .DensityConstrainedController(lambda s: 0.0, c.ldm, threshold=1e9)(np.zeros(2)),
    ok(lambda a: a.shape == (1,)))
add("controller(policy returns a 2-D action for a 1-D task)", lambda c: __import__("safe_density")
    .DensityConstrainedController(lambda s: np.zeros(2), c.ldm, threshold=1e9)(np.zeros(2)), err("controller"))
add("controller(per-state policy given a batch)", lambda c: __import__("safe_density")
    .DensityConstrainedController(lambda s: [float(s[0]) * 0.0], c.ldm, threshold=1e9)(np.zeros((3, 2))),
    ok(lambda a: a.shape == (3, 1)))
add("collect_gait_data(episodes_per_setting=2.7)", lambda c: __import__("mbrl.policies.gait", fromlist=["x"])
    .collect_gait_data(episodes_per_setting=2.7, max_steps=5), err("episodes_per_setting"))


def _ldm_crash_mid_save(c):
    """Saving over a checkpoint dies while the density is written: the old checkpoint must still load."""
    from safe_density import LyapunovDensityModel

    path = c.dir("ldm_ckpt")
    old = c.fresh_ldm(seed=1)
    old.fit(c.obs, c.act, c.nxt, progress=False)
    old.save(path)
    q = (torch.zeros(2, 2), torch.zeros(2, 1))
    before = LyapunovDensityModel.load(path).value(*q)
    dens = c.ldm.density

    def broken(p, *a, **k):
        Path(p).mkdir(parents=True, exist_ok=True)
        (Path(p) / "meta.json").write_text("{")  # half-written
        raise KeyboardInterrupt("power cut while the density is written")

    dens.save = broken
    try:
        c.ldm.save(path)
    except KeyboardInterrupt:
        pass
    finally:
        del dens.save
    after = LyapunovDensityModel.load(path).value(*q)
    assert not torch.equal(before, c.ldm.value(*q))  # the two models differ
    return bool(torch.equal(before, after))


add("LyapunovDensityModel.save crash mid-save keeps the old checkpoint", _ldm_crash_mid_save, ok(bool))


def _ldm_mismatched_checkpoint(c):
    from safe_density import LyapunovDensityModel

    path = c.dir("ldm_bad")
    c.ldm.save(path)
    meta = json.loads((path / "meta.json").read_text())
    meta["obs_dim"] = 5
    (path / "meta.json").write_text(json.dumps(meta))
    return LyapunovDensityModel.load(path)


add("LyapunovDensityModel.load(metadata disagree with tensors)", _ldm_mismatched_checkpoint, err("checkpoint"))

# --- densities
for cls, p in (("GaussianKDE", "chunk_size"), ("GaussianKDE", "max_points"), ("GaussianMixtureDensity", "max_iter"),
               ("GaussianMixtureDensity", "n_components")):
    for k in ("2.7", "nan", "inf", "true", "str"):
        add(f"{cls}({p}={k})", lambda c, cls=cls, p=p, v=BAD_COUNTS[k]: getattr(
            __import__("safe_density.density", fromlist=["x"]), cls)(**{p: v}), err(p))
add("GaussianMixtureDensity(np.int64(2)).fit(float64)", lambda c: __import__(
    "safe_density.density", fromlist=["x"]).GaussianMixtureDensity(np.int64(2)).fit(np.random.default_rng(0)
                                                                                     .normal(size=(50, 3))), OK)
add("GaussianKDE().fit(NaN)", lambda c: __import__("safe_density.density", fromlist=["x"]).GaussianKDE().fit(
    np.full((5, 2), NAN)), err("x"))

# --- MURAL
add("MuralReward(method='magic')", lambda c: __import__("safe_density").MuralReward(c.obs[:5], method="magic"),
    err("method"))
add("MuralReward(seed=2.5)", lambda c: __import__("safe_density").MuralReward(c.obs[:5], seed=2.5), err("seed"))
add("MuralReward(weight=inf)", lambda c: __import__("safe_density").MuralReward(c.obs[:5], weight=INF), err("weight"))
add("MuralReward(NaN examples)", lambda c: __import__("safe_density").MuralReward(np.full((3, 2), NAN)),
    err("success_examples"))
add("MuralReward(np.int64 seed, float64 examples)", lambda c: __import__("safe_density").MuralReward(
    c.obs[:5].astype(np.float64), seed=np.int64(3)), OK)
add("mural.update(NaN)", lambda c: c.mural.update(np.full((2, 2), NAN), progress=False), err("visited_states"))
add("mural.update(steps=2.7)", lambda c: c.mural.update(c.obs[:3], steps=2.7, progress=False), err("steps"))
add("mural(3-D states)", lambda c: c.mural(torch.zeros(4, 3)), err("states"))
add("mural(states [0, 2])", lambda c: c.mural(torch.zeros(0, 2)), ok(lambda r: r.shape == (0,)))


def _cnml_shaped_empty(c):
    from safe_density import MuralReward
    from safe_density.mural import MuralConfig

    mr = MuralReward(c.obs[:3], method="cnml", config=MuralConfig.small(classifier_steps=2))
    mr.update(c.obs[:4], steps=1, progress=False)
    e = torch.zeros(0, 2)
    return mr(e, torch.zeros(0, 1), e)


add("MuralReward(cnml) as a RewardShaper on an empty batch", _cnml_shaped_empty, ok(lambda r: r.shape == (0,)))
add("mural(states requiring grad, 20k rows)", lambda c: c.mural(_grad(20_000, 2)),
    ok(lambda r: r.shape == (20_000,) and bool(((r >= 0) & (r <= 1)).all())))



def _mural_tampered(c, key, value):
    from safe_density import MuralReward

    path = c.dir(f"mural_{key}")
    c.mural.save(path)
    meta = json.loads((path / "meta.json").read_text())
    meta[key] = value
    (path / "meta.json").write_text(json.dumps(meta))
    return MuralReward.load(path)


for key, value in (("obs_dim", 5), ("method", "meta_nml"), ("n_updates", 0)):
    add(f"MuralReward.load(metadata {key}={value!r} disagree with tensors)",
        lambda c, key=key, value=value: _mural_tampered(c, key, value), err("checkpoint", "path"))

# --- RCAD
_NET = torch.nn.Linear(2, 3)
_X, _Y = torch.randn(8, 2), torch.arange(8) % 3
for k, v in {"inf": INF, "nan": NAN, "-1": -1.0, "0": 0.0}.items():
    add(f"rcad_loss(step_size={k})", lambda c, v=v: __import__("safe_density").rcad_loss(_NET, _X, _Y, step_size=v),
        err("step_size"))
add("rcad_loss(weight=-1)", lambda c: __import__("safe_density").rcad_loss(_NET, _X, _Y, weight=-1.0), err("weight"))
add("rcad_loss(labels out of range)", lambda c: __import__("safe_density").rcad_loss(_NET, _X, _Y + 3), err("y"))
add("rcad_loss(NaN x)", lambda c: __import__("safe_density").rcad_loss(_NET, torch.full((8, 2), NAN), _Y), err("x"))
add("rcad_loss(x requiring grad, np.int64 labels, 4096 rows)", lambda c: __import__("safe_density").rcad_loss(
    _NET, torch.randn(4096, 2, requires_grad=True), np.arange(4096) % 3),
    ok(lambda r: r.ndim == 0 and bool(torch.isfinite(r))))

# --- serialization
add("save_state(tensors not a dict)", lambda c: __import__("mbrl.common.serialization", fromlist=["x"]).save_state(
    c.dir("s1"), [torch.zeros(1)], {}), err("tensors"))
add("save_state(meta not JSON)", lambda c: __import__("mbrl.common.serialization", fromlist=["x"]).save_state(
    c.dir("s2"), {"a": torch.zeros(1)}, {"x": object()}), err("meta"))
add("load_state(missing)", lambda c: __import__("mbrl.common.serialization", fromlist=["x"]).load_state(
    c.tmp / "nothing_here"), err("nothing_here", errors=(FileNotFoundError,)))


# ------------------------------------------------------------------------------------------ running
@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("bad_inputs"))


def _params(cases):
    out = []
    for c in cases:
        marks = [pytest.mark.xfail(strict=True, reason=c.owner)] if c.owner else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def test_case_ids_are_unique():
    ids = [c.id for c in CASES] + [c[0] for c in CLI_CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", _params(CASES))
def test_entry_point(case: Case, ctx):
    torch.manual_seed(0)
    exp = case.expect
    if exp.names:
        with pytest.raises(exp.errors) as info:
            case.call(ctx)
        msg = str(info.value)
        assert any(n in msg for n in exp.names), f"{type(info.value).__name__} names none of {exp.names}: {msg}"
    else:
        result = case.call(ctx)
        if exp.check is not None:
            assert exp.check(result), f"accepted, but the result fails its check: {result!r}"[:500]


# ------------------------------------------------------------------------------------------ the CLI
def _cli_files(tmp: Path) -> Path:
    """Inputs for the command-line cases: a saved 2-D buffer, arrays, a pickled array, broken files."""
    d = tmp / "cli"
    if d.exists():
        return d
    d.mkdir()
    from mbrl import ReplayBuffer

    rng = np.random.default_rng(0)
    b = ReplayBuffer(50, 2, 1)
    o = rng.normal(size=(40, 2))
    b.add_batch(o, rng.uniform(-1, 1, (40, 1)), o, np.zeros(40), np.zeros(40, bool))
    b.save(d / "buf")
    np.save(d / "ex.npy", rng.normal(size=(5, 2)).astype(np.float32))
    np.save(d / "ex3.npy", rng.normal(size=(5, 3)).astype(np.float32))
    np.save(d / "nan.npy", np.array([[NAN, 0.0]], np.float32))
    np.save(d / "empty.npy", np.zeros((0, 2), np.float32))
    np.save(d / "cube.npy", np.zeros((2, 2, 2), np.float32))
    np.save(d / "strings.npy", np.array(["a", "b"]))
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "words.csv").write_text("a,b\nc,d\n")
    (d / "notabuffer").mkdir()
    (d / "notabuffer" / "meta.json").write_text("{")
    (d / "notabuffer" / "tensors.safetensors").write_bytes(b"garbage")
    (d / "afile").write_text("x")
    return d


def _fit(*extra):
    return lambda d: ["fit-ldm", "--buffer", str(d / "buf"), "--out", str(d / "out"), *extra]


def _mural(examples="ex.npy", states="ex.npy", *extra):
    return lambda d: ["mural-reward", "--examples", str(d / examples), "--states", str(d / states),
                      "--out", str(d / "out"), *extra]


CLI_CASES: list[tuple[str, Callable, str]] = [  # (id, argv from the files folder, the option the error names)
    ("pets --episodes -1", lambda d: ["pets", "--episodes", "-1"], "--episodes"),
    ("pets --episodes 2.5", lambda d: ["pets", "--episodes", "2.5"], "--episodes"),
    ("pets --episodes nan", lambda d: ["pets", "--episodes", "nan"], "--episodes"),
    ("pets --task unknown", lambda d: ["pets", "--task", "Hopper-v9"], "--task"),
    ("pets --preset bogus", lambda d: ["pets", "--preset", "bogus"], "--preset"),
    ("pets --optimizer bogus", lambda d: ["pets", "--optimizer", "bogus"], "--optimizer"),
    ("pets --dtype float16", lambda d: ["pets", "--dtype", "float16"], "--dtype"),
    ("pets --seed x", lambda d: ["pets", "--seed", "x"], "--seed"),
    ("pets --device tpu", lambda d: ["pets", "--device", "tpu"], "--device"),
    ("pets --resume without --out", lambda d: ["pets", "--resume"], "--resume"),
    ("pets --resume with nothing to resume", lambda d: ["pets", "--resume", "--out", str(d / "empty_run")], "--resume"),
    ("pets unknown option", lambda d: ["pets", "--frobnicate"], "--frobnicate"),
    ("fit-ldm without --buffer", lambda d: ["fit-ldm", "--out", str(d / "out")], "--buffer"),
    ("fit-ldm missing buffer", lambda d: ["fit-ldm", "--buffer", str(d / "nope"), "--out", str(d / "out")],
     "--buffer"),
    ("fit-ldm buffer is a file", lambda d: ["fit-ldm", "--buffer", str(d / "afile"), "--out", str(d / "out")],
     "--buffer"),
    ("fit-ldm corrupt buffer", lambda d: ["fit-ldm", "--buffer", str(d / "notabuffer"), "--out", str(d / "out")],
     "--buffer"),
    ("fit-ldm --steps -1", _fit("--steps", "-1"), "--steps"),
    ("fit-ldm --steps 2.7", _fit("--steps", "2.7"), "--steps"),
    ("fit-ldm --steps nan", _fit("--steps", "nan"), "--steps"),
    ("fit-ldm --gamma 0", _fit("--gamma", "0"), "--gamma"),
    ("fit-ldm --gamma 1.5", _fit("--gamma", "1.5"), "--gamma"),
    ("fit-ldm --gamma nan", _fit("--gamma", "nan"), "--gamma"),
    ("fit-ldm --components 0", _fit("--components", "0"), "--components"),
    ("fit-ldm --components above N", _fit("--components", "1000"), "--components"),
    ("fit-ldm --drop-obs 99", _fit("--drop-obs", "99"), "--drop-obs"),
    ("fit-ldm --drop-obs -1", _fit("--drop-obs", "-1"), "--drop-obs"),
    ("fit-ldm --drop-obs all", _fit("--drop-obs", "0", "1"), "--drop-obs"),
    ("fit-ldm 2 action bounds for 1 action", _fit("--action-low", "-1", "-1"), "--action-low"),
    ("fit-ldm 3 upper bounds", _fit("--action-high", "1", "1", "1"), "--action-high"),
    ("fit-ldm low above high", _fit("--action-low", "1", "--action-high", "-1"), "--action-low"),
    ("fit-ldm --action-low nan", _fit("--action-low", "nan"), "--action-low"),
    ("fit-ldm --action-high inf", _fit("--action-high", "inf"), "--action-high"),
    ("fit-ldm --density bogus", _fit("--density", "bogus"), "--density"),
    ("fit-ldm --device tpu", _fit("--device", "tpu"), "--device"),
    ("fit-ldm unknown option", _fit("--frobnicate"), "--frobnicate"),
    ("mural-reward without --examples", lambda d: ["mural-reward", "--states", str(d / "ex.npy"), "--out",
                                                   str(d / "out")], "--examples"),
    ("mural-reward missing examples", _mural("nope.npy"), "--examples"),
    ("mural-reward pickled .npy", _mural("pickled.npy"), "--examples"),
    ("mural-reward string .npy", _mural("strings.npy"), "--examples"),
    ("mural-reward text csv", _mural("words.csv"), "--examples"),
    ("mural-reward NaN examples", _mural("nan.npy"), "--examples"),
    ("mural-reward empty examples", _mural("empty.npy"), "--examples"),
    ("mural-reward 3-D array", _mural("cube.npy"), "--examples"),
    ("mural-reward states of another size", _mural("ex.npy", "ex3.npy"), "--states"),
    ("mural-reward visited of another size", _mural("ex.npy", "ex.npy", "--visited", "ex3.npy"), "--visited"),
    ("mural-reward pickled visited", _mural("ex.npy", "ex.npy", "--visited", "pickled.npy"), "--visited"),
    ("mural-reward --method bogus", _mural("ex.npy", "ex.npy", "--method", "bogus"), "--method"),
    ("mural-reward --background 0", _mural("ex.npy", "ex.npy", "--background", "0"), "--background"),
    ("mural-reward --device tpu", _mural("ex.npy", "ex.npy", "--device", "tpu"), "--device"),
    ("bench unknown benchmark", lambda d: ["bench", "no_such_benchmark"], "no_such_benchmark"),
    ("no command", lambda d: [], "command"),
    ("unknown command", lambda d: ["frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_user_error(case, ctx, capsys, monkeypatch):
    from safe_density.cli import main

    _, argv, option = case
    d = _cli_files(ctx.tmp)
    monkeypatch.delenv("SAFE_DENSITY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main(argv(d))
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert option in lines[0], lines[0]
    assert not (d / "out").exists()  # nothing half-written


def test_cli_messages_say_what_they_mean_once(ctx, capsys, monkeypatch):
    """Issue 22's wording items: no "1 or 1 values", no "(no --visited given)" twice, and mural-reward --small
    records the config it used ("small"), not "custom"."""
    from safe_density.cli import main

    d = _cli_files(ctx.tmp)
    monkeypatch.delenv("SAFE_DENSITY_DEBUG", raising=False)
    with pytest.raises(SystemExit):
        main(_fit("--action-low", "-1", "-1")(d))
    line = capsys.readouterr().err.strip()
    assert "needs 1 value, got 2" in line and "1 or 1" not in line, line
    assert main(_mural("ex.npy", "ex.npy", "--small", "--background", "16")(d)) == 0
    err = capsys.readouterr().err
    assert err.count("no --visited given") == 1, err
    assert json.loads((d / "out" / "rewards.json").read_text())["config"] == "small"


def test_demo_forwards_bad_options_to_its_script(capsys, monkeypatch):
    """``demo``/``bench`` hand their options to the benchmark script, whose own parser rejects bad ones."""
    import safe_density.cli as cli

    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append(cmd) or 2)
    assert cli.main(["demo", "--frobnicate"]) == 2
    assert calls and calls[0][-1] == "--frobnicate" and calls[0][-2] == "benchmarks.demo"


# ------------------------------------------------------------------------------------------ properties
@PROPS
@given(st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.none(),
                 hnp.from_dtype(np.dtype("float64")), hnp.from_dtype(np.dtype("float32"))))
def test_check_int_rejects_every_non_integer(v):
    with pytest.raises(ValueError, match="arg_n"):
        check_int("arg_n", v)


@PROPS
@given(st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]).flatmap(
    lambda dt: hnp.from_dtype(np.dtype(dt))))
def test_check_int_accepts_every_numpy_integer(v):
    r = check_int("arg_n", v)
    assert type(r) is int and r == int(v)
    if np.dtype(type(v)).name in ("int8", "int16", "int32", "int64", "uint8"):  # dtypes torch holds
        assert check_int("arg_n", torch.tensor(v)) == r


@PROPS
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_threshold_accepts_exactly_the_finite_floats(v):
    if math.isfinite(v):
        assert check_threshold("arg_t", np.float64(v)) == v
    else:
        with pytest.raises(ValueError, match="arg_t"):
            check_threshold("arg_t", v)


@PROPS
@given(hnp.arrays(np.int64, st.integers(1, 6), elements=st.integers(-2, 3)))
def test_flags_are_exactly_zero_or_one(arr):
    from mbrl import ReplayBuffer

    b = ReplayBuffer(10, 1, 1)
    n = len(arr)
    z = np.zeros((n, 1))
    good = bool(np.isin(arr, [0, 1]).all())
    if good:
        b.add_batch(z, z, z, np.zeros(n), arr)
        assert torch.equal(b.all().terminated, torch.from_numpy(arr[-10:] == 1))
    else:
        with pytest.raises(ValueError, match="terminated"):
            b.add_batch(z, z, z, np.zeros(n), arr)
        assert len(b) == 0  # a rejected call leaves the buffer unchanged


@PROPS
@given(st.one_of(st.integers(-5, 10**6).map(str), st.floats().map(str), st.text(max_size=4)))
def test_cli_integer_options_parse_or_name_the_option(text):
    import contextlib
    import io

    from safe_density.cli import build_parser

    argv = ["fit-ldm", "--buffer", "b", "--out", "o", "--steps", text]
    try:
        valid = int(text) >= 0
    except ValueError:
        valid = False
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        if valid:
            assert build_parser().parse_args(argv).steps == int(text)
            return
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
    assert info.value.code == 2
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--steps" in lines[0], stderr.getvalue()


def test_count_of_bad_inputs_tried():
    """The number of inputs this suite tries (reported in the issue note): table rows + property examples."""
    n_props = 5 * PROPS.max_examples
    total = len(CASES) + len(CLI_CASES) + n_props
    assert len(CASES) >= 150 and len(CLI_CASES) >= 45
    print(f"bad-input suite: {len(CASES)} entry-point rows, {len(CLI_CASES)} CLI rows, up to {n_props} "
          f"property examples: {total} inputs")

