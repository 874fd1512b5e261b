"""Particle trajectory sampling through a dynamics ensemble (PETS, Chua et al. 2018, docs/design.md "PETS").

:func:`rollout` scores ``N`` candidate action sequences from each of ``B`` start states by propagating
``P`` particles per candidate through the ensemble, all ``B * N * P`` rows at once (a Python loop runs
over the ``H`` time steps only):

* ``"ts_inf"`` (TS-inf): particle ``p`` uses member ``p % E`` for the whole horizon. Rows are laid out as
  ``[E, C, .]`` with member ``e``'s particles in block ``e`` (what ``model.predict`` expects), padded with
  duplicate rows whose predictions are dropped when the blocks are unequal, so no size needs to be a
  multiple of the ensemble size.
* ``"ts_1"`` (TS-1): every particle draws a fresh member at every step (a random permutation of the rows
  into the member blocks, balanced).
* ``"expectation"``: every particle follows the mean over members of the deterministic predictions (no
  sampling; all particles are identical, so one is computed).

The return of a particle is the sum of its rewards until termination (the step that terminates counts,
later steps add 0 and the state is frozen); the return of a candidate is the mean over its particles.
The reward is the task's ``reward_fn(obs, act, next_obs)``, then for each reward shaper ``s``:
``mode == "replace"`` replaces it by ``s(obs, act, next_obs)``, ``"add"`` (default) adds
``weight * s(...)`` (``weight`` defaults to 1); a shaper with ``granularity == "candidate"`` is called once per
candidate and step, on the mean of the candidate's particles (:class:`_Candidates`); one with ``"members"`` gets
the propagating members' mean predicted changes per candidate (:class:`_Members`, TS-inf). Constraints (``threshold``
and ``cost(obs, act)``) give a violation per candidate, according to where each constraint applies (its
``placement``, see :func:`mbrl.contracts.check_plugins`):

* ``"current"`` (e.g. the LDM, whose ``G(s, a) <= c`` at the real state already guarantees the whole future):
  ``relu(cost(s_0, a_0) - threshold)`` on the real start state and each candidate's first action only, once,
  with no model in the loop (model error cannot make a candidate infeasible);
* ``"imagined"`` (per-step costs: a greedy density bound, an uncertainty budget; the default for constraints
  that do not say): the mean over particles of ``sum_t relu(cost(s_t, a_t) - threshold)`` over the whole
  imagined horizon, a terminated particle's frozen last state counting at every later step (so ending an
  episode, e.g. by falling, is never a way to escape a constraint).

A particle that reaches a non-finite state, reward or cost makes its candidate's return NaN, so the
selection of :mod:`mbrl.planning.selection` ranks it last.

Precision: states and actions go through the model in ``dtype`` (e.g. ``torch.bfloat16`` with a bf16 model
copy from :func:`cast_model`), while returns and violations are accumulated in float32 (float64 if
``dtype`` is float64).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch

from mbrl.common.validation import as_tensor
from mbrl.contracts import Plugins, TransitionFn, check_plugins, shape_reward, violation

__all__ = ["PROPAGATIONS", "cast_model", "current_violation", "rollout"]

PROPAGATIONS = ("ts_inf", "ts_1", "expectation")


def cast_model(model, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
    """A copy of ``model`` in ``dtype`` on ``device`` (the model itself when nothing changes).

    Only ``torch.nn.Module`` models are copied; other objects are returned unchanged. Make the copy once
    (e.g. when the agent is built), never per planning call.
    """
    if not isinstance(model, torch.nn.Module):
        return model
    p = next(iter(model.parameters()), None)
    same_dtype = dtype is None or p is None or p.dtype == dtype
    same_device = device is None or p is None or p.device == torch.device(device)
    if same_dtype and same_device:
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def _ts_inf_layout(B: int, N: int, P: int, E: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``slot_rows[E, C]`` (row index ``(b * N + n) * P + p`` held by each slot) and ``valid[E, C]``."""
    J = -(-P // E)
    e = torch.arange(E, device=device)[:, None]
    p = e + E * torch.arange(J, device=device)[None, :]                       # [E, J]
    valid = p < P
    p = torch.where(valid, p, e % P)                                           # pad with a real particle
    bn = torch.arange(B * N, device=device)[None, :, None]
    rows = (bn * P + p[:, None, :]).reshape(E, B * N * J)
    return rows, valid[:, None, :].expand(E, B * N, J).reshape(E, B * N * J)


def _validate(model, obs0, actions, reward_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Input checks of :func:`rollout` (skipped on the planner's hot path)."""
    obs0 = as_tensor("obs0", obs0, min_ndim=2)
    actions = as_tensor("actions", actions, device=obs0.device, min_ndim=4)
    if obs0.ndim != 2 or obs0.shape[-1] != getattr(model, "obs_dim", obs0.shape[-1]):
        raise ValueError(f"obs0 must have shape (B, {getattr(model, 'obs_dim', 'O')}), "
                         f"got {tuple(obs0.shape)}")
    if actions.ndim != 4 or actions.shape[0] != obs0.shape[0] or actions.shape[-1] != getattr(
            model, "act_dim", actions.shape[-1]):
        raise ValueError(f"actions must have shape ({obs0.shape[0]}, N, H, A), "
                         f"got {tuple(actions.shape)}")
    if not callable(reward_fn):
        raise ValueError("reward_fn must be callable")
    return obs0, actions


def _predict(model, propagation: str, state, act, generator, E: int, C: int, members: bool = False):
    """One imagined step ``state -> next`` of every row under ``propagation`` (module docstring); with ``members``
    (TS-inf only) ``(next, mean_delta)``, the rows' mean predicted changes too."""
    if propagation == "ts_inf":
        return model.predict(state, act, deterministic=False, generator=generator, **(
            {"return_mean_delta": True} if members else {}))
    R, O = state.shape
    if propagation == "ts_1":
        perm = torch.randperm(R, generator=generator, device=state.device)
        slots = perm.repeat(-(-E * C // R))[: E * C] if E * C > R else perm   # pad cyclically (R may be < E - 1)
        out = model.predict(state[slots].view(E, C, O), act[slots].view(E, C, -1), deterministic=False,
                            generator=generator)
        return torch.empty_like(state).index_copy_(0, perm, out.reshape(E * C, O)[:R].to(state.dtype))
    out = model.predict(state.expand(E, R, O), act.expand(E, R, act.shape[-1]), deterministic=True)
    return out.mean(0).to(state.dtype)


class _Candidates:
    """Per-candidate means of the particles' states, for shapers with ``granularity == "candidate"``.

    ``cand[...]``: the candidate (``b * N + n``) of every row or slot (layout of :func:`_layout`), ``BN`` for TS-inf
    padding slots (a discarded extra row, so padding never counts); ``act_bn[H, BN, A]``: each candidate's actions.
    The means (and the actions the shaper sees) are float32 whatever the rollout's dtype."""

    def __init__(self, cand: torch.Tensor, P: int, act_bn: torch.Tensor):
        self.cand, self.P, self.act_bn, self.BN = cand.reshape(-1), P, act_bn, act_bn.shape[1]
        self.real = self.cand.clamp(max=self.BN - 1)  # where each row reads its candidate's value back

    def value(self, shaper, state, nxt, t: int, cache: dict) -> torch.Tensor:
        """``shaper`` on the candidates' mean states at step ``t``, given back to every particle (``[...]``)."""
        if not cache:  # one scatter for both states, shared by every candidate-granularity shaper of this step
            both = torch.cat([state, nxt], dim=-1).reshape(-1, 2 * state.shape[-1]).to(torch.float32)
            out = torch.zeros(self.BN + 1, both.shape[-1], device=both.device)
            cache["s"], cache["n"] = out.index_add_(0, self.cand, both, alpha=1.0 / self.P)[: self.BN].chunk(2, -1)
        v = shaper(cache["s"], self.act_bn[t].to(torch.float32), cache["n"])
        return v[self.real].reshape(state.shape[:-1])


class _Members:
    """Per candidate, the mean predicted change of each member that propagates its particles (TS-inf), for shapers
    with ``granularity == "members"`` (:class:`mbrl.contracts.RewardShaper`).

    Slot ``[e, j]`` of the ``[E, C]`` layout is member ``e``'s; its candidate is ``slot_rows // P``. Member ``e``
    holds ``len(range(e, P, E))`` particles of every candidate (none when ``e >= P``: those members are left out)."""

    def __init__(self, slot_rows: torch.Tensor, valid: torch.Tensor, P: int, E: int, BN: int):
        e = torch.arange(E, device=slot_rows.device)[:, None].expand_as(slot_rows)
        self.cand = (slot_rows // P).reshape(-1)
        self.index = torch.where(valid, slot_rows // P * E + e, BN * E).reshape(-1)  # padding: a discarded row
        counts = torch.tensor([len(range(m, P, E)) for m in range(E)], dtype=torch.float32, device=slot_rows.device)
        self.present = counts > 0
        self.scale = (1.0 / counts.clamp(min=1.0))[self.present][:, None]             # [M, 1]
        self.BN, self.E = BN, E

    def value(self, shaper, delta: torch.Tensor) -> torch.Tensor:
        """``shaper.from_member_means`` of every candidate (``[BN, M, O]``), given back to its slots (``[E, C]``)."""
        O = delta.shape[-1]
        out = torch.zeros(self.BN * self.E + 1, O, device=delta.device)
        out.index_add_(0, self.index, delta.reshape(-1, O).to(torch.float32))
        means = out[:-1].view(self.BN, self.E, O)[:, self.present] * self.scale
        return shaper.from_member_means(means)[self.cand].reshape(delta.shape[:-1])


def _granularity(shaper) -> str:
    return getattr(shaper, "granularity", "particle")


def _reward(reward_fn, reward_shapers, state, act, nxt, acc, lead, cands: _Candidates | None, t: int,
            members: _Members | None = None, delta: torch.Tensor | None = None):
    """The task reward, then each shaper in turn (:func:`mbrl.contracts.shape_reward`); shapers with
    ``granularity == "candidate"`` see each candidate's mean state once (:class:`_Candidates`), those with
    ``"members"`` the propagating members' mean predicted changes (:class:`_Members`; as ``"candidate"`` where
    the rollout has none)."""
    r = reward_fn(state, act, nxt).to(acc)
    cache: dict = {}
    for s in reward_shapers:
        g = _granularity(s)
        if g == "members" and members is not None:
            v = members.value(s, delta)
        elif g != "particle" and cands is not None:
            v = cands.value(s, state, nxt, t, cache)
        else:
            v = s(state, act, nxt)
        r = shape_reward(r, v.to(acc), s)
    return torch.broadcast_to(r, lead)


def _shaper_views(model, shapers, propagation: str, act_bn, P: int, E: int, R: int, slot_rows, valid):
    """``(members, candidates)``: the :class:`_Members` and :class:`_Candidates` views the shapers' granularities
    need (None where none does; ``"members"`` falls back to ``"candidate"`` where it cannot be had)."""
    grans = {_granularity(s) for s in shapers}
    members = (_Members(slot_rows, valid, P, E, act_bn.shape[1]) if "members" in grans and propagation == "ts_inf"
               and P > 1 and _supports_mean_delta(model) else None)
    cands = (_candidates(act_bn, propagation, P, R, slot_rows, valid)
             if "candidate" in grans or ("members" in grans and members is None) else None)
    return members, cands


def _supports_mean_delta(model) -> bool:
    """Whether ``model.predict`` accepts ``return_mean_delta`` (what ``"members"`` shapers need)."""
    try:
        return "return_mean_delta" in inspect.signature(model.predict).parameters
    except (TypeError, ValueError):
        return False


def _candidates(act_bn, propagation: str, P: int, R: int, slot_rows, valid) -> _Candidates | None:
    """The :class:`_Candidates` of a rollout's layout (None with one particle per candidate: nothing to average)."""
    if P == 1:
        return None
    if propagation == "ts_inf":
        return _Candidates(torch.where(valid, slot_rows // P, act_bn.shape[1]), P, act_bn)
    return _Candidates(torch.arange(R, device=act_bn.device) // P, P, act_bn)


def current_violation(current, obs0, actions, acc):
    """``sum_c relu(cost_c(s_0, a_0) - threshold_c)`` on the real start state and each candidate's first action:
    ``obs0[B, O]``, ``actions[B, N, H, A]`` -> ``[B, N]`` (one call per constraint, no model in the loop)."""
    B, N = actions.shape[:2]
    total = torch.zeros(B, N, dtype=acc, device=actions.device)
    s0, a0 = obs0[:, None, :].expand(B, N, obs0.shape[-1]), actions[:, :, 0]
    for c, thr in current:
        total = total + violation(c.cost(s0, a0).to(acc), thr)
    return total


def _layout(obs0, act_bn, propagation: str, N: int, P: int, E: int):
    """Initial states, per-step actions ``act_all[H, ...]`` and the row layout of :func:`rollout`:
    ``(state, act_all, C, slot_rows, valid)``; TS-inf uses ``[E, C, .]`` blocks, the others ``[R, .]`` rows."""
    B, R = obs0.shape[0], obs0.shape[0] * N * P
    if propagation == "ts_inf":
        slot_rows, valid = _ts_inf_layout(B, N, P, E, obs0.device)           # [E, C]
        return obs0[slot_rows // (N * P)], act_bn[:, slot_rows // P], slot_rows.shape[1], slot_rows, valid
    row_bn = torch.arange(R, device=obs0.device) // P
    return obs0.repeat_interleave(N * P, dim=0), act_bn[:, row_bn], -(-R // E), None, None


def _slots_to_rows(x, slot_rows, valid, R: int):
    """TS-inf: padding slots duplicate a real particle; zero them and scatter-add every slot to its row. No
    boolean-mask indexing, so the whole rollout has static shapes and can be captured in a CUDA graph."""
    out = torch.zeros(R, dtype=x.dtype, device=x.device)
    return out.index_add_(0, slot_rows.reshape(-1), torch.where(valid, x, 0.0).reshape(-1))


@torch.no_grad()
def rollout(
    model,
    obs0,
    actions,
    *,
    reward_fn: TransitionFn,
    termination_fn: TransitionFn | None = None,
    particles: int = 20,
    propagation: str = "ts_inf",
    constraints: Sequence = (),
    reward_shapers: Sequence = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    validate: bool = True,
    plugins: Plugins | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected returns and constraint violations of action sequences under the ensemble (module docstring).

    Args:
        model: ensemble with ``ensemble_size`` ``E``, ``obs_dim`` and ``predict(obs[E, M, O], act[E, M, A],
            deterministic=, generator=) -> [E, M, O]``.
        obs0: ``[B, O]`` start states.
        actions: ``[B, N, H, A]`` candidate action sequences per start state.
        reward_fn, termination_fn: batched task functions of ``(obs, act, next_obs)`` (termination optional).
        particles: particles ``P`` per candidate.
        propagation: ``"ts_inf"``, ``"ts_1"`` or ``"expectation"``.
        constraints: objects with ``threshold``, ``cost(obs, act) -> [...]`` and optionally ``placement``
            (``"current"``: first action at the real start state only; ``"imagined"`` (default): every step).
        reward_shapers: callables ``(obs, act, next_obs) -> [...]`` with optional ``mode``/``weight``.
        generator: seeds the model's sampling and the TS-1 permutations (on the model's device).
        dtype: dtype of states/actions fed to the model (default: ``obs0``'s floating dtype).
        validate: check the inputs (the agent's inner loop passes ``False``).
        plugins: ``constraints`` and ``reward_shapers`` already checked by :func:`mbrl.contracts.check_plugins`
            (the agent passes its own, made once); when given, those two arguments are ignored.
    Returns:
        ``(returns, violations)``, each ``[B, N]``, float32 (float64 for a float64 ``dtype``).
    """
    if propagation not in PROPAGATIONS:
        raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"particles must be a positive integer, got {particles!r}")
    if validate:
        obs0, actions = _validate(model, obs0, actions, reward_fn)
    if plugins is None:
        plugins = check_plugins(constraints, reward_shapers)
    run = dtype or (obs0.dtype if obs0.is_floating_point() else torch.float32)
    acc = torch.float64 if run == torch.float64 else torch.float32
    E, (B, N, H, A), dev = int(model.ensemble_size), actions.shape, obs0.device
    P = 1 if propagation == "expectation" else particles
    R = B * N * P
    act_bn = actions.to(run).reshape(B * N, H, A).transpose(0, 1)            # [H, BN, A]

    state, act_all, C, slot_rows, valid = _layout(obs0.to(run), act_bn, propagation, N, P, E)
    lead = state.shape[:-1]
    members, cands = _shaper_views(model, plugins.shapers, propagation, act_bn, P, E, R, slot_rows, valid)
    total, viol = torch.zeros(lead, dtype=acc, device=dev), torch.zeros(lead, dtype=acc, device=dev)
    alive, bad = torch.ones(lead, dtype=torch.bool, device=dev), torch.zeros(lead, dtype=torch.bool, device=dev)

    for t in range(H):
        act = act_all[t]
        nxt, delta = _predict(model, propagation, state, act, generator, E, C, True) if members else (
            _predict(model, propagation, state, act, generator, E, C), None)
        for c, thr in plugins.imagined:  # a terminated particle's frozen state keeps counting (no escape by falling)
            viol = viol + violation(c.cost(state, act).to(acc), thr)
        r = _reward(reward_fn, plugins.shapers, state, act, nxt, acc, lead, cands, t, members, delta)
        done = (torch.zeros(lead, dtype=torch.bool, device=dev) if termination_fn is None
                else torch.broadcast_to(termination_fn(state, act, nxt).to(torch.bool), lead))
        finite = torch.isfinite(nxt.sum(-1, dtype=acc) + r)  # any NaN/inf in the state or the reward
        bad = bad | (alive & ~finite)
        total = total + torch.where(alive, r, 0.0)
        alive = alive & ~done & finite
        state = torch.where(alive.unsqueeze(-1), nxt, state)

    total = torch.where(bad, torch.nan, total)
    if propagation == "ts_inf":
        total, viol = _slots_to_rows(total, slot_rows, valid, R), _slots_to_rows(viol, slot_rows, valid, R)
    current_viol = current_violation(plugins.current, obs0.to(run), actions.to(run), acc)
    return total.view(B, N, P).mean(-1), viol.view(B, N, P).mean(-1) + current_viol
