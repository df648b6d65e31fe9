"""Feed rules: CRUD, credentials kept sealed, and pulls (TAXII 2.1, MISP feeds, CSV and text lists).

A pull runs as a job and records itself as an import (`imports.feed_id`), so its counts, rejections and
state are read like any import's. TAXII collections are read with taxii2-client from the `added_after`
bookmark; MISP feeds fetch only events whose manifest timestamp is newer than the one seen last time.

Every byte of a pull comes through the outbound client of `kit.http` (taxii2-client's requests too), so
feeds obey the same SSRF guard and settings as webhooks; unlike webhooks they follow redirects, each hop
checked. A CSV or text list streams into the import and may be as large as an uploaded file
(`imports.service.MAX_UPLOAD`); what is read whole (a MISP manifest or event, a TAXII page) stops at
`RAPTORFLOW_OUTBOUND_MAX_BYTES`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from taxii2client.common import _HTTPConnection
from taxii2client.v21 import Collection, as_pages

from raptorflow.audit import service as audit
from raptorflow.auth.principal import OrgContext
from raptorflow.config import Settings
from raptorflow.intel.common import clean_tags
from raptorflow.intel.indicators.normalize import TYPE_ALIASES
from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.jobs.service import enqueue
from raptorflow.kit.crypto import seal, unseal
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import Conflict, InvalidInput, NotFound, UnknownReference
from raptorflow.kit.http import OutboundClient, UnsafeTarget, check_target, outbound_client, send_through
from raptorflow.kit.jobs import JobContext
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.models import Feed, ImportRun, Project
from raptorflow.sharing.feeds.repository import FeedRepository
from raptorflow.sharing.feeds.schemas import FeedCreate, FeedUpdate
from raptorflow.sharing.imports import parsers
from raptorflow.sharing.imports.parsers import Record, Rejection
from raptorflow.sharing.imports.repository import ImportRepository
from raptorflow.sharing.imports.service import (
    MAX_UPLOAD,
    Defaults,
    ImportCancelled,
    Tally,
    counted,
    finish_import,
    import_stix,
    ingest,
    record_batches,
)
from raptorflow.webhooks.service import emit

TASK = "feeds.pull"
# Feed servers can take a while to build a page or start a big list: longer than a webhook's answer.
HTTP_TIMEOUT_S = 60.0
# Feed hosts redirect (to a CDN, a dated file); a chain longer than this is a loop or a trick.
MAX_REDIRECTS = 5
SECRET_PURPOSE = "feed-credentials"  # noqa: S105 — a key-derivation label, not a secret
TAXII_PAGE = 1000
MISP_BATCH = 20_000


def _seal(password: str | None, settings: Settings) -> str | None:
    if password is None:
        return None
    if settings.secret_key:
        return "sealed:" + seal(password, settings.secret_key, SECRET_PURPOSE)
    # Without a server secret there is nothing to seal with (the README says to set one in production).
    return "plain:" + password


def password_of(feed: Feed, settings: Settings) -> str | None:
    """The feed's password, unsealed."""
    if not feed.secret:
        return None
    kind, _, value = feed.secret.partition(":")
    if kind == "sealed":
        if not settings.secret_key:
            raise ValueError("the feed's password was sealed with RAPTORFLOW_SECRET_KEY, which is not set")
        return unseal(value, settings.secret_key, SECRET_PURPOSE)
    return value


def feed_out(feed: Feed) -> dict[str, Any]:
    """A feed as the API shows it."""
    config = feed.config or {}
    return {
        "id": feed.id,
        "name": feed.name,
        "kind": feed.kind,
        "url": feed.url,
        "username": config.get("username"),
        "has_password": bool(feed.secret),
        "schedule_minutes": feed.schedule_minutes,
        "enabled": feed.enabled,
        "project_id": feed.project_id,
        "tags": feed.default_tags,
        "tlp": feed.tlp,
        "confidence": feed.confidence,
        "type": config.get("type"),
        "csv": config.get("csv"),
        "bookmark": feed.bookmark or {},
        "last_run_at": feed.last_run_at,
        "last_status": feed.last_status,
        "last_counts": feed.last_counts or {},
        "last_error": feed.last_error,
        "last_job_id": feed.last_job_id,
        "created_by": feed.created_by,
        "created_at": feed.created_at,
        "updated_at": feed.updated_at,
    }


