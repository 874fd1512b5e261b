"""Tests for safe_density.rcad (docs/design.md "RCAD adversarial unlearning")."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safe_density.rcad import (
    DEFAULT_STEP_SCALE,
    RCAD,
    RCADDensity,
    adversarial_inputs,
    batch_step_size,
    predictive_entropy,
    rcad_loss,
)

torch.set_num_threads(1)


def _linear(d_in: int, d_out: int, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(d_in, d_out).double()
    return lin


# ------------------------------------------------------------------ exact references (numpy, float64)
def _np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("alpha,lam", [(0.5, 0.2), (3.0, 1.0), (1e-3, 0.7)])
def test_logistic_regression_matches_hand_computation(alpha, lam):
    model = _linear(3, 1, seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    y = rng.integers(0, 2, size=7).astype(float)
    w = model.weight.detach().numpy()[0]
    b = model.bias.detach().numpy()[0]
    # closed form: d BCE / dx = (sigma(w.x + b) - y) w  ->  normalised: sign(sigma - y) w / |w|
    s = _np_sigmoid(x @ w + b)
    g = (s - y)[:, None] * w[None, :]
    x_adv = x + alpha * g / np.linalg.norm(g, axis=1, keepdims=True)
    ce = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    p = _np_sigmoid(x_adv @ w + b)
    ent = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    expected = ce - lam * ent
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    got = rcad_loss(model, xt, yt, step_size=alpha, weight=lam, reduction="none")
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rcad_loss(model, xt, yt, alpha, lam).item(), expected.mean(), rtol=1e-10)
    np.testing.assert_allclose(adversarial_inputs(model, xt, yt, alpha).numpy(), x_adv, rtol=1e-10)
    # a [B, 1] head and [B, 1] labels give the same numbers
    flat = lambda z: model(z)[:, 0]  # noqa: E731
    got_flat = rcad_loss(flat, xt, yt[:, None], alpha, lam, reduction="none")
    np.testing.assert_allclose(got_flat.detach().numpy(), expected, rtol=1e-10)


def test_softmax_regression_matches_hand_computation():
    model = _linear(4, 3, seed=2)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6)
    W = model.weight.detach().numpy()
    b = model.bias.detach().numpy()

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p = softmax(x @ W.T + b)
    g = (p - np.eye(3)[y]) @ W  # d CE / dx for a linear softmax model
    x_adv = x + 1.5 * g / np.linalg.norm(g, axis=1, keepdims=True)
    ce = -np.log(p[np.arange(6), y])
    q = softmax(x_adv @ W.T + b)
    ent = -(q * np.log(q)).sum(1)
    got = RCAD(step_size=1.5, weight=0.3).loss(model, torch.from_numpy(x), torch.from_numpy(y),
                                               reduction="none")
    np.testing.assert_allclose(got.detach().numpy(), ce - 0.3 * ent, rtol=1e-10)


def test_predictive_entropy_limits():
    assert torch.allclose(predictive_entropy(torch.zeros(2, 5)), torch.full((2,), math.log(5)))
    assert torch.allclose(predictive_entropy(torch.zeros(3)), torch.full((3,), math.log(2)))
    big = predictive_entropy(torch.tensor([[1e4, 0.0, 0.0], [0.0, -1e4, 0.0]]))
    assert torch.isfinite(big).all() and big[0] < 1e-6 and torch.allclose(big[1], torch.tensor(math.log(2)))


# ------------------------------------------------------------------ gradient does not flow through x'
def _mlp(d_in=3, d_out=4, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(d_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, d_out))
    return net.double()


def test_parameter_gradient_treats_adversarial_points_as_constants():
    model = _mlp()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (9,), generator=g)
    alpha, lam = 2.0, 0.5
    params = list(model.parameters())

    x_adv = adversarial_inputs(model, x, y, alpha)
    assert x_adv.grad_fn is None and not x_adv.requires_grad
    manual = torch.nn.functional.cross_entropy(model(x), y) - lam * predictive_entropy(model(x_adv)).mean()
    g_manual = torch.autograd.grad(manual, params)

    loss = rcad_loss(model, x, y, alpha, lam)
    g_rcad = torch.autograd.grad(loss, params)
    for a, b in zip(g_rcad, g_manual):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    # the version that differentiates through x' (create_graph) differs, so the check above has teeth
    xr = x.clone().requires_grad_(True)
    ce_sum = torch.nn.functional.cross_entropy(model(xr), y, reduction="sum")
    (gx,) = torch.autograd.grad(ce_sum, xr, create_graph=True)
    x_adv_graph = x + alpha * gx / gx.norm(dim=1, keepdim=True)
    ent_graph = predictive_entropy(model(x_adv_graph)).mean()
    through = torch.nn.functional.cross_entropy(model(x), y) - lam * ent_graph
    g_through = torch.autograd.grad(through, params)
    assert max((a - b).abs().max().item() for a, b in zip(g_rcad, g_through)) > 1e-6
    torch.testing.assert_close(x_adv_graph.detach(), x_adv)


def test_inputs_are_not_modified_and_need_no_grad():
    model = _mlp()
    x = torch.randn(5, 3, dtype=torch.float64)
    x0 = x.clone()
    y = torch.tensor([0, 1, 2, 3, 0])
    loss = rcad_loss(model, x, y)
    loss.backward()
    assert x.grad is None and torch.equal(x, x0)
    assert all(p.grad is not None for p in model.parameters())


def test_zero_gradient_example_stays_put():
    # a constant model has zero input-gradient: x' = x, loss = CE - λ H, finite
    class Const(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.tensor([0.3, -0.2]))

        def forward(self, x):
            return self.b.expand(x.shape[0], 2) + 0.0 * x.sum(1, keepdim=True)

    m = Const()
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(adversarial_inputs(m, x, y, 5.0), x)
    val = rcad_loss(m, x, y, 5.0, 0.5)
    assert torch.isfinite(val)


def test_step_has_length_alpha_per_example_for_image_inputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 5))
    x = torch.rand(6, 2, 4, 4)
    y = torch.randint(0, 5, (6,))
    x_adv = adversarial_inputs(model, x, y, 0.7)
    assert x_adv.shape == x.shape
    torch.testing.assert_close((x_adv - x).flatten(1).norm(dim=1), torch.full((6,), 0.7))
    # the step increases the loss (first-order ascent direction)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert (ce(model(x_adv), y, reduction="none") > ce(model(x), y, reduction="none")).all()


# ------------------------------------------------------------------ batch invariance
def test_batch_loss_is_mean_of_single_example_losses():
    model = _mlp()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (8,), generator=g)
    batch = rcad_loss(model, x, y, 1.0, 0.4, reduction="none")
    singles = torch.stack([rcad_loss(model, x[i:i + 1], y[i:i + 1], 1.0, 0.4) for i in range(8)])
    torch.testing.assert_close(batch, singles, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rcad_loss(model, x, y, 1.0, 0.4), singles.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rcad_loss(model, x, y, 1.0, 0.4, reduction="sum"), singles.sum())


_PERM_MODEL = _mlp(seed=7)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), binary=st.booleans())
def test_permutation_invariance(seed, n, binary):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if binary:
        model = lambda z: _PERM_MODEL(z)[:, 0]  # noqa: E731
        y = torch.randint(0, 2, (n,), generator=g).double()
    else:
        model = _PERM_MODEL
        y = torch.randint(0, 4, (n,), generator=g)
    perm = torch.randperm(n, generator=g)
    a = rcad_loss(model, x, y, 1.3, 0.6, reduction="none")
    b = rcad_loss(model, x[perm], y[perm], 1.3, 0.6, reduction="none")
    torch.testing.assert_close(a[perm], b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(a.mean(), b.mean(), rtol=1e-9, atol=1e-12)


def test_weight_zero_is_cross_entropy_and_weight_lowers_loss():
    model = _mlp()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    ce = torch.nn.functional.cross_entropy(model(x), y)
    torch.testing.assert_close(rcad_loss(model, x, y, 1.0, 0.0), ce)
    assert rcad_loss(model, x, y, 1.0, 0.5) < ce  # entropy > 0 enters with a minus sign


def test_float32_and_module_defaults():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = RCAD().loss(m, x, [0, 1, 1, 0])
    assert out.dtype == torch.float32 and out.ndim == 0 and out.requires_grad
    assert RCAD().step_size == "auto" and RCAD().weight == 0.5 and RCAD().label_smoothing == 0.0
    assert RCAD.published().step_size == 0.5 and RCAD.published().weight == 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        RCAD().step_size = 1.0


# ------------------------------------------------------------------ the published preset
def _np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _np_linear_softmax_rcad(W, b, x, y, alpha, lam, eps=0.0):
    """Hand computation of the per-example RCAD loss of a linear softmax model (label smoothing ``eps``)."""
    k = W.shape[0]
    p = _np_softmax(x @ W.T + b)
    g = (p - np.eye(k)[y]) @ W  # d CE / dx (plain CE, also under label smoothing)
    x_adv = x + alpha * g / np.linalg.norm(g, axis=1, keepdims=True)
    target = (1 - eps) * np.eye(k)[y] + eps / k
    ce = -(target * np.log(p)).sum(1)
    q = _np_softmax(x_adv @ W.T + b)
    return ce + lam * (q * np.log(q)).sum(1), x_adv


def test_published_preset_reproduces_the_old_values_exactly():
    model = _linear(5, 4, seed=3)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=(9, 5))
    y = rng.integers(0, 4, size=9)
    W, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    expected, x_adv = _np_linear_softmax_rcad(W, b, x, y, alpha=0.5, lam=0.2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    pub = RCAD.published()
    assert (pub.step_size, pub.weight, pub.label_smoothing) == (0.5, 0.2, 0.0)
    for got in (pub.loss(model, xt, yt, reduction="none"),
                rcad_loss(model, xt, yt, step_size=0.5, weight=0.2, reduction="none"),
                RCAD(0.5, 0.2).loss(model, xt, yt, reduction="none")):
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pub.adversarial_inputs(model, xt, yt).numpy(), x_adv, rtol=1e-12)
    assert pub.resolved_step_size(xt) == 0.5 and pub.resolved_step_size(100 * xt) == 0.5
    # a fixed step does not depend on the rest of the batch; the auto step does
    far = xt.clone()
    far[1:] *= 10
    fixed = rcad_loss(model, far, yt, 0.5, 0.2, reduction="none")
    torch.testing.assert_close(fixed[0], pub.loss(model, xt, yt, reduction="none")[0], rtol=1e-12, atol=0)
    assert not torch.allclose(rcad_loss(model, far, yt, reduction="none")[0], rcad_loss(model, xt, yt,
                                                                                         reduction="none")[0])
    # the label-smoothed variant of the authors' CIFAR-100-2k run
    ls, _ = _np_linear_softmax_rcad(W, b, x, y, alpha=0.5, lam=0.2, eps=0.6)
    got = RCAD.published(label_smoothing=0.6).loss(model, xt, yt, reduction="none")
    np.testing.assert_allclose(got.detach().numpy(), ls, rtol=1e-12)


# ------------------------------------------------------------------ the default (auto) step
def _lower_median_pairwise(x: np.ndarray) -> float:
    x = x.reshape(len(x), -1)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))[np.triu_indices(len(x), 1)]
    return float(np.sort(d)[(len(d) - 1) // 2])


def test_default_step_is_half_the_median_pairwise_distance():
    model = _mlp(d_in=3, d_out=4, seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)) * np.array([1.0, 5.0, 0.1])
    y = rng.integers(0, 4, size=10)
    want = DEFAULT_STEP_SCALE * _lower_median_pairwise(x)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert DEFAULT_STEP_SCALE == 0.5
    assert float(batch_step_size(xt)) == pytest.approx(want, rel=1e-12)
    assert RCAD().resolved_step_size(xt) == pytest.approx(want, rel=1e-12)
    step = (adversarial_inputs(model, xt, yt) - xt).norm(dim=1)
    torch.testing.assert_close(step, torch.full((10,), want, dtype=torch.float64))
    # the loss with the default step equals the loss with that step given explicitly
    torch.testing.assert_close(rcad_loss(model, xt, yt), rcad_loss(model, xt, yt, step_size=want), rtol=1e-12,
                               atol=0)
    torch.testing.assert_close(RCAD(step_scale=2.0).loss(model, xt, yt), rcad_loss(model, xt, yt, 4 * want))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_c=st.floats(-4, 4), shift=st.floats(-50, 50), n=st.integers(2, 12))
def test_default_step_scales_with_the_inputs(seed, log_c, shift, n):
    """Rescaling and shifting the inputs (and the model with them) rescales the step and x' the same way."""
    c = 10.0 ** log_c
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=g)
    base = _PERM_MODEL
    scaled = lambda z: base((z - shift) / c)  # noqa: E731  (the same function in the new units)
    xs = c * x + shift
    assert float(batch_step_size(xs)) == pytest.approx(c * float(batch_step_size(x)), rel=1e-9)
    torch.testing.assert_close(adversarial_inputs(scaled, xs, y), c * adversarial_inputs(base, x, y) + shift,
                               rtol=1e-8, atol=1e-8 * (c + abs(shift)))
    torch.testing.assert_close(rcad_loss(scaled, xs, y), rcad_loss(base, x, y), rtol=1e-8, atol=1e-10)


