"""Which object an id names: indicator, threat actor, campaign, vulnerability, report or project."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.intel.relationships.repository import ObjectRepository


class ObjectKind(StrEnum):
    """Kinds of intelligence objects; the values are STIX 2.1 type names where STIX has the type."""

    indicator = "indicator"
    threat_actor = "threat-actor"
    campaign = "campaign"
    vulnerability = "vulnerability"
    report = "report"
    project = "project"


# Objects that take part in relationships and graph views (projects only contain objects).
GRAPH_KINDS: tuple[ObjectKind, ...] = (
    ObjectKind.indicator,
    ObjectKind.threat_actor,
    ObjectKind.campaign,
    ObjectKind.vulnerability,
    ObjectKind.report,
)
ALL_KINDS: tuple[ObjectKind, ...] = (*GRAPH_KINDS, ObjectKind.project)


class ResolvedObject(NamedTuple):
    """An object of the caller's org: its kind and its ORM row."""

    kind: ObjectKind
    row: Any


async def kinds_of(
    session: AsyncSession,
    org_id: uuid.UUID,
    ids: Collection[uuid.UUID],
    kinds: Collection[ObjectKind] = ALL_KINDS,
) -> dict[uuid.UUID, ObjectKind]:
    """The kind of every id that names an object of the org, in one query; other orgs' ids are absent."""
    found = await ObjectRepository(session, org_id).kinds_of(set(ids), [k.value for k in kinds])
    return {object_id: ObjectKind(kind) for object_id, kind in found.items()}


async def resolve_object(
    session: AsyncSession,
    org_id: uuid.UUID,
    object_id: uuid.UUID,
    kinds: Collection[ObjectKind] = ALL_KINDS,
) -> ResolvedObject | None:
    """The object an id names in the org, with its row (two queries: which table, then the row)."""
    repo = ObjectRepository(session, org_id)
    found = await repo.kinds_of({object_id}, [k.value for k in kinds])
    kind = found.get(object_id)
    if kind is None:
        return None
    row = await repo.row(kind, object_id)
    # Deleted between the two queries: the same answer as an id that never existed.
    return ResolvedObject(ObjectKind(kind), row) if row is not None else None


async def labels_of(
    session: AsyncSession,
    org_id: uuid.UUID,
    ids: Collection[uuid.UUID],
    kinds: Collection[ObjectKind] = GRAPH_KINDS,
) -> dict[uuid.UUID, tuple[ObjectKind, str]]:
    """Kind and display label (indicator value, name, CVE id, title) of each id of the org, one query."""
    found = await ObjectRepository(session, org_id).labels_of(set(ids), [k.value for k in kinds])
    return {object_id: (ObjectKind(kind), label) for object_id, (kind, label) in found.items()}
