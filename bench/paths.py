"""Where the product keeps its files: ``$BENCH_DATA`` or ``~/.local/share/semattack-bench``."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The user's data directory (graphs store, datasets cache, models, results)."""
    env = os.environ.get("BENCH_DATA")
    if env:
        root = Path(env).expanduser()
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        root = base / "semattack-bench"
    return root  # created by the commands that write there, never by those that only read


RESULTS_NAME = "results.duckdb"


def default_results() -> Path:
    """The default results database, ``<data_dir>/results.duckdb``."""
    return data_dir() / RESULTS_NAME


def demo_results() -> Path:
    """Where ``bench demo`` keeps its results by default (its own file, not the default one)."""
    return data_dir() / "demo" / RESULTS_NAME


def demo_hint(path: Path | str | None) -> str:
    """For a message about the default results file being absent or empty: where the demo's
    results are, when a demo has run (empty otherwise, or when ``path`` is another file)."""
    import shlex

    demo = demo_results()
    if path is None or not demo.exists():
        return ""
    if Path(path).expanduser().resolve() != default_results().resolve():
        return ""
    return f"; the demo's results are in {demo}: bench runs --db {shlex.quote(str(demo))}"


def subdir(name: str) -> Path:
    """A sub-folder of the data directory, created on first use."""
    return make_dir(data_dir() / name)


def make_dir(path: Path) -> Path:
    """``mkdir -p``; a folder that cannot be made is one line naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(
            f"cannot create folder {path}: {exc.strerror or exc} "
            "(set BENCH_DATA to a writable folder, or pass the path explicitly)"
        ) from None
    return path