class FeedService:
    """Feeds of one org for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext, settings: Settings) -> None:
        self.session = session
        self.ctx = ctx
        self.settings = settings
        self.repo = FeedRepository(session, ctx.org_id)

    async def _check(
        self,
        project_id: uuid.UUID | None,
        kind_type: str | None,
        name: str | None,
        feed_id: uuid.UUID | None,
        url: str | None = None,
    ) -> None:
        if url is not None:
            try:
                check_target(url, allow_private=self.settings.outbound_allow_private)
            except UnsafeTarget as exc:
                raise InvalidInput("url", str(exc)) from None
        if project_id is not None:
            found = await IndicatorRepository(self.session, self.ctx.org_id).existing_ids(
                Project, [project_id]
            )
            if not found:
                raise UnknownReference("project_id", "project")
        if kind_type is not None and kind_type.strip().lower() not in TYPE_ALIASES:
            raise InvalidInput("type", f"unknown indicator type {kind_type!r}")
        if name is not None:
            other = await self.repo.by_name(name)
            if other is not None and other.id != feed_id:
                raise Conflict(f"A feed named {name!r} already exists.")

    async def create(self, body: FeedCreate) -> Feed:
        """Subscribe to a source."""
        await self._check(body.project_id, body.type, body.name, None, body.url)
        now = utcnow()
        config: dict[str, Any] = {}
        if body.username:
            config["username"] = body.username
        if body.type:
            config["type"] = body.type.strip().lower()
        if body.csv is not None:
            config["csv"] = body.csv.model_dump(mode="json")
        feed = Feed(
            id=new_id(),
            org_id=self.ctx.org_id,
            name=body.name,
            kind=body.kind,
            url=body.url,
            config=config,
            secret=_seal(body.password, self.settings),
            schedule_minutes=body.schedule_minutes,
            enabled=body.enabled,
            project_id=body.project_id,
            default_tags=clean_tags(body.tags),
            tlp=body.tlp.value,
            confidence=body.confidence,
            bookmark={},
            last_counts={},
            created_by=self.ctx.principal.user_id,
            created_at=now,
            updated_at=now,
        )
        self.session.add(feed)
        await self.session.flush()
        await audit.record(
            self.session,
            self.ctx.audit(),
            "feed.created",
            org_id=self.ctx.org_id,
            target_type="feed",
            target_id=feed.id,
            details={"kind": feed.kind, "url": feed.url},
        )
        return feed

    async def get(self, feed_id: uuid.UUID) -> Feed:
        """One feed, or 404."""
        feed = await self.repo.get(feed_id)
        if feed is None:
            raise NotFound()
        return feed

    async def page(self, limit: int, cursor: str | None) -> tuple[list[Feed], str | None]:
        """Newest first."""
        values = decode_cursor(cursor)
        before = None
        if values is not None:
            try:
                before = uuid.UUID(str(values["before"]))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = list(await self.repo.page(before, limit))
        return rows, encode_cursor({"before": str(rows[-1].id)}) if len(rows) == limit else None

    async def update(self, feed_id: uuid.UUID, body: FeedUpdate) -> Feed:
        """Change a feed; a new URL starts again from no bookmark."""
        feed = await self.get(feed_id)
        changes = body.model_dump(exclude_unset=True)
        await self._check(
            changes.get("project_id"), changes.get("type"), changes.get("name"), feed.id, changes.get("url")
        )
        config = dict(feed.config or {})
        for name in ("name", "schedule_minutes", "project_id"):
            if name in changes:
                setattr(feed, name, changes[name])
        for name in ("enabled", "confidence", "url"):
            if name in changes:
                if changes[name] is None:
                    raise InvalidInput(name, "cannot be null")
                if name == "url" and changes["url"] != feed.url:
                    feed.bookmark = {}
                setattr(feed, name, changes[name])
        if "name" in changes and changes["name"] is None:
            raise InvalidInput("name", "cannot be null")
        if "tags" in changes:
            feed.default_tags = clean_tags(changes["tags"] or [])
        if "tlp" in changes:
            if body.tlp is None:
                raise InvalidInput("tlp", "cannot be null")
            feed.tlp = body.tlp.value
        if "type" in changes:
            config["type"] = changes["type"].strip().lower() if changes["type"] else None
        if "csv" in changes:
            config["csv"] = body.csv.model_dump(mode="json") if body.csv else None
        if "username" in changes:
            config["username"] = changes["username"] or None
        if "password" in changes:
            feed.secret = _seal(changes["password"], self.settings)
        feed.config = {k: v for k, v in config.items() if v is not None}
        feed.updated_at = utcnow()
        await self.session.flush()
        await audit.record(
            self.session,
            self.ctx.audit(),
            "feed.updated",
            org_id=self.ctx.org_id,
            target_type="feed",
            target_id=feed.id,
            details={"fields": sorted(k for k in changes if k != "password")},
        )
        return feed

    async def delete(self, feed_id: uuid.UUID) -> None:
        """Unsubscribe."""
        feed = await self.get(feed_id)
        await self.repo.delete(feed)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "feed.deleted",
            org_id=self.ctx.org_id,
            target_type="feed",
            target_id=feed_id,
        )

    async def run(self, feed_id: uuid.UUID) -> ImportRun:
        """Queue a pull now (whatever the schedule); 409 for a disabled feed or one already being pulled."""
        feed = await self.get(feed_id)
        if not feed.enabled:
            raise Conflict("The feed is disabled; enable it first.")
        if feed.last_status in ("queued", "running"):
            raise Conflict(
                "A pull of this feed is already queued or running; follow it in GET /api/v1/imports."
            )
        return await queue_pull(self.session, feed, self.ctx.principal.user_id)


async def queue_pull(session: AsyncSession, feed: Feed, user_id: uuid.UUID | None) -> ImportRun:
    """An import row for the pull and its job (dispatched after commit)."""
    row = ImportRun(
        id=new_id(),
        org_id=feed.org_id,
        feed_id=feed.id,
        format=feed.kind,
        filename=feed.url[:300],
        size_bytes=0,
        options={},
        status="queued",
        processed=0,
        created=0,
        merged=0,
        rejected=0,
        rejections=[],
        created_by=user_id,
    )
    session.add(row)
    await session.flush()
    job = await enqueue(
        session, feed.org_id, TASK, {"feed_id": str(feed.id), "import_id": str(row.id)}, created_by=user_id
    )
    row.job_id = job.id
    feed.last_job_id = job.id
    feed.last_status = "queued"
    await session.flush()
    return row


# --- pulling (jobs) ------------------------------------------------------------------------------


def _defaults(feed: Feed) -> Defaults:
    config = feed.config or {}
    return Defaults(
        project_id=feed.project_id,
        tags=list(feed.default_tags or []),
        tlp=feed.tlp,
        confidence=feed.confidence,
        score=50,
        classification="unknown",
        source=f"feed:{feed.name}",
        type=config.get("type"),
        confidence_given=True,
        created_by=feed.created_by,
        csv=config.get("csv"),
    )


def _auth(feed: Feed, password: str | None) -> httpx.BasicAuth | None:
    username = (feed.config or {}).get("username")
    return httpx.BasicAuth(username, password or "") if username else None


async def _download(client: OutboundClient, url: str) -> AsyncIterator[bytes]:
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise ValueError(f"GET {url} answered {response.status_code}")
        # Streamed into the import like an upload, so capped like one (not held in memory).
        async with aclosing(client.body(response, MAX_UPLOAD)) as chunks:
            async for chunk in chunks:
                yield chunk


async def _misp_batches(
    client: OutboundClient, base: str, seen: dict[str, Any], bookmark: dict[str, Any]
) -> AsyncIterator[Sequence[Record | Rejection]]:
    """Records of the MISP feed's events that are new or changed since the last pull."""
    response = await client.request("GET", base + "manifest.json")
    if response.status_code != 200:
        raise ValueError(f"GET {base}manifest.json answered {response.status_code}")
    try:
        manifest = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ValueError("manifest.json is not JSON") from None
    if not isinstance(manifest, dict):
        raise ValueError("manifest.json is not an object of events")
    batch: list[Record | Rejection] = []
    for event_uuid, entry in manifest.items():
        stamp = str((entry or {}).get("timestamp", "")) if isinstance(entry, dict) else ""
        if seen.get(event_uuid) == stamp:
            continue
        event = await client.request("GET", f"{base}{event_uuid}.json")
        if event.status_code != 200:
            batch.append(Rejection(0, event_uuid, f"event file answered {event.status_code}"))
            continue
        batch.extend(parsers.misp_records(event.content))
        bookmark[event_uuid] = stamp
        if len(batch) >= MISP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _taxii_pages(collection: Collection, added_after: str | None) -> Iterator[Any]:
    """Pages of objects of a TAXII 2.1 collection (taxii2-client; blocking, run in a thread)."""
    filters = {"added_after": added_after} if added_after else {}
    last = added_after
    for page in as_pages(collection.get_manifest, per_request=TAXII_PAGE, **filters):
        for entry in page.get("objects", []):
            if last is None or entry.get("date_added", "") > last:
                last = entry["date_added"]
    yield {"bookmark": last}
    for page in as_pages(collection.get_objects, per_request=TAXII_PAGE, **filters):
        yield page.get("objects", [])


