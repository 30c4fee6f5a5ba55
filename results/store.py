"""``ResultStore``: the DuckDB file a sweep writes its rows to and the tables read from.

The store opens the file only for the length of one operation (a batch of rows is one
transaction), so ``bench table`` or ``bench sql`` can read a file while a sweep writes to
it between batches. DuckDB allows one writer process at a time; a store that finds the file
locked retries for ``lock_timeout`` seconds, then names the process that holds it.
A committed batch survives ``kill -9`` (DuckDB's write-ahead log); an interrupted one leaves
nothing behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bench import numerics
from bench.errors import BenchError, StoreBusy, one_line, unknown
from bench.numerics import machine_id
from bench.paths import RESULTS_NAME, default_results, demo_hint
from results.schema import (
    DDL,
    MIGRATIONS,
    ROW_COLUMNS,
    SCHEMA_VERSION,
    TRANSFER_COLUMNS,
    Combination,
    ResultKey,
    ResultRow,
    RunConfig,
    TransferRow,
    grid_value,
)
from results.views import VIEWS_SHA256, install_views, scalar

DB_NAME = RESULTS_NAME
_LOCK_HELD = re.compile(r"held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")


READ_LOCK_TIMEOUT = 10.0  # seconds a reader waits for a sweep's batch write to end


def read_results(path: str | Path | None) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A read-only connection to an existing results database, with the views."""
    return ResultStore(path, create=False, lock_timeout=READ_LOCK_TIMEOUT).reader()


def default_db_path() -> Path:
    """``<data_dir>/results.duckdb``."""
    return default_results()


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


DUCKDB_HEADERS = 3 * 4096  # the file header and the two database headers before the blocks


def locked(path: Path, error: Exception) -> StoreBusy:
    """One line: which process holds the file (as DuckDB reports it) and what to do."""
    held = _LOCK_HELD.search(str(error))
    who = f"process {held['pid']} ({held['prog']})" if held else "another process"
    return StoreBusy(
        f"results database {path} is locked by {who}, probably a running sweep: wait for it to finish, "
        "or write to another file with {db} ({shard} i/n gives each process its own file)",
        str(path),
        int(held["pid"]) if held else None,
        options=["db", "shard"],
    )


@dataclass(frozen=True)
class MergeReport:
    """What ``merge`` took from one file."""

    path: Path
    runs: tuple[str, ...]
    rows_added: int


