"""A Neo4j server of a test's own, started with the repository launcher (``neo4j/server``): a
throwaway home, free ports, a random password, the jars shared through ``NEO4J_LIB_DIR``
(default ``~/.cache/semattack-bench/neo4j-lib``). For tests that stop or kill the server,
which must never be the one ``NEO4J_URI`` names."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "neo4j" / "server"
SHARED_LIB = Path.home() / ".cache" / "semattack-bench" / "neo4j-lib"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class ThrowawayServer:
    """``neo4j/server`` on a home of its own; ``env`` is what a client needs to reach it."""

    def __init__(self, home: Path, password: str | None = None) -> None:
        self.home = home.resolve()
        self.bolt, self.http = free_ports(2)
        self.password = password or secrets.token_urlsafe(18)
        self.uri = f"bolt://127.0.0.1:{self.bolt}"
        self.env = {"NEO4J_URI": self.uri, "NEO4J_USER": "neo4j", "NEO4J_PASSWORD": self.password}

    def launcher(self, command: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "NEO4J_HOME_DIR": str(self.home),
            "NEO4J_LIB_DIR": os.environ.get("NEO4J_LIB_DIR") or str(SHARED_LIB),
            "NEO4J_PASSWORD": self.password,
            "NEO4J_BOLT_PORT": str(self.bolt),
            "NEO4J_HTTP_PORT": str(self.http),
        }
        return subprocess.run([str(LAUNCHER), command], env=env, capture_output=True, text=True, timeout=300)

    def start(self) -> None:
        done = self.launcher("start")
        assert done.returncode == 0, f"neo4j/server start: {done.stdout}{done.stderr}"

    def stop(self) -> None:
        done = self.launcher("stop")
        assert done.returncode == 0, f"neo4j/server stop: {done.stdout}{done.stderr}"

    def pid(self) -> int | None:
        try:
            pid = int((self.home / "run" / "neo4j.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def kill(self) -> None:
        """SIGKILL the server's JVM (no checkpoint, no clean shutdown) and wait until it is gone."""
        pid = self.pid()
        assert pid is not None, "the server is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def processes(self) -> list[str]:
        found = subprocess.run(["pgrep", "-f", "--", f"--home-dir={self.home}"], capture_output=True, text=True)
        return found.stdout.split()
