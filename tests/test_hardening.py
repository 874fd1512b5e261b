"""Reliability and security: atomic checkpoints, no pickle on any load path, determinism, bounded memory."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import mbrl.common.serialization as serialization
from mbrl.agent import MPCAgent
from mbrl.buffer import ReplayBuffer
from mbrl.common.serialization import load_state, save_state
from mbrl.models.ensemble import ProbabilisticEnsemble
from mbrl.planning import CEM
from safe_density.mural import MuralConfig, MuralReward
from safe_density.rcad import rcad_loss

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mbrl", "safe_density")


# ----------------------------------------------------------------------------------- (a) atomic writes
def _buffer(seed: int, n: int = 30) -> ReplayBuffer:
    g = torch.Generator().manual_seed(seed)
    buf = ReplayBuffer(20, 3, 2)
    buf.add_batch(
        torch.randn(n, 3, generator=g),
        torch.randn(n, 2, generator=g),
        torch.randn(n, 3, generator=g),
        torch.randn(n, generator=g),
        torch.rand(n, generator=g) < 0.2,
    )
    return buf


def _model(seed: int) -> ProbabilisticEnsemble:
    return ProbabilisticEnsemble(3, 2, ensemble_size=2, hidden=(8,), seed=seed)


def _state(seed: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    return (
        {
            "w": torch.randn(4, 3, generator=g),
            "flags": torch.rand(5, generator=g) < 0.5,
            "h": torch.randn(2, generator=g).half(),
        },
        {"seed": seed, "note": "x" * seed},
    )


def _save_fns():
    """(save(obj, path), load(path) -> comparable tensors, make(seed)) for each checkpointed object."""

    def buf_tensors(path):
        return dict(
            zip(
                ("obs", "act", "next_obs", "reward", "terminated", "truncated"), ReplayBuffer.load(path).all()
            )
        )

    def model_tensors(path):
        return ProbabilisticEnsemble.load(path).state_dict()

    return {
        "save_state": (lambda obj, p: save_state(p, *obj), lambda p: load_state(p)[0], _state),
        "ReplayBuffer": (lambda obj, p: obj.save(p), buf_tensors, _buffer),
        "ProbabilisticEnsemble": (lambda obj, p: obj.save(p), model_tensors, _model),
    }


def _bit_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


class Crash(Exception):
    pass


@pytest.mark.parametrize("kind", sorted(_save_fns()))
@pytest.mark.parametrize("where", ["save_file", "first_replace", "second_replace"])
def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch, kind, where):
    save, load, make = _save_fns()[kind]
    path = tmp_path / "ckpt"
    save(make(1), path)
    before = load(path)
    files_before = {p.name: p.read_bytes() for p in path.iterdir()}

    if where == "save_file":  # a partial tensors file is written, then the process "dies"
        real = serialization.save_file

        def broken(tensors, filename, *args, **kwargs):
            real(tensors, filename, *args, **kwargs)
            with open(filename, "r+b") as f:
                f.truncate(max(1, os.path.getsize(filename) // 2))
            raise Crash("disk full")

        monkeypatch.setattr(serialization, "save_file", broken)
    else:  # os.replace fails on its first call (old -> .old) or its second (new -> path)
        real_replace, calls = os.replace, []
        fail_at = 1 if where == "first_replace" else 2

        def broken_replace(src, dst):
            calls.append((src, dst))
            if len(calls) == fail_at:
                raise Crash("power cut")
            return real_replace(src, dst)

        monkeypatch.setattr(serialization.os, "replace", broken_replace)

    with pytest.raises(Crash):
        save(make(2), path)
    monkeypatch.undo()

    after = load(path)  # the previous checkpoint, intact and bit-exact
    assert _bit_equal(before, after)
    assert not _bit_equal(before, load_after_save(save, load, make, tmp_path / "other"))
    if where != "second_replace":  # the directory itself was never touched
        assert {p.name: p.read_bytes() for p in path.iterdir()} == files_before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # the temporary directory of the failed save was removed

    save(make(3), path)  # and saving works again afterwards
    assert _bit_equal(load(path), load_after_save(save, load, make, tmp_path / "third", seed=3))


def load_after_save(save, load, make, path, seed: int = 2):
    save(make(seed), path)
    return load(path)


def test_second_replace_crash_leaves_old_copy_that_the_next_save_removes(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    save_state(path, *_state(1))
    real_replace, calls = os.replace, []

    def broken(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise Crash("power cut between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr(serialization.os, "replace", broken)
    with pytest.raises(Crash):
        save_state(path, *_state(2))
    monkeypatch.undo()
    assert not path.exists() and (tmp_path / ".ckpt.old").is_dir()
    assert serialization.resolve_checkpoint(path) == tmp_path / ".ckpt.old"
    assert _bit_equal(load_state(path)[0], _state(1)[0])  # the previous checkpoint, through the fallback
    save_state(path, *_state(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # the old copy is gone
    assert _bit_equal(load_state(path)[0], _state(3)[0])


def test_atomic_directory_replaces_a_multi_part_checkpoint_as_a_whole(tmp_path):
    """The helper for checkpoints made of several parts (e.g. a network and a density sub-folder)."""
    path = tmp_path / "model"

    def write(seed, fail_after_first_part=False):
        with serialization.atomic_directory(path) as tmp:
            serialization.write_state(tmp, *_state(seed))
            if fail_after_first_part:
                raise Crash("died before the second part")
            save_state(tmp / "density", *_state(seed + 100))

    write(1)
    with pytest.raises(Crash):
        write(2, fail_after_first_part=True)
    assert _bit_equal(load_state(path)[0], _state(1)[0])
    assert _bit_equal(load_state(path / "density")[0], _state(101)[0])  # both parts are the old ones
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    write(3)
    assert _bit_equal(load_state(path)[0], _state(3)[0])
    assert _bit_equal(load_state(path / "density")[0], _state(103)[0])
    with pytest.raises(ValueError, match="path"):
        with serialization.atomic_directory(tmp_path / ".."):
            pass


_KILLED_SAVE = """
import os, signal, sys
import torch
import mbrl.common.serialization as s
real = s.save_file
def dying(tensors, filename, *a, **k):
    real(tensors, filename, *a, **k)
    with open(filename, "r+b") as f:
        f.truncate(10)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup handler runs
