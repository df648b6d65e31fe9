"""Feeds pulled from real servers on 127.0.0.1: a static HTTP server (CSV, text, MISP feed) and medallion.

The servers are on 127.0.0.1, so most tests run an app with `outbound_allow_private=True`; the SSRF guard
tests run one with the default settings, whose DNS server (`tests.dns_server`) says a feed host is
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import trustme

from raptorflow.app import create_app
from tests.conftest import Actor, create_org, make_settings, sign_up, truncate_all
from tests.dns_server import RebindingDns

FEEDS = "/api/v1/feeds"
TAXII_USER, TAXII_PASSWORD = "feeder", "medallion-test-password"
COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
# What the tests' DNS server answers for this name: 127.0.0.1, where the feed servers are.
FEED_HOST = "feeds.raptorflow.test"
# The cap of what a pull reads whole (MISP files, TAXII pages), small enough to pass in a test.
OUTBOUND_MAX_BYTES = 64 * 1024


class _Quiet(SimpleHTTPRequestHandler):
    """Serves the directory; `/hop/N/path` redirects N times before serving `path`; `/to?location=X`
    redirects to X. Every request path is recorded in the server's `hits`."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        segments = parts.path.split("/", 3)
        if parts.path == "/to":
            self._redirect(parse_qs(parts.query)["location"][0])
        elif len(segments) == 4 and segments[1] == "hop" and int(segments[2]) > 0:
            self._redirect(f"/hop/{int(segments[2]) - 1}/{segments[3]}")
        elif len(segments) == 4 and segments[1] == "hop":
            self.path = "/" + segments[3]
            super().do_GET()
        else:
            super().do_GET()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


class FeedServer:
    """An HTTP (or, given a TLS context, HTTPS) server on 127.0.0.1 serving `root` with `_Quiet`."""

    def __init__(self, root: Path, tls: ssl.SSLContext | None = None) -> None:
        self.root = root
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
        self.hits: list[str] = []
        self.server.hits = self.hits  # type: ignore[attr-defined]
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[FeedServer]:
    """A static HTTP server on 127.0.0.1 serving a temporary directory."""
    root = tmp_path / "www"
    root.mkdir()
    server = FeedServer(root)
    yield server
    server.close()


@pytest.fixture
def static_server(feed_server: FeedServer) -> tuple[str, Path]:
    """The feed server's base URL and directory."""
    return feed_server.url, feed_server.root


@pytest.fixture(scope="module")
def feed_dns() -> Iterator[RebindingDns]:
    """A DNS server on 127.0.0.1 that resolves FEED_HOST to 127.0.0.1."""
    server = RebindingDns(FEED_HOST, ["127.0.0.1"])
    yield server
    server.close()


@pytest.fixture(scope="module")
async def app(database_url: str, feed_dns: RebindingDns) -> AsyncIterator[Any]:
    """The app (used by `client`) with outbound calls allowed to reach 127.0.0.1, where the feed servers
    are; names resolve through `feed_dns`; what a pull reads whole is capped at OUTBOUND_MAX_BYTES."""
    application = create_app(
        make_settings(
            database_url,
            outbound_allow_private=True,
            outbound_dns_server=feed_dns.address,
            outbound_max_bytes=OUTBOUND_MAX_BYTES,
        )
    )
    yield application
    await application.state.jobs.close()
    await application.state.engine.dispose()


@pytest.fixture(scope="module")
async def guarded_app(database_url: str, feed_dns: RebindingDns) -> AsyncIterator[Any]:
    """The app with the default outbound policy (the SSRF guard on); names resolve through `feed_dns`."""
    application = create_app(make_settings(database_url, outbound_dns_server=feed_dns.address))
    assert application.state.settings.outbound_allow_private is False
    yield application
    await application.state.jobs.close()
    await application.state.engine.dispose()


