"""mbrl-lib 0.2.0's PETS planner as a timing anchor, run in its own interpreter (``make mbrl-lib-env``).

mbrl-lib's import name ``mbrl`` is the same as ours, so :mod:`planner_speed` starts this file by its path with the
interpreter of ``.venv-mbrllib`` (from a working directory outside the repository) and talks to it over
stdin/stdout, one JSON line per command, which lets it alternate mbrl-lib's actions with ours in one run:

    act      -> {"seconds": s, "cpu_seconds": c, ...}   one TrajectoryOptimizerAgent.act (replan_freq 1)
    floor    -> {"seconds": s, "cpu_seconds": c}        the fp32 matrix-product floor of one action here
    fit      -> {"seconds": s, "cpu_seconds": c, "val_mse": m}   one ModelTrainer.train of a fresh ensemble on
                ``fit_data(cfg["fit_transitions"])`` (``fit_speed``; batch 32, Adam 1e-3, 10 % validation)

(``seconds``: wall clock; ``cpu_seconds``: this process's CPU time, all threads, which a loaded machine
inflates much less than the wall clock.)
    quit

The configuration mirrors ours (``argv[1]``, JSON): a ``GaussianMLP`` ensemble (``num_layers`` hidden layers
of ``hid_size`` SiLU, learned variance, TS-inf = ``propagation_method="fixed_model"``) in a
``OneDTransitionRewardModel`` (delta targets, double-precision input normalisation, as in mbrl-lib's
``pets.yaml``), a ``ModelEnv`` with the known HalfCheetah reward (``mbrl.env.reward_fns.halfcheetah``) and no
termination, and ``CEMOptimizer`` (population, elite ratio, iterations, alpha 0.1, mean of elites) through
``create_trajectory_optim_agent_for_model`` with ``num_particles`` particles. mbrl-lib 0.2.0 pins
hydra-core 1.0.3; under hydra-core 1.3.2 the agent config must be instantiated non-recursively
(``_recursive_: False``), otherwise hydra builds the optimizer itself and the agent receives an object where
it expects a config.

:func:`matmul_floor` comes from ``_common.py``, the benchmarks' shared module, which :mod:`planner_speed` uses
too, so both processes measure the same floor. Started by its path, this file finds ``_common`` in its own
folder (a script's folder comes first on the import path; ``benchmarks._common`` would need the folder above,
a checkout's root, whose ``mbrl`` is ours). This file and ``_common`` import only the standard library, numpy and
torch at module level: they must load under mbrl-lib's interpreter, where our library is absent.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from _common import fit_data, matmul_floor


class _Spaces:
    """The two attributes ModelEnv reads from an environment."""

    def __init__(self, obs_dim: int, act_dim: int, low, high):
        import gymnasium as gym

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32),
                                           dtype=np.float32)


def build_agent(cfg: dict):
    """mbrl-lib's TrajectoryOptimizerAgent for ``cfg`` (module docstring); returns ``(agent, obs0)``."""
    import mbrl.env.reward_fns as reward_fns
    import mbrl.env.termination_fns as termination_fns
    import omegaconf

    import mbrl.models as models
    import mbrl.planning as planning

    device = cfg.get("device", "cpu")
    obs_dim, act_dim = cfg["obs_dim"], cfg["act_dim"]
    torch.manual_seed(cfg.get("seed", 0))
    hidden = cfg["hidden"]
    if len(set(hidden)) != 1:
        raise ValueError(f"mbrl-lib's GaussianMLP has equal hidden widths, got {hidden}")
    net = models.GaussianMLP(obs_dim + act_dim, obs_dim, device, num_layers=len(hidden), ensemble_size=cfg["ensemble"],
                             hid_size=hidden[0], deterministic=False, propagation_method="fixed_model",
                             activation_fn_cfg={"_target_": "torch.nn.SiLU"})
    dyn = models.OneDTransitionRewardModel(net, target_is_delta=True, normalize=True,
                                           normalize_double_precision=True, learned_rewards=False)
    rng = np.random.default_rng(cfg.get("seed", 0))
    dyn.input_normalizer.update_stats(rng.standard_normal((256, obs_dim + act_dim)))
    gen = torch.Generator(device=device).manual_seed(cfg.get("seed", 0))
    env = _Spaces(obs_dim, act_dim, cfg["action_low"], cfg["action_high"])
    model_env = models.ModelEnv(env, dyn, termination_fns.no_termination, reward_fns.halfcheetah, generator=gen)
    agent_cfg = omegaconf.OmegaConf.create({
        "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
        "_recursive_": False,
        "action_lb": list(cfg["action_low"]),
        "action_ub": list(cfg["action_high"]),
        "planning_horizon": cfg["horizon"],
        "replan_freq": 1,
        "verbose": False,
        "optimizer_cfg": {
            "_target_": "mbrl.planning.CEMOptimizer",
            "num_iterations": cfg["iterations"],
            "elite_ratio": cfg["elites"] / cfg["population"],
            "population_size": cfg["population"],
            "alpha": 0.1,
            "device": device,
            "lower_bound": "???",
            "upper_bound": "???",
            "return_mean_elites": True,
            "clipped_normal": False,
        },
    })
    agent = planning.create_trajectory_optim_agent_for_model(model_env, agent_cfg, num_particles=cfg["particles"])
    obs0 = rng.standard_normal(obs_dim).astype(np.float32) * 0.1
    return agent, obs0


