"""Train the Hopper-v5 behaviour policies that the LDM benchmarks' data come from (docs/design.md, "Published
recipes", LDM: forward and *backward* hoppers that hop without falling).

Two policies, trained once with stable-baselines3 SAC (the default, 256 x 256 ReLU, lr 3e-4, batch 256,
10,000 random steps first: the rl-zoo3 Hopper settings) or PPO (``--algo ppo``, the rl-zoo3 Hopper settings:
256 x 256 ReLU, obs normalisation, n_steps 512, batch 32, 5 epochs, gamma 0.999, lr 9.8e-5):

- ``forward``:  Hopper-v5's own reward (forward velocity + 1 healthy - 1e-3 |a|^2);
- ``backward``: the same with ``forward_reward_weight = -1`` (minus forward velocity).

Every ``--eval-every`` steps the policy's deterministic actor is exported to a plain torch
:class:`mbrl.policies.MLPPolicy` and evaluated *without* stable-baselines3 (5 episodes of 1,000 steps); the best
export (no falls first, then speed in its direction) is kept. It is then evaluated on 10 fresh noise-free
episodes and at a few noise levels, and saved as safetensors + JSON under ``mbrl/policies/data/hopper_<name>/``
with the seed, the command, the training curve and the evaluation. Targets (issue 18): forward >= 1.0 m/s and
backward >= 0.5 m/s over 1,000-step episodes, no falls in 10 noise-free episodes.

    python -m benchmarks.train_hopper_behaviour --which forward --steps 200000     # SAC, ~25 min on one core
    python -m benchmarks.train_hopper_behaviour --which backward --steps 200000

Why SAC by default: with the zoo's PPO settings both hoppers still stood still (0.0 m/s, no falls: the healthy
bonus alone) after 350,000 steps, 8 minutes of one core each; SAC hops within about 100,000 steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import HelpFormatter, pyplot, save_figure
from mbrl.policies import MLPPolicy, collect_rollouts, evaluate_policy, hopper_policy_dir

DIRECTION = {"forward": 1.0, "backward": -1.0}


def make_env(which: str, speed_cap: float | None = None):
    """Hopper-v5 rewarding velocity in the policy's direction; with ``speed_cap`` that term is ``min(d v, cap)``
    (no reward for running faster than ``cap`` at the edge of falling; the healthy bonus is unchanged)."""
    import gymnasium as gym

    env = gym.make("Hopper-v5", forward_reward_weight=DIRECTION[which])
    if speed_cap is None:
        return env
    d = DIRECTION[which]

    class CapSpeed(gym.Wrapper):
        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            v = d * float(info["x_velocity"])
            return obs, r - v + min(v, speed_cap), term, trunc, info

    return CapSpeed(env)


def export(model, vecnorm) -> MLPPolicy:
    """The actor's mean (SAC: squashed by tanh) as an :class:`MLPPolicy` over the 12-D task observation (x
    dropped by ``obs_indices``)."""
    pi = model.policy
    if vecnorm is None:   # SAC: latent_pi (Linear, ReLU, ...) then mu, tanh-squashed; raw observations
        actor = pi.actor
        linears = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)] + [actor.mu]
        weights = [(m.weight.detach().cpu().clone(), m.bias.detach().cpu().clone()) for m in linears]
        return MLPPolicy(weights, np.zeros(11), np.ones(11), obs_dim=12, obs_indices=range(1, 12),
                         act_low=[-1.0] * 3, act_high=[1.0] * 3, activation="relu", clip_obs=1e6, eps=1e-8,
                         squash=True)
    linears = [m for m in pi.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)] + [pi.action_net]
    weights = [(m.weight.detach().cpu().clone(), m.bias.detach().cpu().clone()) for m in linears]
    rms = vecnorm.obs_rms
    return MLPPolicy(weights, rms.mean, rms.var, obs_dim=12, obs_indices=range(1, 12), act_low=[-1.0] * 3,
                     act_high=[1.0] * 3, activation="relu", clip_obs=float(vecnorm.clip_obs),
                     eps=float(vecnorm.epsilon))


def score(ev: dict, which: str) -> float:
    """Model selection: no falls first, then speed in the policy's direction."""
    return DIRECTION[which] * ev["velocity_mean"] - 10.0 * ev["fall_rate"]


