"""TAXII 2.1 rules: collections (admins define them), collection pages, writes with status resources."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit import service as audit
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.intel.common import clean_tags
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import Conflict, InvalidInput, InvalidParameter, NotFound, UnknownReference
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.models import TaxiiCollection, TaxiiStatus
from raptorflow.sharing.stix import render
from raptorflow.sharing.stix.importer import ImportDefaults
from raptorflow.sharing.stix.repository import StixRepository
from raptorflow.sharing.stix.service import import_bundle
from raptorflow.sharing.taxii.repository import TaxiiRepository
from raptorflow.sharing.taxii.schemas import CollectionCreate, CollectionUpdate

STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
MAX_PAGE = 1000
MAX_WRITE_OBJECTS = 10_000
INDICATOR_TYPES = {
    "ipv4", "ipv6", "cidr", "domain", "url", "email", "md5", "sha1", "sha256", "sha512", "asn", "cve",
    "filename", "mutex", "registry-key", "user-agent", "btc-address", "stix-pattern",
}  # fmt: skip


def collection_url(public_url: str, slug: str, collection_id: uuid.UUID) -> str:
    """Where TAXII clients find a collection."""
    return f"{public_url.rstrip('/')}/taxii2/{slug}/collections/{collection_id}/"


def _clean_filter(raw: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in raw.items() if v is not None}
    if "project_id" in out:
        out["project_id"] = str(out["project_id"])
    if "tags" in out:
        out["tags"] = clean_tags(out["tags"], "filter.tags")
    if "types" in out:
        types = [t.strip().lower() for t in out["types"]]
        unknown = [t for t in types if t not in INDICATOR_TYPES]
        if unknown:
            raise InvalidInput("filter.types", "unknown indicator type(s): " + ", ".join(unknown))
        out["types"] = sorted(set(types))
    if "tlp_max" in out:
        out["tlp_max"] = str(getattr(out["tlp_max"], "value", out["tlp_max"]))
    return out


class CollectionService:
    """TAXII collections of one org, for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = TaxiiRepository(session, ctx.org_id)

    async def get(self, collection_id: uuid.UUID) -> TaxiiCollection:
        """One collection, or 404."""
        row = await self.repo.collection(collection_id)
        if row is None:
            raise NotFound()
        return row

    async def _check(self, title: str | None, spec: dict[str, Any] | None, other: uuid.UUID | None) -> None:
        if title is not None and await self.repo.title_taken(title, other):
            raise Conflict("A collection with this title exists in this organization.")
        project = uuid.UUID(spec["project_id"]) if spec and spec.get("project_id") else None
        if project is not None and not await StixRepository(self.session, self.ctx.org_id).project_exists(
            project
        ):
            raise UnknownReference("filter.project_id", "project")

    async def create(self, body: CollectionCreate) -> TaxiiCollection:
        """A new collection (admins)."""
        spec = _clean_filter(body.filter.model_dump())
        await self._check(body.title, spec, None)
        now = utcnow()
        row = TaxiiCollection(
            id=new_id(),
            org_id=self.ctx.org_id,
            title=body.title,
            description=body.description,
            filter=spec,
            can_read=body.can_read,
            can_write=body.can_write,
            created_by=self.ctx.principal.user_id,
            created_at=now,
            updated_at=now,
        )
        await self.repo.add(row)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "taxii_collection.created",
            org_id=self.ctx.org_id,
            target_type="taxii_collection",
            target_id=row.id,
            details={"title": row.title, "can_read": row.can_read, "can_write": row.can_write},
        )
        return row

    async def update(self, collection_id: uuid.UUID, body: CollectionUpdate) -> TaxiiCollection:
        """Change a collection (admins)."""
        row = await self.get(collection_id)
        changes = body.model_dump(exclude_unset=True)
        spec = _clean_filter(changes["filter"]) if "filter" in changes else None
        await self._check(changes.get("title"), spec, row.id)
        for name in ("title", "description", "can_read", "can_write"):
            if name in changes:
                setattr(row, name, changes[name])
        if spec is not None:
            row.filter = spec
        row.updated_at = utcnow()
        await self.session.flush()
        await audit.record(
            self.session,
            self.ctx.audit(),
            "taxii_collection.updated",
            org_id=self.ctx.org_id,
            target_type="taxii_collection",
            target_id=row.id,
            details={"fields": sorted(changes)},
        )
        return row

    async def delete(self, collection_id: uuid.UUID) -> None:
        """Delete a collection (admins); what was written to it stays in the org."""
        row = await self.get(collection_id)
        await self.repo.remove(row)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "taxii_collection.deleted",
            org_id=self.ctx.org_id,
            target_type="taxii_collection",
            target_id=row.id,
            details={"title": row.title},
        )


