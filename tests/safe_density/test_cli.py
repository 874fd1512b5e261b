"""The command-line interface: every sub-command runs on tiny inputs, writes what it promises and says where;
user errors are one line naming the option, exit status 2, no traceback (the full table of bad inputs is in
tests/test_bad_inputs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mbrl.buffer import ReplayBuffer
from safe_density.cli import LDM_DEFAULTS, build_parser, main


def _subparsers():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("pets", "fit-ldm", "mural-reward", "bench", "demo"):
        assert cmd in out


def test_every_option_has_help():
    for name, p in _subparsers().items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help text"


@pytest.mark.parametrize("cmd", ["pets", "fit-ldm", "mural-reward"])
def test_help_shows_defaults(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    p = _subparsers()[cmd]
    for action in p._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS==") and action.dest != "help":
            assert f"default: {action.default}" in out, f"{cmd} {action.dest}: default not shown"
    if cmd == "fit-ldm":
        assert f"(default: {LDM_DEFAULTS.steps})" in out


@pytest.fixture
def saved_buffer(tmp_path):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(500, 2, 1)
    obs = rng.normal(size=(200, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(200, 1)).astype(np.float32)
    buf.add_batch(obs, act, obs + 0.1 * act, np.zeros(200, np.float32), np.zeros(200, bool))
    buf.save(tmp_path / "buf")
    return tmp_path / "buf"


def test_fit_ldm_from_saved_buffer(tmp_path, saved_buffer, capsys):
    assert main(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path / "o"), "--steps", "20",
                 "--components", "2", "--action-low", "-1", "--action-high", "1"]) == 0
    summary = json.loads((tmp_path / "o" / "ldm_summary.json").read_text())
    assert summary["transitions"] == 200 and summary["steps"] == 20
    # the LDM bounds the energy from above on the data (G >= E)
    assert summary["ldm_quantiles"]["0.5"] >= summary["energy_quantiles"]["0.5"] - 1e-4
    assert (tmp_path / "o" / "ldm_values.png").stat().st_size > 0
    assert f"wrote {tmp_path / 'o' / 'ldm'}" in capsys.readouterr().out
    from safe_density.ldm import LyapunovDensityModel

    ldm = LyapunovDensityModel.load(tmp_path / "o" / "ldm")
    assert torch.isfinite(ldm.value(torch.zeros(3, 2), torch.zeros(3, 1))).all()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_fit_ldm_drops_observations(tmp_path, saved_buffer):
    assert main(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path / "o"), "--steps", "2",
                 "--components", "2", "--drop-obs", "0"]) == 0
    assert json.loads((tmp_path / "o" / "ldm_summary.json").read_text())["kept_obs_dims"] == [1]
    from safe_density.ldm import LyapunovDensityModel

    # the feature selection lives in the model (obs_indices): it takes full observations and ignores obs[0]
    ldm = LyapunovDensityModel.load(tmp_path / "o" / "ldm")
    assert ldm.obs_indices == (1,) or list(ldm.obs_indices) == [1]
    o, a = torch.zeros(4, 2), torch.zeros(4, 1)
    o2 = o.clone()
    o2[:, 0] = 100.0
    assert torch.equal(ldm.value(o, a), ldm.value(o2, a))


def test_fit_ldm_stores_the_calibrated_threshold(tmp_path, saved_buffer):
    """--quantile sets c = that quantile of G on the buffer; it is saved, and the wrapper uses it unasked."""
    from mbrl.buffer import ReplayBuffer
    from safe_density.ldm import DensityConstrainedController, LyapunovDensityModel

    assert main(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path / "o"), "--steps", "5",
                 "--components", "2", "--quantile", "0.25"]) == 0
    summary = json.loads((tmp_path / "o" / "ldm_summary.json").read_text())
    ldm = LyapunovDensityModel.load(tmp_path / "o" / "ldm")
    assert ldm.calibration["quantile"] == 0.25 and summary["threshold"] == ldm.calibration["ldm"]
    data = ReplayBuffer.load(saved_buffer).all()
    g = ldm.value(data.obs, data.act)
    assert abs(float((g <= summary["threshold"] + 1e-6).float().mean()) - 0.25) < 0.05
    assert DensityConstrainedController(lambda o: np.zeros(1), ldm).threshold == summary["threshold"]
    assert ldm.constraint().threshold == summary["threshold"]


def test_fit_ldm_energy_rule_and_the_tasks_box(tmp_path, capsys):
    """--rule energy sets c to the quantile of the data's E (the authors' rule); the action box is the task's
    ([-3, 3] on InvertedPendulum), read from the PETS run that saved the buffer, not the data's narrower range."""
    from mbrl.buffer import ReplayBuffer
    from mbrl.common.serialization import save_state
    from safe_density.ldm import LyapunovDensityModel

    rng = np.random.default_rng(0)
    obs = rng.normal(size=(200, 4)).astype(np.float32)
    act = rng.uniform(-2, 2, size=(200, 1)).astype(np.float32)
    buf = ReplayBuffer(500, 4, 1)
    buf.add_batch(obs, act, obs + 0.1 * act, np.zeros(200, np.float32), np.zeros(200, bool))
    buf.save(tmp_path / "run" / "checkpoint" / "buffer")
    save_state(tmp_path / "run" / "checkpoint" / "run", {"_": torch.zeros(1)}, {"task": "InvertedPendulum-v5"})
    assert main(["fit-ldm", "--buffer", str(tmp_path / "run" / "checkpoint" / "buffer"), "--out",
                 str(tmp_path / "o"), "--steps", "5", "--components", "2", "--quantile", "0.3", "--rule",
                 "energy"]) == 0
    assert "from task InvertedPendulum-v5" in capsys.readouterr().err
    ldm = LyapunovDensityModel.load(tmp_path / "o" / "ldm")
    assert ldm.action_box.low.tolist() == [-3.0] and ldm.action_box.high.tolist() == [3.0]
    e = ldm.energy(torch.as_tensor(obs), torch.as_tensor(act)).double()
    assert ldm.calibration["rule"] == "energy"
    assert ldm.calibration["ldm"] == pytest.approx(float(torch.quantile(e, 0.3)), rel=1e-6)


