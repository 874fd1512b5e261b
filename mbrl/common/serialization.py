"""Pickle-free, atomic saving: tensors in safetensors, metadata in JSON.

``save_state(path, tensors, meta)`` writes ``path`` (a directory) containing ``tensors.safetensors`` and
``meta.json``. Loading never executes code: safetensors holds raw buffers and JSON holds plain data.

Atomicity (every save, as a whole): a checkpoint directory is written under a temporary sibling name
(``.NAME.tmp-PID@HOST-XXXX.tmp``), flushed to disk, then swapped in place of ``path`` with two ``os.replace``
calls (``path -> .NAME.old``, temporary -> ``path``) and the old copy removed. A crash at any point leaves
either the previous checkpoint at ``path``, or (between the two renames) the previous checkpoint at
``.NAME.old``, which :func:`resolve_checkpoint` / :func:`load_state` fall back to. Temporary folders and
files left by a crashed save (their process is gone) and a superseded ``.NAME.old`` are removed by the next
save or load of the same path.

Checkpoints made of several parts (e.g. a network and a density model in a sub-folder) use
:func:`atomic_directory` so that all parts are replaced together::

    with atomic_directory(path) as tmp:        # tmp: an empty folder next to `path`
        write_state(tmp, tensors, meta)        # non-atomic writes into the folder are fine here
        density.save(tmp / "density")
    # on success `tmp` has replaced `path`; on an exception `path` is untouched and `tmp` removed

    tensors, meta = load_state(path)           # and read every part from resolve_checkpoint(path)
    density = Density.load(resolve_checkpoint(path) / "density")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale",
    "load_state",
    "resolve_checkpoint",
    "save_state",
    "write_state",
]

_TENSORS = "tensors.safetensors"
_META = "meta.json"
_ACTIVE: set[str] = set()  # temporary paths of saves running in this process (never "stale")
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9_.-]*)-[^/]*\.tmp$")
_FOREIGN_STALE_S = 24 * 3600  # a temporary of another host (shared file system) is stale after a day
_LEGACY_TMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile names of earlier versions


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64]


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-{os.getpid()}@{_host()}-"


def _old(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but belongs to someone else, or cannot tell
        return True
    return True


def _fsync_path(p: str | os.PathLike) -> None:
    """Flush a file or directory entry to disk; a no-op where it cannot be opened or synced."""
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_dir(d: Path) -> None:
    """Flush a directory entry (the renames) to disk."""
    _fsync_path(d)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove what crashed saves of ``path`` left behind; return the removed paths.

    Removed: temporary folders/files ``.NAME.tmp-PID@HOST-*.tmp`` of this host whose process ``PID`` is gone
    (or is this process but no save of it is running), those of other hosts (a shared file system) once a day
    old, temporary names of earlier versions, and ``.NAME.old`` when
    ``path`` itself exists (it is then a superseded copy; without ``path`` it is the previous checkpoint
    and is kept). Errors (e.g. a read-only folder) are ignored.
    """
    path = Path(path)
    parent = path.parent
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP_RE.match(p.name)
        if m and m.group("name") == path.name:
            pid = int(m.group("pid"))
            if str(p) in _ACTIVE:
                continue
            if m.group("host") != _host():  # another machine's save: its process cannot be checked from here
                try:
                    if time.time() - p.stat().st_mtime < _FOREIGN_STALE_S:
                        continue
                except OSError:
                    continue
            elif pid != os.getpid() and _pid_alive(pid):
                continue
        else:
            m = _LEGACY_TMP_RE.match(p.name)
            if not (m and m.group("name") == path.name):
                continue
        _remove(p)
        removed.append(p)
    old = _old(path)
    if path.exists() and old.exists():
        _remove(old)
        removed.append(old)
    return removed


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The directory that holds the checkpoint saved at ``path``: ``path`` itself, or ``.NAME.old`` when a
    crash between the two renames of a save left only that. Raises ``FileNotFoundError`` naming ``path``."""
    path = Path(path)
    if path.exists():
        return path
    old = _old(path)
    if old.is_dir():
        return old
    raise FileNotFoundError(f"no checkpoint at {path}")


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace ``path`` by the complete folder ``tmp`` (two renames; see the module docstring)."""
    old = _old(path)
    if path.exists():
        if old.exists():
            _remove(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        _remove(old)


def _fsync_tree(d: Path) -> None:
    for root, _, files in os.walk(d):
        for f in files:
            _fsync_path(os.path.join(root, f))


def _umask() -> int:
    """The process's umask: from ``/proc/self/status`` where there is one (Linux), else by setting it and
    putting it back (POSIX has no read-only call)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _share_modes(tmp: str | os.PathLike, directory: bool) -> None:
    """Give a temporary file or folder (``mkstemp``/``mkdtemp`` create them private, 0600/0700) the mode a plain
    ``open``/``mkdir`` would have under the user's umask (0644/0755 with the usual 022), so that colleagues can
    read a shared results folder. Files inside a temporary folder are made by ``open`` and already follow it."""
    os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Write a directory atomically: yield an empty temporary folder next to ``path``; when the block
    finishes without an exception it replaces ``path`` as a whole (flushed to disk first), otherwise it is
    removed and ``path`` is left as it was. Stale leftovers of earlier crashed saves are cleaned first.

    A crash (even ``SIGKILL``) at any point leaves the previous checkpoint readable through
    :func:`resolve_checkpoint` (and so :func:`load_state`).
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"path must name a directory to create, got {str(path)!r}")
    if path.exists() and not path.is_dir():
        raise ValueError(f"path {path} exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp"))
    _share_modes(tmp, directory=True)
    _ACTIVE.add(str(tmp))
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _ACTIVE.discard(str(tmp))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to the file ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
    _ACTIVE.add(tmp)
    try:
        _share_modes(tmp, directory=False)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        _ACTIVE.discard(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


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


def _meta_text(meta) -> str:
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict of JSON-serialisable values, got {type(meta).__name__}")
    try:
        return json.dumps(meta, indent=1, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serialisable: {exc}") from exc


def write_state(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors.safetensors`` and ``meta.json`` into the existing folder ``directory`` (not atomic
    by itself: use it inside :func:`atomic_directory`, or use :func:`save_state`)."""
    return _write(Path(directory), _cpu_tensors(tensors), _meta_text(meta))


def _write(directory: Path, cpu: dict[str, torch.Tensor], meta_text: str) -> Path:
    save_file(cpu, str(directory / _TENSORS))
    _share_modes(directory / _TENSORS, directory=False)   # safetensors creates its file private (0600)
    with open(directory / _META, "w") as f:
        f.write(meta_text)
        f.flush()
        os.fsync(f.fileno())
    return directory


def save_state(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically save ``tensors`` (safetensors) and JSON-serialisable ``meta`` into directory ``path``.

    Raises:
        TypeError: naming ``tensors`` (not a ``dict`` of ``str -> Tensor``) or ``meta`` (not JSON data).
    """
    path = Path(path)
    cpu = _cpu_tensors(tensors)  # validate before touching the disk
    meta_text = _meta_text(meta)
    with atomic_directory(path) as tmp:
        _write(tmp, cpu, meta_text)
    return path


def load_state(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    """Load ``(tensors, meta)`` written by :func:`save_state`. Never unpickles anything.

    Falls back to the previous checkpoint when a crash interrupted a save between its two renames, and
    removes stale leftovers of crashed saves of ``path``.
    """
    path = Path(path)
    clean_stale(path)
    try:
        where = resolve_checkpoint(path)
    except FileNotFoundError:
        where = path
    if not (where / _TENSORS).is_file() or not (where / _META).is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (expected {_TENSORS} and {_META})")
    try:
        tensors = load_file(str(where / _TENSORS), device=str(device))
        with open(where / _META) as f:
            meta = json.load(f)
    except (OSError, RuntimeError):
        raise
    except Exception as exc:  # safetensors' SafetensorError, json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"path {path} holds a corrupt checkpoint: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"path {path} holds a corrupt checkpoint: {_META} is not a JSON object")
    return tensors, meta
