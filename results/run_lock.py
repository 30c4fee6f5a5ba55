"""The run lock: one process at a time runs a given run of a results file.

A lock file beside the results file, ``.<name>.<sha256(run id)[:16]>.lock``, held with
``flock`` for the length of the run: the lock goes with the process, even on ``kill -9``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.errors import StoreBusy
from results.schema import now


@contextmanager
def run_lock(path: Path, run_id: str) -> Iterator[None]:
    """Hold the run ``run_id`` of the results file ``path`` for this process: a second process
    running the same run at the same time is refused. The lock file is removed when the run
    ends; a process that opened it just before that sees the file gone once it holds the lock,
    and takes a fresh one."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    lock = path.with_name(f".{path.name}.{digest}.lock")
    while True:
        fh = open(lock, "a+", encoding="utf-8")  # closed below, after the unlink
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreBusy(
                f"run {run_id!r} is already running on {path} ({holder}): wait for it to finish, "
                "or give this one another {name} or {db}",
                str(path),
                options=["name", "db"],
            ) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fh.fileno()).st_ino:
            break
        fh.close()  # the holder before us removed this file as we opened it: take the new one
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} since {now()} UTC")
        fh.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)  # while held: nobody can take this file's lock in between
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
