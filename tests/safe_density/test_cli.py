"""The command-line interface: every sub-command runs on tiny inputs and writes what it promises."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mbrl.buffer import ReplayBuffer
from safe_density.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("pets", "fit-ldm", "mural-reward", "bench", "demo"):
        assert cmd in out


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help text"


def test_fit_ldm_from_saved_buffer(tmp_path):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(500, 2, 1)
    obs = rng.normal(size=(200, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(200, 1)).astype(np.float32)
    buf.add_batch(obs, act, obs + 0.1 * act, np.zeros(200, np.float32), np.zeros(200, bool))
    buf.save(tmp_path / "buf")
    assert main(["fit-ldm", "--buffer", str(tmp_path / "buf"), "--out", str(tmp_path / "o"), "--steps", "20",
                 "--components", "2", "--action-low", "-1", "--action-high", "1"]) == 0
    summary = json.loads((tmp_path / "o" / "ldm_summary.json").read_text())
    assert summary["transitions"] == 200
    # the LDM bounds the energy from above on the data (G >= E)
    assert summary["ldm_quantiles"]["0.5"] >= summary["energy_quantiles"]["0.5"] - 1e-4
    assert (tmp_path / "o" / "ldm_values.png").stat().st_size > 0
    from safe_density.ldm import LyapunovDensityModel

    ldm = LyapunovDensityModel.load(tmp_path / "o" / "ldm")
    assert torch.isfinite(ldm.value(torch.zeros(3, 2), torch.zeros(3, 1))).all()


def test_mural_reward_from_files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ex.npy", (rng.normal(size=(10, 2)) * 0.1 + 2).astype(np.float32))
    np.savetxt(tmp_path / "seen.csv", rng.normal(size=(40, 2)) * 0.3 - 2, delimiter=",")
    np.save(tmp_path / "q.npy", np.array([[2.0, 2.0], [-2.0, -2.0]], np.float32))
    assert main(["mural-reward", "--examples", str(tmp_path / "ex.npy"), "--visited", str(tmp_path / "seen.csv"),
                 "--states", str(tmp_path / "q.npy"), "--method", "classifier", "--small",
                 "--out", str(tmp_path / "r")]) == 0
    r = np.load(tmp_path / "r" / "rewards.npy")
    assert r.shape == (2,) and r[0] > r[1]
    assert json.loads((tmp_path / "r" / "rewards.json").read_text())["n"] == 2


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="--examples"):
        main(["mural-reward", "--examples", str(tmp_path / "none.npy"), "--states", "x.npy", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown benchmark"):
        main(["bench", "no_such_benchmark"])