s.save_file = dying
s.save_state(sys.argv[1], {"w": torch.full((3,), 2.0)}, {"v": 2})
"""


def test_killed_save_leaves_previous_checkpoint_and_its_leftovers_are_cleaned(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "ckpt"
    save_state(path, {"w": torch.ones(3)}, {"v": 1})
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], capture_output=True)
    assert proc.returncode == -9  # SIGKILL: the save really died mid-write
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].name.startswith(".ckpt.tmp-")
    tensors, meta = load_state(path)  # the previous checkpoint, intact
    assert meta == {"v": 1} and torch.equal(tensors["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # ... and the load cleaned up
    stale[0].mkdir()  # the same leftover again (its process is gone): the next save cleans it up too
    (tmp_path / ".ckpt.ab12cd34.tmp").mkdir()  # a temporary name of earlier versions
    save_state(path, {"w": torch.zeros(3)}, {"v": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_temporaries_of_a_running_save_are_not_stale(tmp_path):
    path = tmp_path / "ckpt"
    live = tmp_path / f".ckpt.tmp-{os.getppid()}@{serialization._host()}-abc.tmp"  # a live process's save
    foreign = tmp_path / ".ckpt.tmp-1@another-host-abc.tmp"  # a recent save of another machine
    old_foreign = tmp_path / ".ckpt.tmp-1@another-host-def.tmp"
    for d in (live, foreign, old_foreign):
        d.mkdir()
    os.utime(old_foreign, (0, 0))  # written in 1970: its machine's save is long dead
    with serialization.atomic_directory(path) as tmp:
        assert serialization.clean_stale(path) == []  # neither our own temporary nor the live one
        assert tmp.is_dir() and live.is_dir() and foreign.is_dir()
    assert live.is_dir() and foreign.is_dir() and not old_foreign.exists()


def test_atomic_write_text_leaves_no_temporary_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "log.json"
    serialization.atomic_write_text(target, "old")
    monkeypatch.setattr(serialization.os, "replace", lambda a, b: (_ for _ in ()).throw(Crash("disk")))
    with pytest.raises(Crash):
        serialization.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["log.json"]


# ----------------------------------------------------------------------------------- (b) no pickle
_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _source_files():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<non-constant>"
    return None


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _violations(tree: ast.AST) -> list[str]:
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in _PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in _PICKLE_MODULES:
                bad.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Name) and node.id in _PICKLE_MODULES | {"eval", "exec"}:
            bad.append(node.id)
        elif isinstance(node, ast.Call):
            fn = _dotted(node.func)
            if fn in ("torch.load", "torch.serialization.load") and _kw(node, "weights_only") is not True:
                bad.append(f"{fn}( without weights_only=True")
            elif fn in ("torch.save", "torch.serialization.save"):
                bad.append(f"{fn}( (pickle-based)")
            elif fn in ("np.load", "numpy.load") and _kw(node, "allow_pickle") not in (None, False):
                bad.append(f"{fn}( with allow_pickle")
            elif fn.endswith(("pd.read_pickle", "pandas.read_pickle")) or fn.split(".")[-1] in (
                "__reduce__",
            ):
                bad.append(fn)
    return bad


def test_checker_catches_violations():
    src = (
        "import pickle\nfrom dill import loads\nimport torch, numpy as np\ntorch.load('f')\n"
        "torch.load('f', weights_only=False)\nnp.load('f', allow_pickle=True)\neval('1')\nexec('x=1')\n"
        "torch.save({}, 'f')\n"
    )
    assert len(_violations(ast.parse(src))) == 8
    ok = "import torch, numpy as np\ntorch.load('f', weights_only=True)\nnp.load('f')\nmodel.eval()\n"
    assert _violations(ast.parse(ok)) == []


def test_no_pickle_or_eval_in_package_source():
    found = {}
    files = list(_source_files())
    assert len(files) > 20
    for path in files:
        bad = _violations(ast.parse(path.read_text(), filename=str(path)))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    assert found == {}


def _mural(seed: int = 0, method: str = "meta_nml") -> MuralReward:
    g = torch.Generator().manual_seed(seed)
    cfg = MuralConfig.small(hidden=(16,), classifier_steps=20, meta_steps=5)
    mr = MuralReward(torch.randn(6, 2, generator=g) + 2, method=method, seed=seed, config=cfg)
    return mr.update(torch.randn(20, 2, generator=g), progress=False)


@pytest.mark.parametrize("kind", ["state", "buffer", "ensemble", "mural"])
def test_checkpoint_holds_only_safetensors_and_json(tmp_path, kind):
    path = tmp_path / "ckpt"
    if kind == "state":
        save_state(path, *_state(1))
    elif kind == "buffer":
        _buffer(0).save(path)
    elif kind == "ensemble":
        _model(0).save(path)
    else:
        _mural().save(path)
    files = sorted(p.name for p in path.rglob("*"))
    assert files and all(name.endswith((".safetensors", ".json")) for name in files), files
    for p in path.rglob("*.safetensors"):  # a safetensors header is JSON: an 8-byte length then '{'
        head = p.read_bytes()[:9]
        assert head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 0


def test_pickle_payload_is_never_executed(tmp_path):
    """A checkpoint whose files were replaced by pickles fails to load instead of running code."""
    import pickle  # noqa: S403 - the test builds a malicious file on purpose

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    path = tmp_path / "ckpt"
    _buffer(0).save(path)
    (path / "tensors.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match="corrupt"):
        ReplayBuffer.load(path)
    (path / "meta.json").write_bytes(pickle.dumps(Boom()))
    with pytest.raises((ValueError, FileNotFoundError)):
        load_state(path)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------------- (c) determinism
def _scramble_global_rng(k: int) -> None:
    torch.manual_seed(1000 + k)
    np.random.seed(1000 + k)  # noqa: NPY002 - the global generators must not matter


def _ensemble_run():
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g)
    nxt = obs + 0.1 * act.sum(-1, keepdim=True) + 0.01 * torch.randn(64, 3, generator=g)
    model = _model(0)
    hist = model.fit((obs, act, nxt), epochs=3, batch_size=16, seed=7, progress=False)
    pred = model.predict(obs[:8], act[:8], generator=torch.Generator().manual_seed(5))
    return [pred, *model.state_dict().values(), torch.tensor(hist["train_loss"])]


def _buffer_run():
    buf = _buffer(0, n=50)
    out = []
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        out += list(buf.sample(16, generator=g))
    return out


def _mural_run(method):
    mr = _mural(0, method)
    states = torch.linspace(-3, 3, 14).reshape(7, 2)
    return [mr(states), *mr.mle_params.values(), *(mr.meta_params or {}).values()]


def _rcad_run():
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    x, y = torch.randn(10, 4, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    loss = rcad_loss(model, x, y)
    loss.backward()
    return [loss.detach(), *(p.grad for p in model.parameters())]


def _agent_run():
    model = _model(0)
    agent = MPCAgent(
        model,
        lambda o, a, n: -n.square().sum(-1),
        None,
        -np.ones(2),
        np.ones(2),
        optimizer=CEM(population=32, elites=4, iterations=2),
        horizon=3,
        particles=2,
        seed=11,
    )
    obs = np.array([0.5, -0.2, 0.1], dtype=np.float32)
    acts = [agent.act(obs) for _ in range(2)]
    return [torch.as_tensor(np.asarray(a)) for a in acts]


RUNS = {
    "ensemble fit+predict": _ensemble_run,
    "buffer sample": _buffer_run,
    "mural meta_nml": lambda: _mural_run("meta_nml"),
    "mural classifier": lambda: _mural_run("classifier"),
    "rcad_loss": _rcad_run,
    "MPCAgent.act": _agent_run,
}


@pytest.mark.parametrize("name", list(RUNS))
def test_same_seed_bit_identical(name):
    results = []
    for k in range(2):
        _scramble_global_rng(k)
        results.append(RUNS[name]())
    a, b = results
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y), name


def test_different_seed_differs():
    """The determinism test above would pass trivially if the seeds were ignored."""
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(32, 3, generator=g), torch.randn(32, 2, generator=g)
    a = _model(0).predict(obs, act, generator=torch.Generator().manual_seed(1))
    b = _model(0).predict(obs, act, generator=torch.Generator().manual_seed(2))
    c = _model(1).predict(obs, act, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b) and not torch.equal(a, c)
    buf = _buffer(0, n=50)
    s1 = buf.sample(16, generator=torch.Generator().manual_seed(1)).obs
    s2 = buf.sample(16, generator=torch.Generator().manual_seed(2)).obs
    assert not torch.equal(s1, s2)


# ----------------------------------------------------------------------------------- (d) bounded memory
def test_buffer_storage_is_bounded():
    buf = ReplayBuffer(64, 4, 2)
    storage = buf._storage()
    ptrs = [t.data_ptr() for t in storage]
    sizes = [t.numel() * t.element_size() for t in storage]
    g = torch.Generator().manual_seed(0)
    total = 0
    for step in range(200):
        n = int(torch.randint(0, 150, (1,), generator=g))
        buf.add_batch(
            torch.randn(n, 4, generator=g),
            torch.randn(n, 2, generator=g),
            torch.randn(n, 4, generator=g),
            torch.randn(n, generator=g),
            torch.zeros(n, dtype=torch.bool),
        )
        if step % 10 == 0:
            buf.add(
                torch.randn(4, generator=g),
                torch.randn(2, generator=g),
                torch.randn(4, generator=g),
                0.0,
                False,
            )
            n += 1
        total += n
    assert total > 50 * buf.capacity and len(buf) == buf.capacity
    assert [t.data_ptr() for t in buf._storage()] == ptrs  # the same tensors, never reallocated
    assert [t.numel() * t.element_size() for t in buf._storage()] == sizes
    assert all(x.shape[0] == buf.capacity for x in buf.all())
