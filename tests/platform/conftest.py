"""Fixtures of the platform tests: an app with fast job retries, its client, a signed-up org owner."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.jobs.service import enqueue
from raptorflow.kit.jobs import org_transaction
from tests.conftest import Actor, create_org, make_settings, sign_up, truncate_all

TEST_REDIS_DB_URL = "redis://127.0.0.1:6379/14"
TEST_BROKER_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="session")
async def papp(database_url: str) -> AsyncIterator[Any]:
    """The app with job retries a few milliseconds apart and webhooks allowed to reach 127.0.0.1."""
    application = create_app(
        make_settings(database_url, job_retry_base_s=0.02, job_max_attempts=3, outbound_allow_private=True)
    )
    yield application
    await application.state.jobs.close()
    await application.state.engine.dispose()


@pytest.fixture
async def pclient(papp: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client on `papp`; jobs are drained and tables emptied afterwards."""
    transport = httpx.ASGITransport(app=papp, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await papp.state.jobs.drain(5)
    await truncate_all(papp)


@pytest.fixture
async def owner(pclient: httpx.AsyncClient) -> tuple[Actor, str]:
    """A signed-up user and the org they own."""
    actor = await sign_up(pclient, f"owner-{uuid.uuid4().hex[:8]}@example.com")
    org_id = await create_org(actor, f"org-{uuid.uuid4().hex[:8]}")
    return actor, org_id


async def enqueue_now(application: Any, org_id: str, kind: str, payload: dict[str, Any]) -> uuid.UUID:
    """Enqueue a job in its own committed transaction (dispatched after the commit, like a request)."""
    async with org_transaction(application.state.session_factory, uuid.UUID(org_id)) as session:
        job = await enqueue(session, uuid.UUID(org_id), kind, payload)
    return job.id


class Receiver:
    """A webhook receiver on 127.0.0.1: records each request, answers with the next queued status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver."""
    found = Receiver()
    yield found
    found.close()