class ResultStore:
    """A results database: runs, combinations and result rows, with the views on top.

    ``ResultStore(path)`` creates the file (or upgrades an older schema in place, in one
    transaction); ``create=False`` refuses a missing file instead. A file with a newer schema
    is refused without being touched.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True, lock_timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.lock_timeout = lock_timeout
        if not self.path.exists():
            if not create:
                raise BenchError(
                    f"no results database at {self.path}: run a sweep first (`bench run`) or name another with "
                    f"{{db}}{demo_hint(self.path)}",
                    options=["db"],
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._setup()
            return
        with self._connect(read_only=True) as con:
            _check_size(con, self.path)
            version, views = _read_meta(con, self.path)
        if version != SCHEMA_VERSION or views != VIEWS_SHA256:
            self._setup()

    # ------------------------------------------------------------------ connections
    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    raise BenchError(damaged_message(self.path, exc)) from None
                if time.monotonic() >= deadline:
                    raise locked(self.path, exc) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                message = (
                    damaged_message(self.path, exc)
                    if is_damage(exc)
                    else f"cannot open results database {self.path}: {one_line(exc)}"
                )
                raise BenchError(message) from None
        try:
            yield con
        except duckdb.Error as exc:  # the file itself failed under a query the caller did not expect to fail
            if not is_damage(exc):
                raise
            raise BenchError(damaged_message(self.path, exc)) from None
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con, _atomic(con):
            yield con

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection with this version's views (for queries, tables and plots)."""
        with self._connect(read_only=True) as con:
            install_views(con, temporary=True)
            yield con

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Hold the run ``run_id`` of this file for one process: a second process running the
        same run at the same time is refused (the lock goes with the process, even on kill -9).
        The lock file is removed when the run ends; a process that opened it just before that
        sees the file gone once it holds the lock, and takes a fresh one."""
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
        path = self.path.with_name(f".{self.path.name}.{digest}.lock")
        while True:
            fh = open(path, "a+", encoding="utf-8")  # closed below, after the unlink
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise StoreBusy(
                    f"run {run_id!r} is already running on {self.path} ({holder}): wait for it to finish, "
                    "or give this one another {name} or {db}",
                    str(self.path),
                    options=["name", "db"],
                ) from None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fh.fileno()).st_ino:
                break
            fh.close()  # the holder before us removed this file as we opened it: take the new one
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"process {os.getpid()} since {_now()} UTC")
            fh.flush()
            yield
        finally:
            path.unlink(missing_ok=True)  # while held: nobody can take this file's lock in between
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def _setup(self) -> None:
        """Create the schema, or upgrade an older one, and refresh the views: one transaction."""
        with self._transaction() as con:
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            if "meta" not in tables:
                if tables:
                    raise BenchError(f"{self.path} is a DuckDB file but not a semattack-bench results database")
                for statement in DDL:
                    con.execute(statement)
                version = SCHEMA_VERSION
            else:
                version, _ = _read_meta(con, self.path)
                for old in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[old]:
                        con.execute(statement)
            install_views(con)
            con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("views_sha256", VIEWS_SHA256)],
            )

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
                _check_shard_count(run_id, stored[1], config.shard_count, self.path)
                con.execute(
                    "UPDATE runs SET shards = list_sort(list_distinct(list_append(shards, ?))) WHERE run_id = ?",
                    [config.shard_index, run_id],
                )
                return run_id
            config = config if config.created else config.with_created(_now())
            con.execute(
                """INSERT INTO runs VALUES ($run_id, $hash, $dataset, $model_name, $model_path, $card, $graph_name,
                   $graph_sha256, $attacks, $eps, $tau, $sizes, $images, $preset, $iterations, $seed,
                   $shard_count, [$shard_index], $code_version, $device, $created, NULL, $config)""",
                {
                    "run_id": run_id,
                    "hash": config.config_hash,
                    "dataset": config.dataset,
                    "model_name": config.model_name,
                    "model_path": config.model_path,
                    "card": json.dumps(config.model_card, sort_keys=True),
                    "graph_name": config.graph_name,
                    "graph_sha256": config.graph_sha256,
                    "attacks": list(config.attacks),
                    "eps": list(config.eps),
                    "tau": list(config.tau),
                    "sizes": list(config.sizes),
                    "images": config.images_per_combination,
                    "preset": config.preset,
                    "iterations": config.iterations,
                    "seed": config.seed,
                    "shard_count": config.shard_count,
                    "shard_index": config.shard_index,
                    "code_version": config.code_version,
                    "device": config.device,
                    "created": config.created,
                    "config": config.to_json(),
                },
            )
        return run_id

    def run_config(self, run_id: str) -> RunConfig:
        with self._connect(read_only=True) as con:
            row = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                raise unknown("run", run_id, [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()])
        return RunConfig.from_json(row[0])

    def finish_run(self, run_id: str) -> None:
        """Mark the run finished (its time goes in ``runs.finished``)."""
        with self._transaction() as con:
            if scalar(con, "UPDATE runs SET finished = ? WHERE run_id = ?", [_now(), run_id]) == 0:
                raise unknown("run", run_id, [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()])

    # ------------------------------------------------------------------ machines
    def machines(self, run_id: str, *, with_rows: bool = False) -> dict[str, dict]:
        """The run's machines: id → numerics fingerprint (``with_rows``: only those that computed rows)."""
        with self._connect(read_only=True) as con:
            return _machines(con, "", run_id, with_rows)

    def use_machine(
        self, run_id: str, fingerprint: dict, *, allow_mixed: bool = False, peers: dict[str, dict] | None = None
    ) -> str:
        """Record that this machine computes rows of ``run_id``; returns its id.

        Refused when other machines (another fingerprint: device, CPU code path, versions,
        precision, B, CPU-numerics mode) computed the run's stored rows, or are computing them
        now (``peers``: a cluster's other workers, id → fingerprint), unless ``allow_mixed``:
        then the difference is recorded in ``machines.accepted``.
        """
        machine = machine_id(fingerprint)
        with self._transaction() as con:
            _require_run(con, run_id)
            others = {**_machines(con, "", run_id, True), **(peers or {})}
            others.pop(machine, None)
            accepted = _mixing(others, fingerprint, f"run {run_id!r} in {self.path}", allow_mixed)
            con.execute(
                "INSERT INTO machines VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [run_id, machine, json.dumps(fingerprint, sort_keys=True), accepted, _now()],
            )
        return machine

    # ------------------------------------------------------------------ combinations and rows
    def write_combinations(self, run_id: str, combinations: Iterable[Combination]) -> None:
        """Record the run's target sets with their eligible/attacked counts (idempotent)."""
        combos = list(combinations)
        with self._transaction() as con:
            _require_run(con, run_id)
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
        columns = _columns(rows)
        done = sorted({int(c) for c in complete})
        with self._transaction() as con:
            _require_run(con, run_id)
            missing = scalar(
                con,
                "SELECT list_sort(list(x)) FROM (SELECT DISTINCT unnest($ids) AS x "
                "EXCEPT SELECT combo_id FROM combinations WHERE run_id = $run)",
                {"ids": sorted(set(columns["combo_id"]) | set(done)), "run": run_id},
            )
            if missing:
                raise ValueError(f"run {run_id!r} has no combinations {missing}: write_combinations first")
            if verify:
                _verify_stored(con, run_id, rows, columns, transfer)
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
                    {"run_id": run_id, **_transfer_columns(transfer)},
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
        with self._connect(read_only=True) as con:
            rows = con.execute(
                "SELECT combo_id, image_id, attack, eps, tau, path FROM artifacts WHERE run_id = ?", [run_id]
            ).fetchall()
        return {ResultKey(*r[:5]): self.path.parent / r[5] for r in rows}

    def write_checks(self, run_id: str, checks: Iterable[Any]) -> None:
        """Store a run's reliability checks (``bench.sweep.checks.Check``), replacing earlier outcomes."""
        rows = [[run_id, c.name, c.status, c.value, c.detail, _now()] for c in checks]
        if not rows:
            return
        with self._transaction() as con:
            _require_run(con, run_id)
            con.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?)", rows)

    def write_clean_stats(
        self, run_id: str, images: int, map_: float | None, consistent: float, rejected: float | None
    ) -> None:
        """Store what the run's model does on the split's clean images (table ``clean_stats``)."""
        with self._transaction() as con:
            _require_run(con, run_id)
            con.execute(
                "INSERT OR REPLACE INTO clean_stats VALUES (?, ?, ?, ?, ?)",
                [run_id, images, map_, consistent, rejected],
            )

    def checks(self, run_id: str) -> list[tuple[str, str, float | None, str]]:
        """The run's stored checks: ``(name, status, value, detail)`` in name order."""
        with self._connect(read_only=True) as con:
            found = con.execute(
                "SELECT name, status, value, detail FROM checks WHERE run_id = ? ORDER BY name", [run_id]
            ).fetchall()
        return [(str(n), str(s), v, str(d)) for n, s, v, d in found]

    def setting_rates(self, run_id: str) -> list[tuple[float, str, float]]:
        """``(ε, attack, FR_N)`` of the run's rows inside their ε-ball (an unbounded row that left it
        counts as not fooled), per ε and attack: what the ``black-box`` check compares."""
        with self._connect(read_only=True) as con:
            found = con.execute(
                """SELECT eps, attack, avg((success AND linf <= eps + 1e-6)::DOUBLE)
                   FROM results WHERE run_id = ? GROUP BY eps, attack ORDER BY eps, attack""",
                [run_id],
            ).fetchall()
        return [(float(e), str(a), float(f)) for e, a, f in found]

    def done_keys(self, run_id: str, targets: Sequence[str] = ()) -> set[ResultKey]:
        """The natural keys of the run's stored rows (what a resumed sweep skips); with
        ``targets`` (transfer targets), only those that have a transfer row for each of them."""
        with self._connect(read_only=True) as con:
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
        with self._connect(read_only=True) as con:
            rows = con.execute("SELECT combo_id FROM combinations WHERE run_id = ? AND complete", [run_id]).fetchall()
        return {r[0] for r in rows}

    def combination_ids(self, run_id: str) -> set[int]:
        """The ids of the combinations recorded for the run (complete or not)."""
        with self._connect(read_only=True) as con:
            rows = con.execute("SELECT combo_id FROM combinations WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    def check_config(self, config: RunConfig) -> None:
        """Refuse, before any work, a stored run of ``config``'s id with another configuration
        (the message of ``begin_run``, naming the fields that differ); nothing is written."""
        with self._connect(read_only=True) as con:
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
        """Copy the runs of other results files (e.g. shards) into this one.

        Each file is merged in one transaction. A run stored on both sides must have the same
        configuration hash and shard count, and its rows on both sides the same machine
        fingerprint unless ``allow_mixed`` (recorded in ``machines.accepted``); rows already
        present are skipped, so merging a file twice changes nothing.
        """
        reports = []
        for path in paths:
            source = ResultStore(path, create=False, lock_timeout=self.lock_timeout)
            if source.path.resolve() == self.path.resolve():
                raise BenchError(f"cannot merge {source.path} into itself")
            reports.append(self._merge_one(source, allow_mixed))
        return reports

    def _merge_one(self, source: ResultStore, allow_mixed: bool) -> MergeReport:
        with self._connect() as con:
            con.execute(f"ATTACH {sql_literal(source.path)} AS src (READ_ONLY)")
            try:
                with _atomic(con):
                    src_runs = [r[0] for r in con.execute("SELECT run_id FROM src.runs ORDER BY run_id").fetchall()]
                    self._check_mergeable(con, source.path)
                    accepted = self._check_machines(con, source.path, src_runs, allow_mixed)
                    added = _copy_attached(con)
                    for note in accepted:
                        con.execute(
                            "UPDATE machines SET accepted = ? WHERE run_id = ? AND machine = ? AND accepted IS NULL",
                            list(note),
                        )
                    # a run whose shards are all here and all of whose combinations are complete is finished
                    con.execute(
                        """UPDATE runs SET finished = ? WHERE finished IS NULL AND len(shards) = shard_count
                           AND EXISTS (SELECT 1 FROM combinations c WHERE c.run_id = runs.run_id)
                           AND NOT EXISTS (SELECT 1 FROM combinations c
                                           WHERE c.run_id = runs.run_id AND NOT c.complete)""",
                        [_now()],
                    )
            finally:
                con.execute("DETACH src")
        return MergeReport(source.path, tuple(src_runs), added)

    def _check_mergeable(self, con: duckdb.DuckDBPyConnection, source: Path) -> None:
        """Runs stored on both sides must agree on their configuration and shard count."""
        pairs = con.execute(
            """SELECT r.run_id, r.config, s.config, r.shard_count, s.shard_count
               FROM runs AS r JOIN src.runs AS s USING (run_id)"""
        ).fetchall()
        for run_id, ours_json, theirs_json, our_count, their_count in pairs:
            ours, theirs = RunConfig.from_json(ours_json), RunConfig.from_json(theirs_json)
            if ours.config_hash != theirs.config_hash:
                raise BenchError(
                    f"{source}: run {run_id!r} has another configuration than in {self.path} "
                    f"({'; '.join(ours.differences(theirs))}); nothing merged from it"
                )
            _check_shard_count(run_id, our_count, their_count, source)

    def _check_machines(
        self, con: duckdb.DuckDBPyConnection, source: Path, runs: Sequence[str], allow_mixed: bool
    ) -> list[tuple[str, str, str]]:
        """Rows of one run from two machine fingerprints are refused unless ``allow_mixed``;
        returns the ``(accepted, run_id, machine)`` notes to record for the ones accepted."""
        notes = []
        for run_id in runs:
            ours = _machines(con, "", run_id, True)
            for machine, fp in _machines(con, "src.", run_id, True).items():
                others = {m: f for m, f in ours.items() if m != machine}
                accepted = _mixing(others, fp, f"{source}: run {run_id!r}", allow_mixed, f" in {self.path}")
                if accepted:
                    notes.append((accepted, run_id, machine))
        return notes


# ---------------------------------------------------------------------- helpers
@contextmanager
def _atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


DAMAGE = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)


