"""STIX 2.1 import: objects → typed indicators, context rows, relationships, sightings, stored objects.

Indicators (the bulk of any real bundle) are read as plain JSON: a simple comparison on a supported
observable becomes a typed indicator, any other STIX pattern is checked with the stix2-patterns grammar
and kept verbatim as a `stix-pattern` indicator. On PostgreSQL they are COPYed into a staging table as
the bundle is read (`run_chunks` reads it in windows: memory stays bounded) and merged in a few
set-based statements (sharing.stix.staging); on SQLite they go through the indicator bulk path. The few
other objects are checked with the `stix2` library itself. Every object is also stored as it came
(`stix_objects`, keyed by its STIX id), which makes a second import of the same bundle a no-op and lets
a newer `modified` update.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stix2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.intel.common import TECHNIQUE_ID, clean_tags
from raptorflow.intel.indicators.service import IndicatorService
from raptorflow.intel.objects import ObjectKind
from raptorflow.intel.relationships.service import allowed_types
from raptorflow.intel.sightings.repository import SightingRepository
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import InvalidInput
from raptorflow.models import Campaign, Indicator, Relationship, Report, Sighting, ThreatActor, Vulnerability
from raptorflow.sharing.stix import render
from raptorflow.sharing.stix.bulk import (
    MARKS_SEPARATOR,
    TLP_ORDER,
    Rejected,
    StagedIndicators,
    indicator_fields,
)
from raptorflow.sharing.stix.bulk import opt_ts as _opt_ts
from raptorflow.sharing.stix.bulk import parse_ts as _parse_ts
from raptorflow.sharing.stix.repository import StixRepository
from raptorflow.sharing.stix.stream import bundle_windows

_ID = re.compile(
    r"^([a-z][a-z0-9-]*[a-z0-9])--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$", re.IGNORECASE)
SCO_TYPES = frozenset(
    {
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    }
)
NATIVE_MODELS: dict[str, Any] = {
    "indicator": Indicator,
    "threat-actor": ThreatActor,
    "campaign": Campaign,
    "vulnerability": Vulnerability,
    "report": Report,
}
INDICATOR_BATCH = 5_000
# Staged indicator rows merged at once while the rest of the bundle is read (PostgreSQL). A bundle of
# fewer indicators is one merge: repeated values and ids inside it fold exactly as in one batch.
MERGE_PART = 25_000
MAX_OBJECTS = 1_000_000


@dataclass
class ImportDefaults:
    """What imported objects get when the bundle does not say: project, tags, TLP, confidence, source."""

    project_id: uuid.UUID | None = None
    tags: list[str] = field(default_factory=list)
    tlp: str | None = None
    confidence: int | None = None
    source: str | None = None


@dataclass(slots=True)
class ObjectResult:
    """The outcome of one object of the bundle."""

    index: int
    id: str | None
    type: str | None
    status: str
    reason: str | None = None
    native_kind: str | None = None
    native_id: uuid.UUID | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {"index": self.index, "id": self.id, "type": self.type, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.native_id is not None:
            out["native"] = {"kind": self.native_kind, "id": str(self.native_id)}
        return out


@dataclass
class ImportReport:
    """Per-object results and totals of one import."""

    results: list[ObjectResult]

    def count(self, status: str) -> int:
        """How many objects ended with `status`."""
        return sum(1 for r in self.results if r.status == status)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "total": len(self.results),
            **{s: self.count(s) for s in ("created", "updated", "unchanged", "rejected")},
            "results": [r.as_dict() for r in self.results],
        }


def _library_check(obj: dict[str, Any]) -> None:
    """Validate a non-indicator object with the stix2 library (its own rules, custom properties allowed)."""
    try:
        stix2.parse(obj, allow_custom=True, version="2.1")
    except Exception as exc:
        raise Rejected(str(exc).splitlines()[0][:500]) from None


class Importer:
    """One import run for one organization."""

    def __init__(
        self,
        session: AsyncSession,
        org_id: uuid.UUID,
        defaults: ImportDefaults,
        actor: Principal | None,
        collection_id: uuid.UUID | None,
    ) -> None:
        self.session = session
        self.org_id = org_id
        self.defaults = defaults
        self.collection_id = collection_id
        principal = actor or Principal(user_id=None)
        self.ctx = OrgContext(principal=principal, org_id=org_id, role=Role.editor)
        self.repo = StixRepository(session, org_id)
        self.now = utcnow()
        # STIX id → (native kind, native id) for everything resolvable in this run.
        self.natives: dict[str, tuple[str, uuid.UUID]] = {}
        self.techniques: dict[str, str] = {}
        self.tlp_markings: dict[str, str] = dict(render.TLP_BY_MARKING)
        self.store: dict[str, dict[str, Any]] = {}

    # --- entry -------------------------------------------------------------------------------------

    async def run(self, objects: list[Any]) -> ImportReport:
        """Import the objects; each gets a result, invalid ones are rejected one by one."""
        if len(objects) > MAX_OBJECTS:
            raise InvalidInput("objects", f"at most {MAX_OBJECTS} objects per import")
        return await self._run(_one(objects))

    async def run_chunks(self, chunks: AsyncIterator[bytes]) -> ImportReport:
        """Import a bundle given as byte chunks (read in windows: memory stays bounded at any size)."""
        return await self._run(bundle_windows(chunks))

    async def _run(self, windows: AsyncIterator[list[Any]]) -> ImportReport:
        results: list[ObjectResult] = []
        # STIX id → (position of its latest copy, its modified, staged as an indicator row).
        latest: dict[str, tuple[int, datetime | None, bool]] = {}
        checked: list[tuple[int, dict[str, Any], datetime | None]] = []
        staging = (
            StagedIndicators(
                self.session, self.org_id, self.defaults, self.ctx.principal, self.collection_id, self.now
            )
            if self.repo.postgres
            else None
        )
        flushing: asyncio.Task[None] | None = None
        staged = unmerged = 0
        try:
            async for window in windows:
                if len(results) + len(window) > MAX_OBJECTS:
                    raise InvalidInput("objects", f"at most {MAX_OBJECTS} objects per import")
                rows = self._scan(window, results, latest, checked, staging)
                staged += len(rows)
                unmerged += len(rows)
                # Reading and checking the next window (here) overlaps the COPY of this one and, every
                # MERGE_PART rows, the merge of what is staged (PostgreSQL). Rows waiting for the
                # bundle's own TLP markings wait for the end.
                if flushing is not None:
                    await flushing
                    flushing = None
                if staging is None or not rows:
                    continue
                part = unmerged >= MERGE_PART and not staging.rows.deferred
                flushing = asyncio.create_task(staging.flush(rows, results, part))
                if part:
                    unmerged = 0
            if flushing is not None:
                await flushing
                flushing = None
        finally:
            if flushing is not None:
                flushing.cancel()
                with contextlib.suppress(BaseException):
                    await flushing
        live = [c for c in checked if results[c[0]].status == "pending"]
        stored = await self.repo.stored([obj["id"] for _i, obj, _m in live])
        todo: list[tuple[ObjectResult, dict[str, Any], datetime | None]] = []
        for position, obj, modified in live:
            result = results[position]
            old = stored.get(obj["id"])
            if old is not None:
                if old.native_id is not None and old.native_kind:
                    self.natives[obj["id"]] = (old.native_kind, old.native_id)
                    result.native_kind, result.native_id = old.native_kind, old.native_id
                same = (old.modified is not None and modified is not None and modified <= old.modified) or (
                    modified is None and old.object == obj
                )
                if same:
                    result.status = "unchanged"
                    self._remember(obj)
                    continue
                result.status = "updated"
            else:
                result.status = "created"
            todo.append((result, obj, modified))
        await self._resolve_known_refs(todo)
        for kinds, handler in (
            (("marking-definition",), self._marking),
            (("attack-pattern",), self._attack_pattern),
            (("threat-actor", "intrusion-set"), self._actor),
            (("campaign",), self._campaign),
            (("vulnerability",), self._vulnerability),
        ):
            for result, obj, modified in todo:
                if obj["type"] in kinds:
                    await self._one(handler, result, obj, modified)
        if staging is not None:
            if unmerged:
                marks = {
                    key: self._tlp({"object_marking_refs": key.split(MARKS_SEPARATOR)})
                    for key in staging.rows.deferred
                }
                await staging.merge(results, staging.taken(), marks, final=True)
            if staged:
                self.natives.update(await staging.staging.natives(_indicator_refs(todo)))
        else:
            await self._indicators([t for t in todo if t[1]["type"] == "indicator"])
        for kinds, handler in (
            (("report",), self._report),
            (("relationship",), self._relationship),
            (("sighting",), self._sighting),
        ):
            for result, obj, modified in todo:
                if obj["type"] in kinds:
                    await self._one(handler, result, obj, modified)
        handled = {
            "marking-definition",
            "attack-pattern",
            "threat-actor",
            "intrusion-set",
            "campaign",
            "vulnerability",
            "indicator",
            "report",
            "relationship",
            "sighting",
        }
        for result, obj, modified in todo:
            if obj["type"] not in handled:
                await self._one(self._other, result, obj, modified)
        await self.repo.upsert_stored(list(self.store.values()))
        return ImportReport(results)

    def _scan(
        self,
        window: list[Any],
        results: list[ObjectResult],
        latest: dict[str, tuple[int, datetime | None, bool]],
        checked: list[tuple[int, dict[str, Any], datetime | None]],
        staging: StagedIndicators | None,
    ) -> list[tuple[Any, ...]]:
        """Envelope checks and in-bundle duplicates of a window; its indicator rows when staged."""
        rows: list[tuple[Any, ...]] = []
        for obj in window:
            index = len(results)
            try:
                modified = self._envelope(obj)
            except Rejected as exc:
                sid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
                kind = obj.get("type") if isinstance(obj, dict) and isinstance(obj.get("type"), str) else None
                results.append(ObjectResult(index, sid, kind, "rejected", str(exc)))
                continue
            result = ObjectResult(index, obj["id"], obj["type"], "pending")
            results.append(result)
            # The same id twice in one bundle: the newest version wins, the others are unchanged.
            previous = latest.get(obj["id"])
            if previous is not None:
                prev_position, prev_modified, prev_staged = previous
                if (modified or self.now) >= (prev_modified or self.now):
                    _mark(results, prev_position, "unchanged", "superseded by a later copy in this bundle")
                    if prev_staged and staging is not None:
                        staging.supersede(prev_position)
                else:
                    result.status, result.reason = "unchanged", "an older copy of an object in this bundle"
                    continue
            as_row = staging is not None and obj["type"] == "indicator"
            latest[obj["id"]] = (index, modified, as_row)
            if not as_row:
                checked.append((index, obj, modified))
                continue
            result.status = "created"  # until the stored copies say otherwise
            if staging is not None:
                rows.append(staging.row(index, obj, modified))
        return rows

    def _envelope(self, obj: Any) -> datetime | None:
        """Checks every object must pass; returns its `modified` (None for SCOs and markings)."""
        if not isinstance(obj, dict):
            raise Rejected("not a JSON object")
        kind, sid = obj.get("type"), obj.get("id")
        if not isinstance(kind, str) or not kind:
            raise Rejected("type is missing")
        if not isinstance(sid, str) or not (m := _ID.match(sid)) or m.group(1) != kind:
            raise Rejected("id must be '<type>--<UUID>' matching the type")
        if len(sid) > 160:
            raise Rejected("id is too long")
        spec = obj.get("spec_version")
        if spec is not None and spec != "2.1":
            raise Rejected(f"spec_version {spec!r} is not supported (2.1 only)")
        if (
            kind in SCO_TYPES
            or kind == "marking-definition"
            or (kind.startswith("x-") and "created" not in obj)
        ):
            return None
        created = _parse_ts(obj.get("created"), "created")
        modified = _parse_ts(obj.get("modified"), "modified")
        if modified < created:
            raise Rejected("modified is before created")
        return modified

    async def _one(
        self, handler: Any, result: ObjectResult, obj: dict[str, Any], modified: datetime | None
    ) -> None:
        try:
            await handler(result, obj)
        except Rejected as exc:
            result.status, result.reason = "rejected", str(exc)
            return
        self._keep(result, obj, modified)

    def _keep(self, result: ObjectResult, obj: dict[str, Any], modified: datetime | None) -> None:
        self.store[obj["id"]] = {
            "id": new_id(),
            "org_id": self.org_id,
            "stix_id": obj["id"],
            "type": obj["type"],
            "modified": modified,
            "object": obj,
            "native_kind": result.native_kind,
            "native_id": result.native_id,
            "collection_id": self.collection_id,
            "created_at": self.now,
            "updated_at": self.now,
        }
        self._remember(obj)
        if result.native_id is not None and result.native_kind:
            self.natives[obj["id"]] = (result.native_kind, result.native_id)

    def _remember(self, obj: dict[str, Any]) -> None:
        if obj["type"] == "attack-pattern":
            tid = _technique_of(obj)
            if tid:
                self.techniques[obj["id"]] = tid
        elif obj["type"] == "marking-definition":
            level = _tlp_of_marking(obj)
            if level:
                self.tlp_markings[obj["id"]] = level

    async def _resolve_known_refs(
        self, todo: list[tuple[ObjectResult, dict[str, Any], datetime | None]]
    ) -> None:
        """Native rows behind ids referenced by this bundle but not in it (earlier imports, our exports)."""
        refs: set[str] = set()
        for _r, obj, _m in todo:
            for key in ("source_ref", "target_ref", "sighting_of_ref"):
                if isinstance(obj.get(key), str):
                    refs.add(obj[key])
            if isinstance(obj.get("object_refs"), list):
                refs |= {r for r in obj["object_refs"] if isinstance(r, str)}
        refs -= set(self.natives)
        if not refs:
            return
        for row in (await self.repo.stored(refs)).values():
            if row.native_id is not None and row.native_kind:
                self.natives[row.stix_id] = (row.native_kind, row.native_id)
            self._remember(row.object)
        # Ids we minted ourselves (`<type>--<our id as v4>`): exported by us, coming back.
        for ref in refs - set(self.natives):
            kind = ref.split("--", 1)[0]
            kind = "threat-actor" if kind == "intrusion-set" else kind
            native = render.native_uuid(ref)
            if native is not None and kind in NATIVE_MODELS:
                model = NATIVE_MODELS[kind]
                found = await self.session.scalar(
                    select(model.id).where(model.org_id == self.org_id, model.id == native)
                )
                if found is not None:
                    self.natives[ref] = (kind, found)

    # --- shared field mapping ----------------------------------------------------------------------

    def _tlp(self, obj: dict[str, Any]) -> str:
        strongest: str | None = None
        for ref in obj.get("object_marking_refs") or ():
            level = self.tlp_markings.get(ref) if isinstance(ref, str) else None
            if level and (strongest is None or TLP_ORDER.index(level) > TLP_ORDER.index(strongest)):
                strongest = level
        return strongest or self.defaults.tlp or "amber"

    def _tags(self, obj: dict[str, Any]) -> list[str]:
        labels = [str(x)[:64] for x in obj.get("labels") or () if isinstance(x, str) and x.strip()]
        try:
            return clean_tags([*labels, *self.defaults.tags])[:50]
        except InvalidInput as exc:
            raise Rejected(f"labels: {exc.detail}") from None

    # --- handlers ----------------------------------------------------------------------------------

    async def _marking(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        if obj["id"] not in render.TLP_BY_MARKING:
            _library_check(obj)

    async def _attack_pattern(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        tid = _technique_of(obj)
        if tid:
            result.reason = f"ATT&CK {tid}"

    async def _other(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        if obj["type"].startswith("x-"):
            return
        _library_check(obj)

    async def _context_row(
        self, result: ObjectResult, model: Any, kind: str, obj: dict[str, Any], key: Any
    ) -> Any:
        """The row an object maps to: by STIX id, else by its natural key (name / CVE), else a new one."""
        row = None
        known = self.natives.get(obj["id"])
        if known is not None:
            row = await self.session.scalar(
                select(model).where(model.org_id == self.org_id, model.id == known[1])
            )
        if row is None:
            row = await self.session.scalar(
                select(model).where(model.org_id == self.org_id, model.stix_id == obj["id"])
            )
        if row is None and key is not None:
            row = await self.session.scalar(select(model).where(model.org_id == self.org_id, key))
        if row is None:
            row = model(
                id=new_id(),
                org_id=self.org_id,
                stix_id=obj["id"],
                project_id=self.defaults.project_id,
                created_by=self.ctx.principal.user_id,
            )
            self.session.add(row)
        elif row.stix_id is None:
            row.stix_id = obj["id"]
        row.tlp = self._tlp(obj)
        row.tags = self._tags(obj)
        if isinstance(obj.get("description"), str):
            row.description = obj["description"][:100_000]
        result.native_kind, result.native_id = kind, row.id
        return row

    async def _actor(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        name = str(obj["name"])[:200]
        row = await self._context_row(result, ThreatActor, "threat-actor", obj, ThreatActor.name == name)
        row.name = name
        row.aliases = [str(a)[:200] for a in obj.get("aliases") or () if isinstance(a, str)][:100]
        row.first_seen = _opt_ts(obj, "first_seen")
        row.last_seen = _opt_ts(obj, "last_seen")
        motivation = obj.get("primary_motivation")
        row.motivation = motivation[:64] if isinstance(motivation, str) else None
        sophistication = obj.get("sophistication")
        row.sophistication = sophistication[:64] if isinstance(sophistication, str) else None
        await self.session.flush()

    async def _campaign(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        name = str(obj["name"])[:200]
        row = await self._context_row(result, Campaign, "campaign", obj, Campaign.name == name)
        row.name = name
        row.aliases = [str(a)[:200] for a in obj.get("aliases") or () if isinstance(a, str)][:100]
        row.objective = str(obj.get("objective") or "")[:10_000]
        row.first_seen = _opt_ts(obj, "first_seen")
        row.last_seen = _opt_ts(obj, "last_seen")
        await self.session.flush()

    async def _vulnerability(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        cve = _cve_of(obj)
        if cve is None:
            return  # kept as a STIX object only: RaptorFlow's vulnerabilities are CVEs
        row = await self._context_row(
            result, Vulnerability, "vulnerability", obj, Vulnerability.cve_id == cve
        )
        row.cve_id = cve
        await self.session.flush()

    async def _report(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        row = await self._context_row(result, Report, "report", obj, None)
        row.title = str(obj["name"])[:500]
        row.published = _opt_ts(obj, "published")
        refs: list[dict[str, str]] = []
        seen: set[tuple[str, uuid.UUID]] = set()
        for ref in obj.get("object_refs") or ():
            native = self.natives.get(ref) if isinstance(ref, str) else None
            if (
                native
                and native[0] in NATIVE_MODELS
                and native[1] != row.id
                and (native[0], native[1]) not in seen
            ):
                seen.add((native[0], native[1]))
                refs.append({"type": native[0], "id": str(native[1])})
        row.object_refs = refs
        row.attack_techniques = sorted(
            {
                self.techniques[r]
                for r in obj.get("object_refs") or ()
                if isinstance(r, str) and r in self.techniques
            }
        )
        await self.session.flush()

    async def _relationship(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        source, target = self.natives.get(obj["source_ref"]), self.natives.get(obj["target_ref"])
        rel_type = obj["relationship_type"]
        tid = self.techniques.get(obj["target_ref"])
        if (
            source
            and tid
            and source[0] in ("indicator", "threat-actor", "campaign")
            and rel_type in ("uses", "indicates")
        ):
            # An edge to an ATT&CK technique becomes the object's technique list.
            model = NATIVE_MODELS[source[0]]
            row = await self.session.scalar(
                select(model).where(model.org_id == self.org_id, model.id == source[1])
            )
            if row is not None and tid not in row.attack_techniques:
                row.attack_techniques = [*row.attack_techniques, tid]
                await self.session.flush()
            return
        if not (source and target) or source[1] == target[1]:
            return  # kept as a STIX object: an end is not a RaptorFlow object
        if rel_type not in allowed_types(ObjectKind(source[0]), ObjectKind(target[0])):
            return
        existing = await self.session.scalar(
            select(Relationship).where(
                Relationship.org_id == self.org_id,
                Relationship.source_id == source[1],
                Relationship.target_id == target[1],
                Relationship.relationship_type == rel_type,
            )
        )
        if existing is None:
            existing = Relationship(
                id=new_id(),
                org_id=self.org_id,
                source_type=source[0],
                source_id=source[1],
                target_type=target[0],
                target_id=target[1],
                relationship_type=rel_type,
                stix_id=obj["id"],
                created_by=self.ctx.principal.user_id,
            )
            self.session.add(existing)
        existing.description = str(obj.get("description") or "")[:10_000]
        confidence = obj.get("confidence")
        existing.confidence = confidence if isinstance(confidence, int) and 0 <= confidence <= 100 else None
        await self.session.flush()
        result.native_kind, result.native_id = "relationship", existing.id

    async def _sighting(self, result: ObjectResult, obj: dict[str, Any]) -> None:
        _library_check(obj)
        target = self.natives.get(obj["sighting_of_ref"])
        if not target or target[0] != "indicator":
            return
        known = self.natives.get(obj["id"])
        if known is not None:
            return  # sightings are facts: a newer version of one already counted is stored, not recounted
        count = obj.get("count", 1)
        count = count if isinstance(count, int) and 0 <= count <= 999_999_999 else 1
        first = _opt_ts(obj, "first_seen") or _parse_ts(obj["created"], "created")
        last = max(_opt_ts(obj, "last_seen") or first, first)
        repo = SightingRepository(self.session, self.org_id)
        if not await repo.count_towards(target[1], count, last):
            return
        sighting = Sighting(
            id=new_id(),
            org_id=self.org_id,
            indicator_id=target[1],
            count=count,
            first_seen=first,
            last_seen=last,
            where="",
            source=str(self.defaults.source or "stix")[:200],
            note=str(obj.get("description") or "")[:10_000],
            stix_id=obj["id"],
            created_by=self.ctx.principal.user_id,
        )
        await repo.add(sighting)
        result.native_kind, result.native_id = "sighting", sighting.id

    # --- indicators ---------------------------------------------------------------------------------

    async def _indicators(self, todo: list[tuple[ObjectResult, dict[str, Any], datetime | None]]) -> None:
        service = IndicatorService(self.session, self.ctx)
        for start in range(0, len(todo), INDICATOR_BATCH):
            batch = todo[start : start + INDICATOR_BATCH]
            items: list[dict[str, Any]] = []
            owners: list[tuple[ObjectResult, dict[str, Any], datetime | None]] = []
            for result, obj, modified in batch:
                try:
                    items.append(self._indicator_item(obj))
                    owners.append((result, obj, modified))
                except Rejected as exc:
                    result.status, result.reason = "rejected", str(exc)
            if not items:
                continue
            out = await service.bulk(items)
            stix_ids: dict[uuid.UUID, str] = {}
            for (result, obj, modified), item in zip(owners, out.results, strict=True):
                if item.status == "rejected":
                    errors = item.errors or [{"field": "pattern", "message": "rejected"}]
                    result.status = "rejected"
                    result.reason = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                    continue
                assert item.id is not None
                result.native_kind, result.native_id = "indicator", item.id
                if item.status == "merged" and result.status == "created":
                    result.reason = "merged into an existing indicator with the same value"
                stix_ids.setdefault(item.id, obj["id"])
                self._keep(result, obj, modified)
            await self.repo.set_indicator_stix_ids(stix_ids)

    def _indicator_item(self, obj: dict[str, Any]) -> dict[str, Any]:
        f = indicator_fields(obj, self.defaults.confidence)
        return {
            "value": f.value,
            "type": f.kind,
            "project_id": self.defaults.project_id,
            "classification": f.classification,
            "confidence": f.confidence,
            "tlp": self._tlp(obj),
            "tags": self._tags(obj),
            "description": f.description,
            "source": self.defaults.source,
            "valid_from": f.valid_from,
            "valid_until": f.valid_until,
            "first_seen": f.valid_from if f.valid_from <= self.now else None,
        }


async def _one(objects: list[Any]) -> AsyncIterator[list[Any]]:
    yield objects


def _indicator_refs(todo: list[tuple[ObjectResult, dict[str, Any], datetime | None]]) -> set[str]:
    """Indicator ids the other objects of the bundle refer to (reports, relationships, sightings)."""
    refs: set[str] = set()
    for _r, obj, _m in todo:
        for key in ("source_ref", "target_ref", "sighting_of_ref"):
            if isinstance(obj.get(key), str):
                refs.add(obj[key])
        if isinstance(obj.get("object_refs"), list):
            refs |= {r for r in obj["object_refs"] if isinstance(r, str)}
    return {r for r in refs if r.startswith("indicator--")}


def _mark(results: list[ObjectResult], position: int, status: str, reason: str) -> None:
    results[position].status, results[position].reason = status, reason


def _technique_of(obj: dict[str, Any]) -> str | None:
    for ref in obj.get("external_references") or ():
        if isinstance(ref, dict) and ref.get("source_name") in (
            "mitre-attack",
            "mitre-mobile-attack",
            "mitre-ics-attack",
        ):
            tid = str(ref.get("external_id") or "").upper()
            if TECHNIQUE_ID.match(tid):
                return tid
    return None


def _cve_of(obj: dict[str, Any]) -> str | None:
    for ref in obj.get("external_references") or ():
        if (
            isinstance(ref, dict)
            and ref.get("source_name") == "cve"
            and _CVE.match(str(ref.get("external_id", "")))
        ):
            return str(ref["external_id"]).upper()
    name = str(obj.get("name", ""))
    return name.upper() if _CVE.match(name) else None


def _tlp_of_marking(obj: dict[str, Any]) -> str | None:
    known = render.TLP_BY_MARKING.get(obj["id"])
    if known:
        return known
    if obj.get("definition_type") == "tlp" and isinstance(obj.get("definition"), dict):
        level = str(obj["definition"].get("tlp", "")).lower()
        return (
            {"white": "clear"}.get(level, level)
            if level in ("white", "clear", "green", "amber", "red")
            else None
        )
    ext = (obj.get("extensions") or {}).get(render.TLP_EXTENSION)
    if isinstance(ext, dict) and ext.get("tlp_2_0") in render.TLP2_IDS:
        return str(ext["tlp_2_0"])
    return None