def fit_once(cfg: dict) -> dict:
    """One fit of a fresh ensemble by mbrl-lib's ``ModelTrainer`` (the ``fit`` command of the module docstring):
    PETS settings as in mbrl-lib's ``pets`` configs (bootstrapped members, batch 32, Adam lr 1e-3 with weight
    decay 5e-5, validation on 10 % after every epoch), ``cfg["fit_epochs"]`` epochs; the timer covers the
    normaliser update, the iterators and ``train``."""
    import mbrl.util.common as common
    from mbrl.util.replay_buffer import ReplayBuffer

    import mbrl.models as models

    obs_dim, act_dim, n = cfg["obs_dim"], cfg["act_dim"], cfg["fit_transitions"]
    obs, act, nxt = fit_data(n, obs_dim, act_dim, cfg.get("seed", 0))
    torch.manual_seed(cfg.get("seed", 0))
    device = cfg.get("device", "cpu")
    net = models.GaussianMLP(obs_dim + act_dim, obs_dim, device, num_layers=len(cfg["hidden"]),
                             ensemble_size=cfg["ensemble"], hid_size=cfg["hidden"][0], deterministic=False,
                             propagation_method="fixed_model", activation_fn_cfg={"_target_": "torch.nn.SiLU"})
    dyn = models.OneDTransitionRewardModel(net, target_is_delta=True, normalize=True,
                                           normalize_double_precision=True, learned_rewards=False)
    rng = np.random.default_rng(cfg.get("seed", 0))
    buf = ReplayBuffer(n, (obs_dim,), (act_dim,), rng=rng)
    for i in range(n):
        buf.add(obs[i], act[i], nxt[i], 0.0, False, False)
    t0, c0 = time.perf_counter(), time.process_time()
    dyn.update_normalizer(buf.get_all())
    train, val = common.get_basic_buffer_iterators(buf, 32, 0.1, ensemble_size=cfg["ensemble"],
                                                   shuffle_each_epoch=True, bootstrap_permutes=False)
    trainer = models.ModelTrainer(dyn, optim_lr=1e-3, weight_decay=5e-5)
    _, val_scores = trainer.train(train, val, num_epochs=cfg["fit_epochs"], patience=cfg["fit_epochs"] + 1,
                                  silent=True)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": dt, "cpu_seconds": dc, "val_mse": float(val_scores[-1]) if val_scores else None}


def serve(cfg: dict) -> None:
    """Answer ``act`` / ``floor`` / ``quit`` lines on stdin (module docstring)."""
    import mbrl

    fit_only = cfg.get("fit_only", False)
    agent, obs = (None, None) if fit_only else build_agent(cfg)
    device = torch.device(cfg.get("device", "cpu"))
    for _ in range(0 if fit_only else cfg.get("warmup", 1)):
        agent.act(obs)
    print(json.dumps({"ready": True, "mbrl_version": getattr(mbrl, "__version__", "?"),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "act":
            t0, c0 = time.perf_counter(), time.process_time()
            a = agent.act(obs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            ok = bool(np.isfinite(a).all() and (a >= np.asarray(cfg["action_low"]) - 1e-6).all()
                      and (a <= np.asarray(cfg["action_high"]) + 1e-6).all())
            print(json.dumps({"seconds": dt, "cpu_seconds": dc, "finite_and_in_bounds": ok}), flush=True)
        elif cmd == "floor":
            s, c = matmul_floor(cfg["obs_dim"] + cfg["act_dim"], cfg["obs_dim"], cfg, device, 1, cpu_time=True)
            print(json.dumps({"seconds": s, "cpu_seconds": c}), flush=True)
        elif cmd == "fit":
            print(json.dumps(fit_once(cfg)), flush=True)
        elif cmd == "quit":
            break
        else:
            print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
