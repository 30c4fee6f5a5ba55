"""Where the product keeps its files: ``$BENCH_DATA`` or ``~/.local/share/semattack-bench``."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The user's data directory (graphs store, datasets cache, models, results)."""
    env = os.environ.get("BENCH_DATA")
    if env:
        root = Path(env).expanduser()
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        root = base / "semattack-bench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def subdir(name: str) -> Path:
    """A sub-folder of the data directory, created on first use."""
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
