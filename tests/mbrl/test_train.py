"""The PETS loop: logs, checkpoints, and a resumed run that is bit-identical to an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from mbrl.models import ProbabilisticEnsemble
from mbrl.train import PETSConfig, main, run_pets

TINY = PETSConfig(hidden=(16,), ensemble_size=2, population=16, elites=4, iterations=2, horizon=4, particles=2,
                  episodes=2, max_episode_steps=15, epochs_per_episode=2, warmup_steps=30)


def _weights(path):
    m = ProbabilisticEnsemble.load(path / "checkpoint" / "model")
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_logs_and_resume_exactly(tmp_path):
    full = run_pets("InvertedPendulum-v5", TINY, out_dir=tmp_path / "a", seed=3, progress=False)
    assert [r["phase"] for r in full] == ["random", "mpc", "mpc"]
    assert full[0]["steps"] >= 30  # warm-up spans env episodes until warmup_steps
    lines = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == json.loads(json.dumps(full))
    assert (tmp_path / "a" / "log.csv").read_text().startswith("env_steps,")

    part = run_pets("InvertedPendulum-v5", TINY, out_dir=tmp_path / "b", seed=3, progress=False, stop_after=2)
    assert len(part) == 2
    resumed = run_pets("InvertedPendulum-v5", TINY, out_dir=tmp_path / "b", seed=3, progress=False, resume=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed] == strip
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="resume"):
        run_pets("InvertedPendulum-v5", TINY, out_dir=None, resume=True, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        run_pets("InvertedPendulum-v5", TINY.replace(optimizer="sgd"), progress=False)
    with pytest.raises(ValueError, match="name"):
        run_pets("NoSuchTask-v0", TINY, progress=False)


def test_cli_runs(tmp_path, capsys):
    log = main(["--task", "InvertedPendulum-v5", "--episodes", "1", "--out", str(tmp_path), "--seed", "1"])
    assert len(log) >= 2 and (tmp_path / "checkpoint" / "model").is_dir()
