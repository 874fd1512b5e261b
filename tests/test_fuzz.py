"""Hypothesis fuzzing of the public entry points of the finished modules.

Property everywhere: a call either returns a correct result or raises a documented ``ValueError`` /
``TypeError`` whose message names the offending argument. Inputs: random shapes (empty included), dtypes
(float16/32/64, int, bool), NaN/inf, extreme values (1e30) and wrong types. Sizes and budgets are tiny so
that the file runs in well under a minute on one core.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mbrl.buffer import ReplayBuffer
from mbrl.common.serialization import load_state, save_state
from mbrl.common.validation import as_tensor, check_int, check_threshold
from mbrl.models.ensemble import ProbabilisticEnsemble
from mbrl.sweep import grid_points, run_grid
from mbrl.tasks import TASKS, make_task
from safe_density.mural import CNMLConfig, MetaNMLConfig, MuralConfig, MuralReward
from safe_density.rcad import RCAD, rcad_loss

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
FUZZ_SMALL = settings(FUZZ, max_examples=15)

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]
EXTREME = st.sampled_from([0.0, -1.0, 1.0, 1e30, -1e30, math.nan, math.inf, -math.inf, 1e-30])


def mostly(valid, bad, one_in: int = 8):
    """``valid`` most of the time and ``bad`` about once in ``one_in`` draws (so success paths get fuzzed)."""
    return st.sampled_from(range(one_in)).flatmap(lambda i: bad if i == one_in - 1 else valid)


def _cast(dtype, v):
    with np.errstate(over="ignore"):  # 1e30 overflows float16 to inf on purpose
        return dtype(v).item()


def _elements(dtype, dirty: bool):
    if np.issubdtype(dtype, np.floating):
        width = 16 if dtype == np.float16 else (32 if dtype == np.float32 else 64)
        finite = st.floats(-1e3, 1e3, width=width)
        return mostly(finite, EXTREME.map(lambda v: _cast(dtype, v)), 6) if dirty else finite
    if dtype == np.bool_:
        return st.booleans()
    return st.integers(-1000, 1000)


@st.composite
def arrays(draw, shape=None, dtypes=DTYPES, max_dims=3, max_side=4):
    dtype = draw(st.sampled_from(dtypes))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    dirty = draw(st.sampled_from(range(3))) == 2  # a third of the arrays may hold NaN/inf/+-1e30/1e-30
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype, dirty)))


#: Wrong-typed or out-of-range scalars for hyper-parameters.
BAD_SCALARS = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.booleans(),
    EXTREME,
    st.integers(-5, 5),
    st.integers(2**64, 2**70),
    st.just([1, 2]),
    st.just(10**400),
)


def _call(fn, names):
    """``fn()`` or the documented error: ``(True, result)`` / ``(False, exc)``; anything else propagates."""
    try:
        out = fn()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        event(f"rejected by {names[0]}..: {msg[:25]}")
        assert any(n in msg for n in names), f"{type(exc).__name__} names none of {names}: {msg!r}"
        return False, exc
    event(f"accepted by {names[0]}..")  # `pytest --hypothesis-show-statistics` shows how often
    return True, out


def _finite(a) -> bool:
    a = np.asarray(a)
    return a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all())


def _to_input(arr: np.ndarray, as_tensor_: bool):
    return torch.from_numpy(arr.copy()) if as_tensor_ else arr


# ------------------------------------------------------------------------------------- validation
@FUZZ
@given(
    arr=arrays(),
    dtype=st.sampled_from([None, torch.float16, torch.float32, torch.float64, torch.int64]),
    min_ndim=st.integers(0, 3),
    last_dim=st.sampled_from([None, 0, 1, 2, 3]),
    nonempty=st.booleans(),
    finite=st.booleans(),
    tensor=st.booleans(),
)
def test_as_tensor(arr, dtype, min_ndim, last_dim, nonempty, finite, tensor):
    ok, t = _call(
        lambda: as_tensor(
            "arg_x",
            _to_input(arr, tensor),
            dtype=dtype,
            min_ndim=min_ndim,
            last_dim=last_dim,
            nonempty=nonempty,
            finite=finite,
        ),
        ["arg_x"],
    )
    if not ok:
        return
    assert t.is_floating_point() and t.shape == arr.shape
    if dtype is not None:
        assert t.dtype == dtype
    assert t.ndim >= min_ndim and (last_dim is None or t.shape[-1] == last_dim)
    assert not nonempty or t.numel() > 0
    if finite:
        assert bool(torch.isfinite(t).all())
    ref = torch.from_numpy(arr.copy()).to(t.dtype)
    assert torch.equal(t, ref) or torch.allclose(t, ref, equal_nan=True)


@FUZZ
@given(
    value=st.one_of(BAD_SCALARS, st.floats(), st.just(torch.tensor([1.0, 2.0])), st.just(np.ones(2))),
    low=st.sampled_from([-math.inf, 0.0, 1.0]),
    high=st.sampled_from([math.inf, 1.0, 10.0]),
    inclusive=st.booleans(),
)
def test_check_threshold(value, low, high, inclusive):
    ok, v = _call(lambda: check_threshold("arg_v", value, low=low, high=high, inclusive=inclusive), ["arg_v"])
    if ok:
        assert isinstance(v, float) and not math.isnan(v)
        assert (low <= v <= high) if inclusive else (low < v < high)


@FUZZ
@given(
    value=st.one_of(BAD_SCALARS, st.floats(), st.integers(), st.just(np.int64(3)), st.just(torch.tensor(4))),
    low=st.sampled_from([None, 0, 1]),
)
def test_check_int(value, low):
    ok, v = _call(lambda: check_int("arg_i", value, low=low), ["arg_i"])
    if ok:
        assert type(v) is int and (low is None or v >= low) and v == value


# ------------------------------------------------------------------------------------- ensemble
_DIM = mostly(st.integers(1, 3), BAD_SCALARS)


@FUZZ
@given(
    obs_dim=_DIM,
    act_dim=_DIM,
    ensemble_size=_DIM,
    hidden=mostly(
        st.lists(st.integers(1, 6), max_size=2).map(tuple), st.sampled_from([(0,), (math.nan,), 5, "ab"])
    ),
    activation=mostly(st.sampled_from(["silu", "relu"]), st.sampled_from(["bogus", None])),
    weight_decay=mostly(st.just(None), st.sampled_from([(1e-4,), ("a",), (math.nan,), (-1.0,)])),
    init_max_logvar=mostly(st.just(0.5), st.sampled_from([math.nan, 1e30, -20.0])),
    seed=mostly(st.integers(-10, 10), BAD_SCALARS),
    dtype=mostly(st.sampled_from([torch.float32, torch.float64]), st.sampled_from([torch.int32, "float32"])),
)
def test_ensemble_constructor(
    obs_dim, act_dim, ensemble_size, hidden, activation, weight_decay, init_max_logvar, seed, dtype
):
    names = [
        "obs_dim",
        "act_dim",
        "ensemble_size",
        "hidden",
        "activation",
        "weight_decay",
        "init_max_logvar",
        "init_min_logvar",
        "seed",
        "dtype",
    ]
    ok, m = _call(
        lambda: ProbabilisticEnsemble(
            obs_dim,
            act_dim,
            ensemble_size,
            hidden=hidden,
            activation=activation,
            weight_decay=weight_decay,
            init_max_logvar=init_max_logvar,
            seed=seed,
            dtype=dtype,
        ),
        names,
    )
    if ok:
        assert m.weights[0].shape == (m.ensemble_size, m.obs_dim + m.act_dim, (*m.hidden, 2 * m.obs_dim)[0])
        assert m.weights[-1].shape[-1] == 2 * m.obs_dim and m.max_logvar.dtype == dtype


_MODEL = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(8,), seed=0)
_MODEL.fit((torch.randn(40, 2), torch.randn(40, 1), torch.randn(40, 2)), epochs=1, progress=False)


@FUZZ
@given(
    data=st.data(),
    lead=mostly(st.sampled_from([(), (2,)]), st.just((3,))),
    n=st.integers(0, 3),
    o=mostly(st.just(2), st.sampled_from([1, 3])),
    a=mostly(st.just(1), st.just(2)),
    tensor=st.booleans(),
    deterministic=st.booleans(),
)
def test_ensemble_predict(data, lead, n, o, a, tensor, deterministic):
    obs = data.draw(arrays(shape=(*lead, n, o)))
    act = data.draw(arrays(shape=(*lead, n, a)))
    g = torch.Generator().manual_seed(0)
    ok, out = _call(
        lambda: _MODEL.predict(
            _to_input(obs, tensor), _to_input(act, tensor), deterministic=deterministic, generator=g
        ),
        ["obs", "act"],
    )
    if not ok:
        return
    assert out.shape == (2, n, 2) and out.is_floating_point()
    moderate = all(_finite(x) and np.abs(x.astype(np.float64)).max(initial=0) < 1e4 for x in (obs, act))
    if moderate and obs.dtype != np.float16:
        assert bool(torch.isfinite(out).all())
    if moderate:
        mean, var = _MODEL.mean_and_var(_to_input(obs, tensor), _to_input(act, tensor))
        assert mean.shape == var.shape == (2, n, 2) and bool((var >= 0).all())
        if deterministic:
            torch.testing.assert_close(out, mean)


@FUZZ_SMALL
@given(
    data=st.data(),
    n=mostly(st.integers(1, 12), st.just(0)),
    dtype=st.sampled_from(DTYPES),
    epochs=mostly(st.integers(1, 2), BAD_SCALARS),
    batch_size=mostly(st.integers(1, 16), BAD_SCALARS),
    holdout=mostly(st.sampled_from([0.0, 0.1, 0.5, 1.0]), BAD_SCALARS),
    lr=mostly(st.just(1e-3), st.sampled_from([0.0, -1.0, math.nan, "x"])),
    seed=mostly(st.integers(-3, 3), BAD_SCALARS),
    kind=mostly(st.sampled_from(["tuple", "buffer"]), st.just("bad")),
)
def test_ensemble_fit(data, n, dtype, epochs, batch_size, holdout, lr, seed, kind):
    obs, act, nxt = (data.draw(arrays(shape=(n, d), dtypes=[dtype])) for d in (2, 1, 2))
    model = ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(4,), seed=0)
    if kind == "buffer":
        buf = ReplayBuffer(16, 2, 1)
        ok, _ = _call(
            lambda: buf.add_batch(obs, act, nxt, np.zeros(n), np.zeros(n, bool)), ["obs", "act", "next_obs"]
        )
        if not ok:
            return
        fit_data = buf
    else:
        fit_data = (obs, act, nxt) if kind == "tuple" else obs
    names = ["data", "epochs", "batch_size", "holdout", "lr", "seed"]
    ok, hist = _call(
        lambda: model.fit(
            fit_data, epochs=epochs, batch_size=batch_size, holdout=holdout, lr=lr, seed=seed, progress=False
        ),
        names,
    )
    if not ok:
        return
    assert 1 <= len(hist["train_loss"]) <= int(epochs) and len(hist["best_epoch"]) == 2
    if all(np.abs(x.astype(np.float64)).max(initial=0) < 1e4 for x in (obs, act, nxt)):
        assert all(math.isfinite(v) for v in hist["train_loss"])
        assert all(p.isfinite().all() for p in model.parameters())


# ------------------------------------------------------------------------------------- buffer
_TRANSITION = st.tuples(st.integers(0, 5), st.sampled_from(DTYPES), st.booleans())


@FUZZ
@given(data=st.data(), capacity=st.integers(1, 6), ops=st.lists(_TRANSITION, min_size=1, max_size=6))
def test_buffer_ops(tmp_path_factory, data, capacity, ops):
    buf = ReplayBuffer(capacity, 2, 1)
    ref: list[tuple] = []
    names = ["obs", "act", "next_obs", "reward", "terminated", "truncated"]
    for n, dtype, single in ops:
        if single:
            args = [data.draw(arrays(shape=s, dtypes=[dtype])) for s in ((2,), (1,), (2,), ())]
            flags = data.draw(
                mostly(
                    st.sampled_from([True, False, 0, 1, np.bool_(True), 1.0]),
                    st.sampled_from([2.5, math.nan, "yes", None, np.array([1, 0])]),
                )
            )
            ok, _ = _call(lambda a=args, f=flags: buf.add(*a, f), names)
            rows = [tuple(np.asarray(x, np.float64).reshape(-1) for x in args)] if ok else []
        else:
            args = [data.draw(arrays(shape=s, dtypes=[dtype])) for s in ((n, 2), (n, 1), (n, 2), (n,))]
            flags = data.draw(
                mostly(
                    st.one_of(hnp.arrays(np.bool_, (n,)), st.booleans()),
                    st.one_of(
                        arrays(shape=(n,), dtypes=[np.int64, np.float32]), st.sampled_from([None, "no", 3])
                    ),
                )
            )
            ok, _ = _call(lambda a=args, f=flags: buf.add_batch(*a, f), names)
            rows = (
                [tuple(np.asarray(x[i], np.float64).reshape(-1) for x in args) for i in range(n)]
                if ok
                else []
            )
        if ok:  # accepted input must have been finite numbers
            assert all(_finite(x) for x in args)
        ref = (ref + rows)[-capacity:]
    assert len(buf) == len(ref)
    got = buf.all()
    for i, row in enumerate(ref):
        for field, want in zip((got.obs, got.act, got.next_obs, got.reward), row):
            np.testing.assert_array_equal(field[i].numpy().reshape(-1), want.astype(np.float32))
    if len(buf):
        s = buf.sample(5, generator=torch.Generator().manual_seed(1))
        assert s.obs.shape == (5, 2) and s.terminated.dtype == torch.bool
        stored = {tuple(r) for r in got.obs.tolist()}
        assert all(tuple(r) in stored for r in s.obs.tolist())
        path = tmp_path_factory.mktemp("buf") / "ckpt"
        buf.save(path)
        back = ReplayBuffer.load(path)
        for x, y in zip(back.all(), got):
            assert torch.equal(x, y)
        assert back._ptr == buf._ptr
    for bad in (0, -1, 1.5, True, "3", None):
        _call(lambda b=bad: buf.sample(b), ["batch_size"])


@FUZZ
@given(
    capacity=mostly(st.integers(1, 5), BAD_SCALARS, 3),
    obs_dim=mostly(st.integers(1, 2), BAD_SCALARS, 3),
    dtype=mostly(st.sampled_from([torch.float32, torch.float64]), st.sampled_from([torch.int32, None]), 3),
)
def test_buffer_constructor(capacity, obs_dim, dtype):
    ok, buf = _call(lambda: ReplayBuffer(capacity, obs_dim, 1, dtype=dtype), ["capacity", "obs_dim", "dtype"])
    if ok:
        assert buf.capacity == capacity and len(buf) == 0


# ------------------------------------------------------------------------------------- tasks
_TASK_OBJS = {name: make_task(name) for name in TASKS}


@FUZZ
@given(
    data=st.data(),
    name=st.sampled_from(TASKS),
    lead=st.sampled_from([(), (0,), (3,), (2, 1)]),
    wrong=mostly(st.none(), st.sampled_from(["obs", "act", "next_obs"]), 4),
    bcast=st.booleans(),
    tensor=st.booleans(),
)
def test_task_functions(data, name, lead, wrong, bcast, tensor):
    task = _TASK_OBJS[name]
    dims = {"obs": task.obs_dim, "act": task.act_dim, "next_obs": task.obs_dim}
    if wrong is not None:
        dims[wrong] += 1
    shapes = {k: ((*lead, d) if not (bcast and k == "act") else (d,)) for k, d in dims.items()}
    if not lead and data.draw(mostly(st.just(False), st.just(True), 4)):
        shapes["obs"] = ()  # a scalar obs
    arrs = {k: data.draw(arrays(shape=s)) for k, s in shapes.items()}
    args = [_to_input(arrs[k], tensor) for k in ("obs", "act", "next_obs")]
    for fn, boolean in ((task.reward_fn, False), (task.termination_fn, True)):
        ok, out = _call(lambda f=fn: f(*args), ["obs", "act", "next_obs"])
        assert ok == (wrong is None and shapes["obs"] != ())
        if not ok:
            continue
        assert out.shape == lead
        assert (out.dtype == torch.bool) if boolean else out.is_floating_point()
        moderate = all(
            _finite(a) and np.abs(a.astype(np.float64)).max(initial=0) < 1e3 for a in arrs.values()
        )
        if not boolean and moderate:
            assert bool(torch.isfinite(out).all())


@FUZZ
@given(
    name=mostly(
        st.sampled_from(["Hopper-v5", "InvertedPendulum-v5"]),
        st.sampled_from(["Nope-v0", None, ["Hopper-v5"], 3]),
        4,
    ),
    option=mostly(
        st.sampled_from(
            [{}, {"max_episode_steps": 7}, {"ctrl_cost_weight": 0.5}, {"healthy_z_range": (0.5, math.inf)}]
        ),
        st.sampled_from(
            [
                {"max_episode_steps": 0},
                {"ctrl_cost_weight": "x"},
                {"ctrl_cost_weight": math.nan},
                {"healthy_z_range": (1.0, 0.0)},
                {"terminate_when_unhealthy": "no"},
                {"bogus_option": 1},
            ]
        ),
        3,
    ),
)
def test_make_task(name, option):
    names = [
        "name",
        "max_episode_steps",
        "ctrl_cost_weight",
        "healthy_z_range",
        "terminate_when_unhealthy",
        "bogus_option",
    ]
    ok, task = _call(lambda: make_task(name, **option), names)
    if ok:
        assert task.name == name and task.action_low.shape == (task.act_dim,)
        assert task.max_episode_steps == option.get("max_episode_steps", task.max_episode_steps)


# ------------------------------------------------------------------------------------- MURAL
_MURAL_CFG = MuralConfig.small(
    hidden=(8,),
    classifier_steps=3,
    meta_steps=2,
    cnml=CNMLConfig(steps=2),
    meta_nml=MetaNMLConfig(inner_lr=1.0, inner_query_weight=10.0, meta_lr=1e-2, meta_batch=4, outer_batch=16),
)


@FUZZ_SMALL
@given(
    data=st.data(),
    method=mostly(st.sampled_from(["meta_nml", "cnml", "classifier"]), st.just("bogus")),
    mode=mostly(st.sampled_from(["replace", "add"]), st.just(None)),
    weight=mostly(st.just(1.0), BAD_SCALARS),
    seed=mostly(st.integers(-2, 2), BAD_SCALARS),
    state_slice=mostly(
        st.sampled_from([None, (0, 1)]), st.sampled_from([(1, 1), ("a", 1), (0, 1, 2), (0, 5)])
    ),
    dtype=mostly(
        st.sampled_from([torch.float32, torch.float64]), st.sampled_from([torch.float16, torch.int64])
    ),
)
def test_mural_constructor_update_call(data, method, mode, weight, seed, state_slice, dtype):
    ex = data.draw(
        arrays(
            shape=data.draw(
                mostly(st.sampled_from([(3, 2), (1, 2)]), st.sampled_from([(0, 2), (2,), (2, 2, 2)]))
            )
        )
    )
    names = ["success_examples", "method", "mode", "weight", "seed", "state_slice", "dtype"]
    ok, mr = _call(
        lambda: MuralReward(
            ex,
            method=method,
            seed=seed,
            config=_MURAL_CFG,
            mode=mode,
            weight=weight,
            state_slice=state_slice,
            dtype=dtype,
        ),
        names,
    )
    if not ok:
        return
    assert _finite(ex) and mr.obs_dim == 2 and math.isfinite(mr.weight)
    visited = data.draw(
        arrays(shape=data.draw(mostly(st.sampled_from([(4, 2), (2,)]), st.sampled_from([(0, 2), (3, 3)]))))
    )
    steps = data.draw(mostly(st.one_of(st.none(), st.integers(0, 2)), BAD_SCALARS))
    ok, _ = _call(lambda: mr.update(visited, steps=steps, progress=False), ["visited_states", "steps"])
    if not ok:
        return
    states = data.draw(
        arrays(
            shape=data.draw(
                mostly(st.sampled_from([(5, 2), (2,), (0, 2), (2, 3, 2)]), st.sampled_from([(4, 1), ()]))
            )
        )
    )
    ok, r = _call(lambda: mr(states), ["states"])
    if ok:
        assert r.shape == states.shape[:-1] and r.dtype == mr.dtype
        assert bool(((r >= 0) & (r <= 1)).all()), r
        t = torch.as_tensor(states)  # the RewardShaper form takes tensors (docs/design.md contracts)
        r3 = mr(t, None, t)  # the reward of next_obs, through the unvalidated hot path
        torch.testing.assert_close(r3, r)


# ------------------------------------------------------------------------------------- RCAD
@FUZZ
@given(
    data=st.data(),
    n_classes=st.sampled_from([1, 3]),
    b=mostly(st.integers(1, 4), st.just(0)),
    d=st.just(2),
    step_size=mostly(st.sampled_from([0.0, 0.5, 1e30]), BAD_SCALARS),
    weight=mostly(st.sampled_from([0.0, 0.2]), BAD_SCALARS),
    reduction=mostly(st.sampled_from(["mean", "sum", "none"]), st.just("bogus")),
    tensor=st.booleans(),
    use_class=st.booleans(),
)
def test_rcad(data, n_classes, b, d, step_size, weight, reduction, tensor, use_class):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, n_classes))
    x = data.draw(arrays(shape=(b, d)))
    valid_y = (
        hnp.arrays(np.int64, (b,), elements=st.integers(0, n_classes - 1))
        if n_classes > 1
        else hnp.arrays(np.float32, (b,), elements=st.sampled_from([0.0, 0.25, 1.0]))
    )
    y = data.draw(mostly(valid_y, st.one_of(arrays(shape=(b,)), st.sampled_from([None, "abc", [[0, 1]]])), 4))
    x_in = _to_input(x, tensor)
    names = ["x", "y", "step_size", "weight", "reduction", "model"]

    def fn():
        if use_class:
            return RCAD(step_size, weight).loss(model, x_in, y, reduction=reduction)
        return rcad_loss(model, x_in, y, step_size=step_size, weight=weight, reduction=reduction)

    ok, loss = _call(fn, names)
    if not ok:
        return
    assert b > 0 and _finite(x)
    assert loss.shape == ((b,) if reduction == "none" else ())
    if float(weight) == 0.0 or float(step_size) < 1e6:
        assert bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ------------------------------------------------------------------------------------- serialization
_KEYS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=6)
_TORCH_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]


@st.composite
def _tensors(draw):
    out = {}
    for key in draw(st.lists(mostly(_KEYS, st.just("__metadata__"), 10), max_size=4, unique=True)):
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
        dtype = draw(st.sampled_from(_TORCH_DTYPES))
        t = torch.from_numpy(draw(hnp.arrays(np.float64, shape, elements=EXTREME))).to(dtype)
        out[key] = t
    if out and draw(st.booleans()):  # the same storage under two names / a view into a bigger tensor
        k = next(iter(out))
        out[k + "_alias"] = out[k] if draw(st.booleans()) else out[k].reshape(-1)[:1]
    return out


_META = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=False), st.text(max_size=4)
    ),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c, max_size=3)),
    max_leaves=6,
)


@FUZZ
@given(
    tensors=mostly(_tensors(), st.sampled_from([{1: torch.zeros(1)}, {"a": None}, [1]])),
    meta=mostly(
        st.dictionaries(st.text(max_size=3), _META, max_size=3),
        st.sampled_from([{"t": torch.zeros(1)}, [1], {"s": {1, 2}}]),
    ),
)
def test_save_load_state(tmp_path_factory, tensors, meta):
    path = tmp_path_factory.mktemp("ckpt") / "state"
    ok, _ = _call(lambda: save_state(path, tensors, meta), ["tensors", "meta"])
    if not ok:
        assert not path.exists()
        return
    back, meta2 = load_state(path)
    assert meta2 == meta and set(back) == set(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape
        bits = (lambda u: u.reshape(-1).clone().view(torch.uint8)) if t.dtype != torch.bool else (lambda u: u)
        assert torch.equal(bits(back[k]), bits(t.contiguous()))  # bit-exact, NaN payloads included
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "tensors.safetensors"]


# ------------------------------------------------------------------------------------- sweep
def _sweep_fn(**kw):
    return {"n_args": len(kw)}


@FUZZ
@given(
    grid=mostly(
        st.dictionaries(
            mostly(st.sampled_from(["a", "b", "c"]), st.sampled_from(["1x", ""]), 10),
            mostly(
                st.one_of(
                    st.lists(st.integers(), min_size=1, max_size=3), st.just(np.arange(2)), st.just(range(2))
                ),
                st.sampled_from(["ab", 5, []]),
                10,
            ),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from([[("a", [1])], None, {}]),
    ),
    fixed=mostly(st.sampled_from([{}, {"z": 2}]), st.just({"a": 1}), 6),
    backend=mostly(st.just("serial"), st.just("mpi"), 6),
    fn=mostly(st.just(_sweep_fn), st.sampled_from([3, lambda **kw: [1]]), 6),
)
def test_grid(grid, fixed, backend, fn):
    ok, points = _call(lambda: grid_points(grid), ["grid"])
    if ok:
        assert len(points) == math.prod(len(v) for v in grid.values())
        assert all(list(p) == list(grid) for p in points)
    ok2, rows = _call(
        lambda: run_grid(fn, grid, backend=backend, progress=False, **fixed), ["grid", "fn", "backend"]
    )
    if ok2:
        assert ok and fn is _sweep_fn and len(rows) == len(points)
        assert all(r["n_args"] == len(grid) + len(fixed) for r in rows)
        assert [{k: r[k] for k in grid} for r in rows] == points


@pytest.mark.parametrize("bad", [b"x", object()])
def test_as_tensor_rejects_objects(bad):
    with pytest.raises(TypeError, match="arg_o"):
        as_tensor("arg_o", bad)


# ------------------------------------------------------------------------------------- tampered checkpoints
_TAMPER = st.one_of(st.integers(-3, 40), st.sampled_from([None, "x", "float32", "int64", "Tensor", 2.5, [1]]))


@FUZZ
@given(
    kind=st.sampled_from(["buffer", "ensemble"]),
    key=st.sampled_from(
        ["capacity", "obs_dim", "act_dim", "dtype", "ptr", "size", "class", "hidden", "seed"]
    ),
    value=_TAMPER,
    drop=st.booleans(),
)
def test_load_tampered_checkpoint(tmp_path_factory, kind, key, value, drop):
    """A checkpoint whose JSON was edited either loads consistently or fails with ValueError naming path."""
    import json

    path = tmp_path_factory.mktemp("tamper") / "ckpt"
    if kind == "buffer":
        buf = ReplayBuffer(8, 2, 1)
        buf.add_batch(np.ones((11, 2)), np.ones((11, 1)), np.ones((11, 2)), np.ones(11), np.zeros(11, bool))
        buf.save(path)
        loader = ReplayBuffer.load
    else:
        ProbabilisticEnsemble(2, 1, ensemble_size=2, hidden=(4,)).save(path)
        loader = ProbabilisticEnsemble.load
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text())
    target = meta if kind == "buffer" or key == "class" else meta["config"]
    if drop:
        target.pop(key, None)
    else:
        target[key] = value
    meta_path.write_text(json.dumps(meta))
    ok, obj = _call(lambda: loader(path), ["path", *_TAMPER_NAMES])
    if ok and kind == "buffer":
        assert len(obj) <= obj.capacity and all(x.shape[0] == len(obj) for x in obj.all())
    elif ok:
        assert obj.max_logvar.shape == (1, 1, obj.obs_dim)


_TAMPER_NAMES = ["capacity", "obs_dim", "act_dim", "dtype", "hidden", "seed"]