# --- the TAXII resources ----------------------------------------------------------------------------


@dataclass
class Match:
    """The TAXII filters of an objects/manifest request."""

    added_after: datetime | None = None
    types: list[str] | None = None
    ids: list[str] | None = None
    versions: list[str] | None = None
    spec_versions: list[str] | None = None


@dataclass
class Page:
    """A page of a collection: the objects with their date added, and where to go on."""

    objects: list[Any]  # dicts, or orjson.Fragment when asked `rendered`
    added: list[datetime]
    more: bool
    next: str | None


@dataclass(frozen=True, slots=True)
class JsonPage:
    """A page of a collection as response bytes: the objects' JSON joined by commas, and the rest."""

    objects: bytes  # b"" when the page is empty
    first_added: datetime | None
    last_added: datetime | None
    more: bool
    next: str | None

    def envelope(self) -> bytes:
        """The TAXII envelope, byte for byte what orjson makes of {"more", "next"?, "objects"?}."""
        parts = [b'{"more":true' if self.more else b'{"more":false']
        if self.next:
            parts += [b',"next":', orjson.dumps(self.next)]
        if self.objects:
            parts += [b',"objects":[', self.objects, b"]"]
        parts.append(b"}")
        return b"".join(parts)  # one copy of the ~600 kB of objects


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    return out or None