def _files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ex.npy", (rng.normal(size=(10, 2)) * 0.1 + 2).astype(np.float32))
    np.savetxt(tmp_path / "seen.csv", rng.normal(size=(40, 2)) * 0.3 - 2, delimiter=",")
    np.save(tmp_path / "q.npy", np.array([[2.0, 2.0], [-2.0, -2.0]], np.float32))


def test_mural_reward_from_files(tmp_path, capsys):
    _files(tmp_path)
    assert main(["mural-reward", "--examples", str(tmp_path / "ex.npy"), "--visited", str(tmp_path / "seen.csv"),
                 "--states", str(tmp_path / "q.npy"), "--method", "classifier", "--small",
                 "--out", str(tmp_path / "r")]) == 0
    r = np.load(tmp_path / "r" / "rewards.npy", allow_pickle=False)
    assert r.shape == (2,) and r[0] > r[1]
    summary = json.loads((tmp_path / "r" / "rewards.json").read_text())
    assert summary["n"] == 2 and summary["config"] == "small"  # --small: the preset the user forced, by its name
    assert f"wrote {tmp_path / 'r' / 'rewards.npy'}" in capsys.readouterr().out


def test_mural_reward_without_visited(tmp_path, capsys):
    """--visited is optional: uniform background states around the data are the label-0 set."""
    _files(tmp_path)
    assert main(["mural-reward", "--examples", str(tmp_path / "ex.npy"), "--states", str(tmp_path / "q.npy"),
                 "--method", "classifier", "--small", "--out", str(tmp_path / "r")]) == 0
    r = np.load(tmp_path / "r" / "rewards.npy")
    assert r.shape == (2,) and np.isfinite(r).all() and r[0] > r[1]
    assert "no --visited given" in capsys.readouterr().err