def test_default_step_grows_with_dimension_like_sqrt_d():
    """For i.i.d. N(0, s^2) features, ||x_i - x_j|| = s sqrt(2) chi_D: the step follows its median."""
    from scipy.stats import chi2

    g = torch.Generator().manual_seed(0)
    steps = {}
    for d in (2, 64, 3072):
        for s in (0.1, 3.0):
            x = s * torch.randn(128, d, generator=g, dtype=torch.float64)
            steps[d, s] = float(batch_step_size(x))
            expected = 0.5 * s * math.sqrt(2 * chi2.median(d))
            assert steps[d, s] == pytest.approx(expected, rel=0.1), (d, s)
        assert steps[d, 3.0] / steps[d, 0.1] == pytest.approx(30.0, rel=0.15)
    assert steps[3072, 3.0] / steps[64, 3.0] == pytest.approx(math.sqrt(3072 / 64), rel=0.05)
    # images in [0, 1] with 3,072 pixels (CIFAR's size): the spread is ~20x the published alpha of 0.5
    u = torch.rand(64, 3, 32, 32, generator=g)
    assert 20.0 < float(batch_step_size(u, scale=1.0)) < 25.0


def test_default_step_on_degenerate_batches():
    one = torch.tensor([[3.0, 4.0]])
    assert float(batch_step_size(one)) == pytest.approx(0.5 * 5.0)  # no pairs: the example's norm
    same = one.repeat(5, 1)
    assert float(batch_step_size(same)) == pytest.approx(0.5 * 5.0)  # no spread: the RMS norm
    assert float(batch_step_size(torch.zeros(4, 9))) == pytest.approx(0.5 * 3.0)  # nothing at all: sqrt(D)
    dup = torch.tensor([[0.0, 0.0]] * 4 + [[1.0, 0.0]])  # 6 of 10 pairs coincide: the mean distance
    assert float(batch_step_size(dup)) == pytest.approx(0.5 * 0.4)
    huge = torch.tensor([[1e30, 0.0], [0.0, 1e30], [-1e30, 0.0]])
    assert float(batch_step_size(huge)) == pytest.approx(0.5 * math.sqrt(2) * 1e30, rel=1e-6)
    big_batch = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    assert 0.5 < float(batch_step_size(big_batch)) < 1.5  # subsampled to 256 examples, still the spread
    m = torch.nn.Linear(2, 3)
    assert torch.isfinite(rcad_loss(m, one, [1])) and torch.isfinite(rcad_loss(m, same, [0, 1, 2, 0, 1]))


