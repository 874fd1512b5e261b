"""``benchmarks/`` is a package run as ``python -m benchmarks.NAME`` (issue 21, "Layout"; issue 22, "Feedback").

No file edits the import path; a script imports only the library and ``benchmarks._common`` (the one module of
shared code), never another script; every option of every script has a help text and shows its default;
``python -m benchmarks.NAME --help`` and ``safe-density bench NAME --help`` print the script's own options; the
mbrl-lib anchor still loads without our library (it runs under mbrl-lib's interpreter).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("[a-z]*.py"))
#: started by its path under mbrl-lib's interpreter, so it finds the shared module as ``_common`` (its own folder)
ANCHOR = "_mbrl_lib_anchor"
PATH_EDIT = "sys." + "path"  # spelled in two parts so that this file passes its own check


def test_the_scripts_are_found():
    assert {"demo", "hopper_ldm", "ldm_wrap_policy", "pets", "planner_speed", "rcad_small_data"} <= set(SCRIPTS)
    doc = importlib.import_module("benchmarks").__doc__
    assert all(name in doc for name in SCRIPTS), "benchmarks/__init__.py's docstring lists every script"


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")) + sorted((ROOT / "tests" / "benchmarks").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_import_path_edits(path):
    assert PATH_EDIT not in path.read_text(), f"{path} edits the import path; import benchmarks._common instead"


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path`` (``.x`` for a relative one)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, "." * node.level + (node.module or "")))
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py")))
def test_scripts_import_only_the_library_and_common(name):
    ours = {"benchmarks"} | {p.stem for p in BENCH.glob("*.py")}
    allowed = {"_common"} if name == ANCHOR else {"benchmarks._common"}
    bad = [f"line {line}: {mod}" for line, mod in _imports(BENCH / f"{name}.py")
           if (mod.startswith(".") or mod.split(".")[0] in ours) and mod not in allowed]
    assert not bad, f"benchmarks/{name}.py imports other benchmark modules (only {allowed} is shared): {bad}"


def test_the_anchor_loads_without_our_library():
    """``_mbrl_lib_anchor`` and ``_common`` import only the standard library, numpy and torch at module level
    (mbrl-lib's interpreter has its own ``mbrl`` and no ``safe_density``), and the anchor's floor is
    ``_common.matmul_floor``, the one planner_speed measures."""
    code = ("import sys; sys.modules['mbrl'] = sys.modules['safe_density'] = None\n"
            "import _common, _mbrl_lib_anchor as anchor\n"
            "assert anchor.matmul_floor is _common.matmul_floor\n"
            "import torch\n"
            "cfg = dict(ensemble=2, hidden=[4], population=4, particles=2, iterations=1, horizon=2)\n"
            "print(anchor.matmul_floor(3, 2, cfg, torch.device('cpu'), 1) > 0)")
    env = dict(os.environ, PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", code], cwd=BENCH, capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def _parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(getattr(module, "build_parser", None)), f"benchmarks/{name}.py has no build_parser()"
    return module.build_parser()


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_help_and_shows_its_default(name):
    parser = _parser(name)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest} has no help text"
        takes_value = action.nargs != 0   # not a flag
        if action.option_strings and takes_value and not action.required:
            shown = formatter._expand_help(action)
            assert "default" in shown, f"{name} {action.option_strings[0]}: the help does not say its default"


def test_python_m_help_runs():
    out = subprocess.run([sys.executable, "-m", "benchmarks.pets", "--help"], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=""), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "--no-balance-cost" in out.stdout and "(default: [0])" in out.stdout


def test_cli_passes_help_to_the_script(capfd):
    from safe_density.cli import build_parser, main

    # bench and demo leave every option after NAME, --help included, to the script
    for argv, name, rest in ((["bench", "pets", "--help"], "pets", ["--help"]),
                             (["bench", "hopper_ldm", "--quick", "--seed", "3"], "hopper_ldm",
                              ["--quick", "--seed", "3"]),
                             (["demo", "--help"], None, ["--help"])):
        args, extra = build_parser().parse_known_args(argv)
        assert (getattr(args, "name", None), extra) == (name, rest), argv
    assert main(["bench", "pets", "--help"]) == 0   # one subprocess: python -m benchmarks.pets --help
    out = capfd.readouterr().out
    assert "--no-balance-cost" in out and "benchmark name" not in out, out
