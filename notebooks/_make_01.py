"""Writes 01_pets_quickstart.ipynb (run: python notebooks/_make_01.py)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# PETS quick start\n\nA probabilistic ensemble learns InvertedPendulum-v5's dynamics from one random "
        "episode; an MPC agent (CEM + trajectory sampling) then balances the pole. Small settings so this runs "
        "on a laptop CPU in about a minute."),
    nbf.v4.new_code_cell(
        "import numpy as np, torch\n"
        "from mbrl import ProbabilisticEnsemble, ReplayBuffer, MPCAgent, CEM, make_task\n"
        "torch.set_num_threads(2)\n"
        "task = make_task('InvertedPendulum-v5')\n"
        "env = task.make_env()\n"
        "buffer = ReplayBuffer(10_000, task.obs_dim, task.act_dim)\n"
        "rng = np.random.default_rng(0)\n"
        "obs, _ = env.reset(seed=0)\n"
        "for _ in range(200):  # random warm-up data (episodes end quickly when the pole falls)\n"
        "    act = rng.uniform(task.action_low, task.action_high).astype(np.float32)\n"
        "    nxt, rew, term, trunc, _ = env.step(act)\n"
        "    buffer.add(obs, act, nxt, rew, term, trunc)\n"
        "    obs = nxt if not (term or trunc) else env.reset()[0]\n"
        "len(buffer)"),
    nbf.v4.new_code_cell(
        "model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=5, hidden=(64, 64), seed=0)\n"
        "history = model.fit(buffer, epochs=30, batch_size=32, progress=False)\n"
        "print('holdout MSE per member:', np.round(history['holdout_mse'][-1], 5))"),
    nbf.v4.new_code_cell(
        "agent = MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high,\n"
        "                 optimizer=CEM(population=100, elites=10, iterations=3, alpha=0.1),\n"
        "                 horizon=15, particles=5, propagation='ts_inf', seed=0)\n"
        "obs, _ = env.reset(seed=1)\n"
        "angles, ret = [], 0.0\n"
        "for t in range(150):\n"
        "    obs, rew, term, trunc, _ = env.step(agent.act(obs))\n"
        "    angles.append(obs[1]); ret += rew\n"
        "    if term or trunc:\n"
        "        break\n"
        "print(f'return {ret:.0f} over {t + 1} steps')"),
    nbf.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(5, 2.5))\n"
        "plt.plot(angles); plt.axhline(0.2, ls='--', c='r'); plt.axhline(-0.2, ls='--', c='r')\n"
        "plt.xlabel('step'); plt.ylabel('pole angle (rad)'); plt.title('MPC keeps the pole inside the limits')\n"
        "plt.show()"),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
nbf.write(nb, "notebooks/01_pets_quickstart.ipynb")