# ------------------------------------------------------------------ label smoothing
def test_label_smoothing_matches_hand_computation_and_keeps_the_step():
    model = _linear(4, 3, seed=2)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 3, size=6)
    W, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    expected, x_adv = _np_linear_softmax_rcad(W, b, x, y, alpha=1.5, lam=0.3, eps=0.25)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    reg = RCAD(step_size=1.5, weight=0.3, label_smoothing=0.25)
    np.testing.assert_allclose(reg.loss(model, xt, yt, reduction="none").detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(reg.adversarial_inputs(model, xt, yt).numpy(), x_adv, rtol=1e-10)
    # weight 0: exactly torch's label-smoothed cross-entropy
    torch.testing.assert_close(rcad_loss(model, xt, yt, weight=0.0, label_smoothing=0.25),
                               torch.nn.functional.cross_entropy(model(xt), yt, label_smoothing=0.25))
    # a sigmoid head with smoothed labels is the two-class softmax over logits [0, z] (MURAL's form)
    z_model = _linear(4, 1, seed=5)
    two = lambda t: torch.cat([torch.zeros_like(z_model(t)), z_model(t)], 1)  # noqa: E731
    yb = torch.from_numpy(rng.integers(0, 2, size=6))
    a = rcad_loss(z_model, xt, yb.double(), 0.7, 0.4, "none", label_smoothing=0.3)
    b2 = rcad_loss(two, xt, yb, 0.7, 0.4, "none", label_smoothing=0.3)
    torch.testing.assert_close(a, b2, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ behaviour: less confident far away
def _blobs():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    x = torch.randn(200, 2, generator=g) * 0.5
    x[:, 0] += (2 * y - 1).float() * 1.5
    return x, y


def _train_2d(regularizer, seed=0, steps=250, return_model=False):
    x, y = _blobs()
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                            torch.nn.Linear(32, 2))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(steps):
        if regularizer is None:
            loss = torch.nn.functional.cross_entropy(m(x), y)
        else:
            loss = regularizer.loss(m, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if return_model:
        return m
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
        th = torch.linspace(0, 2 * math.pi, 100)
        far = 8.0 * torch.stack([th.cos(), th.sin()], 1)
        conf = m(far).softmax(1).max(1).values.mean().item()
    return acc, conf


def test_rcad_lowers_confidence_far_from_data_and_keeps_accuracy():
    acc_erm, conf_erm = _train_2d(None)
    for reg in (RCAD(step_size=4.0, weight=0.5), RCAD()):
        acc_rcad, conf_rcad = _train_2d(reg)
        assert acc_erm >= 0.95 and acc_rcad >= 0.95
        assert conf_rcad < conf_erm - 0.15, (reg, conf_erm, conf_rcad)


def test_default_rcad_lowers_confidence_along_adversarial_directions():
    """Along each training point's adversarial direction (ERM's own, and the RCAD model's), at the default step
    and beyond it, the RCAD() model is less confident than ERM while both fit the data."""
    x, y = _blobs()
    erm, rcad = _train_2d(None, return_model=True), _train_2d(RCAD(), return_model=True)
    alpha = RCAD().resolved_step_size(x)
    with torch.no_grad():
        for m in (erm, rcad):
            assert (m(x).argmax(1) == y).float().mean() >= 0.95
    for source in (erm, rcad):
        direction = (adversarial_inputs(source, x, y) - x) / alpha
        for t in (1.0, 2.0, 4.0):
            pts = x + t * alpha * direction
            with torch.no_grad():
                c_erm = erm(pts).softmax(1).max(1).values.mean().item()
                c_rcad = rcad(pts).softmax(1).max(1).values.mean().item()
            assert c_rcad < c_erm - 0.05, (t, c_erm, c_rcad)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_error_naming_argument():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 4)
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="x"):
        rcad_loss(m, torch.tensor([[float("nan"), 0.0, 0.0]] * 5), y)
    with pytest.raises(ValueError, match="y"):
        rcad_loss(m, x, y[:4])
    with pytest.raises(ValueError, match="y"):
        rcad_loss(m, x, torch.tensor([0, 1, 2, 4, 0]))
    with pytest.raises(ValueError, match="y"):
        rcad_loss(m, x, torch.tensor([0, -1, 2, 3, 0]))
    with pytest.raises(ValueError, match="y"):
        rcad_loss(m, x, torch.tensor([0.5, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="step_size"):
        rcad_loss(m, x, y, step_size=-1.0)
    with pytest.raises(ValueError, match="weight"):
        rcad_loss(m, x, y, weight=-0.1)
    with pytest.raises(ValueError, match="step_size"):
        rcad_loss(m, x, y, step_size=float("nan"))
    with pytest.raises(ValueError, match="reduction"):
        rcad_loss(m, x, y, reduction="max")
    with pytest.raises(ValueError, match="step_size"):
        RCAD(step_size=-0.5)
    with pytest.raises(ValueError, match="weight"):
        RCAD(weight=-2)
    with pytest.raises(ValueError, match="model"):
        rcad_loss(lambda z: torch.zeros(3, 4), x, y)  # wrong batch from the model
    with pytest.raises(ValueError, match="model"):
        rcad_loss("not a model", x, y)
    binary = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="y"):
        rcad_loss(binary, x, torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="y"):
        rcad_loss(binary, x, torch.tensor([0.0, 1.0, float("nan"), 0.0, 1.0]))
    with pytest.raises(ValueError, match="x"):
        rcad_loss(m, torch.empty(0, 3), torch.empty(0, dtype=torch.long))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), None, "big", "AUTO", [1.0], 10**400])
