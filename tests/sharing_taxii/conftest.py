"""A real RaptorFlow server process (uvicorn) on the test database, for TAXII clients that need HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`raptorflow` served by uvicorn in a subprocess on the session's database; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RAPTORFLOW_DATABASE_URL": database_url,
        "RAPTORFLOW_PUBLIC_URL": base,
        "RAPTORFLOW_LOG_LEVEL": "WARNING",
        "RAPTORFLOW_LOG_FORMAT": "json",
        "RAPTORFLOW_ARGON2_TIME_COST": "1",
        "RAPTORFLOW_ARGON2_MEMORY_KIB": "1024",
    }
    env.pop("RAPTORFLOW_REDIS_URL", None)
    log = (tmp_path_factory.mktemp("taxii-server") / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "raptorflow.app:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        # A loaded 2-core CI machine can take this long to import and migrate.
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"the server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
