"""``ResultStore``: the DuckDB file a sweep writes its rows to and the tables read from.

The store opens the file only for the length of one operation (a batch of rows is one
transaction), so ``bench table`` or ``bench sql`` can read a file while a sweep writes to
it between batches; a store that finds the file locked retries for ``lock_timeout`` seconds,
then names the process that holds it (``results.connection``). A committed batch survives
``kill -9`` (DuckDB's write-ahead log); an interrupted one leaves nothing behind. Reading never
writes the file (``results.migrate``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from bench.errors import BenchError, unknown
from bench.numerics import row_numerics_id
from bench.paths import default_results, demo_hint
from results.connection import atomic, check_size, connect, opened
from results.merge import MergeReport, merge_file
from results.migrate import read_meta, setup, upgraded
from results.records import (
    CASTS,
    check_shard_count,
    computed_by,
    mixing,
    require_run,
    row_columns,
    run_machines,
    transfer_columns,
    verify_stored,
)
from results.run_lock import run_lock
from results.schema import (
    ROW_COLUMNS,
    RUN_COLUMNS,
    TRANSFER_COLUMNS,
    Combination,
    ResultKey,
    ResultRow,
    RunConfig,
    TransferRow,
    now,
    run_values,
)
from results.views import install_views, scalar

READ_LOCK_TIMEOUT = 10.0  # seconds a reader waits for a sweep's batch write to end


def read_results(path: str | Path | None) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A read-only connection to an existing results database, with the views."""
    return ResultStore(path, create=False, lock_timeout=READ_LOCK_TIMEOUT).reader()


def default_db_path() -> Path:
    """``<data_dir>/results.duckdb``."""
    return default_results()


