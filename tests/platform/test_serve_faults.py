"""`raptorflow serve --workers 2` on a PostgreSQL cluster of its own, under faults, read from outside.

One server for the whole module (starting two workers is the expensive part): a client that leaves a
streamed export early, lookups whose connections are terminated, a PostgreSQL restart under lookups, a
malformed request. Whatever happens, every line the server writes to stderr is one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from raptorflow.kit import migrations
from tests.conftest import TEST_REDIS_URL, create_org, require_service, sign_up
from tests.platform.servers import Serve, ThrowawayPostgres

ROWS = 12_000  # three of the export's 5,000-row batches
DESCRIPTION = "d" * 1_500  # ~18 MB of CSV: far more than the socket buffers between client and server
LOOKUP_VALUES = [f"h{i}.faults.example" for i in range(0, ROWS, 97)]


@dataclass
class Site:
    """The server, its database cluster, and an org with indicators, a user token and a viewer key."""

    serve: Serve
    cluster: ThrowawayPostgres
    user: dict[str, str]
    key: dict[str, str]

    def events(self) -> list[dict[str, Any]]:
        """Every stderr line so far, parsed; fails on the first that is not one JSON object."""
        parsed = []
        for number, line in enumerate(self.serve.stderr().splitlines(), 1):
            try:
                event = json.loads(line)
            except ValueError:
                pytest.fail(f"stderr line {number} is not JSON: {line!r}")
            assert isinstance(event, dict) and "event" in event, line
            parsed.append(event)
        return parsed

    async def admin(self) -> asyncpg.Connection:
        """A superuser connection to the server's database (outside the server's pools)."""
        return await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.cluster.port}/postgres")


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """The running server with ROWS indicators in one org."""
    require_service(TEST_REDIS_URL, 6379, "Redis")
    cluster = ThrowawayPostgres.usable()
    serve: Serve | None = None
    try:
        cluster.init()
        cluster.start()
        await asyncio.to_thread(migrations.upgrade, cluster.url)
        unlimited = "1000000"
        env = {
            "RAPTORFLOW_DATABASE_URL": cluster.url,
            "RAPTORFLOW_REDIS_URL": TEST_REDIS_URL,
            "RAPTORFLOW_ARGON2_TIME_COST": "1",
            "RAPTORFLOW_ARGON2_MEMORY_KIB": "1024",
            "RAPTORFLOW_RATE_LIMIT_PER_MINUTE": unlimited,
            "RAPTORFLOW_RATE_LIMIT_PRINCIPAL_PER_MINUTE": unlimited,
            "RAPTORFLOW_RATE_LIMIT_ANONYMOUS_PER_MINUTE": unlimited,
        }
        serve = Serve(env, tmp_path_factory.mktemp("serve-faults"), workers=2)
        await asyncio.to_thread(serve.start)
        async with httpx.AsyncClient(base_url=serve.url, timeout=60) as http:
            actor = await sign_up(http, "faults@example.com")
            org_id = await create_org(actor, "faults")
            user = actor.in_org(org_id)
            for start in range(0, ROWS, 1_000):
                items = [{"value": f"h{i}.faults.example", "description": DESCRIPTION} for i in range(start, start + 1_000)]  # fmt: skip
                made = await http.post("/api/v1/indicators/bulk", json={"items": items}, headers=user)
                assert made.status_code == 200, made.text[:500]
            created = await http.post(
                f"/api/v1/organizations/{org_id}/api-keys",
                json={"name": "siem", "role": "viewer"},
                headers=user,
            )
            assert created.status_code == 201, created.text
        yield Site(serve, cluster, user, {"X-API-Key": created.json()["secret"]})
    finally:
        if serve is not None:
            serve.stop()
        with contextlib.suppress(Exception):
            cluster.stop()
        cluster.remove()


def _request(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _leave_early(port: int, request: bytes, after: int, *, pause: float = 0.0, small: bool = False) -> None:
    """Send `request`, read `after` bytes of the answer (none: wait a second), then, with `pause`, on
    until the server pauses that long; then reset the connection, as a killed `curl … | head` does.
    `small`: a receive buffer of a few KB, so the server soon waits to send."""
    with socket.socket() as sock:
        if small:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        received = 0
        if not after:
            time.sleep(1.0)
        while received < after:
            chunk = sock.recv(65536)
            assert chunk, "the server closed first"
            received += len(chunk)
        if pause:
            sock.settimeout(pause)
            with contextlib.suppress(TimeoutError):
                while chunk := sock.recv(65536):
                    received += len(chunk)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _busy_backends(site: Site) -> list[Any]:
    """The server's connections not idle in the pool (in a transaction, or a statement still running)
    3 s after the requests ended (background jobs may be busy for a moment)."""
    admin = await site.admin()
    try:
        deadline = time.monotonic() + 3
        while True:
            busy = await admin.fetch(
                "SELECT pid, state, left(query, 100) AS query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' AND state <> 'idle'"
            )
            if not busy or time.monotonic() > deadline:
                return list(busy)
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _events_after(site: Site, seen: int, count: int) -> list[dict[str, Any]]:
    """The events logged after the first `seen`, once `count` disconnects are among them (or 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        since = site.events()[seen:]
        if (
            sum(e["event"] == "request.client_disconnected" for e in since) >= count
            or time.monotonic() > deadline
        ):
            return since
        await asyncio.sleep(0.1)


CSV = "/api/v1/exports/indicators.csv"
STIX = "/api/v1/exports/indicators.stix.json"


async def test_exports_cut_short_by_the_client(site: Site) -> None:
    """Wherever a streamed export is when its client leaves, it ends with one line and gives its
    connection back to the pool clean."""
    seen = len(site.events())
    csv, stix = _request(CSV, site.user), _request(STIX, site.user)
    stix_gzip = _request(STIX, {**site.user, "Accept-Encoding": "gzip"})
    admin = await site.admin()
    try:
        # While the export waits for a batch (held back by a lock): the stream is cancelled in a query.
        async with admin.transaction():
            await admin.execute("LOCK TABLE indicators IN ACCESS EXCLUSIVE MODE")
            await asyncio.to_thread(_leave_early, site.serve.port, csv, len("id,type,value"))
            await asyncio.to_thread(_leave_early, site.serve.port, stix, 0)  # before its first byte
            await _events_after(site, seen, 2)
    finally:
        await admin.close()
    # While the server waits to send, and where the client pauses (likely: the server is reading).
    await asyncio.to_thread(_leave_early, site.serve.port, csv, 4_096)
    await asyncio.to_thread(_leave_early, site.serve.port, csv, 8_000_000, pause=0.01)
    # The STIX bundle is read by COPY in a task of its own, which must stop before the rollback.
    await asyncio.to_thread(_leave_early, site.serve.port, stix, 100_000)
    await asyncio.to_thread(_leave_early, site.serve.port, stix_gzip, 1_000, small=True)
    since = await _events_after(site, seen, 6)

    assert await _busy_backends(site) == []  # every export's connection is back in its pool, idle
    assert [e for e in since if e["event"] != "request.client_disconnected"] == []  # nothing else said
    assert len(since) == 6, since
    expected = [(CSV, 200), (STIX, 499), (CSV, 200), (CSV, 200), (STIX, 200), (STIX, 200)]
    assert [(e["route"], e["status"]) for e in since] == expected
    assert all(e["level"] == "info" and "request_id" in e and "org_id" in e for e in since)
    async with httpx.AsyncClient(base_url=site.serve.url, timeout=60) as http:
        listed = await asyncio.gather(
            *(http.get("/api/v1/indicators?limit=5", headers=site.user) for _ in range(24))
        )
        assert {r.status_code for r in listed} == {200}
        whole = await http.get(CSV, headers=site.user)
        bundle = await http.get(STIX, headers=site.user)
    assert whole.status_code == 200 and whole.content.count(b"\n") == ROWS + 1
    assert bundle.status_code == 200 and len(bundle.json()["objects"]) > ROWS
    assert await _busy_backends(site) == []


async def _lookups(url: str, key: dict[str, str], until: float, codes: list[httpx.Response]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        i = 0
        while time.monotonic() < until:
            value = LOOKUP_VALUES[i % len(LOOKUP_VALUES)]
            codes.append(await http.get("/api/v1/lookup", params={"value": value}, headers=key))
            i += 1


def _assert_503s_are_problems(answers: list[httpx.Response]) -> None:
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["retry-after"] == "5" and answer.json()["status"] == 503


async def test_lookups_whose_connections_are_terminated(site: Site) -> None:
    """The fast path's connections killed under concurrent lookups: every lookup still answers 200."""
    answers: list[httpx.Response] = []
    warm = time.monotonic() + 1.0  # both workers read the key and open their pools
    await asyncio.gather(*(_lookups(site.serve.url, site.key, warm, answers) for _ in range(4)))
    assert {a.status_code for a in answers} == {200}

    answers.clear()
    terminated = 0
    until = time.monotonic() + 3.0
    clients = [asyncio.ensure_future(_lookups(site.serve.url, site.key, until, answers)) for _ in range(8)]
    admin = await site.admin()
    try:
        while time.monotonic() < until - 0.5:
            await asyncio.sleep(0.15)
            killed = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE '%raptorflow_lookup(%'"
            )
            terminated += len(killed)
    finally:
        await admin.close()
        await asyncio.gather(*clients)
    assert terminated >= 4
    statuses = [a.status_code for a in answers]
    assert len(statuses) > 50 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert any(e["event"] == "db.connection_lost" for e in site.events())


async def test_lookups_across_a_postgres_restart(site: Site) -> None:
    """While PostgreSQL restarts a lookup answers 200 or 503 with Retry-After, never 500; then 200."""
    answers: list[httpx.Response] = []
    until = time.monotonic() + 5.0
    clients = [asyncio.ensure_future(_lookups(site.serve.url, site.key, until, answers)) for _ in range(4)]
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(site.cluster.stop, "fast")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(site.cluster.start)
    finally:
        await asyncio.gather(*clients)
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
    assert 503 in statuses  # the database really was away for a second
    _assert_503s_are_problems(answers)
    # Back: the same pools reconnect.
    async with httpx.AsyncClient(base_url=site.serve.url, timeout=30) as http:
        again = [
            await http.get("/api/v1/lookup", params={"value": v}, headers=site.key)
            for v in LOOKUP_VALUES[:10]
        ]
    assert {a.status_code for a in again} == {200} and all(a.json()["found"] for a in again)
    assert not [e for e in site.events() if e["event"] == "request.unhandled_error"]


async def test_every_stderr_line_is_json(site: Site) -> None:
    """Libraries logging through `logging` (here uvicorn, refusing a malformed request) log JSON too."""
    with socket.create_connection(("127.0.0.1", site.serve.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\x00\x01\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.recv(1024)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = site.events()  # fails on any line that is not JSON, from either worker or the parent
        refused = [e for e in events if e.get("logger") == "uvicorn.error"]
        if refused:
            break
        await asyncio.sleep(0.1)
    assert refused and refused[0]["level"] == "warning", site.serve.stderr()[-2000:]
    # Tracebacks logged through `logging` are a field of their JSON line, never raw text.
    for event in events:
        if "exception" in event:
            assert "Traceback" in event["exception"]
