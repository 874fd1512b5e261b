"""``safe-density bench`` and ``safe-density demo`` from a wheel installed in a fresh virtual environment.

The wheel is built from a copy of the source tree (nothing is written into the checkout), installed without
dependencies into a new venv whose only link to this environment is a ``.pth`` line naming this environment's
site-packages (so torch, gymnasium, ... are found without a download, while ``safe_density`` and ``mbrl``
come from the wheel), and run from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "*.egg-info", "results", "runs", "__pycache__",
                               ".hypothesis", ".pytest_cache", ".ipynb_checkpoints")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_SKIP)
    _run([sys.executable, "-m", "pip", "wheel", "-q", str(src), "--no-deps", "--no-build-isolation", "-w",
          str(tmp / "wh")])
    (wheel,) = (tmp / "wh").glob("safe_density-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_outer_env_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    return py.parent


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="", MPLBACKEND="Agg")


@pytest.mark.slow
def test_installed_package_is_the_wheel(installed, tmp_path):
    out = _run([str(installed / "python"), "-c", "import mbrl, safe_density; print(safe_density.__file__); "
                "print(mbrl.__file__)"], cwd=tmp_path, env=_env()).stdout.split()
    assert all(str(installed.parent) in p for p in out), out


@pytest.mark.slow
def test_bench_runs_from_the_installed_wheel(installed, tmp_path):
    exe = installed / "safe-density"
    # a benchmark that runs in seconds (mural_reward_shape --quick, used before, took two minutes at the MURAL
    # defaults of issue 19)
    _run([str(exe), "bench", "fit_speed", "--no-anchor", "--transitions", "200", "--epochs", "1", "--rounds", "1",
          "--out", str(tmp_path / "fs")], cwd=tmp_path, env=_env())
    res = json.loads((tmp_path / "fs" / "fit_speed_1t.json").read_text())
    assert res["transitions"] == 200 and (tmp_path / "fs" / "fit_speed_1t.png").stat().st_size > 0
    # the scripts it ran are the wheel's copies, not this checkout's
    names = _run([str(installed / "python"), "-c", "from safe_density.cli import _benchmarks_dir; "
                  "print(_benchmarks_dir())"], cwd=tmp_path, env=_env()).stdout.strip()
    assert Path(names).is_relative_to(installed.parent) and not Path(names).is_relative_to(ROOT)


@pytest.mark.slow
def test_demo_and_every_benchmark_start_from_the_installed_wheel(installed, tmp_path):
    """Each script imports as benchmarks.NAME from the installed copies (benchmarks._common included) and parses its
    options."""
    exe = installed / "safe-density"
    _run([str(exe), "demo", "--help"], cwd=tmp_path, env=_env())
    for name in ("hopper_ldm", "pets", "planner_speed", "rcad_small_data", "mural_tasks"):
        _run([str(exe), "bench", name, "--help"], cwd=tmp_path, env=_env())
    bad = subprocess.run([str(exe), "bench", "no_such_benchmark"], capture_output=True, text=True, cwd=tmp_path,
                         env=_env())
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr
