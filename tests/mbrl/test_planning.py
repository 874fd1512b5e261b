"""Trajectory optimisers (CEM, iCEM, MPPI, random shooting) and the constrained elite selection."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from mbrl.planning import (
    CEM,
    ICEM,
    MPPI,
    RandomShooting,
    candidate_class,
    colored_noise,
    mppi_weights,
    rank_key,
    select_elites,
    truncated_normal,
)

H, A = 5, 2
TARGET = torch.tensor([[0.5, -0.3], [0.2, 0.6], [-0.6, 0.1], [0.0, -0.7], [0.65, 0.4]])


def quadratic(target):
    """Scores ``-||a - target||^2`` for ``a[..., H, A]`` (optimum ``target`` inside the bounds)."""
    return lambda a: -(a - target).square().sum((-1, -2))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# (optimiser, tolerance): CEM's mean converges tightly; iCEM returns its best sample; MPPI's weighted mean
# carries Monte-Carlo error of about noise_std / sqrt(effective samples).
OPTIMIZERS = {
    "cem": (lambda: CEM(population=500, elites=50, iterations=10), 0.02),
    "icem": (lambda: ICEM(population=500, elites=50, iterations=10, noise_beta=0.5), 0.05),
    "mppi": (lambda: MPPI(population=400, iterations=10, temperature=0.02, noise_std=0.1, beta=1.0), 0.03),
}


# ---------------------------------------------------------------------------------------------- optimum
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_finds_quadratic_optimum(name):
    make, tol = OPTIMIZERS[name]
    plan = make().optimize(quadratic(TARGET), torch.zeros(H, A), low=-1.0, high=1.0, generator=gen())
    assert plan.shape == (H, A)
    assert (plan - TARGET).abs().max() < tol


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_batched_problems_are_independent(name):
    """B problems with different optima at once: each gets its own optimum; objective sees [B, N, H, A]."""
    targets = torch.stack([TARGET, -TARGET, 0.5 * TARGET])
    seen = []

    def objective(a):
        seen.append(a.shape)
        return -(a - targets[:, None]).square().sum((-1, -2))

    make, tol = OPTIMIZERS[name]
    plan = make().optimize(objective, torch.zeros(3, H, A), low=-1.0, high=1.0, generator=gen(1))
    assert plan.shape == (3, H, A)
    assert all(s[0] == 3 and s[2:] == (H, A) for s in seen)
    assert (plan - targets).abs().max() < tol


def test_random_shooting_returns_the_best_sample():
    samples = []

    def objective(a):
        samples.append(a)
        return -(a - 0.3).square().sum((-1, -2))

    rs = RandomShooting(population=300)
    plan = rs.optimize(objective, torch.zeros(1, 1), low=-1, high=1, generator=gen())
    best = samples[0][objective(samples[0]).argmax()]
    torch.testing.assert_close(plan, best)
    assert abs(plan.item() - 0.3) < 0.02


@pytest.mark.parametrize("make", [lambda: CEM(500, 50, 10), lambda: CEM(500, 50, 10, return_best=True),
                                  lambda: ICEM(500, 50, 10), lambda: MPPI(400, 10, 0.02, 0.1, beta=1.0),
                                  lambda: RandomShooting(500)])
def test_constraints_are_hard_when_feasible(make):
    """Maximise sum(a) subject to a <= 0.3 (violation relu(a - 0.3)): the optimum sits on the constraint."""
    def objective(a):
        return a.sum((-1, -2)), torch.relu(a - 0.3).sum((-1, -2))

    opt = make()
    plan = opt.optimize(objective, torch.zeros(H, A), low=-1, high=1, generator=gen())
    assert plan.max() <= 0.3 + 1e-6
    if not isinstance(opt, RandomShooting):
        assert plan.mean() > 0.2
    # unconstrained, the same optimiser goes well past 0.3
    free = make().optimize(lambda a: a.sum((-1, -2)), torch.zeros(H, A), low=-1, high=1, generator=gen())
    assert free.mean() > 0.35


def test_mppi_prefers_feasible_and_ignores_nan():
    s = torch.tensor([[5.0, 1.0, float("nan"), 3.0]])
    v = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    w = mppi_weights(s, v, temperature=1.0)
    assert w[0, 0] == 0 and w[0, 2] == 0  # infeasible, NaN
    torch.testing.assert_close(w[0, [1, 3]], torch.softmax(torch.tensor([1.0, 3.0]), 0))
    w = mppi_weights(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]]), temperature=1.0)
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([-2.0, -1.0]), 0))  # none feasible
    assert mppi_weights(torch.full((1, 3), float("nan")), torch.zeros(1, 3), 1.0).sum() == 0


def test_seeded_and_deterministic():
    for name, (make, _) in OPTIMIZERS.items():
        a = make().optimize(quadratic(TARGET), torch.zeros(H, A), low=-1, high=1, generator=gen(7))
        b = make().optimize(quadratic(TARGET), torch.zeros(H, A), low=-1, high=1, generator=gen(7))
        c = make().optimize(quadratic(TARGET), torch.zeros(H, A), low=-1, high=1, generator=gen(8))
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name


def test_icem_population_memory_and_mean():
    """Shrinking population (not a multiple of anything), elites kept between iterations and calls."""
    opt = ICEM(population=37, elites=5, iterations=4, population_decay=1.25, keep_elites_fraction=0.4)
    sizes = []

    def objective(a):
        sizes.append(a.shape[0])
        return quadratic(TARGET)(a)

    opt.optimize(objective, torch.zeros(H, A), low=-1, high=1, generator=gen())
    keep = math.ceil(0.4 * 5)
    assert sizes == [37, 29 + keep, 23 + keep, 18 + keep + 1]
    assert [opt.population_at(i) for i in range(4)] == [37, 29, 23, 18]
    sizes.clear()
    opt.optimize(objective, torch.zeros(H, A), low=-1, high=1, generator=gen())  # shifted elites join
    assert sizes[0] == 37 + keep
    opt.reset()
    sizes.clear()
    opt.optimize(objective, torch.zeros(H, A), low=-1, high=1, generator=gen())
    assert sizes[0] == 37
    assert ICEM(population=10, elites=4).population_at(5) == 8  # floor 2 * elites


def test_colored_noise_unit_variance_and_correlation():
    g = gen()
    white = colored_noise(0.0, (4000,), 20, generator=g)
    pink = colored_noise(2.0, (4000,), 20, generator=g)
    for x in (white, pink):
        assert abs(x.var(0).mean().item() - 1) < 0.08
    lag1 = lambda x: (x[:, 1:] * x[:, :-1]).mean().item()  # noqa: E731
    assert abs(lag1(white)) < 0.05 and lag1(pink) > 0.5


def test_truncated_normal_within_two_std():
    x = truncated_normal((20000,), generator=gen(), device="cpu")
    assert x.abs().max() <= 2.0 and abs(x.mean().item()) < 0.03 and 0.7 < x.std().item() < 0.9


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="elites"):
        CEM(population=10, elites=20)
    with pytest.raises(ValueError, match="population"):
        ICEM(population=0)
    with pytest.raises(ValueError, match="alpha"):
        CEM(alpha=1.5)
    with pytest.raises(ValueError, match="clip"):
        CEM(clip="wrap")
    with pytest.raises(ValueError, match="temperature"):
        MPPI(temperature=0.0)
    with pytest.raises(ValueError, match="low"):
        CEM().optimize(quadratic(TARGET), torch.zeros(H, A), low=1.0, high=-1.0)
    with pytest.raises(ValueError, match="low"):
        CEM().optimize(quadratic(TARGET), torch.zeros(H, A))  # no bounds anywhere
    with pytest.raises(ValueError, match="init_mean"):
        CEM().optimize(quadratic(TARGET), torch.zeros(A), low=-1, high=1)
    with pytest.raises(ValueError, match="scores"):
        CEM(10, 2, 1).optimize(lambda a: a.sum(), torch.zeros(H, A), low=-1, high=1)


# ---------------------------------------------------------------------------------------------- bounds
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(0, 2)), min_size=A, max_size=A),
       st.sampled_from(["cem", "cem_clip", "icem", "mppi", "rs"]), st.integers(0, 2**31 - 1))
def test_actions_within_bounds(bounds, name, seed):
    low = torch.tensor([b[0] for b in bounds])
    high = low + torch.tensor([b[1] for b in bounds])
    opt = {"cem": CEM(30, 5, 3), "cem_clip": CEM(30, 5, 3, clip="clip", init_std=3.0),
           "icem": ICEM(30, 5, 3), "mppi": MPPI(30, 2, noise_std=2.0), "rs": RandomShooting(30)}[name]
    w = torch.randn(H, A, generator=gen(seed)) * 10  # pushes toward the bounds
    samples = []

    def objective(a):
        samples.append(a)
        return (a * w).sum((-1, -2))

    plan = opt.optimize(objective, torch.zeros(2, H, A), low=low, high=high, generator=gen(seed))
    assert torch.isfinite(plan).all()
    for x in (plan, *samples):                       # the result and every evaluated candidate
        assert (x >= low - 1e-6).all() and (x <= high + 1e-6).all()


# ---------------------------------------------------------------------------------------------- selection
@st.composite
def candidates(draw, need_feasible=True):
    n = draw(st.integers(2, 40))
    special = st.sampled_from([float("nan"), float("inf"), -float("inf")])
    scores = draw(st.lists(st.one_of(st.floats(-1e6, 1e6), special), min_size=n, max_size=n))
    viols = draw(st.lists(st.one_of(st.just(0.0), st.floats(0, 100), st.just(float("nan"))), min_size=n,
                          max_size=n))
    if need_feasible:
        i = draw(st.integers(0, n - 1))
        scores[i], viols[i] = draw(st.floats(-1e6, 1e6)), 0.0
    return torch.tensor(scores), torch.tensor(viols)


@settings(max_examples=25, deadline=None)
@given(candidates())
def test_top_elite_is_the_best_feasible(sv):
    s, v = sv
    feasible = (v == 0) & torch.isfinite(s)
    top = select_elites(s, v, 1)[0]
    assert feasible[top]
    assert s[top] == s[feasible].max()
    key = rank_key(s, v)
    assert sorted(key.tolist()) == list(range(1, len(s) + 1))  # a permutation
    # every feasible candidate ranks before every infeasible or non-finite one
    if (~feasible).any():
        assert key[feasible].min() > key[~feasible].max()


@settings(max_examples=25, deadline=None)
@given(candidates(need_feasible=False))
def test_nan_never_wins_and_least_violation_first(sv):
    s, v = sv
    cls = candidate_class(s, v)
    elites = select_elites(s, v, len(s))
    ordered = cls[elites]
    assert (ordered[1:] >= ordered[:-1]).all()  # classes in order: feasible, infeasible, invalid
    if (cls < 2).any():
        assert torch.isfinite(s[elites[0]]) and torch.isfinite(v[elites[0]])
    inf_idx = elites[ordered == 1]
    assert (v[inf_idx][1:] >= v[inf_idx][:-1]).all()  # least violation first
    feas_idx = elites[ordered == 0]
    assert (s[feas_idx][1:] <= s[feas_idx][:-1]).all()


def test_select_elites_batched_and_nan_last():
    s = torch.tensor([[float("nan"), -5.0, -1.0, -3.0], [2.0, float("inf"), 1.0, -float("inf")]])
    v = torch.zeros_like(s)
    assert select_elites(s, v, 2).tolist() == [[2, 3], [0, 2]]
    with pytest.raises(ValueError, match="k"):
        select_elites(s, v, 5)
