"""Replay buffer: a ring of preallocated torch tensors holding ``(obs, act, next_obs, reward, done)``.

PETS (docs/design.md, "PETS") refits its dynamics ensemble on every transition collected so far after each
episode; :meth:`ReplayBuffer.all` returns them in insertion order and :meth:`ReplayBuffer.sample` draws
seeded minibatches. Once ``capacity`` transitions are stored the oldest are overwritten. Checkpoints go
through :mod:`mbrl.common.serialization` (safetensors + JSON, no pickle) and round-trip bit-exactly,
including the ring position.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from mbrl.common.serialization import load_state, save_state
from mbrl.common.validation import as_flags, as_tensor, check_int

__all__ = ["Batch", "ReplayBuffer"]

_FIELDS = ("obs", "act", "next_obs", "reward", "terminated", "truncated")


class Batch(NamedTuple):
    """Transitions: ``obs[N,O]``, ``act[N,A]``, ``next_obs[N,O]``, ``reward[N]``, ``terminated[N]``,
    ``truncated[N]`` (the last two boolean)."""

    obs: torch.Tensor
    act: torch.Tensor
    next_obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor


def _positive_int(name: str, v) -> int:
    return check_int(name, v, low=1)


def _as_bool(name: str, x, n: int, device: torch.device) -> torch.Tensor:
    """Flags ``[n]`` (a scalar is broadcast) as ``torch.bool``; numeric values must be 0 or 1."""
    return as_flags(name, x, n, device=device)


class ReplayBuffer:
    """Ring buffer of transitions stored as preallocated tensors.

    Args:
        capacity: maximum number of transitions kept (the oldest are overwritten).
        obs_dim: observation size ``O``.
        act_dim: action size ``A``.
        dtype: floating dtype of obs/act/next_obs/reward.
        device: where the storage lives.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        self.capacity = _positive_int("capacity", capacity)
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.act_dim = _positive_int("act_dim", act_dim)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self.device = torch.device(device)
        C, kw = self.capacity, {"dtype": dtype, "device": self.device}
        try:
            self._obs = torch.zeros(C, self.obs_dim, **kw)
            self._act = torch.zeros(C, self.act_dim, **kw)
            self._next_obs = torch.zeros(C, self.obs_dim, **kw)
            self._reward = torch.zeros(C, **kw)
            self._terminated = torch.zeros(C, dtype=torch.bool, device=self.device)
            self._truncated = torch.zeros(C, dtype=torch.bool, device=self.device)
        except (RuntimeError, MemoryError, TypeError, ValueError) as exc:  # sizes too large to allocate
            raise ValueError(f"capacity={C} with obs_dim={self.obs_dim}, act_dim={self.act_dim} cannot be "
                             f"allocated: {str(exc).splitlines()[0]}") from exc
        self._ptr = 0  # next write position
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (f"ReplayBuffer(size={self._size}, capacity={self.capacity}, obs_dim={self.obs_dim}, "
                f"act_dim={self.act_dim}, dtype={self.dtype}, device={self.device})")

    def _storage(self) -> tuple[torch.Tensor, ...]:
        return (self._obs, self._act, self._next_obs, self._reward, self._terminated, self._truncated)

    def add(self, obs, act, next_obs, reward, terminated, truncated=False) -> None:
        """Store one transition: ``obs[O]``, ``act[A]``, ``next_obs[O]``, scalar reward and flags.

        Flags are booleans or the numbers 0/1 (anything else raises ``ValueError`` naming the flag). Every
        argument is validated before anything is written, so a rejected call leaves the buffer unchanged.
        """
        kw = {"dtype": self.dtype, "device": self.device, "detach": True}
        o = as_tensor("obs", obs, **kw)
        a = as_tensor("act", act, **kw)
        n = as_tensor("next_obs", next_obs, **kw)
        r = as_tensor("reward", reward, **kw)
        if o.shape != (self.obs_dim,):
            raise ValueError(f"obs must have shape ({self.obs_dim},), got {tuple(o.shape)}")
        if a.shape != (self.act_dim,):
            raise ValueError(f"act must have shape ({self.act_dim},), got {tuple(a.shape)}")
        if n.shape != (self.obs_dim,):
            raise ValueError(f"next_obs must have shape ({self.obs_dim},), got {tuple(n.shape)}")
        if r.numel() != 1:
            raise ValueError(f"reward must be a scalar, got shape {tuple(r.shape)}")
        te = _as_bool("terminated", terminated, 1, self.device)[0]
        tr = _as_bool("truncated", truncated, 1, self.device)[0]
        i = self._ptr  # write only once everything is validated: a rejected call leaves the buffer as it was
        self._obs[i], self._act[i], self._next_obs[i], self._reward[i] = o, a, n, r.reshape(())
        self._terminated[i], self._truncated[i] = te, tr
        self._ptr = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def add_batch(self, obs, act, next_obs, reward, terminated, truncated=None) -> None:
        """Store ``N`` transitions: ``obs[N,O]``, ``act[N,A]``, ``next_obs[N,O]``, ``reward[N]``,
        ``terminated[N]``, ``truncated[N]`` (default all False). With ``N > capacity`` only the last
        ``capacity`` rows are kept."""
        kw = {"dtype": self.dtype, "device": self.device, "detach": True}
        o = as_tensor("obs", obs, **kw)
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}), got {tuple(o.shape)}")
        N = o.shape[0]
        a = as_tensor("act", act, **kw)
        if a.shape != (N, self.act_dim):
            raise ValueError(f"act must have shape ({N}, {self.act_dim}), got {tuple(a.shape)}")
        n = as_tensor("next_obs", next_obs, **kw)
        if n.shape != (N, self.obs_dim):
            raise ValueError(f"next_obs must have shape ({N}, {self.obs_dim}), got {tuple(n.shape)}")
        r = as_tensor("reward", reward, **kw)
        if r.shape != (N,):
            raise ValueError(f"reward must have shape ({N},), got {tuple(r.shape)}")
        te = _as_bool("terminated", terminated, N, self.device)
        tr = _as_bool("truncated", False if truncated is None else truncated, N, self.device)
        if N == 0:
            return
        rows = (o, a, n, r, te, tr)
        if N > self.capacity:  # only the newest `capacity` rows survive
            rows = tuple(x[N - self.capacity :] for x in rows)
            self._ptr = (self._ptr + N - self.capacity) % self.capacity
            N = self.capacity
        idx = (self._ptr + torch.arange(N, device=self.device)) % self.capacity
        for store, x in zip(self._storage(), rows):
            store[idx] = x
        self._ptr = (self._ptr + N) % self.capacity
        self._size = min(self._size + N, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Draw ``batch_size`` stored transitions uniformly with replacement (seeded by ``generator``)."""
        batch_size = _positive_int("batch_size", batch_size)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if self._size == 0:
            raise ValueError("cannot sample from an empty buffer (size 0): add transitions first")
        gdev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(self._size, (batch_size,), generator=generator, device=gdev).to(self.device)
        return Batch(*(x[idx] for x in self._storage()))

    def all(self) -> Batch:
        """All stored transitions in insertion order (oldest first), each ``[len(self), ...]`` (copies)."""
        if self._size < self.capacity:
            return Batch(*(x[: self._size].clone() for x in self._storage()))
        p = self._ptr
        return Batch(*(torch.cat([x[p:], x[:p]]) for x in self._storage()))

    def save(self, path: str | os.PathLike) -> None:
        """Atomically write the stored transitions and ring position to directory ``path``."""
        tensors = {f: x[: self._size] for f, x in zip(_FIELDS, self._storage())}
        meta = {"class": "ReplayBuffer", "capacity": self.capacity, "obs_dim": self.obs_dim,
                "act_dim": self.act_dim, "dtype": str(self.dtype).removeprefix("torch."),
                "ptr": self._ptr, "size": self._size}
        save_state(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> ReplayBuffer:
        """Rebuild a buffer written by :meth:`save` (bit-exact, same capacity and ring position)."""
        tensors, meta = load_state(path, device=device)
        if meta.get("class") != "ReplayBuffer":
            raise ValueError(f"path {path} does not hold a ReplayBuffer checkpoint")
        try:
            dtype = getattr(torch, str(meta["dtype"]))
            buf = cls(meta["capacity"], meta["obs_dim"], meta["act_dim"], dtype=dtype, device=device)
            size, ptr = int(meta["size"]), int(meta["ptr"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"path {path} holds a corrupt ReplayBuffer checkpoint: {exc}") from exc
        full = size == buf.capacity
        if not (0 <= size <= buf.capacity and 0 <= ptr < buf.capacity and (full or ptr == size)):
            raise ValueError(f"path {path} holds a corrupt ReplayBuffer checkpoint: size={size}, ptr={ptr}, "
                             f"capacity={buf.capacity}")
        for f, store in zip(_FIELDS, buf._storage()):
            t = tensors.get(f)
            if t is None or t.shape != (size, *store.shape[1:]) or t.dtype != store.dtype:
                raise ValueError(f"path {path} holds a corrupt ReplayBuffer checkpoint: field {f!r} is "
                                 f"{None if t is None else (tuple(t.shape), t.dtype)}")
            store[:size] = t
        buf._ptr, buf._size = ptr, size
        return buf