def test_step_size_must_be_auto_or_finite_positive(bad):
    m = torch.nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    for call in (lambda: rcad_loss(m, x, y, step_size=bad), lambda: RCAD(step_size=bad),
                 lambda: adversarial_inputs(m, x, y, step_size=bad), lambda: RCADDensity(step_size=bad)):
        with pytest.raises(ValueError, match="step_size"):
            call()


def test_other_bad_options_and_inputs_name_the_argument():
    m = torch.nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    for bad in (1.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="label_smoothing"):
            rcad_loss(m, x, y, label_smoothing=bad)
        with pytest.raises(ValueError, match="label_smoothing"):
            RCAD(label_smoothing=bad)
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_scale"):
            rcad_loss(m, x, y, step_scale=bad)
        with pytest.raises(ValueError, match="step_scale"):
            RCAD(step_scale=bad)
        with pytest.raises(ValueError, match="scale"):
            batch_step_size(x, scale=bad)
    with pytest.raises(ValueError, match="weight"):
        RCAD(weight=float("inf"))
    # NaN / inf inputs, also with the auto step (which reads the batch before the model does)
    for v in (float("nan"), float("inf")):
        bad_x = x.clone()
        bad_x[2, 1] = v
        with pytest.raises(ValueError, match="x"):
            rcad_loss(m, bad_x, y)
        with pytest.raises(ValueError, match="x"):
            RCAD().loss(m, bad_x.numpy(), y)
        with pytest.raises(ValueError, match="x"):
            batch_step_size(bad_x)
    # labels out of range with the default configuration
    with pytest.raises(ValueError, match="y"):
        RCAD().loss(m, x, torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="y"):
        RCAD(label_smoothing=0.1).loss(torch.nn.Linear(3, 1), x, torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = _mlp()
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    cpu = rcad_loss(model, x, y, 1.0, 0.3)
    gpu = rcad_loss(model.cuda(), x.cuda(), y.cuda(), 1.0, 0.3)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)
    # the default (batch-scaled) step and label smoothing on the GPU
    cpu_auto = RCAD(label_smoothing=0.1).loss(model.cpu(), x, y)
    gpu_auto = RCAD(label_smoothing=0.1).loss(model.cuda(), x.cuda(), y.cuda())
    torch.testing.assert_close(gpu_auto.cpu(), cpu_auto)
    assert batch_step_size(x.cuda()).device.type == "cuda"


