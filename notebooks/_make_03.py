"""Generate notebooks/03_mural_rewards.ipynb (no outputs stored). Run: python notebooks/_make_03.py"""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# 03 · MURAL: from ten success states to a shaped reward\n"
        "Success examples get label 1, states the agent visited label 0; meta-NML "
        "(Li et al., ICML 2021; `docs/design.md`, *MURAL*) gives rewards near 1 at the goal, near 0 "
        "where the agent has been, and near 1/2 on novel states (an exploration bonus)."),
    nbf.v4.new_code_cell(
        "import warnings\n"
        "import matplotlib.pyplot as plt\nimport numpy as np\n"
        "import torch\nfrom tqdm import TqdmWarning\n"
        "warnings.filterwarnings('ignore', 'IProgress not found', TqdmWarning)  # no ipywidgets: text bars (unused)\n"
        "from safe_density.mural import MuralConfig, MuralReward\n"
        "torch.set_num_threads(1)\nrng = np.random.default_rng(0)\n"
        "success = np.array([1.0, 1.0]) + 0.1 * rng.standard_normal((10, 2))   # ten success states\n"
        "visited = np.array([-1.0, -1.0]) + 0.5 * rng.standard_normal((200, 2))  # where the agent went"),
    nbf.v4.new_code_cell(
        "mr = MuralReward(success, method='meta_nml', seed=0, config=MuralConfig.small(meta_steps=300))\n"
        "mr.update(visited, progress=False)\n"
        "novel = mr(np.array([[3.0, -3.0], [-3.0, 3.0]]))   # two states far from both sets\n"
        "print(f'mean reward: success states {mr(success).mean():.3f}, visited {mr(visited).mean():.3f}, '\n"
        "      f'novel {novel[0]:.3f} and {novel[1]:.3f}')"),
    nbf.v4.new_code_cell(
        "g = np.linspace(-3, 3, 60)\ngrid = np.stack(np.meshgrid(g, g, indexing='xy'), -1)\n"
        "r = mr(grid).numpy()                       # batched: [60, 60, 2] -> [60, 60]\n"
        "fig, ax = plt.subplots(figsize=(5, 4))\n"
        "im = ax.imshow(r, origin='lower', extent=(-3, 3, -3, 3), vmin=0, vmax=1)\n"
        "ax.scatter(*visited.T, s=3, c='w'); ax.scatter(*success.T, s=15, c='r', marker='*')\n"
        "fig.colorbar(im, label='meta-NML reward'); ax.set_title('MURAL reward')\nplt.show()"),
    nbf.v4.new_markdown_cell(
        "The same object is a `RewardShaper` (`mr(obs, act, next_obs)`) for planners, and "
        "`MuralRewardWrapper(env, mr, retrain_every=1000)` gives any gymnasium agent these rewards."),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
out = Path(__file__).resolve().parent / "03_mural_rewards.ipynb"
nbf.write(nb, str(out))
print(f"wrote {out}")
