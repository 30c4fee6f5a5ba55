"""``neo4j/server``, the launcher: start and stop are idempotent, status tells the truth, the
password never leaves the environment, and nothing is left running. A second server of its own
(a temporary home, free ports); the jars are shared through ``NEO4J_LIB_DIR`` when set."""

from __future__ import annotations

import pytest

from neo4j import GraphDatabase
from tests.neo4j_fixtures import ThrowawayServer

# What neo4j-admin's argument file could take for something else: a leading "-" (an option,
# 1 in 64 of secrets.token_urlsafe's passwords), a leading "@" (another argument file),
# quotes, a backslash and a space.
HOSTILE_PASSWORD = '-@x "quoted" back\\slash'


@pytest.mark.neo4j
def test_start_and_stop_are_idempotent_and_leave_no_process(tmp_path):
    s = ThrowawayServer(tmp_path / "home", password=HOSTILE_PASSWORD)
    home, bolt, server = s.home, s.bolt, s.launcher
    try:
        first = server("start")
        assert first.returncode == 0, first.stderr
        assert f"bolt://127.0.0.1:{bolt}" in first.stdout + first.stderr, first.stdout + first.stderr
        again = server("start")
        assert again.returncode == 0 and "already running" in again.stdout + again.stderr, again
        assert server("status").returncode == 0, "status: running"
        shown = server("env")
        assert f"NEO4J_URI=bolt://127.0.0.1:{bolt}" in shown.stdout and s.password not in shown.stdout, shown.stdout
        assert s.processes(), "the server runs"
        with GraphDatabase.driver(s.uri, auth=("neo4j", s.password)) as driver:
            assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1, "the password is the one set"
        conf = (home / "conf" / "neo4j.conf").read_text()
        assert s.password not in conf and "server.default_listen_address=127.0.0.1" in conf, "loopback, no password"
    finally:
        stopped = server("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not s.processes(), "no process left behind"
    twice = server("stop")
    assert twice.returncode == 0 and "not running" in twice.stdout + twice.stderr, twice
    assert server("status").returncode != 0, "status: not running"
    small = [p for p in home.rglob("*") if p.is_file() and p.stat().st_size < 10**6]
    leaked = [p for p in small if s.password.encode() in p.read_bytes()]
    assert not leaked, f"the password is written in {leaked}"
