"""Hypothesis fuzzing of the planners, the MPC agent and the LDM entry points.

Property: a call returns a correct result (planners: finite, in bounds, right shape, even for NaN/inf
objectives) or raises ``ValueError`` / ``TypeError`` naming the offending argument.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbrl import CEM, ICEM, MPPI, MPCAgent, ProbabilisticEnsemble, RandomShooting
from safe_density.ldm import DensityConstrainedController, LyapunovDensityModel, solve_tabular

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
WEIRD = st.sampled_from([0.0, 1.0, -1.0, 1e30, -1e30, math.nan, math.inf, -math.inf])


def _names_argument(exc: Exception, names) -> bool:
    return any(n in str(exc) for n in names)


OPTIMIZERS = {
    "cem": lambda: CEM(population=16, elites=4, iterations=2),
    "icem": lambda: ICEM(population=16, elites=4, iterations=2),
    "mppi": lambda: MPPI(population=16, iterations=2),
    "rs": lambda: RandomShooting(population=16),
}


@FUZZ
@given(name=st.sampled_from(sorted(OPTIMIZERS)), h=st.integers(1, 5), a=st.integers(1, 3),
       batched=st.booleans(), poison=st.sampled_from(["none", "nan", "inf", "all_nan", "viol_nan"]),
       lo=st.floats(-3, 0), span=st.floats(0.0, 3.0), seed=st.integers(0, 5))
def test_optimizers_always_return_finite_in_bound_plans(name, h, a, batched, poison, lo, span, seed):
    low, high = torch.full((a,), lo), torch.full((a,), lo + span)
    init = torch.full((2, h, a) if batched else (h, a), lo + span / 2)

    def objective(acts):
        s = -(acts - 0.3).pow(2).sum((-1, -2))
        v = torch.zeros_like(s)
        if poison == "nan":
            s = torch.where(torch.arange(s.shape[-1]) % 3 == 0, torch.nan, s)
        elif poison == "inf":
            s = torch.where(torch.arange(s.shape[-1]) % 2 == 0, torch.inf, s)
        elif poison == "all_nan":
            s = torch.full_like(s, torch.nan)
        elif poison == "viol_nan":
            v = torch.where(torch.arange(s.shape[-1]) % 2 == 0, torch.nan, v)
        return s, v

    plan = OPTIMIZERS[name]().optimize(objective, init, low=low, high=high,
                                       generator=torch.Generator().manual_seed(seed))
    assert plan.shape == init.shape and torch.isfinite(plan).all()
    assert (plan >= low - 1e-6).all() and (plan <= high + 1e-6).all()


@FUZZ
@given(name=st.sampled_from(sorted(OPTIMIZERS)), bad=st.sampled_from(["low>high", "nan_low", "bad_shape",
                                                                       "nan_init", "1d_init"]))
def test_optimizers_reject_bad_input(name, bad):
    init = torch.zeros(3, 2)
    low, high = torch.full((2,), -1.0), torch.ones(2)
    if bad == "low>high":
        low = torch.full((2,), 2.0)
    elif bad == "nan_low":
        low = torch.tensor([math.nan, -1.0])
    elif bad == "bad_shape":
        low = torch.full((5,), -1.0)
    elif bad == "nan_init":
        init = torch.full((3, 2), math.nan)
    else:
        init = torch.zeros(3)
    with pytest.raises((ValueError, TypeError)) as err:
        OPTIMIZERS[name]().optimize(lambda x: -x.pow(2).sum((-1, -2)), init, low=low, high=high)
    assert _names_argument(err.value, ["low", "high", "init_mean"])


@pytest.fixture(scope="module")
def small_model():
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, 2, generator=g), torch.rand(64, 1, generator=g) * 2 - 1
    m = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(8,), seed=0)
    m.fit((obs, act, obs + 0.1 * act), epochs=1, progress=False)
    return m


def _reward(o, a, n):
    return -n.pow(2).sum(-1)


@FUZZ
@given(obs=st.lists(WEIRD, min_size=0, max_size=4), batch=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64, np.int64, np.float16]))
def test_agent_act_fuzz(small_model, obs, batch, dtype):
    agent = MPCAgent(small_model, _reward, None, [-1.0], [1.0], optimizer=CEM(8, 2, 1), horizon=2, particles=2)
    x = np.asarray(obs, dtype=np.float64)
    with np.errstate(all="ignore"):
        x = x.astype(dtype)
    if batch:
        x = x[None]
    try:
        a = agent.act(x)
    except (ValueError, TypeError) as exc:
        assert _names_argument(exc, ["obs"])
        return
    assert np.isfinite(a).all() and (np.abs(a) <= 1).all()


@FUZZ
@given(kw=st.sampled_from([{"horizon": 0}, {"particles": 0}, {"particles": -3}, {"propagation": "ts_2"},
                           {"action_low": [2.0]}, {"action_low": [math.nan]}, {"action_high": [1.0, 2.0]},
                           {"dtype": torch.int32}, {"replan_every": 0}]))
def test_agent_constructor_rejects_bad_arguments(small_model, kw):
    args = {"action_low": [-1.0], "action_high": [1.0], **kw}
    low, high = args.pop("action_low"), args.pop("action_high")
    with pytest.raises((ValueError, TypeError)) as err:
        MPCAgent(small_model, _reward, None, low, high, **args)
    assert _names_argument(err.value, [*kw, "action_low", "action_high"])


@FUZZ
@given(s=st.integers(1, 4), a=st.integers(1, 3), bad=st.sampled_from(["ok", "nan", "range", "shape", "gamma"]),
       seed=st.integers(0, 9))
def test_solve_tabular_fuzz(s, a, bad, seed):
    rng = np.random.default_rng(seed)
    energy = rng.normal(size=(s, a))
    nxt = rng.integers(0, s, size=(s, a))
    gamma = 1.0
    if bad == "nan":
        energy[0, 0] = np.nan
    elif bad == "range":
        nxt[0, 0] = s + 3
    elif bad == "shape":
        nxt = nxt[:, :-1] if a > 1 else nxt[:-1]
    elif bad == "gamma":
        gamma = 1.5
    try:
        g = solve_tabular(energy, nxt, gamma=gamma)
    except (ValueError, TypeError) as exc:
        assert bad != "ok" or s * a == 0
        assert _names_argument(exc, ["energy", "next_state", "gamma"])
        return
    assert bad == "ok"  # every bad input must have raised
    g = np.asarray(g)
    assert g.shape == (s, a) and (g >= energy - 1e-9).all()


@pytest.fixture(scope="module")
def small_ldm():
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(80, 2, generator=g), torch.rand(80, 1, generator=g) * 2 - 1
    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(8,), steps=5, seed=0)
    ldm.fit(obs, act, obs + 0.1 * act, progress=False)
    return ldm


@FUZZ
@given(o=st.lists(WEIRD, min_size=1, max_size=3), a=st.lists(WEIRD, min_size=1, max_size=2))
def test_ldm_value_fuzz(small_ldm, o, a):
    try:
        v = small_ldm.value(np.asarray(o, np.float32), np.asarray(a, np.float32))
    except (ValueError, TypeError) as exc:
        assert _names_argument(exc, ["obs", "act"])
        return
    # far outside the data the density underflows: G = +inf is the right answer (infeasible), NaN never is
    assert v.shape == () and not torch.isnan(v) and (torch.isfinite(v) or v > 0)


@FUZZ
@given(threshold=WEIRD, method=st.sampled_from(["sample", "qp", "magic"]), low=st.sampled_from([[-1.0], [-1.0, 0.0]]))
def test_controller_constructor_fuzz(small_ldm, threshold, method, low):
    try:
        ctl = DensityConstrainedController(lambda o: np.zeros(1, np.float32), small_ldm, threshold, method=method,
                                           action_low=low, action_high=[1.0] * len(low))
    except (ValueError, TypeError) as exc:
        assert _names_argument(exc, ["threshold", "method", "action_low", "action_high"])
        return
    a = ctl(np.zeros(2, np.float32))
    assert np.isfinite(a).all() and (np.abs(a) <= 1 + 1e-6).all()


# ===================================================================================== extended fuzzing
BAD_INTS = st.one_of(st.integers(-3, 3), st.none(), st.just("5"), st.just(2.5), st.just(math.nan),
                     st.just(True), st.just(10**30))


def _call(fn, names, allow=()):
    """``(True, result)`` or ``(False, exc)`` for a documented ``ValueError``/``TypeError`` naming ``names``."""
    try:
        return True, fn()
    except (ValueError, TypeError) as exc:
        assert _names_argument(exc, names), f"{type(exc).__name__} names none of {names}: {exc}"
        return False, exc
    except allow as exc:  # explicitly documented non-ValueError outcomes
        return False, exc


CTOR = {
    "cem": (CEM, ["population", "elites", "iterations", "alpha", "init_std", "min_std", "clip", "low", "high"]),
    "icem": (ICEM, ["population", "elites", "iterations", "noise_beta", "population_decay",
                    "keep_elites_fraction", "alpha", "init_std", "min_std", "low", "high"]),
    "mppi": (MPPI, ["population", "iterations", "temperature", "noise_std", "beta", "low", "high"]),
    "rs": (RandomShooting, ["population", "low", "high"]),
}


@settings(FUZZ, max_examples=30)
@given(name=st.sampled_from(sorted(CTOR)), data=st.data())
def test_optimizer_constructor_fuzz(name, data):
    cls, params = CTOR[name]
    kw = {}
    for p in data.draw(st.lists(st.sampled_from(params), max_size=3, unique=True)):
        if p in ("low", "high"):
            kw[p] = data.draw(st.one_of(WEIRD, st.just([0.0, math.nan]), st.just("x")))
        elif p == "clip":
            kw[p] = data.draw(st.sampled_from(["truncate", "clip", "bogus", None]))
        else:
            kw[p] = data.draw(st.one_of(BAD_INTS, WEIRD))
    ok, opt = _call(lambda: cls(**kw), list(kw))
    if not ok:
        return
    lo, hi = (opt.box.low, opt.box.high) if opt.box is not None else (torch.tensor(-1.0), torch.tensor(1.0))
    plan = opt.optimize(lambda x: -x.pow(2).sum((-1, -2)), torch.zeros(3, 2), low=lo, high=hi,
                        generator=torch.Generator().manual_seed(0))
    assert plan.shape == (3, 2) and torch.isfinite(plan).all()
    assert (plan >= lo - 1e-6).all() and (plan <= hi + 1e-6).all()


SMALL_OPT = {
    "cem": lambda: CEM(population=12, elites=3, iterations=2),
    "cem_clip_best": lambda: CEM(population=12, elites=3, iterations=2, clip="clip", return_best=True),
    "icem": lambda: ICEM(population=12, elites=3, iterations=3, noise_beta=2.0),
    "icem_white_mean": lambda: ICEM(population=12, elites=3, iterations=2, noise_beta=0.0, return_best=False),
    "mppi": lambda: MPPI(population=12, iterations=2),
    "rs": lambda: RandomShooting(population=12),
}


@FUZZ
@given(name=st.sampled_from(sorted(SMALL_OPT)), h=st.integers(1, 4), a=st.integers(1, 3), b=st.integers(0, 2),
       bounds=st.sampled_from(["unit", "equal", "huge", "per_step", "scalar", "low>high", "nan", "inf",
                               "mismatch", "none"]),
       init=st.sampled_from(["zeros", "nan", "huge", "outside", "1d", "4d", "empty", "int", "list"]),
       score=st.sampled_from(["quad", "nan", "inf", "-inf", "all_nan", "viol", "viol_nan", "viol_inf",
                              "wrong_shape", "not_tensor", "all_infeasible"]),
       seed=st.integers(0, 3), calls=st.integers(1, 2))
def test_optimize_fuzz(name, h, a, b, bounds, init, score, seed, calls):
    shape = (h, a) if b == 0 else (b, h, a)
    low, high = torch.full((a,), -1.0), torch.full((a,), 2.0)
    if bounds == "equal":
        high = low.clone()
    elif bounds == "huge":
        low, high = torch.full((a,), -1e30), torch.full((a,), 1e30)
    elif bounds == "per_step":
        low, high = -torch.rand(h, a), torch.rand(h, a)
    elif bounds == "scalar":
        low, high = -0.5, 0.5
    elif bounds == "low>high":
        low, high = high, low
    elif bounds == "nan":
        low = torch.full((a,), math.nan)
    elif bounds == "inf":
        high = torch.full((a,), math.inf)
    elif bounds == "mismatch":
        low = torch.full((a + 1,), -1.0)
    elif bounds == "none":
        low = high = None
    mean = {"zeros": lambda: torch.zeros(shape), "nan": lambda: torch.full(shape, math.nan),
            "huge": lambda: torch.full(shape, 1e30), "outside": lambda: torch.full(shape, 5.0),
            "1d": lambda: torch.zeros(h), "4d": lambda: torch.zeros(1, 1, h, a), "empty": lambda: torch.zeros(0, a),
            "int": lambda: torch.zeros(shape, dtype=torch.int64), "list": lambda: np.zeros(shape).tolist()}[init]()

    def objective(x):
        s = -(x - 0.3).pow(2).sum((-1, -2))
        n = s.shape[-1]
        v = torch.zeros_like(s)
        idx = torch.arange(n)
        if score == "nan":
            s = torch.where(idx % 3 == 0, math.nan, s)
        elif score == "inf":
            s = torch.where(idx % 2 == 0, math.inf, s)
        elif score == "-inf":
            s = torch.full_like(s, -math.inf)
        elif score == "all_nan":
            s = torch.full_like(s, math.nan)
        elif score == "viol":
            v = (x[..., 0] - 0.5).clamp_min(0).sum(-1)
        elif score == "viol_nan":
            v = torch.where(idx % 2 == 0, math.nan, v)
        elif score == "viol_inf":
            v = torch.where(idx % 2 == 1, math.inf, v)
        elif score == "all_infeasible":
            v = 1.0 + x.abs().sum((-1, -2))
        elif score == "wrong_shape":
            return s[..., :-1] if n > 1 else s[..., None]
        elif score == "not_tensor":
            return s.tolist()
        return s, v

    opt = SMALL_OPT[name]()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(calls):
        ok, plan = _call(lambda: opt.optimize(objective, mean, low=low, high=high, generator=gen),
                         ["low", "high", "init_mean", "objective", "action bounds"])
        bad = (bounds in ("low>high", "nan", "inf", "mismatch", "none", "per_step")
               or init in ("nan", "huge", "1d", "4d", "empty")
               or score in ("wrong_shape", "not_tensor"))
        if bounds == "inf" and ok:  # an infinite bound is a valid (unbounded) box only if the plan stays finite
            bad = False
        if init == "huge" and ok:
            bad = False  # a finite init outside the box is clipped
        if not ok:
            assert bad, f"valid input rejected: {plan}"
            return
        assert not (bounds in ("low>high", "nan", "mismatch", "none", "per_step")
                    or init in ("nan", "1d", "4d", "empty")
                    or score in ("wrong_shape", "not_tensor")), "bad input accepted"
        want = tuple(torch.as_tensor(np.asarray(mean)).shape)
        assert tuple(plan.shape) == want and plan.dtype.is_floating_point
        assert torch.isfinite(plan).all(), plan
        lo_t = torch.as_tensor(low, dtype=torch.float32)
        hi_t = torch.as_tensor(high, dtype=torch.float32)
        assert (plan >= lo_t - 1e-5).all() and (plan <= hi_t + 1e-5).all()


@FUZZ
@given(name=st.sampled_from(sorted(SMALL_OPT)), gen=st.sampled_from([None, "seed"]), steps=BAD_INTS)
def test_optimizer_generator_and_state(name, gen, steps):
    opt = SMALL_OPT[name]()
    f = lambda x: -(x - 0.2).pow(2).sum((-1, -2))  # noqa: E731
    g1 = torch.Generator().manual_seed(1) if gen else None
    p1 = opt.optimize(f, torch.zeros(3, 1), low=-1.0, high=1.0, generator=g1)
    ok, _ = _call(lambda: opt.advance(steps), ["steps"])
    if name.startswith("icem"):
        assert ok == (isinstance(steps, int) and not isinstance(steps, bool) and 0 <= steps < 2**31)
    opt.reset()
    if gen:  # seeded: the same generator seed gives the same plan after reset
        p2 = SMALL_OPT[name]().optimize(f, torch.zeros(3, 1), low=-1.0, high=1.0,
                                        generator=torch.Generator().manual_seed(1))
        assert torch.equal(p1, p2)


# ------------------------------------------------------------------------------------------ MPC agent
class _Diverging:
    """A model whose predictions blow up (NaN/inf) for some inputs."""

    ensemble_size, obs_dim, act_dim = 2, 2, 1

    def __init__(self, mode):
        self.mode = mode

    def parameters(self):
        return iter(())

    def predict(self, obs, act, *args, **kwargs):
        nxt = obs * 1e20 + act.sum(-1, keepdim=True)
        if self.mode == "nan":
            nxt = torch.where(act[..., :1] > 0, math.nan, nxt)
        elif self.mode == "inf":
            nxt = torch.full_like(nxt, math.inf)
        return nxt


@settings(FUZZ, max_examples=20)
@given(kw=st.fixed_dictionaries({}, optional={
    "horizon": BAD_INTS, "particles": BAD_INTS, "replan_every": BAD_INTS,
    "propagation": st.sampled_from(["ts_inf", "ts_1", "expectation", "bogus", None]),
    "dtype": st.sampled_from([torch.float32, torch.float64, torch.int64, "float32", None]),
    "action_low": st.sampled_from([[-1.0], [math.nan], [2.0], [-1.0, -1.0], [], "x", [-1e30]]),
    "action_high": st.sampled_from([[1.0], [math.inf], [1.0, 1.0], [], [1e30]]),
}))
def test_agent_constructor_fuzz(small_model, kw):
    kw = dict(kw)
    low, high = kw.pop("action_low", [-1.0]), kw.pop("action_high", [1.0])
    names = [*kw, "action_low", "action_high", "model", "dtype"]
    ok, agent = _call(lambda: MPCAgent(small_model, _reward, None, low, high, optimizer=CEM(6, 2, 1), **kw), names)
    if not ok:
        return
    a = agent.act(np.zeros(2, np.float32))
    assert a.shape == (1,) and np.isfinite(a).all()
    assert bool(agent.action_box.contains(torch.as_tensor(a), slack=1e-6))


@settings(FUZZ, max_examples=25)
@given(model=st.sampled_from(["real", "nan", "inf", "big"]),
       obs=st.sampled_from(["ok", "nan", "inf", "huge", "wrong_dim", "empty", "empty_batch", "int", "3d",
                            "list", "scalar", "bool"]),
       batch=st.integers(1, 3), method=st.sampled_from(["act", "plan"]),
       opt=st.sampled_from(["cem", "icem", "mppi", "rs"]), replan=st.integers(1, 2))
def test_agent_act_plan_fuzz(small_model, model, obs, batch, method, opt, replan):
    m = small_model if model == "real" else _Diverging(model if model != "big" else "none")
    optimizer = {"cem": lambda: CEM(6, 2, 1), "icem": lambda: ICEM(6, 2, 2), "mppi": lambda: MPPI(6),
                 "rs": lambda: RandomShooting(6)}[opt]()
    agent = MPCAgent(m, _reward, None, [-1.0], [0.5], optimizer=optimizer, horizon=2, particles=2,
                     replan_every=replan)
    x = {"ok": lambda: np.zeros((batch, 2)), "nan": lambda: np.full((batch, 2), np.nan),
         "inf": lambda: np.full((batch, 2), np.inf), "huge": lambda: np.full((batch, 2), 1e30),
         "wrong_dim": lambda: np.zeros((batch, 3)), "empty": lambda: np.zeros(0),
         "empty_batch": lambda: np.zeros((0, 2)), "int": lambda: np.ones((batch, 2), np.int64),
         "3d": lambda: np.zeros((1, batch, 2)), "list": lambda: [[0.0, 1.0]] * batch,
         "scalar": lambda: np.float32(1.0), "bool": lambda: np.ones((batch, 2), bool)}[obs]()
    for _ in range(2):
        ok, out = _call(lambda: getattr(agent, method)(x), ["obs"])
        if not ok:
            assert obs in ("nan", "inf", "wrong_dim", "empty", "empty_batch", "3d", "scalar")
            return
        assert obs not in ("nan", "inf", "wrong_dim", "empty", "empty_batch", "3d", "scalar")
        out = np.asarray(out)
        b = np.asarray(x).shape[0]
        assert out.shape == ((b, 1) if method == "act" else (b, 2, 1))
        assert np.isfinite(out).all() and (out >= -1 - 1e-6).all() and (out <= 0.5 + 1e-6).all()


# ------------------------------------------------------------------------------------------- tabular
@FUZZ
@given(s=st.integers(0, 4), a=st.integers(0, 3), seed=st.integers(0, 20), stochastic=st.booleans(),
       bad=st.sampled_from(["ok", "ok", "inf_energy", "nan", "-inf", "range", "neg", "float_ns", "nan_ns",
                            "shape", "gamma", "gamma0", "gamma_nan", "tol", "max_iter", "max_iter_str",
                            "torch", "1d", "row_sum", "neg_p", "bool_energy"]),
       gamma=st.sampled_from([1.0, 0.9, 0.5]))
def test_solve_tabular_extended_fuzz(s, a, seed, stochastic, bad, gamma):
    from safe_density.ldm import solve_tabular_stochastic

    rng = np.random.default_rng(seed)
    energy = rng.normal(size=(s, a))
    nxt = rng.integers(0, max(s, 1), size=(s, a))
    p = rng.random((s, a, s)) * (rng.random((s, a, s)) < 0.5)
    if s:
        p[..., 0] += 1e-3  # every row has some mass
    p = p / p.sum(-1, keepdims=True) if s else p
    kw = {"gamma": gamma}
    if bad == "inf_energy" and energy.size:
        energy[0, -1] = np.inf
    elif bad == "nan" and energy.size:
        energy[-1, 0] = np.nan
    elif bad == "-inf" and energy.size:
        energy[0, 0] = -np.inf
    elif bad == "range" and nxt.size:
        nxt[0, 0] = s
    elif bad == "neg" and nxt.size:
        nxt[-1, -1] = -1
    elif bad == "float_ns":
        nxt = nxt.astype(np.float64) + (0.5 if nxt.size else 0.0)
    elif bad == "nan_ns":
        nxt = np.full((s, a), np.nan)
    elif bad == "shape":
        nxt, p = nxt[:, :0], p[:, :, :0]
    elif bad == "gamma":
        kw["gamma"] = 1.5
    elif bad == "gamma0":
        kw["gamma"] = 0.0
    elif bad == "gamma_nan":
        kw["gamma"] = math.nan
    elif bad == "tol":
        kw["tol"] = -1.0
    elif bad == "max_iter":
        kw["max_iter"] = 0
    elif bad == "max_iter_str":
        kw["max_iter"] = "ten"
    elif bad == "torch":
        energy, nxt, p = torch.as_tensor(energy), torch.as_tensor(nxt), torch.as_tensor(p)
    elif bad == "1d":
        energy = energy.reshape(-1)
    elif bad == "row_sum" and p.size:
        p = p * 2
    elif bad == "neg_p" and p.size:
        p[0, 0, 0] = -0.5
    elif bad == "bool_energy":
        energy = energy > 0
    if stochastic:
        fn = lambda: solve_tabular_stochastic(energy, p, **kw)  # noqa: E731
    else:
        fn = lambda: solve_tabular(energy, nxt, **kw)  # noqa: E731
    ok, g = _call(fn, ["energy", "next_state", "transition", "gamma", "tol", "max_iter"])
    expect_bad = s * a == 0 or bad in ("nan", "-inf", "gamma", "gamma0", "gamma_nan", "tol", "max_iter",
                                       "max_iter_str", "1d")
    if stochastic:
        expect_bad |= bad in ("shape",) or (bad in ("row_sum", "neg_p") and s * a > 0)
    else:
        expect_bad |= bad in ("shape", "nan_ns") or (bad in ("range", "neg") and s * a > 0) or (
            bad == "float_ns" and s * a > 0)
    if bad == "shape" and a == 0:
        expect_bad = True
    assert ok != expect_bad, (bad, g)
    if not ok:
        return
    e = np.asarray(torch.as_tensor(energy).double() if bad in ("torch", "bool_energy") else energy, np.float64)
    gn = g.detach().cpu().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
    assert isinstance(g, torch.Tensor) == (bad == "torch")
    assert gn.shape == (s, a) and not np.isnan(gn).any()
    assert (gn >= e - 1e-9).all() or gamma < 1  # G >= E for gamma = 1
    if gamma == 1.0:
        assert (gn >= e - 1e-9).all()


# ---------------------------------------------------------------------------------------- densities
@settings(FUZZ, max_examples=30)
@given(kind=st.sampled_from(["kde", "kde_silverman", "kde_h", "gmm", "gmm_f64"]),
       n=st.integers(0, 12), d=st.integers(0, 3),
       data=st.sampled_from(["normal", "constant", "nan", "inf", "huge", "int", "1d", "3d", "list"]),
       query=st.sampled_from(["same", "batch", "nan", "wrong_dim", "empty", "scalar", "huge"]))
def test_density_fit_log_prob_fuzz(kind, n, d, data, query):
    from safe_density.density import GaussianKDE, GaussianMixtureDensity

    model = {"kde": lambda: GaussianKDE(), "kde_silverman": lambda: GaussianKDE("silverman", chunk_size=3),
             "kde_h": lambda: GaussianKDE(0.3, max_points=5), "gmm": lambda: GaussianMixtureDensity(2, max_iter=5),
             "gmm_f64": lambda: GaussianMixtureDensity(1, max_iter=3, dtype=torch.float64)}[kind]()
    rng = np.random.default_rng(n * 10 + d)
    x = rng.normal(size=(n, d))
    if data == "constant":
        x = np.ones((n, d))
    elif data == "nan" and x.size:
        x[0, 0] = np.nan
    elif data == "inf" and x.size:
        x[-1, -1] = np.inf
    elif data == "huge":
        x = x * 1e30
    elif data == "int":
        x = (x * 3).astype(np.int64)
    elif data == "1d":
        x = x.reshape(-1)
    elif data == "3d":
        x = x[None]
    elif data == "list":
        x = x.tolist()
    ok, _ = _call(lambda: model.fit(x), ["x", "points"])
    if not ok:
        return
    q = {"same": lambda: np.asarray(x, np.float64), "batch": lambda: rng.normal(size=(2, 3, d)),
         "nan": lambda: np.full((2, d), np.nan), "wrong_dim": lambda: np.zeros((2, d + 1)),
         "empty": lambda: np.zeros((0, d)), "scalar": lambda: np.float64(0.0),
         "huge": lambda: np.full((2, d), 1e30)}[query]()
    ok, lp = _call(lambda: model.log_prob(q), ["x"])
    if not ok:
        assert query in ("nan", "wrong_dim", "scalar") or (query == "nan" and d == 0), query
        return
    assert query not in ("wrong_dim", "scalar") and not (query == "nan" and d > 0)
    qs = np.asarray(q).shape
    assert tuple(lp.shape) == qs[:-1]
    assert not torch.isnan(lp).any(), lp  # far-away or degenerate data: -inf is fine, NaN never
    assert not (lp == math.inf).any()
    if data in ("normal", "int", "list") and query in ("same", "batch"):
        assert torch.isfinite(lp).all()


@FUZZ
@given(kind=st.sampled_from(["kde", "gmm"]), data=st.data())
def test_density_constructor_fuzz(kind, data):
    from safe_density.density import GaussianKDE, GaussianMixtureDensity

    params = (["bandwidth", "chunk_size", "max_points", "dtype"] if kind == "kde" else
              ["n_components", "max_iter", "tol", "reg_covar", "chunk_size", "dtype"])
    kw = {}
    for p in data.draw(st.lists(st.sampled_from(params), max_size=2, unique=True)):
        if p == "dtype":
            kw[p] = data.draw(st.sampled_from([torch.float64, torch.float16, torch.int64, "float32"]))
        elif p == "bandwidth":
            kw[p] = data.draw(st.one_of(WEIRD, st.sampled_from(["scott", "silverman", "bogus", None])))
        else:  # None/NaN/inf/"5"/2.5/True to these integer options: tests/test_bad_inputs.py (xfail, owner)
            kw[p] = data.draw(st.one_of(st.integers(-3, 3), st.sampled_from([0.0, 1.0, -1.0])))
    cls = GaussianKDE if kind == "kde" else GaussianMixtureDensity
    args = [kw.pop("bandwidth")] if "bandwidth" in kw else ([kw.pop("n_components")] if "n_components" in kw else [])
    names = list(params)
    ok, m = _call(lambda: cls(*args, **kw), names)
    if not ok:
        return
    x = np.random.default_rng(0).normal(size=(8, 2))
    ok, _ = _call(lambda: m.fit(x), ["x", "points", "reg_covar", "n_components"])
    if ok:
        lp = m.log_prob(x)
        assert lp.shape == (8,) and not torch.isnan(lp).any()


# --------------------------------------------------------------------------------------------- LDM
@settings(FUZZ, max_examples=20)
@given(kw=st.fixed_dictionaries({}, optional={
    "obs_dim": BAD_INTS, "act_dim": BAD_INTS, "gamma": WEIRD, "n_action_samples": BAD_INTS, "tau": WEIRD,
    "lr": WEIRD, "batch_size": BAD_INTS, "energy_cap": WEIRD, "hidden": st.sampled_from([(), (0,), (4,), [3, 2]]),
    "dtype": st.sampled_from([torch.float64, torch.int32]),
    "action_low": st.sampled_from([[-1.0], [math.nan], [1.0], [-1.0, 0.0]]),
}))
def test_ldm_constructor_fuzz(kw):
    kw = dict(kw)
    obs_dim, act_dim = kw.pop("obs_dim", 2), kw.pop("act_dim", 1)
    low = kw.pop("action_low", [-1.0])
    names = [*kw, "obs_dim", "act_dim", "action_low", "action_high", "hidden"]
    ok, ldm = _call(lambda: LyapunovDensityModel(obs_dim, act_dim, low, [1.0], steps=5, **kw), names)
    if ok:
        assert ldm.obs_dim == obs_dim and ldm.act_dim == act_dim


@settings(FUZZ, max_examples=15)
@given(bad=st.sampled_from(["ok", "nan_obs", "wrong_dim", "mismatch_n", "empty", "terminated_len", "steps",
                            "batch", "constant"]))  # actions 1e30 outside the box: tests/test_bad_inputs.py
def test_ldm_fit_fuzz(bad):
    g = torch.Generator().manual_seed(1)
    n = 40
    obs, act = torch.randn(n, 2, generator=g), torch.rand(n, 1, generator=g) * 2 - 1
    nxt, kw = obs + 0.1 * act, {}
    if bad == "nan_obs":
        obs[0, 0] = math.nan
    elif bad == "wrong_dim":
        obs = obs[:, :1]
    elif bad == "mismatch_n":
        act = act[:-1]
    elif bad == "empty":
        obs, act, nxt = obs[:0], act[:0], nxt[:0]
    elif bad == "terminated_len":
        kw["terminated"] = torch.zeros(n - 1, dtype=torch.bool)
    elif bad == "steps":
        kw["steps"] = -1
    elif bad == "batch":
        kw["batch_size"] = 0
    elif bad == "constant":
        obs, nxt = torch.ones(n, 2), torch.ones(n, 2)
    ldm = LyapunovDensityModel(2, 1, [-1.0], [1.0], hidden=(8,), steps=5, seed=0,
                               density=__import__("safe_density.density", fromlist=["x"]).GaussianKDE())
    ok, _ = _call(lambda: ldm.fit(obs, act, nxt, progress=False, **kw),
                  ["obs", "act", "next_obs", "terminated", "steps", "batch_size"])
    assert ok == (bad in ("ok", "constant")), bad
    if ok:
        v = ldm.value(obs[:3], torch.zeros(3, 1))
        assert v.shape == (3,) and not torch.isnan(v).any()
        c = ldm.constraint(1.0).cost(obs[:3], torch.zeros(3, 1))
        assert torch.isfinite(c).all()


@FUZZ
@given(o=st.sampled_from(["ok", "nan", "wrong", "empty", "batch", "broadcast_bad", "int", "huge"]),
       which=st.sampled_from(["value", "energy", "cost", "greedy_cost"]), thr=WEIRD)
def test_ldm_queries_fuzz(small_ldm, o, which, thr):
    obs = {"ok": lambda: np.zeros(2), "nan": lambda: np.full(2, np.nan), "wrong": lambda: np.zeros(3),
           "empty": lambda: np.zeros((0, 2)), "batch": lambda: np.zeros((4, 2)),
           "broadcast_bad": lambda: np.zeros((3, 2)), "int": lambda: np.zeros(2, np.int64),
           "huge": lambda: np.full(2, 1e30)}[o]()
    act = np.zeros((2, 1)) if o == "broadcast_bad" else np.zeros(1)
    if which in ("cost", "greedy_cost"):
        ok, con = _call(lambda: small_ldm.constraint(thr, greedy=which == "greedy_cost"), ["threshold"])
        if not ok:
            return
        fn = lambda: con.cost(obs, act)  # noqa: E731
    else:
        fn = lambda: getattr(small_ldm, which)(obs, act)  # noqa: E731
    ok, v = _call(fn, ["obs", "act"])
    if not ok:
        assert o in ("nan", "wrong", "broadcast_bad")
        return
    assert o not in ("nan", "wrong", "broadcast_bad")
    assert not torch.isnan(v).any()


# -------------------------------------------------------------------------------------- controller
@settings(FUZZ, max_examples=25)
@given(kw=st.fixed_dictionaries({}, optional={
    "threshold": WEIRD, "method": st.sampled_from(["sample", "qp", "SAMPLE", None]),
    "n_samples": BAD_INTS, "qp_iters": BAD_INTS, "refine_rounds": BAD_INTS, "noise_std": WEIRD,
    "action_low": st.sampled_from([[-1.0], [1.0], [math.nan], [-1.0, -1.0], []]),
    "action_high": st.sampled_from([[1.0], [math.inf], [1.0, 1.0]]),
}), obs=st.sampled_from(["ok", "batch", "nan", "wrong", "empty", "3d", "huge"]))
def test_controller_fuzz(small_ldm, kw, obs):
    kw = {"threshold": 50.0, "n_samples": 8, "qp_iters": 2, "refine_rounds": 1, "warn": False, **kw}
    ok, ctl = _call(lambda: DensityConstrainedController(lambda o: np.full(np.shape(o)[:-1] + (1,), 0.9), small_ldm,
                                                         **kw), list(kw))
    if not ok:
        return
    x = {"ok": lambda: np.zeros(2), "batch": lambda: np.zeros((3, 2)), "nan": lambda: np.full(2, np.nan),
         "wrong": lambda: np.zeros(4), "empty": lambda: np.zeros((0, 2)), "3d": lambda: np.zeros((1, 1, 2)),
         "huge": lambda: np.full(2, 1e30)}[obs]()
    ok, a = _call(lambda: ctl(x), ["obs", "act"])
    if not ok:
        assert obs in ("nan", "wrong", "empty", "3d"), a
        return
    assert obs not in ("nan", "wrong", "empty", "3d")
    assert a.shape == x.shape[:-1] + (1,) and np.isfinite(a).all()
    assert (a >= ctl.low.numpy() - 1e-6).all() and (a <= ctl.high.numpy() + 1e-6).all()
    ok, f = _call(lambda: ctl.filter(np.zeros(2), np.array([math.nan])), ["act"])
    assert not ok
