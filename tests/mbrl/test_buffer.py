"""Tests of mbrl.buffer.ReplayBuffer: ring order, seeded sampling, bit-exact save/load, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.buffer import Batch, ReplayBuffer

O, A = 3, 2


def _transitions(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, O, generator=g)
    act = torch.randn(n, A, generator=g)
    nxt = torch.randn(n, O, generator=g)
    rew = torch.randn(n, generator=g)
    term = torch.rand(n, generator=g) < 0.3
    trunc = torch.rand(n, generator=g) < 0.3
    return obs, act, nxt, rew, term, trunc


def _fill(buf: ReplayBuffer, data, chunks) -> None:
    """Add ``data`` using a mix of single ``add`` calls and ``add_batch`` chunks of the given sizes."""
    i = 0
    n = data[0].shape[0]
    for c in chunks:
        if i >= n:
            break
        if c == 1:
            buf.add(*(x[i] for x in data))
        else:
            buf.add_batch(*(x[i : i + c] for x in data))
        i += c
    if i < n:
        buf.add_batch(*(x[i:] for x in data))


def _assert_batch_equal(a: Batch, b: Batch) -> None:
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(1, 12), n=st.integers(0, 40),
       chunks=st.lists(st.integers(1, 15), min_size=0, max_size=8))
def test_ring_keeps_latest_in_order(capacity, n, chunks):
    data = _transitions(n)
    buf = ReplayBuffer(capacity, O, A)
    _fill(buf, data, chunks)
    k = min(n, capacity)
    assert len(buf) == k
    _assert_batch_equal(buf.all(), Batch(*(x[n - k :] for x in data)))


def test_add_batch_larger_than_capacity_and_numpy_input():
    data = _transitions(10)
    buf = ReplayBuffer(4, O, A)
    buf.add(*(x[0] for x in data))
    buf.add_batch(*(x[1:].numpy() for x in data))
    _assert_batch_equal(buf.all(), Batch(*(x[6:] for x in data)))
    # Single add with numpy / python scalars.
    buf.add(np.zeros(O), np.ones(A), np.zeros(O), 1.5, True)
    last = buf.all()
    assert last.reward[-1] == 1.5 and bool(last.terminated[-1]) and not bool(last.truncated[-1])
    assert torch.equal(last.obs[:-1], data[0][7:])


@settings(max_examples=25, deadline=None)
@given(capacity=st.integers(1, 10), n=st.integers(0, 25), more=st.integers(0, 7))
def test_save_load_bit_exact(tmp_path_factory, capacity, n, more):
    path = tmp_path_factory.mktemp("buf") / "buffer"
    data = _transitions(n + more, seed=n)
    buf = ReplayBuffer(capacity, O, A)
    _fill(buf, tuple(x[:n] for x in data), [3, 1, 5])
    buf.save(path)
    loaded = ReplayBuffer.load(path)
    assert (loaded.capacity, loaded.obs_dim, loaded.act_dim, len(loaded)) == (capacity, O, A, len(buf))
    assert loaded._ptr == buf._ptr
    _assert_batch_equal(loaded.all(), buf.all())
    # Ring position survives: the same further adds give the same contents.
    for b in (buf, loaded):
        _fill(b, tuple(x[n:] for x in data), [1, 2])
    _assert_batch_equal(loaded.all(), buf.all())


def test_save_load_float64_dtype(tmp_path):
    buf = ReplayBuffer(5, O, A, dtype=torch.float64)
    buf.add_batch(*_transitions(7))
    buf.save(tmp_path / "b")
    loaded = ReplayBuffer.load(tmp_path / "b")
    assert loaded.dtype == torch.float64
    _assert_batch_equal(loaded.all(), buf.all())


def test_sample_seeded_and_from_stored_rows():
    data = _transitions(30)
    buf = ReplayBuffer(50, O, A)
    buf.add_batch(*data)
    b1 = buf.sample(64, generator=torch.Generator().manual_seed(3))
    b2 = buf.sample(64, generator=torch.Generator().manual_seed(3))
    b3 = buf.sample(64, generator=torch.Generator().manual_seed(4))
    _assert_batch_equal(b1, b2)
    assert not torch.equal(b1.obs, b3.obs)
    assert b1.obs.shape == (64, O) and b1.act.shape == (64, A) and b1.reward.shape == (64,)
    assert b1.terminated.dtype == torch.bool
    # Every sampled row is a stored transition, fields kept together.
    match = (b1.obs[:, None, :] == data[0][None]).all(-1)  # [64, 30]
    assert bool(match.any(1).all())
    j = match.float().argmax(1)
    assert torch.equal(b1.act, data[1][j]) and torch.equal(b1.reward, data[3][j])
    assert torch.equal(b1.terminated, data[4][j])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"capacity": 0}, "capacity"), ({"capacity": -3}, "capacity"), ({"obs_dim": 0}, "obs_dim"),
     ({"act_dim": 0}, "act_dim")],
)
def test_constructor_rejects(kwargs, name):
    args = {"capacity": 10, "obs_dim": O, "act_dim": A, **kwargs}
    with pytest.raises(ValueError, match=name):
        ReplayBuffer(**args)


def test_bad_inputs_raise_naming_argument():
    buf = ReplayBuffer(10, O, A)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(4)
    obs, act, nxt, rew, term, _ = _transitions(5)
    bad = obs.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="obs"):
        buf.add(bad[1], act[0], nxt[0], 0.0, False)
    with pytest.raises(ValueError, match="obs"):
        buf.add_batch(bad, act, nxt, rew, term)
    with pytest.raises(ValueError, match="act"):
        buf.add(obs[0], torch.zeros(A + 1), nxt[0], 0.0, False)
    with pytest.raises(ValueError, match="next_obs"):
        buf.add_batch(obs, act, nxt[:4], rew, term)
    with pytest.raises(ValueError, match="reward"):
        buf.add_batch(obs, act, nxt, rew[:3], term)
    with pytest.raises(ValueError, match="terminated"):
        buf.add_batch(obs, act, nxt, rew, term[:2])
    with pytest.raises(ValueError, match="obs"):
        buf.add_batch(obs[:, :2], act, nxt, rew, term)
    assert len(buf) == 0  # nothing half-written
    buf.add_batch(obs, act, nxt, rew, term)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(0)
