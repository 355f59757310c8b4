"""Helpers of the HTTP server tests: `presales serve` in a subprocess on a loopback port, and a real
PostgreSQL server started for the test session (Debian's `postgresql` package, as .ci/run installs it;
or an existing one named by PRESALES_TEST_PG_URL)."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`presales serve` as its own process, so it can be killed (-9) and started again like a real one."""

    def __init__(self, run: Path, db: str, log_path: Path, keys: tuple[str, ...] = (), graphs: tuple[str, ...] = (),
                 port: int | None = None):
        self.run, self.db, self.log_path, self.keys, self.graphs = run, db, log_path, keys, graphs
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = float(os.environ.get("PRESALES_TEST_SERVER_START_S", "600"))) -> "ServerProcess":
        """Start and wait for /ok (loading the models takes seconds on an idle machine, minutes on a busy one)."""
        cmd = [sys.executable, "-m", "presales.cli", "serve", "--run", str(self.run), "--db", self.db,
               "--port", str(self.port)]
        for key in self.keys:
            cmd += ["--api-key", key]
        for graph in self.graphs:
            cmd += ["--graph", graph]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/ok", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server did not answer /ok within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on a loopback port (trust authentication, fsync off: test data only).
    As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self):
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="presales-pg-"))
        self.data = self.base / "data"

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def start(self) -> str:
        initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL is not installed (initdb/pg_ctl not found): `apt-get install postgresql` "
                               "(.ci/run does), or point PRESALES_TEST_PG_URL at a server")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        run = lambda cmd: subprocess.run(self._as_server_user(cmd), check=True, capture_output=True, text=True)  # noqa: E731
        run([initdb, "-D", str(self.data), "-U", "presales", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        run([pg_ctl, "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60", "-o",
             f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
             "start"])
        return f"postgresql://presales@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        pg_ctl = _pg_binary("pg_ctl")
        if pg_ctl and self.data.exists():
            subprocess.run(self._as_server_user([pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"]),
                           capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def new_database(admin_url: str, name: str) -> str:
    """A fresh database on the server of admin_url; its URL."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name