def test_rcad_option_on_mural_classifier_lowers_far_confidence():
    """RCAD as MuralReward's regulariser: less confident far from the data, same training accuracy."""
    from safe_density.mural import MuralConfig, MuralReward
    from safe_density.rcad import RCAD

    g = torch.Generator().manual_seed(0)
    ex = torch.randn(30, 2, generator=g) * 0.3 + torch.tensor([1.5, 0.0])
    seen = torch.randn(60, 2, generator=g) * 0.3 - torch.tensor([1.5, 0.0])
    # far along the adversarial direction (across the decision boundary), where RCAD acts
    far = torch.tensor([[4.5, 0.0], [-4.5, 0.0], [6.0, 0.5], [-6.0, -0.5], [3.5, 1.0]])
    cfg = MuralConfig.small(classifier_steps=400)
    conf, acc = {}, {}
    # step in standardised feature units: it must reach past the data (the published 0.5 is for [0, 1] images)
    for name, reg in [("erm", None), ("rcad", RCAD(step_size=4.0, weight=1.0))]:
        mr = MuralReward(ex, method="classifier", config=cfg, seed=0, regularizer=reg)
        mr.update(seen, progress=False)
        r_ex, r_seen = mr(ex), mr(seen)
        acc[name] = float(((r_ex > 0.5).float().mean() + (r_seen < 0.5).float().mean()) / 2)
        conf[name] = float((mr(far) - 0.5).abs().mean())
    assert acc["erm"] >= 0.95 and acc["rcad"] >= 0.95
    assert conf["erm"] > 0.45 and conf["rcad"] < conf["erm"] - 0.2, conf
    with pytest.raises(ValueError, match="regularizer"):
        MuralReward(ex, method="classifier", config=cfg, regularizer=object())


