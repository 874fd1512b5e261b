"""Roll controllers out in a task's real environment: evaluation and behaviour-data collection.

Both are plain loops over ``env.step`` (one environment step is tens of microseconds; a small MLP policy's
forward about as much), so 20,000 transitions take a few seconds on one core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mbrl.common import check_int

__all__ = ["collect_rollouts", "evaluate_policy", "keep_before_falls"]

_KEYS = ("obs", "act", "next_obs", "terminated", "truncated", "episode")


def _episode(env, controller, steps: int, seed: int, out: dict | None, ep: int) -> dict:
    obs, _ = env.reset(seed=seed)
    if callable(getattr(controller, "reset", None)):
        controller.reset()
    x0, ret, term = float(obs[0]), 0.0, False
    for t in range(steps):
        act = controller.act(obs)
        nxt, r, term, trunc, _ = env.step(act)
        ret += float(r)
        if out is not None:
            last = t == steps - 1
            for key, v in zip(_KEYS, (obs, act, nxt, term, bool(trunc or (last and not term)), ep)):
                out[key].append(v)
        obs = nxt
        if term or trunc:
            break
    return {"fell": bool(term), "steps": t + 1, "x": float(obs[0]), "dx": float(obs[0]) - x0, "return": ret}


def evaluate_policy(policy, task=None, episodes: int = 10, steps: int = 1000, seed: int = 0, noise: float = 0.0,
                    env_kwargs: dict | None = None) -> dict:
    """Run ``episodes`` episodes of at most ``steps`` steps; x is ``obs[0]`` (e.g. ``make_task("Hopper-v5")``).

    Args:
        policy: an :class:`~mbrl.policies.MLPPolicy` (run through its ``controller(noise, seed)``) or any
            controller with ``act(obs) -> action``.
        task: the :class:`~mbrl.tasks.base.Task` (default Hopper-v5); ``env_kwargs`` go to its ``make_env``.
    Returns:
        ``fall_rate``, ``steps_mean``, ``velocity_mean`` (m/s: displacement / (steps * dt)), ``dx_mean``,
        ``return_mean`` and the per-episode lists ``dx``, ``steps``, ``fell``.
    """
    from mbrl.tasks import make_task

    episodes = check_int("episodes", episodes, low=1)
    steps = check_int("steps", steps, low=1)
    task = task or make_task("Hopper-v5")
    env = task.make_env(**(env_kwargs or {}))
    dt = float(env.unwrapped.dt)
    eps = []
    for k in range(episodes):
        ctl = policy.controller(noise=noise, seed=seed + k) if hasattr(policy, "controller") else policy
        eps.append(_episode(env, ctl, steps, seed + k, None, k))
    env.close()
    dx = [e["dx"] for e in eps]
    return {"episodes": episodes, "noise": float(noise), "fall_rate": float(np.mean([e["fell"] for e in eps])),
            "steps_mean": float(np.mean([e["steps"] for e in eps])),
            "velocity_mean": float(np.mean([e["dx"] / (e["steps"] * dt) for e in eps])),
            "dx_mean": float(np.mean(dx)), "return_mean": float(np.mean([e["return"] for e in eps])),
            "dx": dx, "steps": [e["steps"] for e in eps], "fell": [e["fell"] for e in eps]}


def collect_rollouts(make_controller: Callable[[str, float, int], object], names: Sequence[str],
                     noises: Sequence[float], episodes_per_setting: int = 1, max_steps: int = 300, seed: int = 0,
                     task=None) -> dict[str, np.ndarray]:
    """Roll out ``make_controller(name, noise, seed)`` for every name x noise x episode; seeded, deterministic.

    Returns float32 arrays of all transitions: ``{"obs": [N, O], "act": [N, A], "next_obs": [N, O],
    "terminated": [N] bool, "truncated": [N] bool, "episode": [N] int, "fell": [E] bool, "steps": [E] int,
    "setting": [E] int (index into names x noises, row-major)}``.
    """
    from mbrl.tasks import make_task

    episodes_per_setting = check_int("episodes_per_setting", episodes_per_setting, low=1)
    max_steps = check_int("max_steps", max_steps, low=1)
    if not names or not noises:
        raise ValueError("names and noises must each hold at least one entry")
    task = task or make_task("Hopper-v5")
    env = task.make_env()
    out: dict[str, list] = {k: [] for k in _KEYS}
    fell, steps, setting, ep = [], [], [], 0
    for i, name in enumerate(names):
        for j, noise in enumerate(noises):
            for _ in range(episodes_per_setting):
                ctl = make_controller(name, float(noise), seed * 7919 + ep)
                r = _episode(env, ctl, max_steps, seed * 1000 + ep, out, ep)
                fell.append(r["fell"])
                steps.append(r["steps"])
                setting.append(i * len(noises) + j)
                ep += 1
    env.close()
    res = {k: np.asarray(out[k], dtype=np.float32) for k in ("obs", "act", "next_obs")}
    res["terminated"] = np.asarray(out["terminated"], dtype=bool)
    res["truncated"] = np.asarray(out["truncated"], dtype=bool)
    res["episode"] = np.asarray(out["episode"], dtype=np.int64)
    res |= {"fell": np.asarray(fell, dtype=bool), "steps": np.asarray(steps, dtype=np.int64),
            "setting": np.asarray(setting, dtype=np.int64)}
    return res


def keep_before_falls(terminated: np.ndarray, episode: np.ndarray, k: int) -> np.ndarray:
    """``[N]`` bool: the transitions *not* among the last ``k`` of an episode that ended in a fall.

    A density or LDM fitted on behaviour data should not count falling, and what leads straight to it, as part
    of the data: then falling is what leaves the data. ``terminated``, ``episode``: ``[N]`` from
    :func:`collect_rollouts`.
    """
    k = check_int("k", k, low=0)
    terminated, episode = np.asarray(terminated, dtype=bool), np.asarray(episode)
    if terminated.shape != episode.shape or terminated.ndim != 1:
        raise ValueError(f"terminated and episode must be [N] arrays of one length, got {terminated.shape} and "
                         f"{episode.shape}")
    keep = np.ones(terminated.shape[0], dtype=bool)
    if k == 0:
        return keep
    for end in np.flatnonzero(terminated):
        keep[np.flatnonzero(episode[: end + 1] == episode[end])[-k:]] = False
    return keep
