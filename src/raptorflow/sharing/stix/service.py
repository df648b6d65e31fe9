"""STIX 2.1 in and out for one organization.

Export (used by the STIX endpoints, the exports package and the TAXII server)::

    async def export_bundle(session, org_id, selection: Selection) -> AsyncIterator[bytes]

streams one STIX 2.1 bundle (`{"type": "bundle", "id": …, "objects": [...]}`) as JSON chunks. A
`Selection` names what goes in: `indicators` (a dict of the indicator list filters, as
`IndicatorRepository.filtered` takes them), `project_id`, `report_id`, or `object_id` (a threat actor or
campaign, with its neighbourhood up to `depth` hops). The caller binds the org (`require()` does) and
owns the transaction. For a StreamingResponse (which outlives the request's session) use
`stream_bundle(session_factory, org_id, selection)`, after `check_selection(session, org_id, selection)`
on the request's session when a 404 must be answered for an unknown project/report/object.

Import (used by `POST /api/v1/stix/bundles`, the imports package and TAXII writes)::

    async def import_bundle(session, org_id, bundle_or_objects, *, defaults=ImportDefaults(),
                            actor=None, collection_id=None) -> ImportReport

takes a bundle dict, a list of STIX objects, or raw JSON bytes; returns one result per object
(`created` / `updated` / `unchanged` / `rejected` with the reason). Never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.intel.relationships.service import neighbours
from raptorflow.kit.db import stream_session, utcnow
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Indicator, Report
from raptorflow.sharing.stix import render
from raptorflow.sharing.stix.importer import ImportDefaults, Importer, ImportReport
from raptorflow.sharing.stix.repository import CONTEXT_MODELS, StixRepository
from raptorflow.sharing.stix.stream import objects_of

__all__ = [
    "ImportDefaults",
    "ImportReport",
    "Selection",
    "check_selection",
    "export_bundle",
    "export_objects",
    "import_bundle",
    "stream_bundle",
]

FLUSH_BYTES = 256 * 1024
_TLP_BYTES = {level: f'"{marking}"'.encode() for level, marking in render.TLP2_IDS.items()}


@dataclass
class Selection:
    """What an export contains (exactly one of the four, or none = every live indicator)."""

    indicators: dict[str, Any] | None = None
    project_id: uuid.UUID | None = None
    report_id: uuid.UUID | None = None
    object_id: uuid.UUID | None = None
    depth: int = 1


@dataclass
class _Plan:
    """Native ids to export, by kind, and the relationships among them."""

    indicator_filter: dict[str, Any] | None = None
    indicator_ids: set[uuid.UUID] = field(default_factory=set)
    context: dict[str, set[uuid.UUID]] = field(default_factory=lambda: {k: set() for k in CONTEXT_MODELS})
    relationships: bool = False


async def _plan(session: AsyncSession, org_id: uuid.UUID, selection: Selection) -> _Plan:
    repo = StixRepository(session, org_id)
    chosen = [x for x in (selection.project_id, selection.report_id, selection.object_id) if x is not None]
    if len(chosen) + (selection.indicators is not None) > 1:
        raise InvalidInput("selection", "choose one of an indicator filter, project, report or object")
    plan = _Plan()
    if selection.project_id is not None:
        if not await repo.project_exists(selection.project_id):
            raise NotFound()
        plan.indicator_filter = {"project_id": selection.project_id, "archived": False}
        for kind in CONTEXT_MODELS:
            plan.context[kind] = {r.id for r in await repo.context_in_project(kind, selection.project_id)}
        plan.relationships = True
    elif selection.report_id is not None:
        rows = await repo.context_rows("report", [selection.report_id])
        if not rows:
            raise NotFound()
        report: Report = rows[0]
        plan.context["report"].add(report.id)
        for ref in report.object_refs:
            ref_id = uuid.UUID(str(ref["id"]))
            if ref["type"] == "indicator":
                plan.indicator_ids.add(ref_id)
            elif ref["type"] in plan.context:
                plan.context[ref["type"]].add(ref_id)
        plan.relationships = True
    elif selection.object_id is not None:
        graph = await neighbours(session, org_id, selection.object_id, max(1, min(selection.depth, 2)))
        for node_id, (kind, _label) in graph.nodes.items():
            if kind.value == "indicator":
                plan.indicator_ids.add(node_id)
            elif kind.value in plan.context:
                plan.context[kind.value].add(node_id)
        plan.relationships = True
    else:
        plan.indicator_filter = dict(selection.indicators or {"archived": False})
    return plan


class _Writer:
    """Accumulates serialized objects and hands out ~FLUSH_BYTES chunks."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.count = 0

    def add(self, obj: dict[str, Any]) -> None:
        data = orjson.dumps(obj)
        self.parts.append(data if self.count == 0 else b"," + data)
        self.size += len(data) + 1
        self.count += 1

    def add_rendered(self, rendered: _Rendered) -> None:
        if rendered.count:
            self.parts.append(rendered.data if self.count == 0 else b"," + rendered.data)
            self.size += len(rendered.data) + 1
            self.count += rendered.count

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return out


