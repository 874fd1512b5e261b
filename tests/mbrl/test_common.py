"""mbrl.common, the foundation shared by mbrl and safe_density: the neutral-home import rule, the one bounds
rule (ActionBox / check_bounds), the one integer rule (check_int, INT_MAX), and the ensemble's training loop
behind ProbabilisticEnsemble.fit (FitConfig / fit_ensemble)."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.common import ActionBox, check_bounds
from mbrl.common.validation import INT_MAX, check_int
from mbrl.models import ProbabilisticEnsemble
from mbrl.models.training import FitConfig, fit_ensemble
from mbrl.planning import CEM, ICEM, MPPI, RandomShooting

COMMON = Path(__file__).resolve().parents[2] / "mbrl" / "common"


# ----------------------------------------------------------------------------------- the neutral home rule
# (the static import rules live in tests/test_architecture.py)
def test_common_loads_without_the_rest_of_mbrl():
    """At run time too: with a bare ``mbrl`` package (its __init__, which imports everything, not run),
    importing and using every module of mbrl.common loads no other project module."""
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("mbrl")
        pkg.__path__ = [{str(COMMON.parent)!r}]
        sys.modules["mbrl"] = pkg
        import mbrl.common, mbrl.common.action_box, mbrl.common.seeding, mbrl.common.serialization
        import mbrl.common.validation
        mbrl.common.check_seed("seed", 3)  # its lazy import
        mbrl.common.ActionBox([0.0], [1.0]).sample(2)
        loaded = [m for m in sys.modules if m.split(".")[0] in ("mbrl", "safe_density")]
        print(sorted(m for m in loaded if m != "mbrl" and not m.startswith("mbrl.common")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------- ActionBox
_F = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)


@st.composite
def boxes(draw, max_dim: int = 5):
    """``(low, high)`` lists with ``low <= high``; some dimensions pinned (``low == high``)."""
    pairs = draw(st.lists(st.tuples(_F, _F, st.booleans()), min_size=1, max_size=max_dim))
    low = [min(a, b) for a, b, _ in pairs]
    high = [lo if pin else max(a, b) for (a, b, pin), lo in zip(pairs, low)]
    return low, high


@st.composite
def box_and_actions(draw):
    low, high = draw(boxes())
    n = draw(st.integers(1, 6))
    wide = st.floats(-1e7, 1e7, width=32, allow_nan=False, allow_infinity=False)
    acts = draw(st.lists(st.lists(wide, min_size=len(low), max_size=len(low)), min_size=n, max_size=n))
    return low, high, torch.tensor(acts, dtype=torch.float32)


@settings(max_examples=200, deadline=None)
@given(box_and_actions())
def test_project_lands_in_the_box_and_is_idempotent(case):
    low, high, a = case
    box = ActionBox(low, high)
    p = box.project(a)
    assert p.shape == a.shape
    assert box.contains(p).all()
    assert ((p >= box.low) & (p <= box.high)).all()
    assert torch.equal(box.project(p), p)
    # inside points are left alone; the projection is the nearest box point, per coordinate
    assert torch.equal(p, torch.minimum(torch.maximum(a, box.low), box.high))


@settings(max_examples=200, deadline=None)
@given(box_and_actions())
def test_contains_agrees_with_projection(case):
    low, high, a = case
    box = ActionBox(low, high)
    inside = box.project(a)
    mixed = torch.cat([a, inside])
    assert torch.equal(box.contains(mixed), (box.project(mixed) == mixed).all(-1))
    assert box.contains(inside).all()


@settings(max_examples=100, deadline=None)
@given(boxes(), st.lists(st.integers(1, 4), min_size=0, max_size=3), st.integers(0, 2**63 - 1))
def test_sample_in_box_with_shape_and_reproducible(bounds, shape, seed):
    low, high = bounds
    box = ActionBox(low, high)
    s = box.sample(*shape, generator=torch.Generator().manual_seed(seed))
    assert s.shape == (*shape, len(low)) and s.dtype == torch.float32
    assert box.contains(s).all()
    again = box.sample(*shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(s, again)


def test_sample_seeds_differ_and_cover_the_box():
    box = ActionBox([-1.0, 0.0], [1.0, 10.0])
    a = box.sample(2000, generator=torch.Generator().manual_seed(0))
    b = box.sample(2000, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)
    # uniform: the sample spreads over the whole box, not a corner of it
    assert (a.min(0).values < box.low + 0.01 * box.width).all()
    assert (a.max(0).values > box.high - 0.01 * box.width).all()


def test_pinned_dimension_is_sampled_and_projected_to_its_value():
    box = ActionBox([-1.0, 0.25, 0.0], [1.0, 0.25, 2.0])
    s = box.sample(3, 7, generator=torch.Generator().manual_seed(0))
    assert (s[..., 1] == 0.25).all()
    p = box.project(torch.tensor([[5.0, -3.0, 1.0], [0.0, 9.0, -1.0]]))
    assert (p[:, 1] == 0.25).all()
    assert box.contains(torch.tensor([0.0, 0.25, 1.0])) and not box.contains(torch.tensor([0.0, 0.26, 1.0]))
    all_pinned = ActionBox([3.0], [3.0])
    assert torch.equal(all_pinned.sample(4), torch.full((4, 1), 3.0))


_BAD_BOUNDS = {
    "low > high": (([0.0, 1.0], [1.0, 0.5]), ("action_low", "action_high")),
    "NaN low": (([math.nan, 0.0], [1.0, 1.0]), ("action_low",)),
    "NaN high": (([0.0, 0.0], [1.0, math.nan]), ("action_high",)),
    "inf low": (([-math.inf, 0.0], [1.0, 1.0]), ("action_low",)),
    "inf high": (([0.0, 0.0], [math.inf, 1.0]), ("action_high",)),
    "None low": ((None, [1.0, 1.0]), ("action_low=None",)),
    "None high": (([0.0, 0.0], None), ("action_high=None",)),
    "lengths differ": (([0.0, 0.0], [1.0, 1.0, 1.0]), ("action_low", "action_high")),
    "high too short": (([0.0, 0.0], [1.0]), ("action_high",)),
}


@pytest.mark.parametrize("case", list(_BAD_BOUNDS))
def test_bad_bounds_raise_value_error_naming_the_argument(case):
    (low, high), names = _BAD_BOUNDS[case]
    with pytest.raises(ValueError) as exc:
        ActionBox(low, high)
    assert all(n in str(exc.value) for n in names), str(exc.value)
    # the caller's own names are used instead (e.g. the CLI's flags)
    with pytest.raises(ValueError) as exc:
        ActionBox(low, high, names=("--act-lo", "--act-hi"))
    flags = [n.replace("action_low", "--act-lo").replace("action_high", "--act-hi") for n in names]
    assert all(n in str(exc.value) for n in flags), str(exc.value)
    assert "action_" not in str(exc.value)


@pytest.mark.parametrize("act_dim", [1, 3])
def test_wrong_length_for_act_dim_raises(act_dim):
    with pytest.raises(ValueError, match="action_low must have shape"):
        ActionBox([0.0, 0.0], [1.0, 1.0], act_dim=act_dim)
    assert ActionBox([0.0, 0.0], [1.0, 1.0], act_dim=2).act_dim == 2


def test_box_of_a_box_copies_its_bounds():
    box = ActionBox([-1.0, 0.0], [1.0, 2.0])
    again = ActionBox(box)
    assert isinstance(again, ActionBox) and again is not box
    assert torch.equal(again.low, box.low) and torch.equal(again.high, box.high)
    wide = ActionBox(box, dtype=torch.float64)
    assert wide.dtype == torch.float64 and torch.equal(wide.low, box.low.double())
    assert torch.equal(box.to(dtype=torch.float64).high, box.high.double())


@pytest.mark.parametrize("source", ["box", "tensor"])
def test_box_does_not_share_storage_with_its_source(source):
    low = torch.tensor([-1.0, 0.0])
    if source == "box":
        original = ActionBox([-1.0, 0.0], [1.0, 2.0])
        box, low = ActionBox(original), original.low
    else:
        box = ActionBox(low, torch.tensor([1.0, 2.0]))
    low[0] = 5.0  # would make low > high in `box` without any check
    assert float(box.low[0]) == -1.0


def test_box_rejects_a_width_that_overflows_and_an_empty_box():
    with pytest.raises(ValueError, match="overflows"):
        ActionBox([-3e38], [3e38])
    box = ActionBox([-1e38], [1e38])
    assert bool(box.contains(box.sample(64, generator=torch.Generator().manual_seed(0))).all())
    with pytest.raises(ValueError, match="action_low must have at least one entry"):
        ActionBox([], [])


def test_check_bounds_broadcasts_and_rejects_non_broadcastable_shapes():
    lo, hi = check_bounds(torch.zeros(3, 1), torch.ones(4))
    assert lo.shape == (3, 1) and hi.shape == (4,)  # shapes unchanged, only checked
    lo, hi = check_bounds(-1.0, np.ones((2, 3)), dtype=torch.float64)
    assert lo.dtype == hi.dtype == torch.float64 and lo.shape == () and hi.shape == (2, 3)
    with pytest.raises(ValueError, match="lo must be <= hi element-wise"):
        check_bounds(torch.zeros(3, 1), torch.tensor([1.0, -1.0]), names=("lo", "hi"))
    for low, high in [(torch.zeros(3), torch.ones(4)), (torch.zeros(2, 3), torch.ones(3, 2))]:
        with pytest.raises(ValueError, match=r"low \(.*\) and high \(.*\) must broadcast"):
            check_bounds(low, high)


# ----------------------------------------------------------------------------------- the one integer rule
def test_int_max_is_the_int32_range():
    assert INT_MAX == 2**31 - 1


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, 2.5, np.float32(3.0), math.nan, math.inf,
                                   "3", None, torch.tensor(3.0), torch.tensor(True), torch.tensor([1, 2]), 3j])
def test_check_int_rejects_non_integers_naming_the_argument(value):
    with pytest.raises(ValueError, match="my_size"):
        check_int("my_size", value)


@pytest.mark.parametrize("value", [7, np.int8(7), np.uint64(7), np.array(7), torch.tensor(7), torch.tensor([7])])
def test_check_int_accepts_integers(value):
    out = check_int("n", value, low=7, high=7)
    assert out == 7 and type(out) is int


@settings(deadline=None)
@given(st.integers(-(2**70), 2**70), st.integers(-100, 100), st.integers(0, 200))
def test_check_int_enforces_low_and_high(v, low, span):
    high = low + span
    if low <= v <= high:
        assert check_int("k", v, low=low, high=high) == v
    else:
        with pytest.raises(ValueError, match=r"k must lie in"):
            check_int("k", v, low=low, high=high)
    assert check_int("k", v) == v  # unbounded by default


@pytest.mark.parametrize("make, arg", [
    (lambda n: CEM(population=n, elites=4, iterations=2), "population"),
    (lambda n: CEM(population=8, elites=n, iterations=2), "elites"),
    (lambda n: CEM(population=8, elites=4, iterations=n), "iterations"),
    (lambda n: ICEM(population=n, elites=4), "population"),
    (lambda n: ICEM(population=8, elites=4, iterations=n), "iterations"),
    (lambda n: MPPI(population=n), "population"),
    (lambda n: MPPI(iterations=n), "iterations"),
    (lambda n: RandomShooting(population=n), "population"),
])
def test_optimisers_reject_huge_and_non_integer_sizes(make, arg):
    for bad in (10**30, INT_MAX + 1, 8.0, True):
        with pytest.raises(ValueError, match=arg):
            make(bad)
    make(8)  # the same call with a sane size works


# ----------------------------------------------------------------------------------- FitConfig / fit_ensemble
@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", 2.0), ("epochs", 10**30), ("batch_size", 0), ("batch_size", True),
    ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf), ("holdout", -0.1), ("holdout", 1.5),
    ("holdout", math.nan), ("patience", 0), ("patience", 1.5), ("seed", 0.5), ("seed", "0"), ("seed", 2**64),
    ("max_holdout", -1),
])
def test_fit_config_rejects_bad_fields_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        FitConfig(**{field: value})
    model = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(4,), seed=0)
    data = (torch.zeros(8, 2), torch.zeros(8, 1), torch.zeros(8, 2))
    with pytest.raises(ValueError, match=field):  # overrides of fit_ensemble are checked the same way
        fit_ensemble(model, data, FitConfig(progress=False), **{field: value})


def test_fit_config_defaults_are_pets_and_frozen():
    cfg = FitConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.holdout, cfg.bootstrap) == (5, 32, 1e-3, 0.1, True)
    with pytest.raises(AttributeError):
        cfg.epochs = 3


def _data(n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs, act = torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)
    nxt = obs + 0.3 * torch.tanh(act.sum(-1, keepdim=True)) + 0.05 * torch.randn(n, 3, generator=g)
    return obs, act, nxt


@pytest.mark.parametrize("kw", [
    {"epochs": 4, "batch_size": 16, "seed": 5},
    {"epochs": 3, "batch_size": 7, "holdout": 0.0, "bootstrap": False, "lr": 3e-3, "seed": 1},
    {"epochs": 6, "batch_size": 32, "patience": 1, "max_holdout": 4, "seed": 2},
])
def test_fit_is_fit_ensemble_with_a_fit_config(kw):
    model = ProbabilisticEnsemble(3, 2, ensemble_size=3, hidden=(8, 8), seed=0)
    twin = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data()
    hist = model.fit(data, progress=False, **kw)
    hist_twin = fit_ensemble(twin, data, FitConfig(progress=False, **kw))
    assert hist == hist_twin
    after, after_twin = model.state_dict(), twin.state_dict()
    assert after.keys() == after_twin.keys()
    for k in after:
        assert torch.equal(after[k], after_twin[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in after)  # training did something
    assert len(hist["train_loss"]) <= kw["epochs"] and len(hist["best_epoch"]) == 3


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_saved_files_honour_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    """Atomic writes (temporary file or folder, then rename) leave the modes a plain open/mkdir would: a colleague
    can read a shared results folder under umask 022, and nobody else can under 077."""
    from mbrl.common.serialization import atomic_write_text, save_state

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        save_state(tmp_path / "ckpt", {"x": torch.zeros(2)}, {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == dir_mode
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "ckpt").iterdir()} == {file_mode}


def test_fits_run_at_one_thread_unless_the_user_chose_a_count(monkeypatch):
    """mbrl.common.threads: the library's fits run at one thread (faster for small networks, and far faster with
    another busy process), restore the count afterwards, and leave a count the user chose alone."""
    import mbrl.models.training as training
    from mbrl.common import threads
    from mbrl.models import ProbabilisticEnsemble

    for k in threads._ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 4)      # as if torch had picked 4 threads by itself
    seen = []
    real_epoch = training._epoch
    monkeypatch.setattr(training, "_epoch", lambda *a: seen.append(torch.get_num_threads()) or real_epoch(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        g = torch.Generator().manual_seed(0)
        data = (torch.randn(40, 2, generator=g), torch.randn(40, 1, generator=g), torch.randn(40, 2, generator=g))
        ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(8,), seed=0).fit(data, epochs=1, progress=False)
        assert seen == [1] and torch.get_num_threads() == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")           # the user's environment wins
        with threads.fit_threads():
            assert torch.get_num_threads() == 4
        monkeypatch.delenv("OMP_NUM_THREADS")
        torch.set_num_threads(2)                              # so does the user's torch.set_num_threads
        with threads.fit_threads():
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
