"""Tests of the PETS probabilistic ensemble (mbrl.models) and its normaliser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.buffer import ReplayBuffer
from mbrl.common.seeding import make_generator
from mbrl.models import Normalizer, ProbabilisticEnsemble, default_weight_decay, onednn_fused_available

O, A, E = 3, 2, 4


def _small(**kw) -> ProbabilisticEnsemble:
    args = {"ensemble_size": E, "hidden": (16, 16), "seed": 0, **kw}
    return ProbabilisticEnsemble(O, A, **args)


def _data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, O, generator=g)
    act = torch.rand(n, A, generator=g) * 2 - 1
    noise = 0.05 * torch.randn(n, O, generator=g)
    nxt = obs + 0.1 * torch.tanh(obs) + 0.3 * act.sum(-1, keepdim=True) + noise
    return obs, act, nxt


# --------------------------------------------------------------------------- learning
def test_recovers_linear_gaussian_system():
    """next = A s + B a + noise with per-dimension std (0.05, 0.2): mean and noise std are recovered."""
    Am = torch.tensor([[0.9, 0.1], [-0.2, 0.95]])
    Bm = torch.tensor([[0.5], [1.0]])
    sig = torch.tensor([0.05, 0.2])
    g = torch.Generator().manual_seed(1)
    n = 3000
    s = torch.randn(n, 2, generator=g)
    a = torch.rand(n, 1, generator=g) * 2 - 1
    nxt = s @ Am.T + a @ Bm.T + sig * torch.randn(n, 2, generator=g)
    buf = ReplayBuffer(n, 2, 1)
    buf.add_batch(s, a, nxt, torch.zeros(n), torch.zeros(n))
    model = ProbabilisticEnsemble(2, 1, ensemble_size=5, hidden=(64, 64), seed=0)
    hist = model.fit(buf, epochs=20, batch_size=32, progress=False, seed=0)
    assert len(hist["train_loss"]) >= 5 and hist["train_loss"][-1] < hist["train_loss"][0]

    st_ = torch.randn(500, 2, generator=g)
    at = torch.rand(500, 1, generator=g) * 2 - 1
    with torch.no_grad():
        mean, var = model.mean_and_var(st_, at)
    truth = st_ @ Am.T + at @ Bm.T
    assert mean.shape == (5, 500, 2) and var.shape == (5, 500, 2)
    rmse = (mean - truth).square().mean().sqrt().item()
    assert rmse < 0.05, rmse
    std = var.sqrt().mean((0, 1))
    rel = ((std - sig).abs() / sig).max().item()
    assert rel < 0.25, (std, sig)


def test_fit_keeps_best_holdout_weights_per_member():
    """Each member ends with the weights of its best epoch: recomputed holdout MSE == min of history."""
    obs, act, _ = _data(120)
    g = torch.Generator().manual_seed(0)
    # Mostly unpredictable targets and a large step size: members overfit at different epochs.
    nxt = obs + torch.randn(120, O, generator=g) * torch.tensor([1.0, 1.0, 0.05]) + act[:, :1]
    model = _small(hidden=(64, 64))
    hist = model.fit((obs, act, nxt), epochs=15, batch_size=16, lr=1e-2, holdout=0.3, patience=3, seed=7,
                     progress=False)
    mse = torch.tensor(hist["holdout_mse"], dtype=torch.float64)  # [epochs, E]
    assert mse.shape[1] == E and len(hist["best_epoch"]) == E
    best, arg = mse.min(0)
    assert hist["best_epoch"] == arg.tolist()
    assert min(hist["best_epoch"]) < mse.shape[0] - 1  # some member's best is not the last epoch
    # Early stopping: training stops `patience` epochs after the last improvement of any member.
    assert mse.shape[0] == min(15, max(hist["best_epoch"]) + 1 + 3)
    # Recompute the holdout split exactly as fit does (seeded permutation first).
    perm = torch.randperm(120, generator=make_generator(7, "cpu"))
    hold = perm[:36]
    x = model.in_normalizer.normalize(torch.cat([obs, act], -1)[hold])
    y = model.out_normalizer.normalize((nxt - obs)[hold])
    with torch.no_grad():
        m, _ = model(x.expand(E, -1, -1))
    got = (m - y).square().mean((1, 2)).double()
    torch.testing.assert_close(got, best, rtol=1e-4, atol=1e-7)


def test_seeded_fit_bit_identical_and_seed_matters():
    data = _data(200)
    runs = []
    for seed in (3, 3, 4):
        model = _small()
        hist = model.fit(data, epochs=2, batch_size=32, seed=seed, progress=False)
        runs.append((model.state_dict(), hist))
    (s1, h1), (s2, h2), (s3, _) = runs
    assert h1 == h2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_fit_without_bootstrap_or_holdout_and_from_numpy():
    obs, act, nxt = _data(64)
    model = _small()
    hist = model.fit((obs.numpy(), act.numpy(), nxt.numpy()), epochs=2, holdout=0.0, bootstrap=False,
                     progress=False)
    assert len(hist["holdout_mse"]) == 2 and all(math.isfinite(v) for v in hist["holdout_mse"][-1])


# --------------------------------------------------------------------------- structure
def test_forward_and_predict_shapes():
    model = _small()
    x = torch.randn(E, 7, O + A)
    mean, logvar = model(x)
    assert mean.shape == (E, 7, O) and logvar.shape == (E, 7, O)
    obs, act = torch.randn(7, O), torch.randn(7, A)
    assert model.predict(obs, act).shape == (E, 7, O)
    assert model.predict(obs.expand(E, 7, O), act.expand(E, 7, A)).shape == (E, 7, O)
    m, v = model.mean_and_var(obs, act)
    assert m.shape == (E, 7, O) and v.shape == (E, 7, O) and bool((v > 0).all())
    assert (model.ensemble_size, model.obs_dim, model.act_dim) == (E, O, A)


def test_members_are_independent():
    model = _small()
    x = torch.randn(E, 5, O + A)
    with torch.no_grad():
        m0, l0 = model(x)
        for w in (*model.weights, *model.biases):
            w[2] += 0.3
        m1, l1 = model(x)
    changed = ((m1 - m0).abs().amax((1, 2)) > 0) | ((l1 - l0).abs().amax((1, 2)) > 0)
    assert changed.tolist() == [i == 2 for i in range(E)]
    # Member e reads only row block e: changing block 1's inputs changes only block 1's outputs.
    x2 = x.clone()
    x2[1] += 1.0
    with torch.no_grad():
        m2, _ = model(x2)
    assert ((m2 - m1).abs().amax((1, 2)) > 0).tolist() == [i == 1 for i in range(E)]


def test_batched_forward_matches_per_member_reference():
    model = _small(activation="silu")
    x = torch.randn(E, 6, O + A)
    with torch.no_grad():
        mean, logvar = model(x)
        for e in range(E):
            h = x[e]
            for i, (w, b) in enumerate(zip(model.weights, model.biases)):
                h = h @ w[e] + b[e]
                if i < len(model.weights) - 1:
                    h = h * torch.sigmoid(h)
            mu, lv = h[:, :O], h[:, O:]
            mx, mn = model.max_logvar[0], model.min_logvar[0]
            lv = mx - torch.nn.functional.softplus(mx - lv)
            lv = mn + torch.nn.functional.softplus(lv - mn)
            torch.testing.assert_close(mean[e], mu, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(logvar[e], lv, rtol=1e-5, atol=1e-6)


def test_init_is_truncated_normal_with_pets_std():
    model = ProbabilisticEnsemble(O, A, ensemble_size=5, hidden=(200, 200), seed=1)
    w = model.weights[1].detach()
    std = 1 / (2 * math.sqrt(200))
    assert float(w.abs().max()) <= 2 * std + 1e-7
    # A normal truncated at 2 std has std ~0.88 of the untruncated one.
    assert abs(float(w.std()) / std - 0.88) < 0.03
    assert all(float(b.detach().abs().max()) == 0.0 for b in model.biases)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e6), seed=st.integers(0, 10_000))
def test_logvar_stays_within_bounds(scale, seed):
    model = _small(seed=seed % 7)
    with torch.no_grad():
        model.max_logvar.copy_(torch.linspace(-1.0, 2.0, O).view(1, 1, O))
        model.min_logvar.copy_(torch.linspace(-12.0, -3.0, O).view(1, 1, O))
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(E, 16, O + A, generator=g) * scale
        mean, logvar = model(x)
    assert bool(torch.isfinite(logvar).all()) and bool(torch.isfinite(mean).all())
    assert bool((logvar >= model.min_logvar - 1e-5).all())
    # The second soft bound can lift the value above max by at most softplus(min - max).
    slack = torch.nn.functional.softplus(model.min_logvar - model.max_logvar)
    assert bool((logvar <= model.max_logvar + slack + 1e-5).all())


def test_normalizer_guards_zero_std_and_round_trips():
    x = torch.randn(50, 3)
    x[:, 1] = 4.0  # constant feature
    norm = Normalizer(3).fit(x)
    assert norm.std[1] == 1.0 and norm.mean[1] == 4.0
    z = norm.normalize(x)
    assert bool(torch.isfinite(z).all()) and torch.allclose(z[:, 1], torch.zeros(50))
    torch.testing.assert_close(norm.denormalize(z), x)
    torch.testing.assert_close(z[:, 0].std(unbiased=False), torch.tensor(1.0))
    # An ensemble fitted on data with a constant observation dimension stays finite.
    obs, act, nxt = _data(100)
    obs[:, 0] = 1.0
    nxt[:, 0] = 1.0
    model = _small()
    model.fit((obs, act, nxt), epochs=1, progress=False)
    assert bool(torch.isfinite(model.predict(obs[:5], act[:5])).all())


def test_deterministic_returns_mean_and_sampling_is_seeded():
    model = _small()
    model.fit(_data(200), epochs=1, progress=False)
    obs, act = torch.randn(4000, O), torch.rand(4000, A)
    with torch.no_grad():
        det = model.predict(obs, act, deterministic=True)
        mean, var = model.mean_and_var(obs, act)
        s1 = model.predict(obs, act, generator=torch.Generator().manual_seed(5))
        s2 = model.predict(obs, act, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(det, mean)
    assert torch.equal(s1, s2) and not torch.equal(s1, det)
    z = (s1 - mean) / var.sqrt()  # standard normal noise
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05


# --------------------------------------------------------------------------- persistence / dtypes
def test_save_load_bit_exact(tmp_path):
    model = _small(activation="relu", weight_decay=(1e-4, 2e-4, 3e-4))
    model.fit(_data(120), epochs=1, progress=False)
    model.save(tmp_path / "m")
    loaded = ProbabilisticEnsemble.load(tmp_path / "m")
    sd, sl = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sl.keys()
    assert all(torch.equal(sd[k], sl[k]) and sd[k].dtype == sl[k].dtype for k in sd)
    assert loaded.config() == model.config()
    obs, act = torch.randn(9, O), torch.randn(9, A)
    with torch.no_grad():
        assert torch.equal(model.predict(obs, act, deterministic=True),
                           loaded.predict(obs, act, deterministic=True))
        assert torch.equal(model.predict(obs, act, generator=torch.Generator().manual_seed(1)),
                           loaded.predict(obs, act, generator=torch.Generator().manual_seed(1)))


def test_bf16_copy_runs_and_is_close(tmp_path):
    model = _small()
    obs, act, nxt = _data(300)
    obs, nxt = obs * 3 + 20.0, nxt * 3 + 20.0  # large mean relative to spread
    model.fit((obs, act, nxt), epochs=2, progress=False)
    fast = _small()
    fast.load_state_dict(model.state_dict())
    fast = fast.to(torch.bfloat16)
    assert fast.weights[0].dtype == torch.bfloat16 and fast.in_normalizer.mean.dtype == torch.float32
    with torch.no_grad():
        ref = model.predict(obs[:50], act[:50], deterministic=True)
        got = fast.predict(obs[:50], act[:50], deterministic=True)
        m16, l16 = fast(torch.randn(E, 8, O + A, dtype=torch.bfloat16))
    assert got.dtype == torch.float32 and m16.dtype == torch.bfloat16
    scale = (ref - obs[:50]).abs().mean()
    assert float((got - ref).abs().max()) < 0.05 * float(scale) + 1e-3
    fast.save(tmp_path / "bf16")
    again = ProbabilisticEnsemble.load(tmp_path / "bf16")
    assert again.weights[0].dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), fast.state_dict().values()))


# --------------------------------------------------------------------------- validation
def test_bad_inputs_raise_naming_argument():
    obs, act, nxt = _data(20)
    model = _small()
    bad = obs.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="obs"):
        model.fit((bad, act, nxt), progress=False)
    with pytest.raises(ValueError, match="obs"):
        model.fit((obs[:0], act[:0], nxt[:0]), progress=False)
    with pytest.raises(ValueError, match="data"):
        model.fit(ReplayBuffer(5, O, A), progress=False)
    with pytest.raises(ValueError, match="act"):
        model.fit((obs, act[:, :1], nxt), progress=False)
    with pytest.raises(ValueError, match="next_obs"):
        model.fit((obs, act, nxt[:10]), progress=False)
    with pytest.raises(ValueError, match="holdout"):
        model.fit((obs, act, nxt), holdout=1.0, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        model.fit((obs, act, nxt), epochs=0, progress=False)
    with pytest.raises(ValueError, match="obs"):
        model.predict(torch.randn(E + 1, 3, O), torch.randn(E + 1, 3, A))
    with pytest.raises(ValueError, match="act"):
        model.predict(torch.randn(3, O), torch.randn(3, A + 1))
    with pytest.raises(ValueError, match="weight_decay"):
        ProbabilisticEnsemble(O, A, hidden=(8, 8), weight_decay=(1e-4,) * 5)
    with pytest.raises(ValueError, match="ensemble_size"):
        ProbabilisticEnsemble(O, A, ensemble_size=0)
    with pytest.raises(ValueError, match="activation"):
        ProbabilisticEnsemble(O, A, activation="gelu-ish")
    with pytest.raises(ValueError, match="init_min_logvar"):
        ProbabilisticEnsemble(O, A, init_max_logvar=-1.0, init_min_logvar=0.0)


def test_default_weight_decay_is_pets_schedule():
    assert default_weight_decay(4) == (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    assert default_weight_decay(2) == (2.5e-5, 5e-5, 1e-4)
    assert ProbabilisticEnsemble(O, A, hidden=(8,) * 4).weight_decay == (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_predict_save_load(tmp_path):
    obs, act, nxt = _data(300)
    buf = ReplayBuffer(300, O, A)  # data on CPU, model on CUDA
    buf.add_batch(obs, act, nxt, torch.zeros(300), torch.zeros(300))
    model = _small(device="cuda")
    hist = model.fit(buf, epochs=2, progress=False)
    assert all(math.isfinite(v) for v in hist["holdout_mse"][-1])
    gen = torch.Generator(device="cuda").manual_seed(0)
    out = model.predict(obs[:8].cuda(), act[:8].cuda(), generator=gen)
    assert out.device.type == "cuda" and out.shape == (E, 8, O)
    model.save(tmp_path / "m")
    cpu = ProbabilisticEnsemble.load(tmp_path / "m", device="cpu")
    with torch.no_grad():
        ref = cpu.predict(obs[:8], act[:8], deterministic=True)
        got = model.predict(obs[:8].cuda(), act[:8].cuda(), deterministic=True).cpu()
        fast = model.to(torch.bfloat16).predict(obs[:8].cuda(), act[:8].cuda(), deterministic=True).cpu()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert float((fast - ref).abs().max()) < 0.05


# --------------------------------------------------------------------------- fused inference path (issue 14)
needs_onednn = pytest.mark.skipif(not onednn_fused_available(), reason="torch build without oneDNN's fused linear")


def _fitted(seed: int = 0, **kw) -> ProbabilisticEnsemble:
    model = _small(seed=seed, **kw)
    obs, act, nxt = _data(200, seed=seed)
    model.fit((obs * 2 + 5, act, nxt * 2 + 5), epochs=2, progress=False, seed=seed)
    return model


def _both(model, fn):
    """``fn(model)`` on the eager path and on the fused path (restoring the model's setting)."""
    old = model.fused
    try:
        model.fused = False
        ref = fn(model)
        model.fused = True
        got = fn(model)
    finally:
        model.fused = old
    return ref, got


@needs_onednn
@pytest.mark.parametrize("activation", ["silu", "relu", "tanh", "elu"])
def test_fused_predict_equals_eager_on_a_fixed_seed(activation):
    model = _fitted(activation=activation)
    g = torch.Generator().manual_seed(3)
    obs, act = torch.randn(E, 50, O, generator=g) * 2 + 5, torch.rand(E, 50, A, generator=g) * 2 - 1
    with torch.no_grad():
        ref, got = _both(model, lambda m: m.predict(obs, act, generator=torch.Generator().manual_seed(7)))
        (rm, rv), (gm, gv) = _both(model, lambda m: m.mean_and_var(obs, act))
        rd, gd = _both(model, lambda m: m.predict(obs[0], act[0], deterministic=True))
    assert model._fused_cache is not None  # the fused path did run
    assert got.dtype == ref.dtype == torch.float32 and got.shape == (E, 50, O)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm, rm, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gv, rv, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gd, rd, rtol=1e-5, atol=1e-5)


