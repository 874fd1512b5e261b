"""Density models meeting the DensityModel contract (docs/design.md, "Contracts")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safe_density.contracts import DensityModel
from safe_density.density import FlowDensity, GaussianKDE, GaussianMixtureDensity, kde_bandwidth

torch.set_num_threads(1)

MEAN = torch.tensor([3.0, -1.0], dtype=torch.float64)
STD = torch.tensor([2.0, 0.5], dtype=torch.float64)


def gaussian_data(n=1500, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=torch.float64) * STD + MEAN


def true_log_prob(x):
    return torch.distributions.Normal(MEAN, STD).log_prob(x).sum(-1)


FACTORIES = {
    "kde": lambda: GaussianKDE(dtype=torch.float64),
    "gmm": lambda: GaussianMixtureDensity(2, dtype=torch.float64),
    "maf": lambda: FlowDensity("maf", transforms=2, hidden=(32, 32), steps=250, lr=3e-3, seed=0),
}


@pytest.fixture(scope="module")
def fitted():
    x = gaussian_data()
    return x, {k: f().fit(x) for k, f in FACTORIES.items()}


@pytest.mark.parametrize("name, tol", [("kde", 0.2), ("gmm", 0.05), ("maf", 0.25)])
def test_log_prob_close_to_truth(fitted, name, tol):
    x, models = fitted
    m = models[name]
    assert isinstance(m, DensityModel)
    q = gaussian_data(400, seed=1)
    lp = m.log_prob(q).detach().double()
    err = (lp - true_log_prob(q)).abs().mean().item()
    assert err < tol, err
    # batched shapes: [..., D] -> [...]
    assert m.log_prob(q.reshape(20, 20, 2)).shape == (20, 20)
    assert m.log_prob(q[0]).shape == ()
    # an outlier is far less likely than the data
    assert float(m.log_prob(MEAN + 8 * STD)) < float(lp.min())


@pytest.mark.parametrize("name", list(FACTORIES))
def test_save_load_roundtrip(fitted, name, tmp_path):
    _, models = fitted
    m = models[name]
    m.save(tmp_path / name)
    m2 = type(m).load(tmp_path / name)
    q = gaussian_data(50, seed=2).to(m.dtype)
    torch.testing.assert_close(m2.log_prob(q), m.log_prob(q))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_validation(name):
    m = FACTORIES[name]()
    with pytest.raises(ValueError, match="x"):
        m.fit(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="x"):
        m.fit(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="x"):
        m.fit(torch.zeros(10))
    with pytest.raises(RuntimeError):
        m.log_prob(torch.zeros(3, 2))
    m.fit(gaussian_data(200)) if name != "maf" else m.fit(gaussian_data(200), steps=2)
    with pytest.raises(ValueError, match="x"):
        m.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x"):
        m.log_prob(torch.tensor([[float("nan"), 0.0]]))


def test_kde_exact_reference_and_chunking():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(57, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 5.0, 0.1], dtype=torch.float64
    )
    q = torch.randn(23, 3, generator=g, dtype=torch.float64)
    for bw in ("scott", "silverman", 0.7):
        m = GaussianKDE(bw, chunk_size=4, dtype=torch.float64).fit(x)
        mean, std = x.mean(0), x.std(0, unbiased=False)
        h = kde_bandwidth(bw, 57, 3)
        ref = []
        for qi in q:  # naive loop reference, in original units: product of N(q; x_i, (h std)^2)
            k = torch.distributions.Normal(x, h * std).log_prob(qi).sum(-1)
            ref.append(torch.logsumexp(k, 0) - math.log(57))
        torch.testing.assert_close(m.log_prob(q), torch.stack(ref))
        assert abs(float(mean.sum() - m.mean.sum())) < 1e-12
    assert kde_bandwidth("scott", 100, 1) == pytest.approx(100 ** (-0.2))
    assert kde_bandwidth("silverman", 100, 1) == pytest.approx((100 * 3 / 4) ** (-0.2))
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE("bogus")
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(-1.0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(1e-3, 1e3), shift=st.floats(-100, 100))
def test_standardisation_equivariance(seed, scale, shift):
    """log p of affinely transformed data shifts by -D log(scale): standardisation inside the model."""
    x = torch.randn(80, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q = x[:10] + 0.1
    for make in (
        lambda: GaussianKDE(dtype=torch.float64),
        lambda: GaussianMixtureDensity(2, dtype=torch.float64),
    ):
        a, b = make().fit(x), make().fit(x * scale + shift)
        torch.testing.assert_close(b.log_prob(q * scale + shift), a.log_prob(q) - 2 * math.log(scale))


def test_gmm_matches_sklearn_and_integrates_to_one():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.5, 300), rng.normal(1.5, 1.0, 700)])[:, None]
    m = GaussianMixtureDensity(2, dtype=torch.float64).fit(x)
    sk = GaussianMixture(2, random_state=0).fit(x)
    assert float(m.log_prob(x).mean()) == pytest.approx(sk.score(x), abs=5e-3)
    assert m.converged_
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)[:, None]
    for dens in (m, GaussianKDE(dtype=torch.float64).fit(x)):
        mass = torch.trapezoid(dens.log_prob(grid).exp(), grid[:, 0])
        assert float(mass) == pytest.approx(1.0, abs=1e-3)


def test_flow_regularizer_hook_and_seeding():
    class CountingReg:
        calls = 0

        def loss(self, model, z):
            CountingReg.calls += 1
            lp = model(z)
            assert lp.shape == (z.shape[0],) and lp.requires_grad
            return 0.0 * lp.mean() + 1.0  # constant: shifts the loss, not the gradient

    x = gaussian_data(200).float()
    a = FlowDensity("maf", transforms=1, hidden=(8,), steps=20, seed=5).fit(x)
    r = FlowDensity("maf", transforms=1, hidden=(8,), steps=20, seed=5, regularizer=CountingReg()).fit(x)
    assert CountingReg.calls == 20
    np.testing.assert_allclose(np.array(r.history) - 1.0, a.history, rtol=1e-4, atol=1e-4)
    b = FlowDensity("maf", transforms=1, hidden=(8,), steps=20, seed=5).fit(x)
    torch.testing.assert_close(a.log_prob(x[:5]), b.log_prob(x[:5]))
    with pytest.raises(ValueError, match="regularizer"):
        FlowDensity(regularizer=object())
    with pytest.raises(ValueError, match="flow"):
        FlowDensity("realnvp")


def test_nsf_one_dimensional():
    x = torch.randn(400, 1, generator=torch.Generator().manual_seed(0))
    m = FlowDensity("nsf", transforms=1, hidden=(16,), steps=150, lr=5e-3).fit(x)
    lp = m.log_prob(torch.tensor([[0.0], [4.0]]))
    assert float(lp[0]) == pytest.approx(-0.919, abs=0.3)
    assert float(lp[1]) < float(lp[0]) - 3


def test_flow_fit_shows_a_progress_bar_by_default(capsys):
    """The flow's fit is the slow one (most of a minute at the default 2,000 steps): it shows a bar unless asked not
    to, and the LDM passes its own progress flag down."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    FlowDensity(steps=3, hidden=(8,), transforms=1, seed=0).fit(x)
    assert "flow fit" in capsys.readouterr().err
    FlowDensity(steps=3, hidden=(8,), transforms=1, seed=0).fit(x, progress=False)
    assert "flow fit" not in capsys.readouterr().err
