"""The `raptorflow` command as an operator runs it: real processes, real databases."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from raptorflow.kit import migrations
from tests.conftest import ADMIN_PG_URL, create_pg_database, drop_pg_database, pg_url_for, require_service

RAPTORFLOW = [sys.executable, "-m", "raptorflow"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPTORFLOW_")}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version() -> None:
    result = subprocess.run([*RAPTORFLOW, "version"], capture_output=True, text=True, env=_env(), check=True)
    assert result.stdout.strip()[0].isdigit()


def test_bad_database_url_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RAPTORFLOW, "serve"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(RAPTORFLOW_DATABASE_URL="mysql://root:s3cret@db/x"),
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "RAPTORFLOW_DATABASE_URL" in lines[0]
    assert "postgresql+asyncpg://" in lines[0]
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


def test_unreachable_postgres_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RAPTORFLOW, "serve"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(RAPTORFLOW_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/none"),
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot reach the database" in result.stderr


def test_migrate_sql_prints_ddl(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RAPTORFLOW, "migrate", "--sql"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(RAPTORFLOW_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1/offline"),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE alembic_version" in result.stdout
    assert not (tmp_path / "var").exists()


async def test_serve_refuses_an_out_of_date_postgres_schema(tmp_path: Path) -> None:
    require_service(ADMIN_PG_URL, 5432, "PostgreSQL")
    name = await create_pg_database()
    try:
        url = pg_url_for(name)
        env = _env(RAPTORFLOW_DATABASE_URL=url)
        refused = subprocess.run(
            [*RAPTORFLOW, "serve", "--port", str(_free_port())],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
        assert refused.returncode == 2
        assert "raptorflow migrate" in refused.stderr
        migrated = subprocess.run(
            [*RAPTORFLOW, "migrate"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr
        assert "database at" in migrated.stderr
    finally:
        await drop_pg_database(name)


def test_serve_on_embedded_default_migrates_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*RAPTORFLOW, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(RAPTORFLOW_LOG_FORMAT="json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
        assert ready.status_code == 200
        db = tmp_path / "var" / "raptorflow.db"
        assert db.exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    # With RAPTORFLOW_PUBLIC_URL unset, the first-run link names the port actually served, not 8000.
    link = re.search(rb"open (\S+/setup\?token=\S+)", out)
    assert link is not None, out
    assert link.group(1).startswith(f"http://127.0.0.1:{port}/setup?token=".encode()), link.group(1)
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        heads = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert heads == migrations.head_revisions()


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name (in parentheses) may hold spaces: the parent pid is the 2nd field after it.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _holder_of_connection(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """The process among `pids` holding the server's end of the TCP connection from `client_port`."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if (local, remote) == (server_port, client_port):
            inode = f"socket:[{fields[9]}]"
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == inode:
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see who serves")
@pytest.mark.parametrize("workers", [2])
def test_serve_with_workers(tmp_path: Path, workers: int) -> None:
    """`--workers N` starts N worker processes and every one of them serves requests."""
    port = _free_port()
    proc = subprocess.Popen(
        [*RAPTORFLOW, "serve", "--port", str(port), "--workers", str(workers)],
        cwd=tmp_path,
        env=_env(RAPTORFLOW_LOG_FORMAT="json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connections: list[http.client.HTTPConnection] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server with workers never answered")
        # Connections held open, each answered, until N distinct child processes hold one: the kernel
        # hands each new connection to whichever worker accepts first (a worker still starting takes none).
        serving: set[int] = set()
        while time.monotonic() < deadline and len(serving) < workers:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            connections.append(connection)
            holder = _holder_of_connection(port, connection.sock.getsockname()[1], _children(proc.pid))
            if holder is not None:
                serving.add(holder)
            if len(connections) >= 200:
                break
        assert len(serving) == workers, (serving, len(connections))
    finally:
        for connection in connections:
            connection.close()
        proc.terminate()
        proc.wait(timeout=20)