def test_mural_reward_default_config_is_the_librarys_choice_for_the_device(tmp_path):
    """Without --small the CLI lets MuralReward pick (MuralConfig.for_device): the CPU preset here, not the
    published 2 x 2048 networks that take minutes on a CPU."""
    _files(tmp_path)
    assert main(["mural-reward", "--examples", str(tmp_path / "ex.npy"), "--visited", str(tmp_path / "seen.csv"),
                 "--states", str(tmp_path / "q.npy"), "--method", "classifier", "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "rewards.json").read_text())["config"] == "small"


def _user_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_user_errors_are_one_line_naming_the_option(tmp_path, saved_buffer, capsys):
    line = _user_error(["fit-ldm", "--buffer", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys)
    assert "--buffer" in line and "nope" in line
    line = _user_error(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path), "--steps", "-5"], capsys)
    assert "--steps" in line
    line = _user_error(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path), "--drop-obs", "99"], capsys)
    assert "--drop-obs" in line and "99" in line
    line = _user_error(["fit-ldm", "--buffer", str(saved_buffer), "--out", str(tmp_path),
                        "--action-low", "-1", "-1", "-1"], capsys)
    assert "--action-low" in line
    line = _user_error(["pets", "--task", "NoSuchTask-v0"], capsys)
    assert "--task" in line and "Hopper-v5" in line  # the message lists the known tasks
    assert "--episodes" in _user_error(["pets", "--episodes", "-1"], capsys)
    assert "--resume" in _user_error(["pets", "--resume"], capsys)
    assert "unknown benchmark" in _user_error(["bench", "no_such_benchmark"], capsys)
    assert not (tmp_path / "o").exists()  # nothing was written on the way


def test_pickled_npy_is_never_loaded(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    np.save(tmp_path / "q.npy", np.zeros((2, 2), np.float32))
    line = _user_error(["mural-reward", "--examples", str(tmp_path / "evil.npy"), "--states",
                        str(tmp_path / "q.npy"), "--out", str(tmp_path / "r")], capsys)
    assert "--examples" in line and "allow_pickle=False" in line
    assert not (tmp_path / "pwned").exists()  # unpickling would have created it


def test_library_errors_become_one_line(monkeypatch, tmp_path, capsys):
    import safe_density.cli as cli

    def boom(args, rest):
        raise ValueError("obs must have shape (N, 3), got (4, 2)\nsecond line")

    monkeypatch.setattr(cli, "cmd_mural", boom)
    np.save(tmp_path / "q.npy", np.zeros((2, 2), np.float32))
    line = _user_error(["mural-reward", "--examples", str(tmp_path / "q.npy"), "--states", str(tmp_path / "q.npy"),
                        "--out", str(tmp_path / "r")], capsys)
    assert "obs must have shape" in line and "second line" not in line
    monkeypatch.setenv("SAFE_DENSITY_DEBUG", "1")  # and the traceback on request
    with pytest.raises(ValueError, match="obs must have shape"):
        main(["mural-reward", "--examples", str(tmp_path / "q.npy"), "--states", str(tmp_path / "q.npy"),
              "--out", str(tmp_path / "r")])


@pytest.mark.parametrize("out", [None, "run"])
def test_pets_says_where_it_wrote(monkeypatch, tmp_path, capsys, out):
    import mbrl.train

    seen = []
    monkeypatch.setattr(mbrl.train, "main", lambda argv: seen.append(argv) or [])
    argv = ["pets", "--task", "Hopper-v5", "--episodes", "0"] + ([] if out is None else ["--out", str(tmp_path)])
    assert main(argv) == 0
    assert seen == [argv[1:]]  # validated options are forwarded unchanged to python -m mbrl.train
    printed = capsys.readouterr().out
    if out is None:
        assert "nothing was written" in printed
    else:
        assert f"wrote {tmp_path / 'log.jsonl'}" in printed
