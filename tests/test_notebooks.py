"""Every tutorial notebook runs top to bottom, shows its plots, and is committed with its outputs.

Readers of the repository see each notebook's outputs (text and figures) without running it, because the
``notebooks/NN_*.ipynb`` files are committed *executed*. These tests keep them in sync:

* the notebook's cells are what its generator ``notebooks/_make_NN.py`` writes (no hand edits, no stale
  generator);
* it runs without errors in a Jupyter kernel with the inline matplotlib backend (as in Jupyter: no forced
  ``Agg``), and every cell that calls ``plt.show()`` produces a figure;
* the committed file holds outputs for every code cell that produces some, of the same kinds (text, figure)
  as a fresh run;
* no output (committed or fresh) holds a warning or an absolute path of the machine that ran it: readers see
  what the code says, not the noise of one environment (fix the cause: ``progress=False``, ``warn=False``
  where the notebook reports the event itself, relative paths).

After changing a generator, refresh the committed notebooks (regenerate, execute, store outputs) with::

    python tests/test_notebooks.py            # all notebooks, or: python tests/test_notebooks.py 02
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
INLINE = "module://matplotlib_inline.backend_inline"
REFRESH = "python tests/test_notebooks.py"
ABSOLUTE_PATH = re.compile(r"(/work/|/home/|/tmp/|/Users/|/root/|\b[A-Za-z]:\\)")


def _generator(path: Path) -> Path:
    return path.parent / f"_make_{path.name[:2]}.py"


def execute(nb, cwd: Path):
    """Run ``nb`` in place in a fresh kernel with Jupyter's inline backend (figures become PNG outputs)."""
    from nbclient import NotebookClient

    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE  # the Makefile exports Agg for scripts; a kernel shows figures inline
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old
    return nb


def generate(path: Path, out_dir: Path) -> Path:
    """Run ``_make_NN.py`` on a copy in ``out_dir/notebooks`` with ``out_dir`` as working directory (generators
    write next to themselves or to ``notebooks/`` of the working directory: both land in the copy's folder)."""
    src = _generator(path)
    (out_dir / "notebooks").mkdir(exist_ok=True)
    copy = out_dir / "notebooks" / src.name
    copy.write_text(src.read_text())
    subprocess.run([sys.executable, str(copy)], check=True, capture_output=True, cwd=out_dir)
    return out_dir / "notebooks" / path.name


def _code_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _kinds(cell) -> set[str]:
    """What a code cell shows: 'figure' (a PNG), 'text' (printed or displayed text), 'error'."""
    kinds = set()
    for o in cell.get("outputs", []):
        if o.output_type == "error":
            kinds.add("error")
        elif o.output_type == "stream" and o.get("name") == "stdout":
            kinds.add("text")
        elif o.output_type in ("display_data", "execute_result"):
            data = o.get("data", {})
            kinds.add("figure" if "image/png" in data else "text" if "text/plain" in data else "other")
    return kinds - {"other"}


def _output_texts(cell):
    """``(where, text)`` of each output of a code cell: stream name, output type + text MIME type, or 'error'."""
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            yield o.get("name", "stream"), o.get("text", "")
        elif o.output_type in ("display_data", "execute_result"):
            for mime, text in o.get("data", {}).items():
                if mime.startswith("text/"):
                    yield f"{o.output_type} {mime}", text if isinstance(text, str) else "".join(text)
        elif o.output_type == "error":
            yield "error", "\n".join([o.get("ename", ""), o.get("evalue", ""), *o.get("traceback", [])])


def output_problems(nb) -> list[str]:
    """What a notebook's outputs must not show: warnings (stderr text with 'Warning', or any 'Warning:' line)
    and absolute paths (``ABSOLUTE_PATH``). One line per problem, naming the code cell."""
    problems = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        for where, text in _output_texts(cell):
            if (where == "stderr" and "Warning" in text) or "Warning:" in text:
                problems.append(f"code cell {i} ({where}) shows a warning: {text.strip()[:300]!r}")
            found = ABSOLUTE_PATH.search(text)
            if found:
                problems.append(f"code cell {i} ({where}) shows an absolute path {found.group(0)!r}: "
                                f"{text.strip()[:300]!r}")
    return problems


def _clean(nb):
    """Drop volatile metadata so that refreshed notebooks differ only where their outputs do."""
    for c in nb.cells:
        c.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 1
    for path in NOTEBOOKS:
        assert _generator(path).is_file(), f"{path.name} has no generator {_generator(path).name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_generator(path, tmp_path):
    fresh = nbformat.read(generate(path, tmp_path), as_version=4)
    committed = nbformat.read(path, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in fresh.cells], (
        f"{path.name} differs from what {_generator(path).name} writes: run `{REFRESH} {path.name[:2]}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_shows_plots_and_is_committed_with_outputs(path, tmp_path):
    committed = nbformat.read(path, as_version=4)
    nb = execute(nbformat.read(path, as_version=4), tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0].get("evalue") if errors else ""
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        if "plt.show()" in c.source:
            assert "figure" in _kinds(c), f"{path.name}: a cell calling plt.show() showed no figure:\n{c.source}"
    stored = [c for c in committed.cells if c.cell_type == "code"]
    for i, (fresh_cell, old_cell) in enumerate(zip(code, stored)):
        assert _kinds(old_cell) >= _kinds(fresh_cell), (
            f"{path.name}, code cell {i}: the committed notebook shows {sorted(_kinds(old_cell))} but a fresh "
            f"run shows {sorted(_kinds(fresh_cell))}: run `{REFRESH} {path.name[:2]}` and commit the notebook")
    problems = output_problems(nb)
    assert not problems, f"{path.name}, fresh run:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_show_no_warning_and_no_absolute_path(path):
    problems = output_problems(nbformat.read(path, as_version=4))
    assert not problems, (f"{path.name}, committed outputs:\n" + "\n".join(problems)
                          + f"\nfix the cause in {_generator(path).name}, then run `{REFRESH} {path.name[:2]}`")


def refresh(selected: list[str]) -> None:
    """Regenerate, execute and store the selected notebooks (all when ``selected`` is empty)."""
    for path in NOTEBOOKS:
        if selected and path.name[:2] not in selected:
            continue
        subprocess.run([sys.executable, str(_generator(path))], check=True, cwd=ROOT)
        nb = execute(nbformat.read(path, as_version=4), ROOT / "notebooks")
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        if errors:
            raise SystemExit(f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}")
        problems = output_problems(nb)
        if problems:  # stored outputs say what the code shows, not one machine's warnings or paths
            raise SystemExit(f"{path.name} not written:\n" + "\n".join(problems))
        nbformat.write(_clean(nb), str(path))
        print(f"wrote {path.relative_to(ROOT)} with outputs")


if __name__ == "__main__":
    refresh(sys.argv[1:])
