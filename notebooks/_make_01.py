"""Writes 01_pets_quickstart.ipynb (run: python notebooks/_make_01.py)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# PETS quick start\n\nA probabilistic ensemble learns InvertedPendulum-v5's dynamics from 600 random "
        "steps; an MPC agent (CEM over the ensemble's mean prediction, `propagation='expectation'` as in "
        "`mbrl.train`'s quick preset) then tries to balance the pole for 150 steps. As in PETS, every episode's "
        "transitions join the data and the model is refitted before the next one. Small settings so this runs "
        "on a laptop CPU in about a minute."),
    nbf.v4.new_code_cell(
        "import warnings\n"
        "import numpy as np, torch\n"
        "from tqdm import TqdmWarning\n"
        "warnings.filterwarnings('ignore', 'IProgress not found', TqdmWarning)  # no ipywidgets: text bars (unused)\n"
        "from mbrl import ProbabilisticEnsemble, ReplayBuffer, MPCAgent, CEM, make_task\n"
        "torch.set_num_threads(1)  # these small networks run fastest on one thread\n"
        "task = make_task('InvertedPendulum-v5')\n"
        "env = task.make_env()\n"
        "buffer = ReplayBuffer(10_000, task.obs_dim, task.act_dim)\n"
        "rng = np.random.default_rng(0)\n"
        "obs, _ = env.reset(seed=0)\n"
        "episodes = 1\n"
        "for _ in range(600):  # random warm-up data (random episodes end within a few steps when the pole falls)\n"
        "    act = rng.uniform(task.action_low, task.action_high).astype(np.float32)\n"
        "    nxt, rew, term, trunc, _ = env.step(act)\n"
        "    buffer.add(obs, act, nxt, rew, term, trunc)\n"
        "    obs = nxt\n"
        "    if term or trunc:\n"
        "        obs, episodes = env.reset()[0], episodes + 1\n"
        "print(f'{len(buffer)} random steps in {episodes} episodes')"),
    nbf.v4.new_markdown_cell(
        "The task's reward is 1 for every step the pole stays within 0.2 rad. Over a 15-step horizon almost "
        "every plan survives, so that reward alone gives the planner no reason to keep the pole upright or the "
        "cart near the middle of its rail, where the data lies; left to it, the cart drifts into the end of "
        "its rail and the pole falls. The planner therefore adds a shaping term `-(10 angle^2 + x^2)` "
        "(`reward_shapers`); the returns printed are the environment's own."),
    nbf.v4.new_code_cell(
        "def upright(obs, act, next_obs):  # planning only: pole upright, cart near the middle of its rail\n"
        "    return -(10 * next_obs[..., 1] ** 2 + next_obs[..., 0] ** 2)\n\n"
        "model = ProbabilisticEnsemble(task.obs_dim, task.act_dim, ensemble_size=5, hidden=(64, 64), seed=0)\n"
        "angles = []  # pole angle per step, one list per MPC episode\n"
        "for k in range(3):\n"
        "    history = model.fit(buffer, epochs=50, batch_size=32, seed=k, progress=False)  # all data so far\n"
        "    agent = MPCAgent(model, task.reward_fn, task.termination_fn, task.action_low, task.action_high,\n"
        "                     optimizer=CEM(population=100, elites=10, iterations=5, alpha=0.1), horizon=15,\n"
        "                     particles=1, propagation='expectation', reward_shapers=[upright], seed=k)\n"
        "    obs, _ = env.reset(seed=k + 1)\n"
        "    angles.append([]); ret = 0.0\n"
        "    for t in range(150):\n"
        "        act = agent.act(obs)\n"
        "        nxt, rew, term, trunc, _ = env.step(act)\n"
        "        buffer.add(obs, act, nxt, rew, term, trunc)\n"
        "        obs = nxt; angles[-1].append(obs[1]); ret += rew\n"
        "        if term or trunc:\n"
        "            break\n"
        "    ending = 'the pole fell' if term else 'the pole stayed within 0.2 rad'\n"
        "    print(f'MPC episode {k + 1}: return {ret:.0f} over {t + 1} of 150 steps, {ending} '\n"
        "          f'(max |angle| {np.abs(angles[-1]).max():.3f} rad; holdout MSE '\n"
        "          f'{np.mean(history[\"holdout_mse\"][-1]):.5f})')"),
    nbf.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(6, 2.8))\n"
        "for k, a in enumerate(angles):\n"
        "    plt.plot(a, label=f'episode {k + 1}: {len(a)} steps')\n"
        "plt.axhline(0.2, ls='--', c='r'); plt.axhline(-0.2, ls='--', c='r')\n"
        "plt.xlabel('step'); plt.ylabel('pole angle (rad)'); plt.legend(fontsize=8)\n"
        "plt.title('Pole angle in each MPC episode (the env ends an episode past 0.2 rad)')\n"
        "plt.show()"),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
nbf.write(nb, "notebooks/01_pets_quickstart.ipynb")
