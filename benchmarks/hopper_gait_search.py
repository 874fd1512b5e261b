"""Find the scripted Hopper gaits of ``mbrl.policies.gait`` (forward and backward) by CEM.

Each candidate parameter vector (14 numbers, :class:`~mbrl.policies.gait.GaitParams`) is run for
``--steps`` steps from ``--resets`` reset seeds with action noise ``--noise``. Score per run::

    direction * displacement                      if the hopper is still up after all steps
    -5 + 5 * steps_survived / steps               if it fell (any fall is worse than standing still)

The mean over resets is maximised by a plain cross-entropy method (Gaussian, elites' mean and std, std floor).
The best gaits are printed as Python literals (paste them into ``GAITS``) and written, with their validation
(falls over ``--validate`` fresh seeds at several noise levels), to ``results/hopper_gait_search/gaits.json``.

    python -m benchmarks.hopper_gait_search             # ~5 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm.auto import tqdm

from benchmarks._common import HelpFormatter, machine, out_dir, write_json
from mbrl.policies.gait import GaitParams, HopperGait
from mbrl.tasks import make_task

LOW = np.array([0.5, -1.2, -1.5, -0.6, 0, 0, 0, -np.pi, -np.pi, -np.pi, 0.5, 0.0, -4.0, -0.5])
HIGH = np.array([4.0, 0.2, 0.0, 0.6, 0.8, 0.8, 0.8, np.pi, np.pi, np.pi, 6.0, 0.5, 4.0, 0.5])


def run(env, params: GaitParams, steps: int, noise: float, seed: int) -> tuple[bool, int, float]:
    """``(fell, steps survived, displacement)`` of one episode."""
    ctl = HopperGait(params, noise=noise, seed=seed)
    obs, _ = env.reset(seed=seed)
    x0 = float(obs[0])
    for t in range(steps):
        obs, _, term, _, _ = env.step(ctl.act(obs))
        if term:
            return True, t + 1, float(obs[0]) - x0
    return False, steps, float(obs[0]) - x0


def score(env, v, direction: float, steps: int, noise: float, seeds) -> float:
    p = GaitParams.from_vector(v)
    total = 0.0
    for s in seeds:
        fell, n, dx = run(env, p, steps, noise, s)
        total += -5 + 5 * n / steps if fell else direction * dx
    return total / len(seeds)


def search(env, direction: float, a, rng) -> tuple[np.ndarray, float, list]:
    mean, std = (LOW + HIGH) / 2, (HIGH - LOW) / 4
    best_v, best_s, history = mean.copy(), -np.inf, []
    seeds = list(range(a.resets))
    for it in tqdm(range(a.iterations), desc=f"gait search ({'forward' if direction > 0 else 'backward'})"):
        pop = np.clip(mean + std * rng.standard_normal((a.population, LOW.size)), LOW, HIGH)
        scores = np.array([score(env, v, direction, a.steps, a.noise, seeds) for v in pop])
        elite = pop[np.argsort(-scores)[: a.elites]]
        mean, std = elite.mean(0), np.maximum(elite.std(0), 0.02 * (HIGH - LOW))
        i = int(np.argmax(scores))
        if scores[i] > best_s:
            best_v, best_s = pop[i].copy(), float(scores[i])
        history.append({"iteration": it, "best": float(scores.max()), "mean": float(scores.mean())})
    return best_v, best_s, history


def validate(env, p: GaitParams, steps: int, seeds, noises) -> dict:
    out = {}
    for noise in noises:
        runs = [run(env, p, steps, noise, 10_000 + s) for s in seeds]
        out[str(noise)] = {"falls": int(sum(r[0] for r in runs)), "episodes": len(runs),
                           "mean_steps": float(np.mean([r[1] for r in runs])),
                           "mean_speed": float(np.mean([r[2] / (r[1] * 0.008) for r in runs]))}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--population", type=int, default=40, help="CEM candidates per iteration")
    p.add_argument("--elites", type=int, default=8, help="CEM elites per iteration")
    p.add_argument("--iterations", type=int, default=12, help="CEM iterations per direction")
    p.add_argument("--steps", type=int, default=1000, help="episode length of each evaluation")
    p.add_argument("--resets", type=int, default=2, help="reset seeds per candidate")
    p.add_argument("--noise", type=float, default=0.1, help="action noise during the search")
    p.add_argument("--validate", type=int, default=5, help="fresh seeds per noise level for validation")
    p.add_argument("--seed", type=int, default=0, help="seed of the search's sampling")
    p.add_argument("--out", default=None, help="output folder (default results/hopper_gait_search)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    rng = np.random.default_rng(a.seed)
    env = make_task("Hopper-v5").make_env()
    out = out_dir("hopper_gait_search", a.out)
    t0 = time.perf_counter()
    res = {"machine": machine(), "args": vars(a), "gaits": {}}
    for name, direction in (("forward", 1.0), ("backward", -1.0)):
        v, s, hist = search(env, direction, a, rng)
        g = GaitParams.from_vector(np.round(v, 4))
        val = validate(env, g, a.steps, range(a.validate), (0.0, 0.1, 0.2, 0.3, 0.4))
        res["gaits"][name] = {"params": g.to_dict(), "search_score": s, "history": hist, "validation": val}
        print(f"\n{name}: score {s:.3f}\n  {g!r}")
        for noise, r in val.items():
            print(f"  noise {noise}: {r['falls']}/{r['episodes']} falls, {r['mean_steps']:.0f} steps, "
                  f"{r['mean_speed']:+.3f} m/s")
    res["seconds"] = time.perf_counter() - t0
    write_json(out / "gaits.json", res)
    print(f"wrote {out / 'gaits.json'} ({res['seconds']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
