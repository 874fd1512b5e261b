"""The architecture's rules, checked on the source (docs/design.md, "Architecture").

* Layering: ``benchmarks -> safe_density -> mbrl``. ``mbrl`` never imports ``safe_density``; the library never
  imports ``benchmarks``; ``mbrl.common`` imports nothing else from ``mbrl`` (neutral ground both stand on).
* Small functions: none over 80 lines, in the library and the benchmarks.

Imports are read with :mod:`ast`, including imports inside functions and ``importlib.import_module`` /
``__import__`` calls with a literal name (lazy imports count too).
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every absolute import in ``source`` (``from a import b`` gives ``a.b`` when ``a`` is a
    bare top-level package, so ``from mbrl import agent`` counts as ``mbrl.agent``). Relative imports are skipped:
    they stay inside their package."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if "." not in node.module:
                out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(folder: str, forbidden) -> list[str]:
    """``file:line module`` for every import under ``ROOT/folder`` that ``forbidden(module)`` rejects."""
    bad = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        bad += [f"{f.relative_to(ROOT)}:{line} {m}" for line, m in imported_modules(f.read_text())
                if forbidden(m)]
    return bad


def test_import_checker_sees_every_kind_of_import():
    src = textwrap.dedent("""
        import mbrl.common.validation
        from mbrl.common import ActionBox
        from mbrl import common
        from . import seeding
        import mbrl.agent
        from mbrl.planning import CEM
        from mbrl import rollout
        import safe_density
        def f():
            from benchmarks._common import out_dir
            return importlib.import_module("mbrl.tasks")
    """)
    assert [m for _, m in imported_modules(src)] == [
        "mbrl.common.validation", "mbrl.common", "mbrl.common", "mbrl.agent", "mbrl.planning", "mbrl.rollout",
        "safe_density", "benchmarks._common", "mbrl.tasks"]


def test_mbrl_never_imports_safe_density():
    assert not violations("mbrl", lambda m: _is(m, "safe_density"))


@pytest.mark.parametrize("package", ["mbrl", "safe_density"])
def test_the_library_never_imports_benchmarks(package):
    assert not violations(package, lambda m: _is(m, "benchmarks"))


def test_mbrl_common_imports_nothing_else_from_mbrl():
    files = {f.name for f in (ROOT / "mbrl" / "common").glob("*.py")}
    assert files >= {"__init__.py", "action_box.py", "validation.py", "seeding.py", "serialization.py"}
    assert not violations("mbrl/common", lambda m: _is(m, "safe_density") or (_is(m, "mbrl")
                                                                               and not _is(m, "mbrl.common")))


def long_functions(folder: str) -> list[str]:
    out = []
    for f in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("folder", ["mbrl", "safe_density", "benchmarks"])
def test_no_function_over_80_lines(folder):
    assert not long_functions(folder)