def test_rcad_density_option_lowers_far_density_keeps_fit():
    """RCADDensity on a flow: much less density far from the data, nearly the same training likelihood."""
    from safe_density.density import FlowDensity
    from safe_density.rcad import RCADDensity

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g) * torch.tensor([1.0, 0.5])
    ang = torch.rand(100, generator=g) * 6.283
    far = torch.stack([ang.cos(), ang.sin()], -1) * 5.0
    ll = {}
    for name, reg in [("mle", None), ("rcad", RCADDensity())]:
        f = FlowDensity("maf", transforms=2, hidden=(32, 32), steps=300, seed=0, regularizer=reg).fit(x)
        ll[name] = (float(f.log_prob(x).mean()), float(f.log_prob(far).mean()))
    assert ll["rcad"][1] < ll["mle"][1] - 3.0, ll
    assert ll["rcad"][0] > ll["mle"][0] - 0.5, ll


def test_rcad_density_terms_and_errors():
    from safe_density.rcad import RCADDensity

    def log_prob(z):  # standard normal
        return -0.5 * (z ** 2).sum(-1) - math.log(2 * math.pi)

    z = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    r = RCADDensity(step_size=0.5, weight=2.0, margin=1.0)
    # the NLL gradient of a standard normal is z itself: z' = z + 0.5 z / |z|
    torch.testing.assert_close(r.adversarial_inputs(log_prob, z), torch.tensor([[1.5, 0.0], [0.0, -2.5]]))
    # log p(z') - log p(z) = -0.5 (1.5^2 - 1) = -0.625 and -0.5 (2.5^2 - 4) = -1.125; hinge with margin 1
    expected = 2.0 * (0.375 + 0.0) / 2
    assert float(r.loss(log_prob, z)) == pytest.approx(expected)
    # a log-density that ignores z has no adversarial direction: z' = z, and the hinge is the margin
    flat = r.adversarial_inputs(lambda t: torch.zeros(t.shape[0]), z)
    torch.testing.assert_close(flat, z)
    assert float(r.loss(lambda t: torch.zeros(t.shape[0]), z)) == pytest.approx(2.0 * 1.0)
    with pytest.raises(ValueError, match="step_size"):
        RCADDensity(step_size=float("nan"))
    # the default step is the classifier's rule with multiplier 0.6: ~one standard deviation on 2-D
    # standardised data (the earlier fixed default), and it grows with the dimension
    zz = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    assert RCADDensity().step_size == "auto"
    moved = (RCADDensity().adversarial_inputs(log_prob, zz) - zz).norm(dim=1)
    torch.testing.assert_close(moved, torch.full((512,), 0.6 * float(batch_step_size(zz, scale=1.0))))
    assert 0.9 < float(moved[0]) < 1.1
    z16 = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    assert float((RCADDensity().adversarial_inputs(log_prob, z16) - z16).norm(dim=1)[0]) > 3.0
    with pytest.raises(ValueError, match="z"):
        r.loss(log_prob, torch.tensor([[float("nan"), 0.0]]))
