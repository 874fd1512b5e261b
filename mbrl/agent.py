"""The PETS model-predictive controller (Chua et al. 2018, docs/design.md "PETS" and "Contracts").

At every step (or every ``replan_every`` steps) :class:`MPCAgent` optimises an action sequence of length
``horizon`` with a trajectory optimiser (default PETS CEM 500 / 50, 5 iterations, alpha 0.1), scoring each
candidate by :func:`mbrl.rollout.rollout` (particles through the ensemble, the task's reward and
termination, reward shapers, constraint violations), and executes its first action. The next call starts
from the previous plan shifted by the executed steps, padded with the midpoint of the bounds (PETS warm
start). Many start states are planned at once when ``obs`` is ``[B, O]``.

Constraints (docs/design.md, "Contracts"): the optimiser ranks feasible candidates first, but CEM and MPPI
return a *mean* of candidates, and the mean of feasible candidates need not be feasible (the feasible set is
not convex). So with constraints the agent scores the optimiser's plan once more and executes it only if it
is feasible; otherwise it executes the best-ranked sample of the call (``optimizer.last_best``) when that
one is feasible. When no sampled plan was feasible and every constraint applies at the current state (e.g. the
LDM), the plan's first action is projected onto the feasible set: ``projection_samples`` actions are drawn at
the real state and the feasible one nearest to the planned action is executed (the LDM paper's acting rule:
sample actions at the current state, keep those with ``G <= c``). Only when none of those is feasible either
does the least-violating action go out. ``stats`` counts what happened (``plans``, ``replaced_by_best``,
``projected``, ``infeasible``) instead of warning at every step.

Safety: inputs are validated (``ValueError`` naming the argument), and the returned actions are always
finite and within the bounds, even when the model diverges (NaN rollouts rank last; a non-finite plan
entry falls back to the bound midpoint before clipping). The task functions, constraints and reward
shapers are called once on a small batch at construction, so a model and a task that disagree on the
observation size fail there, with a message saying what to do, not at the first ``act``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mbrl.common.action_box import ActionBox
from mbrl.common.seeding import make_generator
from mbrl.common.validation import INT_MAX, as_tensor, check_int
from mbrl.config import PETS
from mbrl.contracts import (
    Constraint,
    DynamicsModel,
    RewardShaper,
    TrajectoryOptimizer,
    TransitionFn,
    check_plugins,
    is_feasible,
)
from mbrl.planning import CEM
from mbrl.planning.selection import FEASIBLE, candidate_class
from mbrl.rollout import PROPAGATIONS, cast_model, current_violation, rollout

__all__ = ["MPCAgent"]

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class MPCAgent:
    """MPC with particle rollouts through a dynamics ensemble (module docstring).

    Args:
        model: ensemble with ``ensemble_size``, ``obs_dim``, ``act_dim`` and ``predict`` (see
            :func:`mbrl.rollout.rollout`), e.g. :class:`mbrl.models.ProbabilisticEnsemble`.
        reward_fn, termination_fn: batched task functions ``(obs, act, next_obs) -> [...]``
            (``termination_fn`` may be None).
        action_low, action_high: ``[A]`` finite action bounds, ``low <= high`` (or an
            :class:`~mbrl.common.ActionBox` as ``action_low`` and ``None``); kept as ``action_box``.
        optimizer: a trajectory optimiser (default ``CEM(500, 50, 5, 0.1)``); its state is reset by
            :meth:`reset`.
        horizon: planning horizon ``H``; particles: particles per candidate; propagation: ``"ts_inf"``,
            ``"ts_1"`` or ``"expectation"``.
        constraints, reward_shapers: see :func:`mbrl.rollout.rollout`.
        dtype: precision of the rollouts. ``torch.bfloat16`` keeps a bf16 copy of the model, made once here
            (call :meth:`sync_model` after refitting the model); returns are still accumulated in float32.
        device: where planning runs (default: the model's device, else CPU). A model elsewhere is copied.
        seed: seeds the agent's generator (every optimiser sample and model draw).
        replan_every: execute this many actions of a plan before replanning (1 = PETS).
        projection_samples: with constraints that apply at the current state only (e.g. the LDM), actions
            sampled at the real state to project an infeasible plan's first action onto the feasible set when
            no sampled plan was feasible (0: off). One batched constraint evaluation, no rollout.
        cuda_graphs: on CUDA, capture each rollout shape once in a CUDA graph and replay it (default: on
            for CUDA). Falls back to eager planning, with a warning, when capture is impossible.
    """

    def __init__(
        self,
        model: DynamicsModel,
        reward_fn: TransitionFn,
        termination_fn: TransitionFn | None,
        action_low,
        action_high,
        optimizer: TrajectoryOptimizer | None = None,
        horizon: int = PETS.horizon,
        particles: int = PETS.particles,
        propagation: str = PETS.propagation,
        constraints: Sequence[Constraint] = (),
        reward_shapers: Sequence[RewardShaper] = (),
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        seed: int = 0,
        replan_every: int = PETS.replan_every,
        cuda_graphs: bool | None = None,
        projection_samples: int = 2048,
    ) -> None:
        if not isinstance(model, DynamicsModel):
            missing = [a for a in ("ensemble_size", "obs_dim", "act_dim", "predict") if not hasattr(model, a)]
            raise ValueError(f"model must be a DynamicsModel (mbrl.contracts); {type(model).__name__} lacks {missing}")
        if not callable(reward_fn):
            raise ValueError("reward_fn must be callable")
        if termination_fn is not None and not callable(termination_fn):
            raise ValueError("termination_fn must be callable or None")
        self.horizon = check_int("horizon", horizon, low=1, high=INT_MAX)
        self.particles = check_int("particles", particles, low=1, high=INT_MAX)
        self.replan_every = check_int("replan_every", replan_every, low=1, high=INT_MAX)
        if self.replan_every > self.horizon:
            raise ValueError(f"replan_every must be <= horizon ({self.horizon}), got {replan_every}")
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.propagation, self.dtype = propagation, dtype
        if device is None:
            p = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = int(model.obs_dim), int(model.act_dim)
        self.action_box = ActionBox(action_low, action_high, self.act_dim, device=self.device)
        self.optimizer = optimizer if optimizer is not None else CEM()
        if not isinstance(self.optimizer, TrajectoryOptimizer):
            raise ValueError(f"optimizer must have an optimize method, got {type(optimizer).__name__}")
        #: the constraints and shapers, checked once (thresholds read here: make a new agent to change them)
        self.plugins = check_plugins(constraints, reward_shapers)
        self.constraints, self.reward_shapers = tuple(constraints), self.plugins.shapers
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self._probe()
        self.model = model
        #: counters over the agent's life: ``plans`` made, plans whose executed action was ``replaced_by_best``
        #: (the optimiser's mean was infeasible, a sampled candidate was not), and ``infeasible`` plans (no
        #: sampled candidate satisfied the constraints; the least-violating one was executed)
        self.stats = {"plans": 0, "replaced_by_best": 0, "projected": 0, "infeasible": 0}
        self.seed = seed
        self._generator = make_generator(seed, self.device)
        self.projection_samples = check_int("projection_samples", projection_samples, low=0, high=INT_MAX)
        self._use_graphs = self.device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        if self._use_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs=True needs a CUDA device")
        self._graphs: dict = {}
        self.sync_model()
        self.reset()

    def _probe(self) -> None:
        """Call the task functions, constraints and shapers on ``[2, O]`` zeros: shapes must come back ``[2]``."""
        O, A = self.obs_dim, self.act_dim
        o, a = torch.zeros(2, O, device=self.device), torch.zeros(2, A, device=self.device)
        hint = (f"the model predicts {O}-D observations; build the env, the model and the reward from one task "
                f"(task = mbrl.make_task(name); env = task.make_env(); model with task.obs_dim, task.act_dim)")
        calls = [("reward_fn", lambda: self.reward_fn(o, a, o))]
        if self.termination_fn is not None:
            calls.append(("termination_fn", lambda: self.termination_fn(o, a, o)))
        calls += [(f"constraints[{i}].cost", lambda c=c: c.cost(o, a)) for i, c in enumerate(self.constraints)]
        calls += [(f"reward_shapers[{i}]", lambda s=s: s(o, a, o)) for i, s in enumerate(self.reward_shapers)]
        for name, call in calls:
            try:
                with torch.no_grad():
                    out = call()
            except (ValueError, IndexError, RuntimeError) as exc:
                raise ValueError(f"{name} rejects ({O},)-D observations / ({A},)-D actions ({exc}); {hint}") from None
            shape = tuple(getattr(out, "shape", ()))
            if shape != (2,):
                raise ValueError(f"{name} must return one value per transition (shape [...] for inputs "
                                 f"[..., {O}]): for inputs [2, {O}] it returned shape {shape}; {hint}")

    # ------------------------------------------------------------------ state
    def sync_model(self) -> None:
        """(Re)make the planning copy of the model (in ``dtype`` on ``device``); call after refitting it."""
        target = None if self.dtype == torch.float32 else self.dtype
        self._run_model = cast_model(self.model, target, self.device)
        self._graphs = {}  # captured graphs hold the old weights' addresses

    def reset(self) -> None:
        """Forget the warm start and the optimiser's memory (call between episodes)."""
        self._plan: torch.Tensor | None = None
        self._executed = 0
        if hasattr(self.optimizer, "reset"):
            self.optimizer.reset()

    @property
    def midpoint(self) -> torch.Tensor:
        """``[A]`` midpoint of the action bounds (warm-start padding)."""
        return self.action_box.center

    # ------------------------------------------------------------------ planning
    def _obs(self, obs) -> tuple[torch.Tensor, bool]:
        o = as_tensor("obs", obs, dtype=torch.float32, device=self.device)
        if o.ndim not in (1, 2) or o.shape[-1] != self.obs_dim or o.numel() == 0:
            raise ValueError(f"obs must have shape ({self.obs_dim},) or (B, {self.obs_dim}), "
                             f"got {tuple(o.shape)}")
        return (o.unsqueeze(0), True) if o.ndim == 1 else (o, False)

    def _rollout(self, obs: torch.Tensor, actions: torch.Tensor, generator):
        return rollout(self._run_model, obs, actions, reward_fn=self.reward_fn,
                       termination_fn=self.termination_fn, particles=self.particles,
                       propagation=self.propagation, plugins=self.plugins, generator=generator,
                       dtype=self.dtype, validate=False)

    def _objective(self, obs: torch.Tensor):
        def objective(actions: torch.Tensor):
            if self._use_graphs:
                out = self._graph_call(obs, actions)
                if out is not None:
                    return out
            return self._rollout(obs, actions, self._generator)
        return objective

    # ------------------------------------------------------------------ CUDA graphs
    def _graph_call(self, obs: torch.Tensor, actions: torch.Tensor):
        """Replay a captured rollout (one CUDA graph per input shape): removes the ~10k kernel launches of an
        action's rollouts from the CPU's critical path. Returns None (eager fallback) if capture fails, e.g.
        because a user constraint synchronises with the host."""
        key = (tuple(obs.shape), tuple(actions.shape), actions.dtype)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(obs, actions)
            except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
                import warnings

                warnings.warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); planning eagerly",
                              RuntimeWarning, stacklevel=3)
                self._use_graphs = False
                torch.cuda.synchronize(self.device)
                return None
            self._graphs[key] = entry
        graph, s_obs, s_act, (ret, viol) = entry
        s_obs.copy_(obs)
        s_act.copy_(actions)
        graph.replay()
        return ret.clone(), viol.clone()

    def _capture(self, obs: torch.Tensor, actions: torch.Tensor):
        s_obs, s_act = obs.clone(), actions.clone()
        graph = torch.cuda.CUDAGraph()
        # the agent's own generator drives the graph's sampling when torch can register it (seeded replays)
        gen = self._generator if hasattr(graph, "register_generator_state") else None
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._rollout(s_obs, s_act, gen)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if gen is not None:
            graph.register_generator_state(gen)
        with torch.cuda.graph(graph):
            out = self._rollout(s_obs, s_act, gen)
        return graph, s_obs, s_act, out

    def _replan(self, obs: torch.Tensor) -> torch.Tensor:
        B, H, k = obs.shape[0], self.horizon, self._executed
        mid = self.midpoint.expand(B, H, self.act_dim)
        if self._plan is not None and self._plan.shape[0] == B and k < H:
            init = torch.cat([self._plan[:, k:], mid[:, :k]], dim=1)
            if hasattr(self.optimizer, "advance"):
                self.optimizer.advance(k)
        else:
            init = mid.clone()
            if hasattr(self.optimizer, "reset"):
                self.optimizer.reset()
        plan = self.optimizer.optimize(self._objective(obs), init, box=self.action_box, generator=self._generator)
        plan = torch.where(torch.isfinite(plan), plan.float(), mid)
        plan = self.action_box.project(plan)
        if self.constraints:
            plan = self._feasible(obs, plan)
        self.stats["plans"] += B
        self._plan, self._executed = plan, 0
        return plan

    def _feasible(self, obs: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        """The plan to execute (module docstring): the optimiser's plan if feasible, else its best sample if
        feasible, else the less violating of the two. ``plan``: ``[B, H, A]``."""
        best = getattr(self.optimizer, "last_best", None)
        cands = [plan]
        if best is not None and tuple(best[0].shape) == tuple(plan.shape):
            cands.append(best[0].to(plan.device, plan.dtype))
        stacked = torch.stack(cands, 1)                                          # [B, k, H, A]
        all_current = not self.plugins.imagined
        if all_current:
            # feasibility is a property of the real state and the first action: no rollout needed
            viol = current_violation(self.plugins.current, obs.to(self.dtype), stacked.to(self.dtype), torch.float32)
            ret = torch.zeros_like(viol)
        else:
            ret, viol = self._objective(obs)(stacked)                            # [B, k]
        cls = candidate_class(ret.float(), viol.float())
        feasible = cls == FEASIBLE
        use_best = ~feasible[:, 0]
        if len(cands) == 2:
            v = torch.nan_to_num(viol.float(), nan=torch.inf)
            use_best &= feasible[:, 1] | (v[:, 1] < v[:, 0])
            plan = torch.where(use_best[:, None, None], cands[1], plan)
        else:
            use_best &= False
        chosen = torch.where(use_best, feasible[:, -1], feasible[:, 0])
        self.stats["replaced_by_best"] += int((use_best & chosen).sum())
        if self.projection_samples and all_current and not bool(chosen.all()):
            plan, chosen = self._project_first_action(obs, plan, chosen)
        self.stats["infeasible"] += int((~chosen).sum())
        return plan

    def _project_first_action(self, obs: torch.Tensor, plan: torch.Tensor, ok: torch.Tensor):
        """Where no sampled plan is feasible, replace its first action by the nearest feasible one among
        ``projection_samples`` actions at the real state (half uniform in the box, half Gaussian around the
        planned action, std 1/8 of the box): the LDM paper's acting rule (sample actions at the current state,
        keep those with ``G <= c``) as a projection of the planner's choice. Counted in ``stats["projected"]``.
        Returns ``(plan, feasible[B])``."""
        B, K, A = plan.shape[0], self.projection_samples, self.act_dim
        box = self.action_box
        uniform = box.sample(B, K // 2, generator=self._generator)
        g = torch.randn(B, K - K // 2, A, generator=self._generator, device=self.device)
        a0 = plan[:, 0]
        cand = box.project(torch.cat([uniform, a0[:, None] + g * box.width / 8], 1))  # [B, K, A]
        viol = current_violation(self.plugins.current, obs.to(self.dtype), cand[:, :, None].to(self.dtype),
                                 torch.float32)
        viol = torch.nan_to_num(viol, nan=torch.inf)
        dist = (cand - a0[:, None]).square().sum(-1)
        feas = is_feasible(viol, 0.0)
        key = torch.where(feas.any(1, keepdim=True), torch.where(feas, dist, torch.inf), viol)
        pick = cand.gather(1, key.argmin(1)[:, None, None].expand(B, 1, A))[:, 0]
        new_ok = feas.any(1)
        use = ~ok
        self.stats["projected"] += int((use & new_ok).sum())
        plan = plan.clone()
        plan[:, 0] = torch.where(use[:, None], pick, a0)
        return plan, ok | new_ok

    def plan(self, obs) -> torch.Tensor:
        """Plan from ``obs`` (``[O]`` or ``[B, O]``) and return the whole sequence ``[H, A]`` / ``[B, H, A]``.

        The plan becomes the warm start of the next call (shifted by the actions executed meanwhile).
        """
        o, single = self._obs(obs)
        plan = self._replan(o)
        return plan[0] if single else plan

    def act(self, obs) -> np.ndarray:
        """The action to execute in ``obs``: numpy ``[O] -> [A]`` or ``[B, O] -> [B, A]`` (float32).

        Replans when the current plan has been followed for ``replan_every`` steps (every step by default).
        """
        o, single = self._obs(obs)
        k = self._executed
        if self._plan is None or self._plan.shape[0] != o.shape[0] or k == 0 or k >= self.replan_every:
            self._replan(o)
            k = 0
        action = self._plan[:, k]
        self._executed = k + 1
        out = action.detach().cpu().numpy().astype(np.float32)
        return out[0] if single else out

    def __call__(self, obs) -> np.ndarray:
        return self.act(obs)