@needs_onednn
@settings(max_examples=12, deadline=None)
@given(E_=st.integers(1, 6), n=st.integers(1, 40), width=st.integers(1, 24), depth=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_fused_head_equals_eager_for_any_shape(E_, n, width, depth, seed):
    model = ProbabilisticEnsemble(O, A, ensemble_size=E_, hidden=(width,) * depth, seed=seed)
    with torch.no_grad():
        for w in model.biases:  # nonzero biases, so that a dropped bias would show
            w.normal_(generator=torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(E_, n, O + A, generator=g) * 3
        model.in_normalizer.fit(torch.randn(50, O + A, generator=g) * 2 + 3)  # folded into the first layer
        model.out_normalizer.fit(torch.randn(50, O, generator=g) * 0.5 - 1)  # folded into the output layer
        obs, act = x[..., :O], x[..., O:]
        ref, got = _both(model, lambda m: m.mean_and_var(obs, act))
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_, r, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_fused_weight_cache_follows_in_place_updates_and_refits():
    model = _fitted()
    obs, act = torch.randn(30, O), torch.rand(30, A)
    with torch.no_grad():
        before = model.predict(obs, act, deterministic=True)
        for w in (*model.weights, *model.biases):
            w[1] += 0.05  # in place: same storage, new version
        ref, got = _both(model, lambda m: m.predict(obs, act, deterministic=True))
    assert not torch.allclose(got, before)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    model.fit(_data(100, seed=4), epochs=1, progress=False)
    with torch.no_grad():
        ref, got = _both(model, lambda m: m.predict(obs, act, deterministic=True))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_predict_with_gradients_uses_the_differentiable_path():
    model = _fitted()
    obs = torch.randn(6, O, requires_grad=True)
    out = model.predict(obs, torch.rand(6, A), deterministic=True)
    out.sum().backward()
    assert obs.grad is not None and bool(torch.isfinite(obs.grad).all())
    assert model.weights[0].grad is not None


@needs_onednn
def test_fused_mpc_plans_equal_eager_plans_on_a_fixed_seed():
    from mbrl.agent import MPCAgent
    from mbrl.planning import CEM

    model = _fitted()

    def reward(o, a, n):
        return -(n - 5.0).square().sum(-1) - 0.1 * a.square().sum(-1)

    def plan(fused):
        model.fused = fused
        agent = MPCAgent(model, reward, None, -torch.ones(A), torch.ones(A), horizon=5, particles=4,
                         optimizer=CEM(population=40, elites=5, iterations=3, alpha=0.1), seed=11)
        return agent.plan(torch.full((O,), 4.0))

    try:
        ref, got = plan(False), plan(True)
    finally:
        model.fused = True
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_bf16_matmul_mode_is_finite_close_and_keeps_float32_states():
    model = _fitted()
    g = torch.Generator().manual_seed(5)
    obs, act = torch.randn(E, 64, O, generator=g) * 2 + 5, torch.rand(E, 64, A, generator=g) * 2 - 1
    copy16 = _fitted().to(torch.bfloat16)  # the agent's bf16 copy: bf16 parameters, fed bf16 states
    with torch.no_grad():
        ref = model.predict(obs, act, deterministic=True)
        model.matmul_dtype = torch.bfloat16
        got = model.predict(obs, act, deterministic=True)
        sampled = model.predict(obs, act, generator=torch.Generator().manual_seed(1))
        got16 = copy16.predict(obs.bfloat16(), act.bfloat16(), deterministic=True)
    model.matmul_dtype = None
    assert got.dtype == torch.float32 and got16.dtype == torch.bfloat16
    assert bool(torch.isfinite(got).all() & torch.isfinite(sampled).all() & torch.isfinite(got16).all())
    assert model._fused_cache is not None and copy16._fused_cache is not None
    scale = float((ref - obs).abs().mean())
    assert float((got - ref).abs().max()) < 0.05 * scale
    # bf16 states: the result is rounded to bf16 (8 bits), on top of the products' error
    assert float((got16.float() - ref).abs().max()) < 0.05 * scale + 2 ** -7 * float(ref.abs().max())


@needs_onednn
def test_bf16_planning_returns_finite_in_bounds_actions():
    from mbrl.agent import MPCAgent
    from mbrl.planning import CEM

    low, high = -torch.ones(A), torch.ones(A)
    for dtype, mm in ((torch.bfloat16, None), (torch.float32, torch.bfloat16)):
        model = _fitted()
        model.matmul_dtype = mm
        agent = MPCAgent(model, lambda o, a, n: -n.square().sum(-1), None, low, high, horizon=4, particles=3,
                         optimizer=CEM(population=24, elites=4, iterations=2, alpha=0.1), dtype=dtype, seed=0)
        for _ in range(2):
            a = agent.act(np.full(O, 5.0, dtype=np.float32))
            assert a.shape == (A,) and np.isfinite(a).all() and (a >= -1).all() and (a <= 1).all()


@needs_onednn
def test_matmul_dtype_view_shares_parameters_and_follows_refits():
    model = _fitted()
    view = model.with_matmul_dtype(torch.bfloat16)
    assert model.matmul_dtype is None and view.matmul_dtype is torch.bfloat16
    assert all(a is b for a, b in zip(model.parameters(), view.parameters()))
    obs, act = torch.randn(40, O) * 2 + 5, torch.rand(40, A)
    with torch.no_grad():
        before = view.predict(obs, act, deterministic=True)
    model.fit(_data(150, seed=9), epochs=2, progress=False, seed=9)
    with torch.no_grad():
        ref = model.predict(obs, act, deterministic=True)
        after = view.predict(obs, act, deterministic=True)
    assert after.dtype == torch.float32 and not torch.allclose(after, before)
    assert float((after - ref).abs().max()) < 0.05 * float((ref - obs).abs().mean())
    with pytest.raises(ValueError, match="dtype"):
        model.with_matmul_dtype(torch.float16)
    with pytest.raises(ValueError, match="matmul_dtype"):
        model.matmul_dtype = torch.float64
    assert model.matmul_dtype is None


@needs_onednn
def test_fused_head_falls_back_to_eager_when_the_logvar_bounds_are_far_apart():
    model = _fitted()
    obs, act = torch.randn(E, 20, O) * 2 + 5, torch.rand(E, 20, A)
    with torch.no_grad():
        model.min_logvar.fill_(-100.0)  # exp(max - min) would overflow the folded head's constant
        assert model._fused_weights(torch.float32) is None
        ref, got = _both(model, lambda m: m.mean_and_var(obs, act))
    for r, g_ in zip(ref, got):
        torch.testing.assert_close(g_, r)


def test_adam_weight_decay_groups_take_the_steps_of_the_l2_loss():
    """``Adam(optimizer_groups())`` on ``loss(decay=False)`` = ``Adam`` on ``loss()`` (the fit's fast form)."""
    a, b = _small(seed=3), _small(seed=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(E, 16, O + A, generator=g), torch.randn(E, 16, O, generator=g)
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, foreach=False)
    opt_b = torch.optim.Adam(b.optimizer_groups(), lr=1e-2, foreach=False)
    for _ in range(5):
        for m, opt, decay in ((a, opt_a, True), (b, opt_b, False)):
            opt.zero_grad()
            m.loss(x, y, decay=decay)[0].backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    assert sum(len(gr["params"]) for gr in b.optimizer_groups()) == len(list(b.parameters()))
    assert not torch.equal(a.weights[0], _small(seed=3).weights[0])  # it did train
