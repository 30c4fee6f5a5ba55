"""``neo4j/server``, the launcher: start and stop are idempotent, status tells the truth, the
password never leaves the environment, and nothing is left running. A second server of its own
(a temporary home, free ports); the jars are shared through ``NEO4J_LIB_DIR`` when set."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "launcher-test-pw-9"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def our_processes(home: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-f", "--", f"--home-dir={home.resolve()}"], capture_output=True, text=True)
    return found.stdout.split()


@pytest.mark.neo4j
def test_start_and_stop_are_idempotent_and_leave_no_process(tmp_path):
    home = tmp_path / "home"
    bolt, http = free_ports(2)
    env = {
        **os.environ,
        "NEO4J_HOME_DIR": str(home),
        "NEO4J_PASSWORD": PASSWORD,
        "NEO4J_BOLT_PORT": str(bolt),
        "NEO4J_HTTP_PORT": str(http),
    }

    def server(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "neo4j" / "server"), *args], env=env, capture_output=True, text=True)

    try:
        first = server("start")
        assert first.returncode == 0, first.stderr
        assert f"bolt://127.0.0.1:{bolt}" in first.stdout + first.stderr, first.stdout + first.stderr
        again = server("start")
        assert again.returncode == 0 and "already running" in again.stdout + again.stderr, again
        assert server("status").returncode == 0, "status: running"
        shown = server("env")
        assert f"NEO4J_URI=bolt://127.0.0.1:{bolt}" in shown.stdout and PASSWORD not in shown.stdout, shown.stdout
        assert our_processes(home), "the server runs"
        conf = (home / "conf" / "neo4j.conf").read_text()
        assert PASSWORD not in conf and "server.default_listen_address=127.0.0.1" in conf, "loopback, no password"
    finally:
        stopped = server("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not our_processes(home), "no process left behind"
    twice = server("stop")
    assert twice.returncode == 0 and "not running" in twice.stdout + twice.stderr, twice
    assert server("status").returncode != 0, "status: not running"
    small = [p for p in home.rglob("*") if p.is_file() and p.stat().st_size < 10**6]
    leaked = [p for p in small if PASSWORD.encode() in p.read_bytes()]
    assert not leaked, f"the password is written in {leaked}"
