"""Outbound webhooks: CRUD, signed deliveries, score filter, retries, delivery log, SSRF guard."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update

from raptorflow.app import create_app
from raptorflow.config import SettingsError, dns_server_address, load_settings
from raptorflow.jobs.execution import execute_system
from raptorflow.jobs.service import wait_for
from raptorflow.kit.db import utcnow
from raptorflow.kit.http import allowed_addresses
from raptorflow.kit.jobs import org_transaction
from raptorflow.models import Job, WebhookDelivery
from raptorflow.webhooks.service import emit, next_attempt
from raptorflow.webhooks.signing import verify
from tests.conftest import Actor, create_org, make_settings, sign_up, truncate_all
from tests.dns_server import RebindingDns
from tests.platform.conftest import Receiver


async def _hook(client: httpx.AsyncClient, actor: Actor, org_id: str, **body: Any) -> dict[str, Any]:
    created = await client.post("/api/v1/webhooks", json=body, headers=actor.in_org(org_id))
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _jobs_of_kind(papp: Any, org_id: str) -> list[uuid.UUID]:
    async with org_transaction(papp.state.session_factory, uuid.UUID(org_id)) as session:
        rows = await session.execute(Job.__table__.select().where(Job.org_id == uuid.UUID(org_id)))
        return [r.id for r in rows]


async def test_test_delivery_is_signed_and_logged(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str], receiver: Receiver
) -> None:
    actor, org_id = owner
    hook = await _hook(pclient, actor, org_id, url=receiver.url, events=["indicator.created"])
    secret = hook["secret"]
    assert secret.startswith("whsec_")
    shown = await pclient.get(f"/api/v1/webhooks/{hook['id']}", headers=actor.in_org(org_id))
    assert "secret" not in shown.json()

    queued = await pclient.post(f"/api/v1/webhooks/{hook['id']}/test", headers=actor.in_org(org_id))
    assert queued.status_code == 202
    job_id = uuid.UUID(queued.json()["job_id"])
    await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    job = (await pclient.get(f"/api/v1/jobs/{job_id}", headers=actor.in_org(org_id))).json()
    assert job["status"] == "succeeded" and job["result"]["delivered"] == 1

    headers, body = receiver.requests[0]
    assert verify(secret, body, headers["x-raptorflow-signature"])
    assert not verify("whsec_wrong", body, headers["x-raptorflow-signature"])
    assert not verify(secret, body + b" ", headers["x-raptorflow-signature"])
    payload = orjson.loads(body)
    assert payload["event"] == "webhook.test" and headers["x-raptorflow-event"] == "webhook.test"
    assert payload["id"] == headers["x-raptorflow-delivery"] == queued.json()["delivery_id"]

    log = (
        await pclient.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=actor.in_org(org_id))
    ).json()
    assert [(d["status"], d["response_code"], d["attempts"]) for d in log["items"]] == [("succeeded", 200, 1)]


async def test_emit_respects_events_and_min_score(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str], receiver: Receiver
) -> None:
    actor, org_id = owner
    await _hook(pclient, actor, org_id, url=receiver.url, events=["indicator.created"], min_score=70)
    await _hook(pclient, actor, org_id, url=receiver.url, events=["sighting.added"])
    factory = papp.state.session_factory
    async with org_transaction(factory, uuid.UUID(org_id)) as session:
        assert (
            await emit(session, uuid.UUID(org_id), "indicator.created", {"value": "a.example", "score": 50})
            == 0
        )
        assert (
            await emit(session, uuid.UUID(org_id), "indicator.created", {"value": "b.example", "score": 80})
            == 1
        )
        assert await emit(session, uuid.UUID(org_id), "import.finished", {"created": 3}) == 0
    for job_id in await _jobs_of_kind(papp, org_id):
        await wait_for(factory, uuid.UUID(org_id), job_id)
    assert [orjson.loads(b)["data"]["value"] for _h, b in receiver.requests] == ["b.example"]


async def test_failed_delivery_is_retried_until_it_succeeds(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str], receiver: Receiver
) -> None:
    actor, org_id = owner
    hook = await _hook(pclient, actor, org_id, url=receiver.url, events=["feed.failed"])
    receiver.statuses = [500]
    factory = papp.state.session_factory
    async with org_transaction(factory, uuid.UUID(org_id)) as session:
        await emit(session, uuid.UUID(org_id), "feed.failed", {"feed": "x"})
    for job_id in await _jobs_of_kind(papp, org_id):
        await wait_for(factory, uuid.UUID(org_id), job_id)
    path = f"/api/v1/webhooks/{hook['id']}/deliveries"
    first = (await pclient.get(path, headers=actor.in_org(org_id))).json()["items"][0]
    assert (first["status"], first["response_code"], first["attempts"]) == ("pending", 500, 1)
    assert first["last_error"] == "HTTP 500" and first["next_attempt_at"] is not None

    # 30 s later (moved back instead of waited for), the periodic retry task sends it again.
    async with org_transaction(factory, uuid.UUID(org_id)) as session:
        await session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    before = set(await _jobs_of_kind(papp, org_id))
    summary = await execute_system(
        factory, papp.state.settings, "webhooks.retry_due", dispatcher=papp.state.jobs
    )
    assert summary["queued"] >= 1
    for job_id in set(await _jobs_of_kind(papp, org_id)) - before:
        await wait_for(factory, uuid.UUID(org_id), job_id)
    second = (await pclient.get(path, headers=actor.in_org(org_id))).json()["items"][0]
    assert (second["status"], second["response_code"], second["attempts"]) == ("succeeded", 200, 2)
    assert len(receiver.requests) == 2


def test_retries_back_off_and_stop_after_the_window() -> None:
    now = utcnow()
    window = timedelta(hours=24)
    assert next_attempt(1, now, now, window) == now + timedelta(seconds=30)
    assert next_attempt(3, now, now, window) == now + timedelta(minutes=2)
    assert next_attempt(20, now, now, window) == now + timedelta(hours=1)
    assert next_attempt(20, now - timedelta(hours=23, minutes=30), now, window) is None


async def test_ssrf_guard_refuses_private_targets_by_default(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "ssrf@example.com")
    org_id = await create_org(actor, "ssrf-org")
    for url in ("http://127.0.0.1:9/x", "http://localhost./x", "http://10.1.2.3/x", "http://[::1]/x",
                "http://169.254.169.254/latest/meta-data", "ftp://example.com/x", "http://u:p@example.com/"):  # fmt: skip
        refused = await client.post(
            "/api/v1/webhooks", json={"url": url, "events": ["feed.failed"]}, headers=actor.in_org(org_id)
        )
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["field"] == "url"


async def test_crud_and_validation(pclient: httpx.AsyncClient, owner: tuple[Actor, str]) -> None:
    actor, org_id = owner
    bad = await pclient.post(
        "/api/v1/webhooks",
        json={"url": "https://h.example/x", "events": ["nope"]},
        headers=actor.in_org(org_id),
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "events"
    hook = await _hook(pclient, actor, org_id, url="https://h.example/x", events=["sighting.added"])
    path = f"/api/v1/webhooks/{hook['id']}"
    patched = await pclient.patch(path, json={"active": False, "min_score": 40}, headers=actor.in_org(org_id))
    assert patched.json()["active"] is False and patched.json()["min_score"] == 40
    listed = await pclient.get("/api/v1/webhooks", headers=actor.in_org(org_id))
    assert [h["id"] for h in listed.json()["items"]] == [hook["id"]]
    assert (await pclient.delete(path, headers=actor.in_org(org_id))).status_code == 204
    assert (await pclient.get(path, headers=actor.in_org(org_id))).status_code == 404


def test_the_dns_server_setting_is_checked_at_start_up() -> None:
    assert dns_server_address("127.0.0.1") == ("127.0.0.1", 53)
    assert dns_server_address("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns_server_address("[::1]:53") == ("::1", 53)
    for bad in ("resolver.example", "127.0.0.1:x", "127.0.0.1:70000", "[::1]x"):
        with pytest.raises(SettingsError, match="RAPTORFLOW_OUTBOUND_DNS_SERVER"):
            load_settings(_env_file=None, outbound_dns_server=bad)


async def test_a_name_rebound_to_loopback_is_refused_at_delivery(
    database_url: str, receiver: Receiver
) -> None:
    """DNS rebinding: the name passes the guard while it resolves to a public address, then resolves to
    127.0.0.1 — the delivery is refused at connect time, for good (no retry)."""
    name = "rebind.raptorflow.test"
    # 192.88.99.1 is globally routable (the retired 6to4 anycast); it is only checked, never connected to.
    dns = RebindingDns(name, ["192.88.99.1", "127.0.0.1"])
    application = create_app(make_settings(database_url, outbound_dns_server=dns.address))
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            actor = await sign_up(client, "rebind@example.com")
            org_id = await create_org(actor, "rebind")
            port = int(receiver.url.split(":")[2].split("/")[0])
            hook = await _hook(
                client, actor, org_id, url=f"http://{name}:{port}/hook", events=["feed.failed"]
            )
            server = dns_server_address(dns.address)
            checked = await allowed_addresses(name, port, allow_private=False, dns_server=server)
            assert [str(a) for a in checked] == ["192.88.99.1"]

            factory = application.state.session_factory
            async with org_transaction(factory, uuid.UUID(org_id)) as session:
                assert await emit(session, uuid.UUID(org_id), "feed.failed", {"feed": "x"}) == 1
            for job_id in await _jobs_of_kind(application, org_id):
                await wait_for(factory, uuid.UUID(org_id), job_id)
            path = f"/api/v1/webhooks/{hook['id']}/deliveries"
            delivery = (await client.get(path, headers=actor.in_org(org_id))).json()["items"][0]
            assert dns.asked == ["192.88.99.1", "127.0.0.1"]
            assert (delivery["status"], delivery["attempts"]) == ("failed", 1), delivery
            assert delivery["last_error"].startswith("UnsafeTarget"), delivery
            assert delivery["next_attempt_at"] is None
            assert receiver.requests == []
    finally:
        await application.state.jobs.close()
        await truncate_all(application)
        await application.state.engine.dispose()
        dns.close()
