"""Pickle-free, atomic saving: tensors in safetensors, metadata in JSON.

``save_state(path, tensors, meta)`` writes ``path`` (a directory) containing ``tensors.safetensors`` and
``meta.json``. The directory is written next to the target under a temporary name and moved into place
with ``os.replace``, so a crash mid-save leaves any previous checkpoint intact. Loading never executes
code: safetensors holds raw buffers and JSON holds plain data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["atomic_write_text", "load_state", "save_state"]

_TENSORS = "tensors.safetensors"
_META = "meta.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically save ``tensors`` (safetensors) and JSON-serialisable ``meta`` into directory ``path``."""
    path = Path(path)
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError("tensors must be a dict of str -> torch.Tensor")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, str(tmp / _TENSORS))
        with open(tmp / _META, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_state(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Load ``(tensors, meta)`` written by :func:`save_state`. Never unpickles anything."""
    path = Path(path)
    if not (path / _TENSORS).is_file() or not (path / _META).is_file():
        # A crash between the two renames of save_state leaves the previous version at `.name.old`.
        old = path.with_name(f".{path.name}.old")
        if (old / _TENSORS).is_file() and (old / _META).is_file():
            path = old
        else:
            raise FileNotFoundError(f"no checkpoint at {path} (expected {_TENSORS} and {_META})")
    tensors = load_file(str(path / _TENSORS), device=str(device))
    with open(path / _META) as f:
        meta = json.load(f)
    return tensors, meta
