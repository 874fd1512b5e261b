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
        TINY.replace(optimizer="sgd")
    with pytest.raises(ValueError, match="name"):
        run_pets("NoSuchTask-v0", TINY, progress=False)


def test_cli_runs(tmp_path, capsys):
    log = main(["--task", "InvertedPendulum-v5", "--episodes", "1", "--out", str(tmp_path), "--seed", "1"])
    assert len(log) >= 2 and (tmp_path / "checkpoint" / "model").is_dir()


def test_episode_end_callbacks(tmp_path):
    seen = []

    def record(end):
        assert end.obs.shape == (end.row["steps"], 4) and end.next_obs.shape == end.obs.shape
        assert end.act.shape == (end.row["steps"], 1) and len(end.infos) == end.row["steps"]
        assert end.reward.shape == end.terminated.shape == (end.row["steps"],)
        assert (end.agent is None) == (end.phase == "random") and end.config is TINY
        assert len(end.buffer) == end.row["env_steps"]
        end.row["tag"] = end.episode * 10
        seen.append((end.episode, end.phase))

    log = run_pets("InvertedPendulum-v5", TINY, out_dir=tmp_path, seed=1, progress=False, callbacks=[record])
    assert seen == [(0, "random"), (1, "mpc"), (2, "mpc")]
    assert [r["tag"] for r in log] == [0, 10, 20]
    assert [json.loads(x)["tag"] for x in (tmp_path / "log.jsonl").read_text().splitlines()] == [0, 10, 20]
    # the callbacks see the same run as no callbacks (they only observe)
    plain = run_pets("InvertedPendulum-v5", TINY, seed=1, progress=False)
    assert [r["return"] for r in plain] == [r["return"] for r in log]
    # returning False stops after that episode
    stopped = run_pets("InvertedPendulum-v5", TINY, seed=1, progress=False,
                       callbacks=[lambda end: end.episode < 1])
    assert len(stopped) == 2
    with pytest.raises(ValueError, match="callbacks"):
        run_pets("InvertedPendulum-v5", TINY, progress=False, callbacks=[3])


@pytest.mark.parametrize("field, value", [
    ("horizon", 0), ("episodes", -1), ("population", 0), ("elites", 17), ("particles", 0), ("lr", 0.0),
    ("holdout", 1.0), ("optimizer", "sgd"), ("propagation", "ts_2"), ("dtype", "float16"), ("hidden", ()),
    ("max_episode_steps", 0), ("warmup_steps", -5), ("epochs_per_episode", 2.5), ("batch_size", float("nan")),
])
def test_config_rejects_bad_fields_at_construction(field, value):
    with pytest.raises(ValueError, match=field.split("[")[0]):
        TINY.replace(**{field: value})


def test_negative_counts_raise():
    with pytest.raises(ValueError, match="episodes"):
        run_pets("InvertedPendulum-v5", PETSConfig(episodes=-1), progress=False)
    with pytest.raises(ValueError, match="stop_after"):
        run_pets("InvertedPendulum-v5", TINY, progress=False, stop_after=-1)
    assert TINY.replace(episodes=0, warmup_episodes=1).episodes == 0
    import numpy as np

    assert PETSConfig(horizon=np.int64(5)).horizon == 5