class ResultStore:
    """A results database: runs, combinations and result rows, with the views on top.

    ``ResultStore(path)`` creates the file, or upgrades an older schema in place (one
    transaction). ``create=False`` refuses a missing file instead, and writes nothing until a
    write: reading a file of an older schema reads an upgraded copy in memory, and the first
    write upgrades the file. A file with a newer schema is refused without being touched.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True, lock_timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.lock_timeout = lock_timeout
        self._older = False  # the file's schema is older: reads go through an upgraded copy
        self._current = False  # its schema and stored views are this version's (else the next write sets them up)
        if not self.path.exists():
            if not create:
                raise BenchError(
                    f"no results database at {self.path}: run a sweep first (`bench run`) or name another with "
                    f"{{db}}{demo_hint(self.path)}",
                    options=["db"],
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            with self._connect(read_only=True) as con:
                check_size(con, self.path)
                meta = read_meta(con, self.path)
            self._older, self._current = meta.older, meta.current
        if create and not self._current:
            self._set_up()

    # ------------------------------------------------------------------ connections
    def _connect(self, read_only: bool = False) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return connect(self.path, self.lock_timeout, read_only=read_only)

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on the file; the first one creates or upgrades the schema and the views."""
        with self._connect() as con, atomic(con):
            if not self._current:
                setup(con, self.path)
            yield con
        self._older, self._current = False, True

    def _set_up(self) -> None:
        """Create or upgrade the schema and refresh the views now, not at the next write."""
        with self._transaction():
            pass

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection at this version's schema (an older file: an upgraded copy in memory)."""
        if self._older:
            with opened(self.path, self.lock_timeout, lambda: upgraded(self.path)) as con:
                yield con
        else:
            with self._connect(read_only=True) as con:
                yield con

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection with this version's views (for queries, tables and plots)."""
        with self._read() as con:
            install_views(con, temporary=True)
            yield con

    def run_lock(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run ``run_id`` of this file for one process (``results.run_lock``): a second
        process running the same run at the same time is refused."""
        return run_lock(self.path, run_id)

    # ------------------------------------------------------------------ runs
    def begin_run(self, config: RunConfig) -> str:
        """Record a run and return its id; the same configuration again resumes that run.

        A stored run of the same name with a different configuration is refused, naming
        the fields that differ.
        """
        run_id = config.run_id
        with self._transaction() as con:
            stored = con.execute("SELECT config, shard_count FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if stored is not None:
                self._same_config(RunConfig.from_json(stored[0]), config)
                check_shard_count(run_id, stored[1], config.shard_count, self.path)
                con.execute(
                    "UPDATE runs SET shards = list_sort(list_distinct(list_append(shards, ?))) WHERE run_id = ?",
                    [config.shard_index, run_id],
                )
                return run_id
            config = config if config.created else config.with_created(now())
            names = [name for name, _ in RUN_COLUMNS]
            con.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", run_values(config)
            )
        return run_id

    def run_config(self, run_id: str) -> RunConfig:
        with self._read() as con:
            row = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                raise unknown("run", run_id, [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()])
        return RunConfig.from_json(row[0])

    def finish_run(self, run_id: str) -> None:
        """Mark the run finished (its time goes in ``runs.finished``)."""
        with self._transaction() as con:
            if scalar(con, "UPDATE runs SET finished = ? WHERE run_id = ?", [now(), run_id]) == 0:
                raise unknown("run", run_id, [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()])

    # ------------------------------------------------------------------ machines
    def machines(self, run_id: str, *, with_rows: bool = False) -> dict[str, dict]:
        """The run's machines: id → numerics fingerprint (``with_rows``: only those that computed rows)."""
        with self._read() as con:
            return {m.machine: m.fingerprint for m in run_machines(con, run_id) if m.rows or not with_rows}

    def use_machine(
        self, run_id: str, fingerprint: dict, *, allow_mixed: bool = False, peers: dict[str, dict] | None = None
    ) -> str:
        """Record that this machine computes rows of ``run_id``; returns its id.

        Refused when other machines (another fingerprint: device, CPU code path, versions,
        precision, B, CPU-numerics mode) computed the run's stored rows, or are computing them
        now (``peers``: a cluster's other workers, id → fingerprint), unless ``allow_mixed``:
        then the difference is recorded in ``machines.accepted``.
        """
        machine = row_numerics_id(fingerprint)
        with self._transaction() as con:
            require_run(con, run_id)
            others = {**computed_by(con, run_id), **(peers or {})}
            others.pop(machine, None)
            accepted = mixing(others, fingerprint, f"run {run_id!r} in {self.path}", allow_mixed)
            con.execute(
                "INSERT INTO machines VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [run_id, machine, json.dumps(fingerprint, sort_keys=True), accepted, now()],
            )
        return machine

    # ------------------------------------------------------------------ combinations and rows
    def write_combinations(self, run_id: str, combinations: Iterable[Combination]) -> None:
        """Record the run's target sets with their eligible/attacked counts (idempotent)."""
        combos = list(combinations)
        with self._transaction() as con:
            require_run(con, run_id)
            if combos:  # one columnar insert: NUS-WIDE has 85,320 combinations of size 3
                con.execute(
                    "INSERT INTO combinations SELECT $run, unnest($ids), unnest($sizes), unnest($labels), "
                    "unnest($eligible), unnest($attacked), FALSE ON CONFLICT DO NOTHING",
                    {
                        "run": run_id,
                        "ids": [c.combo_id for c in combos],
                        "sizes": [c.size for c in combos],
                        "labels": [list(c.labels) for c in combos],
                        "eligible": [c.eligible for c in combos],
                        "attacked": [c.attacked for c in combos],
                    },
                )

    def write_rows(
        self,
        run_id: str,
        rows: Sequence[ResultRow],
        complete: Iterable[int] = (),
        artifacts: Sequence[tuple[ResultKey, str]] = (),
        *,
        transfer: Sequence[TransferRow] = (),
        verify: bool = False,
    ) -> int:
        """Store a batch of rows in one transaction and mark the ``complete`` combinations done.

        Rows whose key is already stored are skipped (the first write wins), so writing a
        batch twice stores it once. ``artifacts`` pairs a row key with its saved adversarial
        example (a path relative to this file's folder). ``transfer``: the rows' adversarial
        images evaluated on other models (``bench.sweep.transfer``), stored in the same
        transaction (likewise first write wins). ``verify``: a row, or transfer row, whose key
        is stored already must equal the stored one in every number (all but ``seconds`` and
        ``machine``), else the first that differs is refused in one line and nothing of the
        batch is stored (a run recomputed to add transfer targets). Returns how many rows were new.
        """
        columns = row_columns(rows)
        done = sorted({int(c) for c in complete})
        with self._transaction() as con:
            require_run(con, run_id)
            missing = scalar(
                con,
                "SELECT list_sort(list(x)) FROM (SELECT DISTINCT unnest($ids) AS x "
                "EXCEPT SELECT combo_id FROM combinations WHERE run_id = $run)",
                {"ids": sorted(set(columns["combo_id"]) | set(done)), "run": run_id},
            )
            if missing:
                raise ValueError(f"run {run_id!r} has no combinations {missing}: write_combinations first")
            if verify:
                verify_stored(con, run_id, rows, columns, transfer)
            added = 0
            if rows:
                select = ", ".join(f"unnest(${c}{CASTS.get(c, '')})" for c in ROW_COLUMNS)
                added = scalar(
                    con,
                    f"INSERT INTO results (run_id, {', '.join(ROW_COLUMNS)}) "
                    f"SELECT $run_id, * FROM (SELECT {select}) ON CONFLICT DO NOTHING",
                    {"run_id": run_id, **columns},
                )
            if transfer:
                select = ", ".join(f"unnest(${c})" for c in TRANSFER_COLUMNS)
                con.execute(
                    f"INSERT INTO transfer (run_id, {', '.join(TRANSFER_COLUMNS)}) "
                    f"SELECT $run_id, * FROM (SELECT {select}) ON CONFLICT DO NOTHING",
                    {"run_id": run_id, **transfer_columns(transfer)},
                )
            if artifacts:
                con.executemany(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [[run_id, *key, path] for key, path in artifacts],
                )
            if done:
                con.execute(
                    "UPDATE combinations SET complete = TRUE WHERE run_id = ? AND list_contains(?, combo_id)",
                    [run_id, done],
                )
        return int(added)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of this file, read-only (the ``duckdb-engine`` dialect): for pandas'
        ``read_sql``, notebooks and BI tools, which then see the same tables and views."""
        return f"duckdb:///{self.path.resolve()}?access_mode=read_only"

    def engine(self):
        """A read-only SQLAlchemy engine on this file."""
        from sqlalchemy import create_engine

        return create_engine(self.url)

    def artifacts(self, run_id: str) -> dict[ResultKey, Path]:
        """The run's saved adversarial examples: row key → ``.npz`` path."""
        with self._read() as con:
            rows = con.execute(
                "SELECT combo_id, image_id, attack, eps, tau, path FROM artifacts WHERE run_id = ?", [run_id]
            ).fetchall()
        return {ResultKey(*r[:5]): self.path.parent / r[5] for r in rows}

    def write_checks(self, run_id: str, checks: Iterable[Any]) -> None:
        """Store a run's reliability checks (``bench.sweep.checks.Check``), replacing earlier outcomes."""
        rows = [[run_id, c.name, c.status, c.value, c.detail, now()] for c in checks]
        if not rows:
            return
        with self._transaction() as con:
            require_run(con, run_id)
            con.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?)", rows)

    def write_clean_stats(
        self, run_id: str, images: int, map_: float | None, consistent: float, rejected: float | None
    ) -> None:
        """Store what the run's model does on the split's clean images (table ``clean_stats``)."""
        with self._transaction() as con:
            require_run(con, run_id)
            con.execute(
                "INSERT OR REPLACE INTO clean_stats VALUES (?, ?, ?, ?, ?)",
                [run_id, images, map_, consistent, rejected],
            )

    def checks(self, run_id: str) -> list[tuple[str, str, float | None, str]]:
        """The run's stored checks: ``(name, status, value, detail)`` in name order."""
        with self._read() as con:
            found = con.execute(
                "SELECT name, status, value, detail FROM checks WHERE run_id = ? ORDER BY name", [run_id]
            ).fetchall()
        return [(str(n), str(s), v, str(d)) for n, s, v, d in found]

    def setting_rates(self, run_id: str) -> list[tuple[float, str, float]]:
        """``(ε, attack, FR_N)`` of the run's rows inside their ε-ball (an unbounded row that left it
        counts as not fooled), per ε and attack: what the ``black-box`` check compares."""
        with self._read() as con:
            found = con.execute(
                """SELECT eps, attack, avg((success AND linf <= eps + 1e-6)::DOUBLE)
                   FROM results WHERE run_id = ? GROUP BY eps, attack ORDER BY eps, attack""",
                [run_id],
            ).fetchall()
        return [(float(e), str(a), float(f)) for e, a, f in found]

    def done_keys(self, run_id: str, targets: Sequence[str] = ()) -> set[ResultKey]:
        """The natural keys of the run's stored rows (what a resumed sweep skips); with
        ``targets`` (transfer targets), only those that have a transfer row for each of them."""
        with self._read() as con:
            if not targets:
                rows = con.execute(
                    "SELECT combo_id, image_id, attack, eps, tau FROM results WHERE run_id = ?", [run_id]
                ).fetchall()
            else:
                rows = con.execute(
                    """SELECT r.combo_id, r.image_id, r.attack, r.eps, r.tau FROM results AS r
                       LEFT JOIN transfer AS t ON t.run_id = r.run_id AND t.combo_id = r.combo_id
                            AND t.image_id = r.image_id AND t.attack = r.attack AND t.eps = r.eps
                            AND t.tau = r.tau AND list_contains($targets, t.target)
                       WHERE r.run_id = $run GROUP BY ALL HAVING count(DISTINCT t.target) = $n""",
                    {"run": run_id, "targets": list(targets), "n": len(set(targets))},
                ).fetchall()
        return {ResultKey(*r) for r in rows}

    def done_combinations(self, run_id: str) -> set[int]:
        """The combinations the sweep marked complete."""
        with self._read() as con:
            rows = con.execute("SELECT combo_id FROM combinations WHERE run_id = ? AND complete", [run_id]).fetchall()
        return {r[0] for r in rows}

    def combination_ids(self, run_id: str) -> set[int]:
        """The ids of the combinations recorded for the run (complete or not)."""
        with self._read() as con:
            rows = con.execute("SELECT combo_id FROM combinations WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    def check_config(self, config: RunConfig) -> None:
        """Refuse, before any work, a stored run of ``config``'s id with another configuration
        (the message of ``begin_run``, naming the fields that differ); nothing is written."""
        with self._read() as con:
            stored = con.execute("SELECT config FROM runs WHERE run_id = ?", [config.run_id]).fetchone()
        if stored is not None:
            self._same_config(RunConfig.from_json(stored[0]), config)

    def _same_config(self, old: RunConfig, config: RunConfig) -> None:
        """A run id stored with another configuration is refused, naming the fields that differ."""
        if old.config_hash != config.config_hash:
            diff = "; ".join(old.differences(config))
            raise BenchError(
                f"run {config.run_id!r} in {self.path} has another configuration ({diff}): "
                "choose another {name} or {db}",
                options=["name", "db"],
            )

    # ------------------------------------------------------------------ merge
    def merge(self, paths: Iterable[str | Path], *, allow_mixed: bool = False) -> list[MergeReport]:
        """Copy the runs of other results files (e.g. shards) into this one (``results.merge``).

        Each file is merged in one transaction. A run stored on both sides must have the same
        configuration hash and shard count, and its rows on both sides the same machine
        fingerprint unless ``allow_mixed`` (recorded in ``machines.accepted``); rows already
        present are skipped, so merging a file twice changes nothing. The merged files are only read.
        """
        reports = []
        for path in paths:
            source = ResultStore(path, create=False, lock_timeout=self.lock_timeout)
            if source.path.resolve() == self.path.resolve():
                raise BenchError(f"cannot merge {source.path} into itself")
            if not self._current:  # a store opened with create=False: merging writes
                self._set_up()
            with self._connect() as con:
                reports.append(merge_file(con, self.path, source.path, allow_mixed))
        return reports


__all__ = ["READ_LOCK_TIMEOUT", "ResultStore", "default_db_path", "read_results"]