def make_model(algo: str, which: str, seed: int, net: int = 256, speed_cap: float | None = None):
    """``(model, vecnorm)``: SB3 SAC on the raw env, or PPO on a normalised one (``vecnorm`` its statistics)."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    if algo == "sac":
        env = make_env(which, speed_cap)
        env.reset(seed=seed)
        return SAC("MlpPolicy", env, learning_starts=10_000, seed=seed, device="cpu", verbose=0,
                   policy_kwargs=dict(net_arch=[net, net])), None
    venv = VecNormalize(DummyVecEnv([lambda: make_env(which, speed_cap)]), norm_obs=True, norm_reward=True, gamma=0.999)
    venv.seed(seed)
    return PPO("MlpPolicy", venv, n_steps=512, batch_size=32, gamma=0.999, learning_rate=9.80828e-05,
                ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99, max_grad_norm=0.7,
                vf_coef=0.835671, seed=seed, device="cpu", verbose=0,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.ReLU,
                                   net_arch=dict(pi=[256, 256], vf=[256, 256]))), venv


def train(algo: str, which: str, steps: int, seed: int, eval_every: int, threads: int, out: Path,
          net: int = 256, speed_cap: float | None = None) -> tuple[MLPPolicy, list, dict]:
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(threads)
    model, venv = make_model(algo, which, seed, net, speed_cap)
    curve, best = [], {"score": -np.inf}
    t0 = time.perf_counter()

    class Every(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next = eval_every

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next:
                return True
            self.next += eval_every
            pol = export(self.model, venv)
            ev = evaluate_policy(pol, episodes=5, steps=1000, seed=10_000 + len(curve))
            sc = score(ev, which)
            curve.append({"env_steps": int(self.num_timesteps), "seconds": time.perf_counter() - t0,
                          "velocity_mean": ev["velocity_mean"], "fall_rate": ev["fall_rate"],
                          "steps_mean": ev["steps_mean"], "return_mean": ev["return_mean"], "score": sc})
            print(f"[{which}] {self.num_timesteps:>8d} steps {curve[-1]['seconds']:6.0f} s: "
                  f"v={ev['velocity_mean']:+.3f} m/s falls={ev['fall_rate']:.1f} len={ev['steps_mean']:.0f}",
                  flush=True)
            if sc > best["score"]:
                best.update(score=sc, policy=pol, at=int(self.num_timesteps))
                pol.meta = {"partial": True, "env_steps": int(self.num_timesteps), "curve": curve,
                            "command": command(), "seed": seed}
                pol.save(out.with_name(out.name + ".best-so-far"))  # survives an interrupted run
            return True

    try:
        model.learn(total_timesteps=steps, callback=Every())
    except KeyboardInterrupt:   # Ctrl-C / kill -INT: keep the best so far and finish with its evaluation
        print(f"[{which}] interrupted at {model.num_timesteps} steps: finishing with the best so far", flush=True)
    return best["policy"], curve, {"best_at_env_steps": best["at"], "train_seconds": time.perf_counter() - t0}


def command() -> str:
    return "python -m benchmarks.train_hopper_behaviour " + " ".join(map(shlex.quote, sys.argv[1:]))


def reference_actions(policy: MLPPolicy, n: int = 16) -> dict:
    """``n`` observations of a noisy roll-out and the policy's actions there: the shipped file's self-check
    (a test reloads the policy and must reproduce them)."""
    data = collect_rollouts(lambda name, noise, seed: policy.controller(noise, seed), ["policy"], [0.3],
                            max_steps=200, seed=123)
    obs = data["obs"][np.linspace(0, data["obs"].shape[0] - 1, n).astype(int)]
    return {"obs": obs.tolist(), "act": policy.act(obs).tolist()}


def plot_curve(curves: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for which, curve in curves.items():
        s = [c["env_steps"] for c in curve]
        ax[0].plot(s, [c["velocity_mean"] for c in curve], label=which)
        ax[1].plot(s, [c["fall_rate"] for c in curve], label=which)
    ax[0].set_ylabel("mean forward velocity (m/s)")
    ax[1].set_ylabel("falls per 1,000-step episode")
    for a in ax:
        a.set_xlabel("environment steps")
        a.legend()
    save_figure(fig, path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--which", choices=sorted(DIRECTION), required=True, help="forward or backward hopper")
    p.add_argument("--algo", choices=["sac", "ppo"], default="sac", help="stable-baselines3 algorithm (default sac)")
    p.add_argument("--steps", type=int, default=200_000, help="environment steps (default 200,000)")
    p.add_argument("--speed-cap", type=float, default=None,
                   help="reward min(speed, cap) instead of the speed (m/s; default: no cap)")
    p.add_argument("--net", type=int, default=256, help="SAC hidden width, two layers (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the algorithm and its environment (default 0)")
    p.add_argument("--eval-every", type=int, default=20_000, help="environment steps between evaluations")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small networks)")
    p.add_argument("--finalize", default=None,
                   help="evaluate and save a '.best-so-far' checkpoint of an earlier run instead of training "
                        "(default: train)")
    p.add_argument("--training-command", default=None,
                   help="with --finalize: the command that trained the checkpoint, recorded in its metadata "
                        "(default: the command the checkpoint holds)")
    p.add_argument("--out", default=None, help="output folder (default: the shipped mbrl/policies/data/hopper_<which>)")
    return p


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    out = Path(a.out) if a.out else hopper_policy_dir(a.which)
    if a.finalize:   # a best-so-far checkpoint of an interrupted run
        policy = MLPPolicy.load(a.finalize)
        curve = policy.meta["curve"]
        info = {"best_at_env_steps": policy.meta["env_steps"], "finalized_from": str(a.finalize),
                "train_seconds": curve[-1]["seconds"] if curve else None,
                "training_command": a.training_command or policy.meta.get("command")}
    else:
        policy, curve, info = train(a.algo, a.which, a.steps, a.seed, a.eval_every, a.threads, out, a.net,
                                    a.speed_cap)
    final = evaluate_policy(policy, episodes=10, steps=1000, seed=20_000)
    noisy = {f"{n:g}": evaluate_policy(policy, episodes=5, steps=1000, seed=30_000, noise=n)
             for n in (0.1, 0.2, 0.3, 0.5)}
    policy.meta = {"name": f"hopper_{a.which}", "env": "Hopper-v5",
                   "reward": f"forward_reward_weight={DIRECTION[a.which]:g}, speed cap {a.speed_cap} "
                             "(Hopper-v5's reward otherwise)",
                   "trainer": f"stable-baselines3 {a.algo.upper()} (rl-zoo3 Hopper settings)", "seed": a.seed,
                   "env_steps": a.steps, "command": command(),
                   **info, "curve": curve, "evaluation": final, "evaluation_noisy": noisy,
                   "reference": reference_actions(policy)}
    policy.save(out)
    print(json.dumps({"evaluation": final, "noisy": {k: (v["velocity_mean"], v["fall_rate"])
                                                     for k, v in noisy.items()}}, indent=1, default=float))
    plot_curve({a.which: curve}, out / "training_curve.png")
    print(f"wrote {out}")
    return policy.meta


if __name__ == "__main__":
    main()
