"""The README's code runs as written.

Every ```python block of README.md is executed, each in a fresh namespace, with the sizes in ``SMALL``
substituted (fewer transitions, steps and epochs; the README states its full sizes and their times). Every
substitution must still match the README, so a README edit cannot silently skip one. The ```bash blocks'
``safe-density`` lines must parse with the real command-line parser, and the scripts and make targets they
name must exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

#: (text in README.md, replacement used by this test): smaller sizes, same code.
SMALL = [
    ("noises=(0.0, 0.05, 0.1), max_steps=500)", "noises=(0.0, 0.05, 0.1), max_steps=50)"),
    ("ldm.fit(obs, act, next_obs)  ", "ldm.fit(obs, act, next_obs, steps=20)  "),
    ("for _ in range(2000):", "for _ in range(300):"),
    ("hidden=(200,) * 4)", "hidden=(16,))"),
    ("model.fit(buffer, epochs=5)", "model.fit(buffer, epochs=1)"),
    ("mural.update(visited)", "mural.update(visited, steps=5)"),
    ("CEM(population=200, elites=20, iterations=3), horizon=15, particles=5",
     "CEM(population=8, elites=2, iterations=1), horizon=3, particles=2"),
    ("for _ in range(200):  ", "for _ in range(3):  "),
]

BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
BASH = re.findall(r"^```bash\n(.*?)^```", README, re.S | re.M)


def _small(code: str) -> str:
    for old, new in SMALL:
        code = code.replace(old, new)
    return code


def test_every_substitution_applies():
    text = "\n".join(BLOCKS)
    missing = [old for old, _ in SMALL if old not in text]
    assert not missing, f"README snippets changed; update SMALL in tests/test_readme.py: {missing}"
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("i", range(len(BLOCKS)), ids=lambda i: f"block{i}")
def test_python_block_runs(i, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)  # anything a snippet writes stays out of the checkout
    code = _small(BLOCKS[i])
    torch.manual_seed(0)
    exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": "__readme__"})


def _commands(kind: str) -> list[list[str]]:
    out = []
    for block in BASH:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(kind):
                out.append(shlex.split(line))
    return out


def test_bash_commands_parse():
    from safe_density.cli import build_parser

    cli = _commands("safe-density")
    assert cli, "the README shows no safe-density command"
    for argv in cli:
        args, rest = build_parser().parse_known_args(argv[1:])  # argparse exits (status 2) on a bad option
        assert not rest or args.command in ("bench", "demo"), argv
        if args.command == "bench":
            assert (ROOT / "benchmarks" / f"{args.name}.py").is_file(), argv
    modules = 0
    for argv in _commands("python "):
        if argv[1].endswith(".py"):
            assert (ROOT / argv[1]).is_file(), argv
        elif argv[1] == "-m":   # python -m benchmarks.NAME / mbrl.train: the module exists, and its parser takes
            modules += 1        # the options shown (benchmarks have build_parser())
            name = argv[2]
            assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), argv
            if name.startswith("benchmarks."):
                import importlib

                importlib.import_module(name).build_parser().parse_args(argv[3:])
    assert modules, "the README shows no python -m command"
    makefile = (ROOT / "Makefile").read_text()
    for argv in _commands("make "):
        assert re.search(rf"^{re.escape(argv[1])}:", makefile, re.M), argv