@pytest.fixture
async def guarded(guarded_app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Actor, str]]:
    """A client of `guarded_app`, an org owner and their org id; tables are emptied afterwards."""
    transport = httpx.ASGITransport(app=guarded_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        owner = await sign_up(http, "guarded@example.com")
        yield http, owner, await create_org(owner, "guarded")
    await guarded_app.state.jobs.drain(5)
    await truncate_all(guarded_app)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def medallion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """medallion (OASIS TAXII 2.1 server, memory backend) on 127.0.0.1; yields the collection URL."""
    exe = shutil.which("medallion", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.fail("medallion is not installed (it is in the dev extra)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("medallion")
    data = {
        "/discovery": {"title": "test", "api_roots": [f"{base}/feeds/"], "default": f"{base}/feeds/"},
        "feeds": {
            "information": {
                "title": "feeds",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 50_000_000,
            },
            "status": [],
            "collections": [
                {
                    "id": COLLECTION,
                    "title": "indicators",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
    (folder / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(folder / "data.json"),
        },
        "users": {TAXII_USER: TAXII_PASSWORD},
        "taxii": {"max_page_size": 100},
    }
    (folder / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), str(folder / "config.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(
                    f"{base}/taxii2/",
                    auth=(TAXII_USER, TAXII_PASSWORD),
                    headers={"Accept": "application/taxii+json;version=2.1"},
                )
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("medallion did not start")
            time.sleep(0.2)
        yield f"{base}/feeds/collections/{COLLECTION}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def analyst(client: httpx.AsyncClient) -> tuple[Actor, str]:
    """An org owner and their org id."""
    owner = await sign_up(client, "feeds@example.com")
    return owner, await create_org(owner, "feeds")


async def run_feed(client: httpx.AsyncClient, actor: Actor, org: str, feed_id: str) -> dict[str, Any]:
    """Pull a feed now and wait for its run to end."""
    queued = await client.post(f"{FEEDS}/{feed_id}/run", headers=actor.in_org(org))
    assert queued.status_code == 202, queued.text
    for _ in range(600):
        run = (await client.get(queued.headers["location"], headers=actor.in_org(org))).json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("feed run did not finish")


async def values(client: httpx.AsyncClient, actor: Actor, org: str) -> dict[str, Any]:
    """The org's indicators by value."""
    listed = await client.get("/api/v1/indicators", params={"limit": 1000}, headers=actor.in_org(org))
    return {i["value"]: i for i in listed.json()["items"]}


async def test_crud_and_credentials_never_shown(
    client: httpx.AsyncClient, analyst: tuple[Actor, str]
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    body = {
        "name": "abuse",
        "kind": "taxii",
        "url": "https://taxii.invalid/api/collections/x/",
        "username": "u",
        "password": "hunter2-secret",
        "schedule_minutes": 60,
        "tags": ["Abuse"],
        "tlp": "green",
    }
    made = await client.post(FEEDS, json=body, headers=headers)
    assert made.status_code == 201, made.text
    feed = made.json()
    assert feed["has_password"] is True and "hunter2" not in made.text and feed["tags"] == ["abuse"]
    assert made.headers["location"] == f"{FEEDS}/{feed['id']}"
    dup = await client.post(FEEDS, json=body, headers=headers)
    assert dup.status_code == 409
    bad = await client.post(FEEDS, json={**body, "name": "x", "url": "ftp://nope"}, headers=headers)
    assert bad.status_code == 422
    changed = await client.patch(
        f"{FEEDS}/{feed['id']}", json={"enabled": False, "password": None}, headers=headers
    )
    assert changed.json()["enabled"] is False and changed.json()["has_password"] is False
    refused = await client.post(f"{FEEDS}/{feed['id']}/run", headers=headers)
    assert refused.status_code == 409
    assert [f["id"] for f in (await client.get(FEEDS, headers=headers)).json()["items"]] == [feed["id"]]
    assert (await client.delete(f"{FEEDS}/{feed['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"{FEEDS}/{feed['id']}", headers=headers)).status_code == 404


async def test_csv_and_text_lists(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], static_server: tuple[str, Path]
) -> None:
    actor, org = analyst
    base, root = static_server
    (root / "c2.csv").write_text(
        "; generated 2026-12-01\nfirst_seen,dst_ip,dst_port,malware\n"
        "2026-11-30 10:00:00,198.51.100.7,443,Dridex\n2026-11-30 11:00:00,198.51.100.8,8080,Emotet\n"
        "2026-11-30 12:00:00,not-an-ip,80,x\n"
    )
    (root / "domains.txt").write_text("# abuse list\nbad-one.example\n\nbad-two.example  # phishing\n")
    headers = actor.in_org(org)
    csv_feed = await client.post(
        FEEDS,
        json={
            "name": "c2",
            "kind": "csv",
            "url": f"{base}/c2.csv",
            "type": "ipv4",
            "confidence": 80,
            "tags": ["botnet-c2"],
            "csv": {
                "value_column": "dst_ip",
                "first_seen_column": "first_seen",
                "tags_column": "malware",
                "comment_prefix": ";",
            },
        },
        headers=headers,
    )
    assert csv_feed.status_code == 201, csv_feed.text
    run = await run_feed(client, actor, org, csv_feed.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    assert (run["created"], run["rejected"]) == (2, 1) and run["feed_id"] == csv_feed.json()["id"]
    stored = await values(client, actor, org)
    assert stored["198.51.100.7"]["tags"] == ["botnet-c2", "dridex"]
    assert stored["198.51.100.7"]["sources"] == ["feed:c2"] and stored["198.51.100.7"]["confidence"] == 80
    assert stored["198.51.100.7"]["first_seen"].startswith("2026-11-30T10:00:00")
    text_feed = await client.post(
        FEEDS, json={"name": "domains", "kind": "text", "url": f"{base}/domains.txt"}, headers=headers
    )
    run = await run_feed(client, actor, org, text_feed.json()["id"])
    assert run["created"] == 2
    feed = (await client.get(f"{FEEDS}/{text_feed.json()['id']}", headers=headers)).json()
    assert feed["last_status"] == "succeeded" and feed["last_counts"]["created"] == 2 and feed["last_run_at"]
    missing = await client.post(
        FEEDS, json={"name": "gone", "kind": "text", "url": f"{base}/missing.txt"}, headers=headers
    )
    run = await run_feed(client, actor, org, missing.json()["id"])
    assert run["status"] == "failed" and "404" in run["error"]
    feed = (await client.get(f"{FEEDS}/{missing.json()['id']}", headers=headers)).json()
    assert feed["last_status"] == "failed" and "404" in feed["last_error"]


def _misp_event(event_uuid: str, timestamp: int, values: list[str]) -> dict[str, Any]:
    return {
        "Event": {
            "uuid": event_uuid,
            "info": f"event {timestamp}",
            "timestamp": str(timestamp),
            "Tag": [{"name": "tlp:clear"}],
            "Attribute": [{"type": "ip-dst", "value": v, "to_ids": True} for v in values],
        }
    }


async def test_misp_feed_is_incremental(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], static_server: tuple[str, Path]
) -> None:
    actor, org = analyst
    base, root = static_server
    misp = root / "misp"
    misp.mkdir()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    (misp / f"{first}.json").write_text(json.dumps(_misp_event(first, 100, ["192.0.2.1", "192.0.2.2"])))
    (misp / "manifest.json").write_text(json.dumps({first: {"timestamp": "100", "info": "one"}}))
    headers = actor.in_org(org)
    feed = (
        await client.post(
            FEEDS, json={"name": "misp", "kind": "misp", "url": f"{base}/misp"}, headers=headers
        )
    ).json()
    run = await run_feed(client, actor, org, feed["id"])
    assert (run["status"], run["created"]) == ("succeeded", 2), run
    assert (await values(client, actor, org))["192.0.2.1"]["tlp"] == "clear"
    # The first event is unchanged and must not be fetched again: remove its file to prove it.
    (misp / f"{first}.json").unlink()
    (misp / f"{second}.json").write_text(json.dumps(_misp_event(second, 200, ["192.0.2.3"])))
    (misp / "manifest.json").write_text(
        json.dumps({first: {"timestamp": "100"}, second: {"timestamp": "200"}})
    )
    run = await run_feed(client, actor, org, feed["id"])
    assert (run["status"], run["processed"], run["created"]) == ("succeeded", 1, 1), run
    bookmark = (await client.get(f"{FEEDS}/{feed['id']}", headers=headers)).json()["bookmark"]
    assert bookmark["events"] == {first: "100", second: "200"}


def _indicator(value: str) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-11-01T00:00:00.000Z",
        "modified": "2026-11-01T00:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '{value}']",
        "pattern_type": "stix",
        "valid_from": "2026-11-01T00:00:00Z",
    }


async def test_taxii_feed_keeps_an_added_after_bookmark(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], medallion: str
) -> None:
    from taxii2client.v21 import Collection

    actor, org = analyst
    collection = Collection(medallion, user=TAXII_USER, password=TAXII_PASSWORD)
    batch = [_indicator(f"203.0.113.{i}") for i in range(1, 151)]
    await asyncio.to_thread(collection.add_objects, {"objects": batch})
    headers = actor.in_org(org)
    feed = (
        await client.post(
            FEEDS,
            json={
                "name": "taxii",
                "kind": "taxii",
                "url": medallion,
                "username": TAXII_USER,
                "password": TAXII_PASSWORD,
                "tags": ["partner"],
            },
            headers=headers,
        )
    ).json()
    run = await run_feed(client, actor, org, feed["id"])
    assert run["status"] == "succeeded", run
    stored = await values(client, actor, org)
    ours = {v for v in stored if v.startswith("203.0.113.")}
    assert len(ours) >= 150 and "partner" in stored["203.0.113.1"]["tags"]
    bookmark = (await client.get(f"{FEEDS}/{feed['id']}", headers=headers)).json()["bookmark"]
    assert bookmark["added_after"]
    await asyncio.sleep(0.01)
    await asyncio.to_thread(collection.add_objects, {"objects": [_indicator("198.18.0.1")]})
    again = await run_feed(client, actor, org, feed["id"])
    assert (again["status"], again["processed"], again["created"]) == ("succeeded", 1, 1), again
    wrong = await client.patch(f"{FEEDS}/{feed['id']}", json={"password": "wrong"}, headers=headers)
    assert wrong.status_code == 200
    failed = await run_feed(client, actor, org, feed["id"])
    assert failed["status"] == "failed" and failed["error"]


async def test_scheduled_feeds_are_queued_when_due(
    client: httpx.AsyncClient, app: Any, analyst: tuple[Actor, str], static_server: tuple[str, Path]
) -> None:
    from raptorflow.kit.jobs import JobContext
    from raptorflow.sharing.feeds.tasks import schedule_due

    actor, org = analyst
    base, root = static_server
    (root / "list.txt").write_text("192.0.2.200\n")
    headers = actor.in_org(org)
    made = await client.post(
        FEEDS,
        json={"name": "hourly", "kind": "text", "url": f"{base}/list.txt", "schedule_minutes": 60},
        headers=headers,
    )
    await client.post(
        FEEDS, json={"name": "manual", "kind": "text", "url": f"{base}/list.txt"}, headers=headers
    )
    ctx = JobContext(
        job_id=uuid.uuid4(),
        org_id=None,
        settings=app.state.settings,
        session_factory=app.state.session_factory,
    )
    assert (await schedule_due(ctx, {}))["queued"] == 1
    for _ in range(400):
        feed = (await client.get(f"{FEEDS}/{made.json()['id']}", headers=headers)).json()
        if feed["last_status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert feed["last_counts"]["created"] == 1
    # Pulled just now: not due again for an hour.
    assert (await schedule_due(ctx, {}))["queued"] == 0


async def test_a_feed_being_pulled_is_not_queued_twice(
    client: httpx.AsyncClient, app: Any, analyst: tuple[Actor, str]
) -> None:
    from sqlalchemy import update
    from sqlalchemy.ext.asyncio import create_async_engine

    from raptorflow.models import Feed

    actor, org = analyst
    made = await client.post(
        FEEDS,
        json={"name": "busy", "kind": "text", "url": "https://feeds.invalid/x.txt"},
        headers=actor.in_org(org),
    )
    # As if a worker were pulling it right now (owner connection: no row-level security in the way).
    engine = create_async_engine(app.state.settings.database_url)
    async with engine.begin() as conn:
        await conn.execute(
            update(Feed).where(Feed.id == uuid.UUID(made.json()["id"])).values(last_status="running")
        )
    await engine.dispose()
    busy = await client.post(f"{FEEDS}/{made.json()['id']}/run", headers=actor.in_org(org))
    assert busy.status_code == 409 and "already" in busy.json()["detail"]


# --- the SSRF guard --------------------------------------------------------------------------------


async def test_unsafe_feed_urls_are_refused_up_front(guarded: tuple[httpx.AsyncClient, Actor, str]) -> None:
    client, actor, org = guarded
    headers = actor.in_org(org)
    for url in ("http://127.0.0.1:8080/list.txt", "http://localhost./x", "http://10.1.2.3/x", "http://[::1]/x",
                "http://169.254.169.254/latest/meta-data/", "http://u:p@lists.example/x"):  # fmt: skip
        refused = await client.post(FEEDS, json={"name": "x", "kind": "text", "url": url}, headers=headers)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "url", refused.json()
    # A name is accepted: what it resolves to is checked at every connection.
    made = await client.post(
        FEEDS, json={"name": "ok", "kind": "text", "url": "https://lists.example/x.txt"}, headers=headers
    )
    assert made.status_code == 201, made.text
    moved = await client.patch(
        f"{FEEDS}/{made.json()['id']}", json={"url": "http://192.168.1.1/x.txt"}, headers=headers
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "url"
    kept = await client.get(f"{FEEDS}/{made.json()['id']}", headers=headers)
    assert kept.json()["url"] == "https://lists.example/x.txt"
    assert (await client.get(FEEDS, headers=headers)).json()["items"] == [kept.json()]


async def test_a_feed_host_resolving_to_loopback_is_refused_when_pulled(
    guarded: tuple[httpx.AsyncClient, Actor, str], feed_server: FeedServer, medallion: str
) -> None:
    """A name passes the up-front check; the pull's connection is refused by the guard, for every kind."""
    client, actor, org = guarded
    headers = actor.in_org(org)
    (feed_server.root / "list.txt").write_text("192.0.2.10\n")
    port = urlsplit(feed_server.url).port
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example/x", "events": ["feed.failed"]},
        headers=headers,
    )
    assert hook.status_code == 201, hook.text
    taxii_port = urlsplit(medallion).port
    for kind, url in (
        ("text", f"http://{FEED_HOST}:{port}/list.txt"),
        ("misp", f"http://{FEED_HOST}:{port}/misp/"),
        ("taxii", f"http://{FEED_HOST}:{taxii_port}/feeds/collections/{COLLECTION}/"),
    ):
        body = {"name": kind, "kind": kind, "url": url, "username": TAXII_USER, "password": TAXII_PASSWORD}
        made = await client.post(FEEDS, json=body, headers=headers)
        assert made.status_code == 201, made.text
        run = await run_feed(client, actor, org, made.json()["id"])
        assert run["status"] == "failed", (kind, run)
        assert run["error"].startswith(f"UnsafeTarget: {FEED_HOST} resolves to a loopback"), (kind, run)
        feed = (await client.get(f"{FEEDS}/{made.json()['id']}", headers=headers)).json()
        assert (feed["last_status"], feed["last_error"]) == ("failed", run["error"])
    assert feed_server.hits == []
    assert (await client.get("/api/v1/indicators", headers=headers)).json()["items"] == []
    deliveries = await client.get(f"/api/v1/webhooks/{hook.json()['id']}/deliveries", headers=headers)
    failed = sorted(d["payload"]["data"]["name"] for d in deliveries.json()["items"])
    assert failed == ["misp", "taxii", "text"]
    assert all("UnsafeTarget" in d["payload"]["data"]["error"] for d in deliveries.json()["items"])


async def test_redirects_are_followed_hop_by_hop_through_the_guard(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], feed_server: FeedServer, feed_dns: RebindingDns
) -> None:
    """Feed hosts redirect (to a CDN): followed up to 5 hops, each connection made (and its name resolved)
    by the guard; a sixth hop or a non-http(s) target fails the pull with the reason."""
    actor, org = analyst
    headers = actor.in_org(org)
    (feed_server.root / "list.txt").write_text("192.0.2.20\n")
    port = urlsplit(feed_server.url).port
    cdn = f"http://{FEED_HOST}:{port}/hop/4/list.txt"
    asked = len(feed_dns.asked)
    targets = {
        "cdn": f"{feed_server.url}/to?{urlencode({'location': cdn})}",  # 1 + 4 redirects
        "loop": f"{feed_server.url}/hop/6/list.txt",
        "file": f"{feed_server.url}/to?{urlencode({'location': 'file:///etc/passwd'})}",
    }
    runs = {}
    for name, url in targets.items():
        made = await client.post(FEEDS, json={"name": name, "kind": "text", "url": url}, headers=headers)
        assert made.status_code == 201, made.text
        runs[name] = await run_feed(client, actor, org, made.json()["id"])
    assert (runs["cdn"]["status"], runs["cdn"]["created"]) == ("succeeded", 1), runs["cdn"]
    # The CDN's name was resolved by the guard's resolver (the system one does not know it).
    assert len(feed_dns.asked) > asked
    assert runs["loop"]["status"] == "failed"
    assert runs["loop"]["error"].startswith("RedirectRefused: more than 5 redirects"), runs["loop"]
    assert runs["file"]["status"] == "failed"
    assert runs["file"]["error"].startswith("UnsafeTarget: "), runs["file"]
    assert "only http:// and https:// URLs are allowed" in runs["file"]["error"]
    assert feed_server.hits.count("/hop/0/list.txt") == 1  # the sixth hop of "loop" was never asked for
    assert list(await values(client, actor, org)) == ["192.0.2.20"]


async def test_an_https_feed_redirecting_to_http_is_refused(
    client: httpx.AsyncClient,
    analyst: tuple[Actor, str],
    feed_server: FeedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    actor, org = analyst
    headers = actor.in_org(org)
    (feed_server.root / "list.txt").write_text("192.0.2.30\n")
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    # How an operator trusts a private CA; read by the outbound client each pull builds.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    secure = FeedServer(feed_server.root, tls)
    try:
        direct = await client.post(
            FEEDS, json={"name": "tls", "kind": "text", "url": f"{secure.url}/list.txt"}, headers=headers
        )
        run = await run_feed(client, actor, org, direct.json()["id"])
        assert (run["status"], run["created"]) == ("succeeded", 1), run
        down = f"{secure.url}/to?{urlencode({'location': feed_server.url + '/list.txt'})}"
        made = await client.post(FEEDS, json={"name": "down", "kind": "text", "url": down}, headers=headers)
        run = await run_feed(client, actor, org, made.json()["id"])
        assert run["status"] == "failed", run
        assert run["error"].startswith("RedirectRefused: "), run
        assert run["error"].endswith("a redirect from https to http is refused"), run
        assert feed_server.hits == []
    finally:
        secure.close()


async def test_what_a_pull_reads_whole_is_capped_but_a_list_streams(
    client: httpx.AsyncClient, analyst: tuple[Actor, str], static_server: tuple[str, Path]
) -> None:
    """A MISP event past RAPTORFLOW_OUTBOUND_MAX_BYTES fails the pull; a text list past it is an import
    like an upload (capped at the upload cap) and goes through."""
    actor, org = analyst
    headers = actor.in_org(org)
    base, root = static_server
    misp = root / "misp"
    misp.mkdir()
    event = str(uuid.uuid4())
    big = _misp_event(event, 100, [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(2_000)])
    (misp / f"{event}.json").write_text(json.dumps(big))
    assert (misp / f"{event}.json").stat().st_size > OUTBOUND_MAX_BYTES
    (misp / "manifest.json").write_text(json.dumps({event: {"timestamp": "100"}}))
    feed = await client.post(
        FEEDS, json={"name": "misp", "kind": "misp", "url": f"{base}/misp/"}, headers=headers
    )
    run = await run_feed(client, actor, org, feed.json()["id"])
    assert run["status"] == "failed", run
    assert run["error"].startswith("ResponseTooLarge: "), run
    assert await values(client, actor, org) == {}
    padding = ("# " + "x" * 1_000 + "\n") * 200
    (root / "long.txt").write_text(padding + "192.0.2.40\n" + padding + "192.0.2.41\n")
    assert (root / "long.txt").stat().st_size > 2 * OUTBOUND_MAX_BYTES
    feed = await client.post(
        FEEDS, json={"name": "long", "kind": "text", "url": f"{base}/long.txt"}, headers=headers
    )
    run = await run_feed(client, actor, org, feed.json()["id"])
    assert (run["status"], run["created"]) == ("succeeded", 2), run