@dataclass
class _Rendered:
    """Indicators PostgreSQL already rendered: `count` STIX objects as comma-separated JSON."""

    data: bytes
    count: int


async def export_objects(
    session: AsyncSession, org_id: uuid.UUID, selection: Selection
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The STIX objects of a selection, in batches (identity first, marking definitions last)."""
    async with aclosing(_export(session, org_id, selection, rendered=False)) as objects:
        async for batch in objects:
            assert isinstance(batch, list)
            yield batch


async def _export(
    session: AsyncSession, org_id: uuid.UUID, selection: Selection, *, rendered: bool
) -> AsyncGenerator[list[dict[str, Any]] | _Rendered, None]:
    """export_objects; with `rendered` on PostgreSQL, indicators come as JSON text built by the database."""
    repo = StixRepository(session, org_id)
    plan = await _plan(session, org_id, selection)
    creator_obj = render.identity(org_id, await repo.org_name())
    creator = creator_obj["id"]
    yield [creator_obj]
    tlps: set[str] = set()
    techniques: set[str] = set()
    technique_edges: list[tuple[str, str, str]] = []
    exported: dict[uuid.UUID, str] = {}
    any_indicator = False
    id_stmt = None
    if plan.indicator_filter is not None or plan.indicator_ids:
        ind_repo = IndicatorRepository(session, org_id)
        if plan.indicator_filter is not None:
            stmt = ind_repo.filtered(plan.indicator_filter, utcnow())
        else:
            stmt = ind_repo.filtered({"ids": list(plan.indicator_ids)}, utcnow())
        id_stmt = stmt.with_only_columns(Indicator.id)
        with_ids = plan.relationships or plan.indicator_filter is None
        if rendered and repo.postgres and not with_ids:
            # The bulk case (an indicator filter): PostgreSQL renders and streams, we forward bytes.
            async with aclosing(repo.copy_indicator_json(stmt, creator)) as copies:
                async for copied in copies:
                    any_indicator = True
                    for ref, tids in copied.edges:
                        for tid in _json_list(tids):
                            techniques.add(tid)
                            technique_edges.append((ref, tid, "indicates"))
                    # The TLP marking ids appear in the JSON exactly when an object carries them.
                    tlps.update(k for k, v in _TLP_BYTES.items() if k not in tlps and v in copied.data)
                    yield _Rendered(copied.data, copied.count)
        elif rendered and repo.postgres:
            # Every indicator's id is needed to resolve relationships and report refs.
            async with aclosing(repo.stream_indicator_json(stmt, creator, with_ids)) as pages:
                async for batch in pages:
                    columns = list(zip(*batch, strict=True))
                    tlps.update(columns[1])
                    for tids, ref in zip(columns[2], columns[3], strict=True):
                        if tids is not None:
                            for tid in _json_list(tids):
                                techniques.add(tid)
                                technique_edges.append((ref, tid, "indicates"))
                    if with_ids:
                        exported.update(zip(columns[4], columns[3], strict=True))
                    any_indicator = any_indicator or bool(batch)
                    yield _Rendered(",".join(columns[0]).encode(), len(batch))
        else:
            async with aclosing(repo.stream_indicators(stmt)) as pages:
                async for batch in pages:
                    out = []
                    for row in batch:
                        obj = render.indicator(row, creator)
                        out.append(obj)
                        tlps.add(row[5])
                        exported[row[0]] = obj["id"]
                        for tid in _json_list(row[8]):
                            techniques.add(tid)
                            technique_edges.append((obj["id"], tid, "indicates"))
                    any_indicator = any_indicator or bool(batch)
                    yield out
    context_refs: dict[uuid.UUID, str] = {}
    rows_by_kind: dict[str, list[Any]] = {}
    for kind, ids in plan.context.items():
        if ids:
            rows_by_kind[kind] = await repo.context_rows(kind, ids)
            for row in rows_by_kind[kind]:
                stix_type = "report" if kind == "report" else kind
                if kind == "threat-actor" and (row.stix_id or "").startswith("intrusion-set--"):
                    stix_type = "intrusion-set"
                context_refs[row.id] = render.object_id(stix_type, row.id, row.stix_id)
    all_refs = {**exported, **context_refs}
    out = []
    for kind, rows in rows_by_kind.items():
        for row in rows:
            refs = None
            if kind == "report":
                refs = [
                    all_refs[uuid.UUID(str(r["id"]))]
                    for r in row.object_refs
                    if uuid.UUID(str(r["id"])) in all_refs
                ]
            obj = render.context(kind, row, creator, refs)
            out.append(obj)
            tlps.add(row.tlp)
            for tid in getattr(row, "attack_techniques", None) or ():
                techniques.add(tid)
                technique_edges.append((obj["id"], tid, "indicates" if kind == "indicator" else "uses"))
    if out:
        yield out
    out = []
    if plan.relationships and len(all_refs) > 1:
        for rel in await repo.relationships_among(all_refs):
            out.append(render.relationship(rel, all_refs[rel.source_id], all_refs[rel.target_id], creator))
    wanted: Any = id_stmt if plan.indicator_filter is not None and id_stmt is not None else list(exported)
    sightings = await repo.sightings_of(wanted) if any_indicator else []
    if sightings and not exported:
        exported = await repo.indicator_refs({s.indicator_id for s in sightings})
    for s in sightings:
        if s.indicator_id in exported:
            out.append(render.sighting(s, exported[s.indicator_id], creator))
    catalog = await repo.techniques(techniques)
    patterns = {tid: render.attack_pattern(tid, catalog.get(tid)) for tid in sorted(techniques)}
    out += list(patterns.values())
    for source, tid, rel_type in technique_edges:
        # Reports reference techniques; only actors, campaigns and indicators have a STIX edge to them.
        if source.startswith("report--"):
            continue
        out.append(render.technique_edge(source, tid, patterns[tid]["id"], creator, rel_type))
    out += [render.tlp_marking(level) for level in sorted(tlps)]
    yield out


async def export_bundle(
    session: AsyncSession, org_id: uuid.UUID, selection: Selection
) -> AsyncGenerator[bytes, None]:
    """One STIX 2.1 bundle of the selection, streamed as JSON chunks of about 256 KiB."""
    head = b'{"type":"bundle","id":"bundle--' + str(uuid.uuid4()).encode() + b'","objects":['
    writer = _Writer()
    first = True
    async with aclosing(_export(session, org_id, selection, rendered=True)) as parts:
        async for batch in parts:
            if isinstance(batch, _Rendered):
                writer.add_rendered(batch)
            else:
                for obj in batch:
                    writer.add(obj)
            if writer.size >= FLUSH_BYTES:
                chunk = writer.take()
                yield (head + chunk) if first else chunk
                first = False
    tail = writer.take() + b"]}"
    yield (head + tail) if first else tail


async def check_selection(session: AsyncSession, org_id: uuid.UUID, selection: Selection) -> None:
    """404 when the selection names a project, report or object that is not the org's."""
    await _plan(session, org_id, selection)


async def stream_bundle(
    factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID, selection: Selection
) -> AsyncGenerator[bytes, None]:
    """export_bundle on its own session and transaction (a streamed response outlives the request's)."""
    async with stream_session(factory) as session:
        await bind_org(session, org_id)
        async with aclosing(export_bundle(session, org_id, selection)) as chunks:
            async for chunk in chunks:
                yield chunk


async def import_bundle(
    session: AsyncSession,
    org_id: uuid.UUID,
    bundle_or_objects: dict[str, Any] | list[Any] | bytes | str,
    *,
    defaults: ImportDefaults | None = None,
    actor: Any | None = None,
    collection_id: uuid.UUID | None = None,
) -> ImportReport:
    """Import a STIX 2.1 bundle (or list of objects); one result per object; never commits."""
    importer = Importer(session, org_id, defaults or ImportDefaults(), actor, collection_id)
    return await importer.run(_objects_of(bundle_or_objects))


def _json_list(value: Any) -> list[Any]:
    """A JSON list column read as text (export hot path) or already decoded."""
    if not value or value == "[]":
        return []
    return list(orjson.loads(value)) if isinstance(value, str) else list(value)


def _objects_of(data: dict[str, Any] | list[Any] | bytes | str) -> list[Any]:
    if isinstance(data, (bytes, str)):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("body", f"not JSON: {exc}") from None
    return objects_of(data)
