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


def _cpu_tensors(tensors) -> dict[str, torch.Tensor]:
    """Validated CPU, contiguous copies-or-views of ``tensors`` with no two sharing memory (safetensors
    refuses shared storage, e.g. the same tensor under two names or two views of one buffer)."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of str -> torch.Tensor, got {type(tensors).__name__}")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        if not isinstance(k, str):
            raise TypeError(f"tensors keys must be str, got {k!r}")
        if k == "__metadata__":  # safetensors reserves it for the header: the file would not load back
            raise ValueError("tensors key '__metadata__' is reserved by safetensors")
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"tensors[{k!r}] must be a torch.Tensor, got {type(v).__name__}")
        if v.is_complex() or v.is_sparse or v.layout != torch.strided:
            raise ValueError(f"tensors[{k!r}] must be a dense real tensor, got {v.dtype} / {v.layout}")
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        elif t.numel() and t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # a view into a larger buffer: store only its own elements
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically save ``tensors`` (safetensors) and JSON-serialisable ``meta`` into directory ``path``.

    Raises:
        TypeError: naming ``tensors`` (not a ``dict`` of ``str -> Tensor``) or ``meta`` (not JSON data).
    """
    path = Path(path)
    cpu = _cpu_tensors(tensors)
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict of JSON-serialisable values, got {type(meta).__name__}")
    try:
        meta_text = json.dumps(meta, indent=1, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serialisable: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        save_file(cpu, str(tmp / _TENSORS))
        with open(tmp / _META, "w") as f:
            f.write(meta_text)
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


def load_state(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Load ``(tensors, meta)`` written by :func:`save_state`. Never unpickles anything."""
    path = Path(path)
    if not (path / _TENSORS).is_file() or not (path / _META).is_file():
        # A crash between the two renames of save_state leaves the previous version at `.name.old`.
        old = path.with_name(f".{path.name}.old")
        if (old / _TENSORS).is_file() and (old / _META).is_file():
            path = old
        else:
            raise FileNotFoundError(f"no checkpoint at {path} (expected {_TENSORS} and {_META})")
    try:
        tensors = load_file(str(path / _TENSORS), device=str(device))
        with open(path / _META) as f:
            meta = json.load(f)
    except (OSError, RuntimeError):
        raise
    except Exception as exc:  # safetensors' SafetensorError, json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"path {path} holds a corrupt checkpoint: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"path {path} holds a corrupt checkpoint: {_META} is not a JSON object")
    return tensors, meta
