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
