"""Helpers shared by the benchmark scripts: output folders, JSON and the standard plot style."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def out_dir(name: str, out: str | None) -> Path:
    """``results/<name>`` (or ``out``), created."""
    p = Path(out) if out else Path("results") / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor(),
            "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: Path, data: dict) -> None:
    from mbrl.common.serialization import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=float))
    print(f"wrote {path}")
