"""The ensemble-disagreement penalty and shapers evaluated once per candidate (issue 20, item 3)."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.contracts import check_plugins
from mbrl.models import ProbabilisticEnsemble
from mbrl.penalties import EnsembleDisagreement
from mbrl.rollout import rollout

O, A = 3, 2


def _model(E: int = 4, seed: int = 0) -> ProbabilisticEnsemble:
    return ProbabilisticEnsemble(O, A, ensemble_size=E, hidden=(16, 16), seed=seed)


def _reward(o, a, n):
    return -n.square().sum(-1)


class Linear:
    """``w . next_obs + v . obs``: linear in the states, so its value at a candidate's mean state is the mean of
    its particles' values, and a rollout's returns do not depend on the granularity."""

    mode, weight = "add", 0.5

    def __init__(self, granularity: str):
        self.granularity = granularity
        self.w, self.v = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.0, -1.0])

    def __call__(self, o, a, n):
        return n.float() @ self.w + o.float() @ self.v


@settings(max_examples=15, deadline=None)
@given(E=st.integers(1, 5), P=st.integers(1, 9), N=st.integers(1, 6), B=st.integers(1, 2),
       propagation=st.sampled_from(["ts_inf", "ts_1", "expectation"]), seed=st.integers(0, 100))
def test_candidate_granularity_sees_each_candidates_mean_state(E, P, N, B, propagation, seed):
    """A shaper linear in the states gives the same returns per candidate as per particle: the candidates' means
    are taken over the right particles (TS-inf padding slots excluded) for every layout."""
    model = _model(E, seed)
    g = torch.Generator().manual_seed(seed)
    obs0, actions = torch.randn(B, O, generator=g), torch.rand(B, N, 4, A, generator=g) * 2 - 1
    out = {}
    for gran in ("particle", "candidate"):
        out[gran], _ = rollout(model, obs0, actions, reward_fn=_reward, particles=P, propagation=propagation,
                               reward_shapers=[Linear(gran)], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(out["candidate"], out["particle"], rtol=1e-5, atol=1e-5)


def test_disagreement_equals_a_per_member_reference():
    model = _model(5)
    g = torch.Generator().manual_seed(1)
    obs, act = torch.randn(2, 7, O, generator=g), torch.rand(2, 7, A, generator=g)
    pen = EnsembleDisagreement(model, weight=3.0)
    got = pen.disagreement(obs, act)
    with torch.no_grad():
        means = torch.stack([model.predict(obs.reshape(-1, O), act.reshape(-1, A), deterministic=True)[e]
                             for e in range(5)])                                       # [E, 14, O]
    ref = means.var(0, unbiased=False).sum(-1).reshape(2, 7)
    assert got.shape == (2, 7) and float(got.detach().min()) > 0
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(pen(obs, act, obs), -ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("E,P", [(5, 10), (5, 7), (4, 3), (3, 1)])
@pytest.mark.parametrize("fused", [True, False])
def test_members_form_is_the_one_step_disagreement_at_the_first_step(E, P, fused):
    """At the first imagined step every particle is the real state: the members form is the one-step disagreement
    there, over the members that propagate particles (all of them when P >= E; with P < E, members 0..P-1)."""
    model = _model(E, seed=E + P)
    model.fused = fused
    g = torch.Generator().manual_seed(5)
    obs0, actions = torch.randn(2, O, generator=g), torch.rand(2, 6, 1, A, generator=g) * 2 - 1
    pen = EnsembleDisagreement(model, weight=1.0)
    assert pen.granularity == "members"
    got, _ = rollout(model, obs0, actions, reward_fn=lambda o, a, n: torch.zeros(o.shape[:-1]), particles=P,
                     reward_shapers=[pen], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s0 = obs0[:, None, :].expand(2, 6, O).reshape(-1, O)
        means = model.predict(s0, actions[:, :, 0].reshape(-1, A), deterministic=True)[: min(P, E)]   # [M, 12, O]
    want = -means.var(0, unbiased=False).sum(-1).reshape(2, 6) if P > 1 else -pen.disagreement(s0, actions[:, :, 0]
                                                                                                 .reshape(-1, A))
    torch.testing.assert_close(got, want.reshape(2, 6), rtol=1e-4, atol=1e-6)


def test_members_form_costs_no_model_call_of_its_own():
    model = _model(5)
    calls = []
    for name in ("predict", "mean_and_var"):
        fn = getattr(model, name)
        setattr(model, name, functools.wraps(fn)(lambda *a, _fn=fn, **k: calls.append(1) or _fn(*a, **k)))
    g = torch.Generator().manual_seed(1)
    obs0, actions = torch.randn(1, O, generator=g), torch.rand(1, 4, 3, A, generator=g) * 2 - 1
    for gran, per_step in (("members", 1), ("candidate", 2)):
        calls.clear()
        rollout(model, obs0, actions, reward_fn=_reward, particles=10,
                reward_shapers=[EnsembleDisagreement(model, granularity=gran)])
        assert len(calls) == 3 * per_step, gran


def test_candidate_and_particle_disagreement_agree_on_the_first_step_and_differ_later():
    """All particles start at the real state, so one imagined step gives the same penalty in both forms; later
    the particles spread and the per-particle form also counts their spread."""
    model = _model(5)
    g = torch.Generator().manual_seed(2)
    obs0, actions = torch.randn(1, O, generator=g), torch.rand(1, 6, 5, A, generator=g) * 2 - 1

    def returns(gran, H):
        pen = EnsembleDisagreement(model, weight=1.0, granularity=gran)
        ret, _ = rollout(model, obs0, actions[:, :, :H], reward_fn=lambda o, a, n: torch.zeros(o.shape[:-1]),
                         particles=10, reward_shapers=[pen], generator=torch.Generator().manual_seed(0))
        return ret

    torch.testing.assert_close(returns("candidate", 1), returns("particle", 1), rtol=1e-5, atol=1e-7)
    c, p = returns("candidate", 5), returns("particle", 5)
    assert bool((c < 0).all() and (p < 0).all()) and not torch.allclose(c, p)


def test_bad_granularity_is_rejected():
    with pytest.raises(ValueError, match="granularity"):
        EnsembleDisagreement(_model(), granularity="step")
    bad = Linear("step")
    with pytest.raises(ValueError, match=r"reward_shapers\[0\].granularity"):
        check_plugins((), [bad])
    with pytest.raises(ValueError, match="from_member_means"):
        check_plugins((), [Linear("members")])


def test_ts1_with_fewer_rows_than_members():
    """TS-1 pads the member blocks with repeated rows; with one row and four members it repeats the row (found by the
    granularity test above: the padding once took only as many rows as there were)."""
    model = _model(4)
    ret, _ = rollout(model, torch.zeros(1, O), torch.zeros(1, 1, 3, A), reward_fn=_reward, particles=1,
                     propagation="ts_1", generator=torch.Generator().manual_seed(0))
    assert ret.shape == (1, 1) and bool(torch.isfinite(ret).all())


def test_plans_with_the_penalty_equal_on_the_fused_and_eager_paths():
    from mbrl.agent import MPCAgent
    from mbrl.planning import CEM

    model = _model(5, seed=3)

    def plan(fused):
        model.fused = fused
        agent = MPCAgent(model, _reward, None, -torch.ones(A), torch.ones(A), horizon=5, particles=10,
                         optimizer=CEM(population=40, elites=5, iterations=3, alpha=0.1), seed=11,
                         reward_shapers=[EnsembleDisagreement(model, weight=2.0)])
        return agent.plan(torch.full((O,), 0.5))

    try:
        ref, got = plan(False), plan(True)
    finally:
        model.fused = True
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