async def _pull_taxii(
    ctx: JobContext,
    client: OutboundClient,
    feed: Feed,
    password: str | None,
    defaults: Defaults,
    tally: Tally,
) -> dict[str, Any]:
    username = (feed.config or {}).get("username")
    conn = _HTTPConnection(user=username, password=password, version="2.1")
    # taxii2-client blocks in a thread; its requests are sent by `client` on this loop, through the guard.
    send_through(conn.session, client, asyncio.get_running_loop())
    try:
        collection = Collection(feed.url, conn=conn)
        pages = _taxii_pages(collection, (feed.bookmark or {}).get("added_after"))
        first = await asyncio.to_thread(next, pages, None)
        new_mark = (first or {}).get("bookmark")
        while True:
            objects = await asyncio.to_thread(next, pages, None)
            if objects is None:
                break
            if objects:
                await import_stix(ctx, objects, defaults, tally)
            if await ctx.is_cancelled():
                raise ImportCancelled()
    finally:
        conn.close()
    return {"added_after": new_mark} if new_mark else dict(feed.bookmark or {})


async def pull(ctx: JobContext, feed_id: uuid.UUID, import_id: uuid.UUID) -> dict[str, Any]:
    """The job: pull one feed into the org, then record the run on the feed and its import."""
    assert ctx.org_id is not None
    org_id = ctx.org_id
    async with ctx.transaction() as session:
        feed = await FeedRepository(session, ctx.org_id).get(feed_id)
        run = await ImportRepository(session, ctx.org_id).get(import_id)
        if feed is None or run is None:
            return {"error": "feed or import not found"}
        if run.status in ("succeeded", "failed", "cancelled"):
            return {"status": run.status}
        await ImportRepository(session, ctx.org_id).set(import_id, status="running")
        feed.last_status = "running"
        session.expunge(feed)
    defaults = _defaults(feed)
    tally = Tally()
    status, error, bookmark = "succeeded", None, dict(feed.bookmark or {})
    try:
        password = password_of(feed, ctx.settings)
        if feed.kind == "taxii":
            # taxii2-client sends its own Authorization header: the client adds none.
            client = outbound_client(ctx.settings, timeout_s=HTTP_TIMEOUT_S, max_redirects=MAX_REDIRECTS)
            try:
                bookmark = await _pull_taxii(ctx, client, feed, password, defaults, tally)
            finally:
                await client.aclose()
        else:
            client = outbound_client(
                ctx.settings,
                timeout_s=HTTP_TIMEOUT_S,
                max_redirects=MAX_REDIRECTS,
                auth=_auth(feed, password),
            )
            try:
                if feed.kind == "misp":
                    base = feed.url if feed.url.endswith("/") else feed.url + "/"
                    seen = dict(bookmark.get("events") or {})
                    fresh: dict[str, Any] = {}
                    await ingest(
                        ctx,
                        _misp_batches(client, base, seen, fresh),
                        defaults,
                        tally,
                        history={"feed_id": str(feed.id)},
                    )
                    bookmark = {"events": {**seen, **fresh}}
                else:
                    chunks = counted(_download(client, feed.url), tally)
                    await ingest(
                        ctx,
                        record_batches(feed.kind, chunks, defaults),
                        defaults,
                        tally,
                        history={"feed_id": str(feed.id)},
                    )
            finally:
                await client.aclose()
    except ImportCancelled:
        status = "cancelled"
    except (
        Exception
    ) as exc:  # a remote source fails in many ways (HTTP, JSON, taxii2-client): all are the run's
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]

    async def record_run(session: AsyncSession) -> None:
        # In the import's final transaction: whoever sees the run over sees the feed's bookmark too.
        stored = await FeedRepository(session, org_id).get(feed_id)
        if stored is not None:
            stored.last_run_at = utcnow()
            stored.last_status = status
            stored.last_error = error
            stored.last_counts = {**tally.counts(), "processed": tally.processed}
            if status == "succeeded":
                stored.bookmark = bookmark
            if status == "failed":
                data = {"id": str(feed_id), "name": stored.name, "error": error}
                await emit(session, org_id, "feed.failed", data)

    await finish_import(ctx, import_id, status, error, tally, also=record_run)
    return {"status": status, **tally.counts(), "processed": tally.processed}


SCHEDULE_BATCH = 500


async def queue_due(session: AsyncSession, now: datetime) -> int:
    """Queue a pull of every enabled, scheduled feed whose period has passed (all orgs; system task)."""
    candidates = await FeedRepository.due_candidates(session, SCHEDULE_BATCH)
    queued = 0
    for feed in candidates:
        period = timedelta(minutes=feed.schedule_minutes or 0)
        if feed.last_run_at is None or feed.last_run_at + period <= now:
            await queue_pull(session, feed, None)
            queued += 1
    return queued