def parse_match(
    added_after: str | None,
    types: list[str] | None,
    ids: list[str] | None,
    versions: list[str] | None,
    spec_versions: list[str] | None,
) -> Match:
    """The TAXII query filters, checked (400 naming the parameter on a bad one)."""
    parsed = None
    if added_after:
        try:
            parsed = datetime.fromisoformat(added_after)
        except ValueError:
            raise InvalidParameter("added_after", "not an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise InvalidParameter("added_after", "needs a timezone (end with Z)")
        parsed = parsed.astimezone(UTC)
    return Match(parsed, _split(types), _split(ids), _split(versions), _split(spec_versions))


def _version_filter(versions: list[str] | None) -> list[datetime] | None:
    """None = latest (we keep one version per object); else the listed timestamps."""
    if versions is None or any(v in ("last", "first", "all") for v in versions):
        return None
    out = []
    for v in versions:
        try:
            out.append(datetime.fromisoformat(v).astimezone(UTC))
        except ValueError:
            raise InvalidParameter(
                "match[version]", f"{v!r} is not last, first, all or a timestamp"
            ) from None
    return out


class TaxiiReader:
    """Reading one collection of one org."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID, org_name: str) -> None:
        self.session = session
        self.org_id = org_id
        self.repo = TaxiiRepository(session, org_id)
        self.creator = render.identity(org_id, org_name)["id"]

    async def page(
        self,
        collection: TaxiiCollection,
        match: Match,
        limit: int,
        cursor: str | None,
        *,
        rendered: bool = False,
    ) -> Page:
        """Objects of the collection after the cursor, oldest addition first (indicators and stored).

        With `rendered` on PostgreSQL, indicators come as orjson.Fragment (JSON the database built) for
        a response body, not as dicts.
        """
        limit = max(1, min(limit, MAX_PAGE))
        after = _decode(cursor)
        if match.spec_versions is not None and "2.1" not in match.spec_versions:
            return Page([], [], False, None)
        versions = _version_filter(match.versions)
        types = match.types
        items: list[tuple[datetime, uuid.UUID, Any]] = []
        if types is None or "indicator" in types:
            ids = None
            if match.ids is not None:
                natives = [
                    n for n in (render.native_uuid(i) for i in match.ids if i.startswith("indicator--")) if n
                ]
                ids = (natives, [i for i in match.ids if i.startswith("indicator--")])
            base = self.repo.indicators(collection.filter)
            if rendered and self.repo.postgres:
                rendered_rows = await self.repo.indicator_json_page(
                    base, self.creator, after, match.added_after, versions, ids, limit + 1
                )
                items += [(added, native, orjson.Fragment(data)) for added, native, data in rendered_rows]
            else:
                rows = await self.repo.indicator_page(
                    base, after, match.added_after, versions, ids, limit + 1
                )
                items += [(row[13], row[0], render.indicator(row, self.creator)) for row in rows]
        stored = await self.repo.stored_page(
            collection.id, types, after, match.added_after, versions, match.ids, limit + 1
        )
        items += [(row.updated_at, row.id, row.object) for row in stored]
        if stored and items and len(items) > len(stored):
            items.sort(key=lambda item: (item[0], item[1]))
        more = len(items) > limit
        items = items[:limit]
        nxt = encode_cursor({"a": items[-1][0].isoformat(), "i": str(items[-1][1])}) if more else None
        return Page([i[2] for i in items], [i[0] for i in items], more, nxt)

    async def page_json(
        self, collection: TaxiiCollection, match: Match, limit: int, cursor: str | None
    ) -> JsonPage:
        """`page` as response bytes. On PostgreSQL, when no stored object falls in the page (the common
        case), PostgreSQL renders and joins the page itself: Python only splices it into the envelope."""
        limit = max(1, min(limit, MAX_PAGE))
        types = match.types
        wants_indicators = types is None or "indicator" in types
        if (
            self.repo.postgres
            and wants_indicators
            and match.ids is None
            and match.versions is None
            and (match.spec_versions is None or "2.1" in match.spec_versions)
        ):
            after = _decode(cursor)
            plain = await self.repo.plain_page(
                collection.id, collection.filter, types, self.creator, after, match.added_after, limit
            )
            # Stored objects in the window, or no indicator at all: `page` merges both kinds.
            if plain.objects and not plain.mixed:
                nxt = None
                if plain.more:
                    assert plain.last_added is not None and plain.last_id is not None
                    nxt = encode_cursor({"a": plain.last_added.isoformat(), "i": str(plain.last_id)})
                return JsonPage(plain.objects, plain.first_added, plain.last_added, plain.more, nxt)
        page = await self.page(collection, match, limit, cursor, rendered=True)
        return JsonPage(
            b",".join(orjson.dumps(o) for o in page.objects),
            page.added[0] if page.added else None,
            page.added[-1] if page.added else None,
            page.more,
            page.next,
        )


def _decode(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    try:
        values = decode_cursor(cursor)
    except InvalidInput:
        raise InvalidParameter("next", "not a `next` value this server gave") from None
    if values is None:
        return None
    try:
        added = datetime.fromisoformat(str(values["a"]))
        return added, uuid.UUID(str(values["i"]))
    except (KeyError, ValueError):
        raise InvalidParameter("next", "not a `next` value this server gave") from None


def manifest_entry(obj: dict[str, Any], added: datetime) -> dict[str, Any]:
    """One manifest record."""
    return {
        "id": obj["id"],
        "date_added": render.ts_exact(added),
        "version": obj.get("modified") or obj.get("created") or render.ts(added),
        "media_type": STIX_MEDIA_TYPE,
    }


async def write_objects(
    session: AsyncSession,
    org_id: uuid.UUID,
    collection: TaxiiCollection,
    objects: list[Any],
    principal: Principal,
) -> TaxiiStatus:
    """Import what a client POSTs to a writable collection; the status resource says how it went."""
    if len(objects) > MAX_WRITE_OBJECTS:
        raise InvalidInput("objects", f"at most {MAX_WRITE_OBJECTS} objects per request")
    now = utcnow()
    spec = collection.filter
    defaults = ImportDefaults(
        project_id=uuid.UUID(spec["project_id"]) if spec.get("project_id") else None,
        tags=list(spec.get("tags") or [])[:1],
        source=f"taxii:{collection.title}"[:200],
    )
    report = await import_bundle(
        session, org_id, objects, defaults=defaults, actor=principal, collection_id=collection.id
    )
    successes, failures = [], []
    for result in report.results:
        version = None
        obj = objects[result.index] if isinstance(objects[result.index], dict) else {}
        version = obj.get("modified") or obj.get("created")
        entry = {"id": result.id or f"objects[{result.index}]"}
        if isinstance(version, str):
            entry["version"] = version
        if result.status == "rejected":
            failures.append({**entry, "message": result.reason or "rejected"})
        else:
            successes.append(entry)
    status = TaxiiStatus(
        id=new_id(),
        org_id=org_id,
        collection_id=collection.id,
        status="complete",
        request_timestamp=now,
        total_count=len(report.results),
        success_count=len(successes),
        failure_count=len(failures),
        pending_count=0,
        successes=successes,
        failures=failures,
    )
    await TaxiiRepository(session, org_id).add(status)
    return status


def status_resource(status: TaxiiStatus) -> dict[str, Any]:
    """A TAXII 2.1 status resource."""
    out: dict[str, Any] = {
        "id": str(status.id),
        "status": status.status,
        "request_timestamp": render.ts(status.request_timestamp),
        "total_count": status.total_count,
        "success_count": status.success_count,
        "failure_count": status.failure_count,
        "pending_count": status.pending_count,
    }
    if status.successes:
        out["successes"] = status.successes
    if status.failures:
        out["failures"] = status.failures
    return out
