"""Servers the fault tests start and stop themselves: Redis, a PostgreSQL cluster, `raptorflow serve`."""

from __future__ import annotations

import contextlib
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
import pytest

from tests.conftest import IN_CI

PG_ROOT = Path("/usr/lib/postgresql")


def unavailable(message: str) -> None:
    """Skip a test that cannot run here (or, under CI, fail it: CI machines must have what it needs)."""
    if IN_CI:
        pytest.fail(message + " (CI is set: fault tests must run)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout: float = 15.0) -> None:
    """Until something listens on `port` (or nothing does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not become {'reachable' if up else 'closed'}")


def _has_server_programs(folder: Path) -> bool:
    return (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl live: `pg_config --bindir`, else the newest /usr/lib/postgresql/N/bin,
    else the folder of an `initdb` on PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        # pg_config may come from the client library's package and name a folder without the server.
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    versions = [p for p in PG_ROOT.glob("*/bin") if p.parent.name.isdigit()] if PG_ROOT.is_dir() else []
    candidates.extend(sorted(versions, key=lambda p: int(p.parent.name), reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    return next((c for c in candidates if _has_server_programs(c)), None)


class ThrowawayRedis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        wait_port(self.port, up=False)


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free port (initdb refuses root: run as postgres)."""

    def __init__(self, bindir: Path) -> None:
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="rf-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")

    @classmethod
    def usable(cls) -> ThrowawayPostgres:
        """A new (not yet initialised) cluster, or skip (fail under CI) when this machine cannot run one."""
        bindir = pg_bindir()
        if bindir is None:
            unavailable("PostgreSQL server programs (initdb, pg_ctl) not found")
        if os.geteuid() != 0:
            unavailable("a throwaway PostgreSQL cluster needs root (initdb runs as postgres via runuser)")
        assert bindir is not None
        return cls(bindir)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                          str(self.dir / "log"), "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Serve:
    """`raptorflow serve` as a subprocess (JSON logs), its stderr kept in a file to read back."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.stderr_path = workdir / "serve.stderr"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
        self.env.update(env, RAPTORFLOW_LOG_FORMAT="json", RAPTORFLOW_PUBLIC_URL=self.url)
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until /health answers."""
        command = [sys.executable, "-m", "raptorflow", "serve", "--port", str(self.port)]
        with self.stderr_path.open("wb") as err:
            # A session of its own: stop() can end the workers too, even if the parent dies first.
            self.proc = subprocess.Popen(
                [*command, "--workers", str(self.workers)],
                cwd=self.workdir, env=self.env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("raptorflow serve exited:\n" + self.stderr())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"raptorflow serve did not answer in {timeout:.0f} s:\n" + self.stderr())

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then kill its process group (the workers) after 15 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):  # the group is gone with its last process
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None