def is_damage(error: BaseException) -> bool:
    """Whether a DuckDB error comes from the file (cut, flipped bytes, not DuckDB), not from a query."""
    text = str(error).lower()
    return isinstance(error, DAMAGE) or "corrupt" in text or "checksum" in text


def damaged_message(path: Path, error: BaseException) -> str:
    if path.is_dir():
        return f"results database {path} is a folder, not a DuckDB file: name the .duckdb file itself"
    return (
        f"results database {path} cannot be read ({one_line(error)}): the file is damaged or not a DuckDB "
        "file; restore it from a copy, or move it aside and re-run the sweep (the same command resumes into a new file)"
    )


def _check_size(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a file shorter than the blocks DuckDB says it uses (a cut copy or a full disk):
    such a file still answers queries on its catalog, with part of its rows missing."""
    _, _, block_size, _, used, *_ = con.execute("PRAGMA database_size").fetchall()[0]
    size = path.stat().st_size
    if size < DUCKDB_HEADERS + int(used) * int(block_size) or (size - DUCKDB_HEADERS) % int(block_size):
        raise BenchError(
            damaged_message(
                path, ValueError(f"{size:,} bytes where its {used} blocks need {DUCKDB_HEADERS + used * block_size:,}")
            )
        )


def _read_meta(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, str]:
    """(schema version, views hash); refuses files that are not ours or are newer."""
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta["schema_version"])
    except (duckdb.CatalogException, KeyError, ValueError):
        raise BenchError(f"{path} is a DuckDB file but not a semattack-bench results database") from None
    if version > SCHEMA_VERSION:
        raise BenchError(
            f"{path} has results schema version {version}, newer than this semattack-bench "
            f"(version {SCHEMA_VERSION}): upgrade semattack-bench to read it"
        )
    return version, meta.get("views_sha256", "")


def _machines(con: duckdb.DuckDBPyConnection, schema: str, run_id: str, with_rows: bool) -> dict[str, dict]:
    """``{schema}machines`` of a run (``with_rows``: those that computed stored rows)."""
    rows = con.execute(
        f"SELECT m.machine, m.fingerprint FROM {schema}machines AS m WHERE m.run_id = $run"
        + (f" AND m.machine IN (SELECT machine FROM {schema}results WHERE run_id = $run)" if with_rows else "")
        + " ORDER BY m.first_used, m.machine",
        {"run": run_id},
    ).fetchall()
    return {m: json.loads(fp) for m, fp in rows}


def _mixing(others: dict[str, dict], fingerprint: dict, what: str, allow: bool, where: str = "") -> str | None:
    """``None`` when no other machine computed the run's rows; else the note recording that mixing
    was accepted, or the refusal naming the first difference."""
    if not others:
        return None
    first = next(iter(others.values()))
    diff = "; ".join(numerics.differences(first, fingerprint)) or "another fingerprint"
    if not allow:
        raise BenchError(
            f"{what} has rows computed on another machine{where} ({diff}): rows of two machines can differ in "
            "their last bits; continue it where it ran, or pass {allow_mixed_numerics} to mix them (recorded)",
            options=["allow_mixed_numerics"],
        )
    return f"mixed with {', '.join(others)} ({diff}), accepted {_now()}"


def _require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    if scalar(con, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id]) == 0:
        raise ValueError(f"run {run_id!r} is not in the results database: call begin_run first")


def _check_shard_count(run_id: str, stored: int, given: int, where: Path) -> None:
    if stored != given:
        raise BenchError(
            f"run {run_id!r} is split into {stored} shards, but {where} has {given}: use the same {{shard}} i/n",
            options=["shard"],
        )


CASTS = {"flipped": "::TEXT[][]"}  # a batch of empty lists carries no element type of its own


def _columns(rows: Sequence[ResultRow]) -> dict[str, list]:
    """Rows → one plain Python list per column (numpy/torch scalars converted, ε/τ by ``grid_value``)."""
    cast: dict[str, Callable[[Any], Any]] = {
        "combo_id": int,
        "image_id": str,
        "attack": str,
        "eps": grid_value,
        "tau": grid_value,
        "success": bool,
        "consistent": bool,
        "ntr_share": float,
        "iterations": int,
        "linf": float,
        "l2": float,
        "seconds": float,
        "machine": lambda v: None if v is None else str(v),
        "flipped": lambda v: None if v is None else [str(x) for x in v],
        "detected": lambda v: None if v is None else bool(v),
    }
    out: dict[str, list] = {}
    for name in ROW_COLUMNS:
        values = [getattr(r, name) for r in rows]
        if name in cast:
            out[name] = [cast[name](v) for v in values]
        else:
            out[name] = [None if v is None else float(v) for v in values]
    out["attack"] = [a.lower() for a in out["attack"]]  # registered names are lower case
    return out


def _transfer_columns(rows: Sequence[TransferRow]) -> dict[str, list]:
    """Transfer rows → one plain Python list per column (keys as ``ResultKey.of`` writes them)."""
    keys = [r.key for r in rows]
    return {
        "target": [str(r.target) for r in rows],
        **{name: [k[i] for k in keys] for i, name in enumerate(ResultKey._fields)},
        **{name: [bool(getattr(r, name)) for r in rows] for name in ("source_success", "eligible", "success")},
        "consistent": [bool(r.consistent) for r in rows],
        "ntr_share": [float(r.ntr_share) for r in rows],
    }


#: what a recomputed row must reproduce of the stored one (``write_rows(verify=True)``)
VERIFIED = tuple(c for c in ROW_COLUMNS if c not in (*ResultKey._fields, "seconds", "machine"))
TRANSFER_VERIFIED = ("source_success", "eligible", "success", "consistent", "ntr_share")


def _verify_stored(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    rows: Sequence[ResultRow],
    columns: dict[str, list],
    transfer: Sequence[TransferRow],
) -> None:
    """Refuse, in one line, the first row (or transfer row) of a batch whose key is stored with
    other numbers (``write_rows(verify=True)``)."""
    ids = sorted({int(c) for c in columns["combo_id"]} | {int(t.combo_id) for t in transfer})
    keys = ", ".join(ResultKey._fields)
    if rows:
        stored = {
            ResultKey(*r[:5]): r[5:]
            for r in con.execute(
                f"SELECT {keys}, {', '.join(VERIFIED)} FROM results WHERE run_id = ? AND list_contains(?, combo_id)",
                [run_id, ids],
            ).fetchall()
        }
        for i, row in enumerate(rows):
            old = stored.get(row.key)
            new = tuple(columns[c][i] for c in VERIFIED)
            if old is not None and tuple(old) != new:
                name, was, now = next((c, a, b) for c, a, b in zip(VERIFIED, old, new) if a != b)
                raise BenchError(
                    f"run {run_id!r}: the recomputed row {_key_text(row.key)} differs from the stored one in "
                    f"{name} (stored {was!r}, recomputed {now!r}); a run's rows are reproducible only on the "
                    "machine, device and batch size that computed them; nothing of this batch was stored"
                )
    if transfer:
        found = con.execute(
            f"SELECT target, {keys}, {', '.join(TRANSFER_VERIFIED)} FROM transfer "
            "WHERE run_id = ? AND list_contains(?, combo_id)",
            [run_id, ids],
        ).fetchall()
        stored_t = {(r[0], ResultKey(*r[1:6])): r[6:] for r in found}
        for t in transfer:
            old = stored_t.get((t.target, t.key))
            new = (bool(t.source_success), bool(t.eligible), bool(t.success), bool(t.consistent), float(t.ntr_share))
            if old is not None and tuple(old) != new:
                name, was, now = next((c, a, b) for c, a, b in zip(TRANSFER_VERIFIED, old, new) if a != b)
                raise BenchError(
                    f"run {run_id!r}: the recomputed transfer row {_key_text(t.key)} on {t.target!r} differs from "
                    f"the stored one in {name} (stored {was!r}, recomputed {now!r}); nothing of this batch was stored"
                )


def _key_text(key: ResultKey) -> str:
    return f"(combination {key.combo_id}, image {key.image_id}, {key.attack}, ε {key.eps:g}, τ {key.tau:g})"


def _copy_attached(con: duckdb.DuckDBPyConnection) -> int:
    """Copy the attached ``src`` database's runs, combinations and rows; returns new rows."""
    before = scalar(con, "SELECT count(*) FROM results")
    con.execute("INSERT INTO runs SELECT * FROM src.runs ON CONFLICT DO NOTHING")
    con.execute(
        """UPDATE runs SET shards = list_sort(list_distinct(list_concat(runs.shards, s.shards))),
                  finished = CASE WHEN runs.finished IS NULL OR s.finished IS NULL THEN NULL
                                  ELSE greatest(runs.finished, s.finished) END
           FROM src.runs AS s WHERE runs.run_id = s.run_id"""
    )
    con.execute(
        """INSERT INTO combinations SELECT * FROM src.combinations
           ON CONFLICT DO UPDATE SET complete = complete OR excluded.complete"""
    )
    con.execute("INSERT INTO results BY NAME SELECT * FROM src.results ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO machines BY NAME SELECT * FROM src.machines ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO artifacts SELECT * FROM src.artifacts ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO checks BY NAME SELECT * FROM src.checks ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO clean_stats BY NAME SELECT * FROM src.clean_stats ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO transfer BY NAME SELECT * FROM src.transfer ON CONFLICT DO NOTHING")
    return int(scalar(con, "SELECT count(*) FROM results") - before)


def load_into_memory(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A new in-memory database holding a copy of the results file ``path``, with the views."""
    con = duckdb.connect(":memory:")
    for statement in DDL:
        con.execute(statement)
    con.execute(f"ATTACH {sql_literal(path)} AS src (READ_ONLY)")
    _copy_attached(con)
    con.execute("DETACH src")
    install_views(con)
    return con


def sql_literal(path: str | Path) -> str:
    """A file path as a quoted SQL string."""
    return "'" + str(path).replace("'", "''") + "'"


__all__ = ["DB_NAME", "MergeReport", "ResultStore", "default_db_path", "load_into_memory", "locked", "sql_literal"]
