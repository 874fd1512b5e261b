"""Behaviour policies as plain torch modules: the shipped Hopper policies, save/load, roll-outs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbrl.policies import (
    HOPPER_POLICIES,
    MLPPolicy,
    collect_hopper_data,
    collect_rollouts,
    evaluate_policy,
    hopper_policy_dir,
    load_hopper_policy,
)


def _random_policy(seed=0, obs_dim=5, idx=(1, 2, 3, 4), hidden=(8, 8), act_dim=2, squash=False, low=-1.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    sizes = [len(idx), *hidden, act_dim]
    weights = [(torch.randn(o, i, generator=g), torch.randn(o, generator=g)) for i, o in zip(sizes, sizes[1:])]
    return MLPPolicy(weights, torch.randn(len(idx), generator=g), torch.rand(len(idx), generator=g) + 0.1, obs_dim,
                     [low] * act_dim, [high] * act_dim, obs_indices=idx, squash=squash)


# ---------------------------------------------------------------------------------------------- shipped files
@pytest.mark.parametrize("name", HOPPER_POLICIES)
def test_shipped_policy_reproduces_its_reference_actions(name):
    pol = load_hopper_policy(name)
    ref = pol.meta["reference"]
    obs, act = np.asarray(ref["obs"], np.float32), np.asarray(ref["act"], np.float32)
    assert obs.shape == (16, 12) and act.shape == (16, 3)
    np.testing.assert_allclose(pol.act(obs), act, atol=1e-5)
    # the network ignores x (obs[0]): a hopper 5 m further on acts the same
    shifted = obs.copy()
    shifted[:, 0] += 5.0
    np.testing.assert_allclose(pol.act(shifted), act, atol=1e-5)


@pytest.mark.parametrize("name", HOPPER_POLICIES)
def test_shipped_policy_records_how_it_was_made(name):
    meta = json.loads((hopper_policy_dir(name) / "meta.json").read_text())["meta"]
    for key in ("seed", "command", "curve", "evaluation", "trainer", "env_steps", "best_at_env_steps"):
        assert key in meta, key
    assert meta["curve"], "the training curve is empty"
    ev = meta["evaluation"]
    assert ev["episodes"] == 10 and ev["noise"] == 0.0 and len(ev["dx"]) == 10
    # issue 18's speed targets, from the script's own noise-free evaluation over 1,000-step episodes
    if name == "forward":
        assert ev["velocity_mean"] >= 1.0
    else:
        assert ev["velocity_mean"] <= -0.5 and ev["fall_rate"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", HOPPER_POLICIES)
def test_shipped_evaluation_reproduces(name):
    """The recorded evaluation is what the shipped weights do: its first two episodes, re-run here."""
    pol = load_hopper_policy(name)
    ev = pol.meta["evaluation"]
    again = evaluate_policy(pol, episodes=2, steps=1000, seed=20_000)
    np.testing.assert_allclose(again["dx"], ev["dx"][:2], rtol=1e-4, atol=1e-4)
    assert again["steps"] == ev["steps"][:2]


def test_no_stable_baselines_needed_at_run_time():
    import subprocess
    import sys

    code = ("import sys; sys.modules['stable_baselines3'] = None\n"
            "from mbrl.policies import load_hopper_policy\n"
            "import numpy as np\n"
            "print(load_hopper_policy('forward').act(np.zeros(12)).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(3,)"


# ---------------------------------------------------------------------------------------------- MLPPolicy
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.floats(-3, 0), st.floats(0.01, 3), st.integers(1, 7))
def test_actions_stay_in_the_box_and_batches_agree(seed, squash, low, width, batch):
    pol = _random_policy(seed, squash=squash, low=low, high=low + width)
    obs = torch.randn(batch, 5, generator=torch.Generator().manual_seed(seed)) * 20
    act = pol(obs)
    assert act.shape == (batch, 2)
    assert bool((act >= low - 1e-6).all() and (act <= low + width + 1e-6).all())
    single = torch.stack([pol(o) for o in obs])
    torch.testing.assert_close(act, single)


def test_matches_a_hand_written_forward():
    pol = _random_policy(3)
    obs = torch.randn(4, 5)
    z = ((obs[:, 1:] - pol.obs_mean) / pol.obs_scale).clamp(-10, 10)
    h = z
    for layer in pol.layers[:-1]:
        h = torch.relu(h @ layer.weight.T + layer.bias)
    want = (h @ pol.layers[-1].weight.T + pol.layers[-1].bias).clamp(-1, 1)
    torch.testing.assert_close(pol(obs), want)


def test_save_load_round_trip(tmp_path):
    pol = _random_policy(1, squash=True)
    pol.meta = {"seed": 7, "curve": [{"env_steps": 1, "velocity_mean": 0.5}]}
    pol.save(tmp_path / "p")
    back = MLPPolicy.load(tmp_path / "p")
    obs = torch.randn(6, 5)
    torch.testing.assert_close(back(obs), pol(obs))
    assert back.meta == pol.meta and back.squash and back.obs_indices == [1, 2, 3, 4]


def test_controller_noise_is_seeded_and_bounded():
    pol = _random_policy(2)
    obs = np.zeros(5, np.float32)
    a1 = [pol.controller(noise=0.5, seed=3).act(obs) for _ in range(2)]
    np.testing.assert_array_equal(a1[0], a1[1])
    assert not np.array_equal(a1[0], pol.controller(noise=0.5, seed=4).act(obs))
    big = pol.controller(noise=100.0, seed=0)
    acts = np.stack([big.act(obs) for _ in range(50)])
    assert acts.min() >= -1 and acts.max() <= 1


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"obs_indices": [9]}, "obs_indices"), ({"activation": "gelu"}, "activation"), ({"clip_obs": 0.0}, "clip_obs"),
    ({"obs_dim": 0}, "obs_dim"), ({"obs_mean": [float("nan")] * 4}, "obs_mean"),
    ({"act_low": [1.0, 1.0]}, "action_low")])
def test_bad_construction_names_the_argument(kwargs, name):
    base = _random_policy(0)
    args = {"weights": [(layer.weight, layer.bias) for layer in base.layers], "obs_mean": torch.zeros(4),
            "obs_var": torch.ones(4), "obs_dim": 5, "act_low": [-1.0, -1.0], "act_high": [0.5, 0.5],
            "obs_indices": [1, 2, 3, 4]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        MLPPolicy(**args)


def test_bad_calls_are_rejected():
    pol = _random_policy(0)
    with pytest.raises(ValueError, match="obs"):
        pol.act(np.zeros(4))
    with pytest.raises(ValueError, match="obs"):
        pol.act(np.full(5, np.nan))
    with pytest.raises(ValueError, match="noise"):
        pol.controller(noise=-1.0)
    with pytest.raises(ValueError, match="name"):
        hopper_policy_dir("sideways")


# ---------------------------------------------------------------------------------------------- roll-outs
def test_collection_is_seeded_and_deterministic():
    kw = {"noises": (0.0, 0.5), "episodes_per_setting": 1, "max_steps": 30}
    a, b = collect_hopper_data(seed=1, **kw), collect_hopper_data(seed=1, **kw)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = collect_hopper_data(seed=2, **kw)
    assert not np.array_equal(a["act"], c["act"])
    n = a["obs"].shape[0]
    assert a["act"].shape == (n, 3) and a["next_obs"].shape == (n, 12) and a["episode"].shape == (n,)
    assert a["fell"].shape == (4,) and int(a["steps"].sum()) == n
    np.testing.assert_array_equal(a["setting"], [0, 1, 2, 3])
    # consecutive transitions chain: next_obs of one step is obs of the next inside an episode
    same = a["episode"][1:] == a["episode"][:-1]
    np.testing.assert_array_equal(a["next_obs"][:-1][same], a["obs"][1:][same])


def test_collect_rollouts_rejects_bad_sizes():
    with pytest.raises(ValueError, match="max_steps"):
        collect_rollouts(lambda *_: None, ["a"], [0.0], max_steps=0)
    with pytest.raises(ValueError, match="names"):
        collect_rollouts(lambda *_: None, [], [0.0])


def test_forward_policy_hops_forward_and_backward_one_back():
    fwd = evaluate_policy(load_hopper_policy("forward"), episodes=1, steps=150, seed=5)
    bwd = evaluate_policy(load_hopper_policy("backward"), episodes=1, steps=150, seed=5)
    assert fwd["dx_mean"] > 0.3 and fwd["fall_rate"] == 0.0
    assert bwd["dx_mean"] < -0.1 and bwd["fall_rate"] == 0.0


def test_keep_before_falls_drops_the_last_steps_of_falling_episodes_only():
    from mbrl.policies import keep_before_falls

    episode = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    terminated = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1], bool)   # episodes 0 and 2 fell, 1 was truncated
    np.testing.assert_array_equal(keep_before_falls(terminated, episode, 2), [1, 1, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(keep_before_falls(terminated, episode, 0), np.ones(9, bool))
    with pytest.raises(ValueError, match="k"):
        keep_before_falls(terminated, episode, -1)
    with pytest.raises(ValueError, match="terminated"):
        keep_before_falls(terminated[:3], episode, 1)
