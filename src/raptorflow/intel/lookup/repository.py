"""SQL of lookups, the hot path: statements built once at import, run on the request's connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Row,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql

from raptorflow.intel.indicators.repository import SQLITE_KEY_CHUNK
from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Indicator, Organization, Relationship, ThreatActor

ID_CHUNK = 5_000
_ORG: Any = bindparam("org_id", type_=Uuid())

_COLUMNS = (
    Indicator.id,
    Indicator.type,
    Indicator.value,
    Indicator.score,
    Indicator.classification,
    Indicator.tlp,
    Indicator.tags,
    Indicator.valid_until,
    Indicator.false_positive,
    Indicator.last_seen,
    Indicator.sightings_count,
    Indicator.archived_at,
    select(Organization.settings).where(Organization.id == _ORG).scalar_subquery().label("org_settings"),
)
_BASE = select(*_COLUMNS).where(Indicator.org_id == _ORG)
_FIND_ONE = _BASE.where(Indicator.type == bindparam("t"), Indicator.value == bindparam("v"))
_TEXT_ARRAY = postgresql.ARRAY(String)
_WANTED = select(
    func.unnest(cast(bindparam("types"), _TEXT_ARRAY)).label("t"),
    func.unnest(cast(bindparam("values"), _TEXT_ARRAY)).label("v"),
).subquery()
_FIND_MANY_PG = _BASE.join(_WANTED, and_(Indicator.type == _WANTED.c.t, Indicator.value == _WANTED.c.v))
_FIND_MANY_OTHER = _BASE.where(tuple_(Indicator.type, Indicator.value).in_(bindparam("keys", expanding=True)))


def _related_statement(postgres: bool) -> Any:
    # PostgreSQL takes the ids as one array parameter; elsewhere an expanding IN list.
    ids: Any = (
        bindparam("ids", type_=postgresql.ARRAY(Uuid())) if postgres else bindparam("ids", expanding=True)
    )
    parts = []
    for model, kind in ((ThreatActor, "threat-actor"), (Campaign, "campaign")):
        for near, far, far_type in (
            (Relationship.source_id, Relationship.target_id, Relationship.target_type),
            (Relationship.target_id, Relationship.source_id, Relationship.source_type),
        ):
            parts.append(
                select(near, literal(kind), model.id, model.name, Relationship.relationship_type)
                .join(model, model.id == far)
                .where(
                    Relationship.org_id == _ORG,
                    model.org_id == _ORG,
                    near == any_(ids) if postgres else near.in_(ids),
                    far_type == kind,
                )
            )
    return union_all(*parts)


_RELATED_PG = _related_statement(postgres=True)
_RELATED_OTHER = _related_statement(postgres=False)


class LookupRepository(TenantRepository):
    """Read-only queries of the lookup path (plain rows, not ORM objects)."""

    model = Relationship

    async def find(self, keys: Sequence[tuple[str, str]]) -> tuple[list[Row[Any]], dict[str, Any]]:
        """Indicators for (type, value) keys and the org's settings, in one query per chunk."""
        if not keys:
            return [], {}
        conn = await self.session.connection()
        postgres = dialect_name(self.session) == "postgresql"
        rows: list[Row[Any]] = []
        if len(keys) == 1:
            result = await conn.execute(_FIND_ONE, {"org_id": self.org_id, "t": keys[0][0], "v": keys[0][1]})
            rows.extend(result.all())
        elif postgres:
            params = {"org_id": self.org_id, "types": [k[0] for k in keys], "values": [k[1] for k in keys]}
            rows.extend((await conn.execute(_FIND_MANY_PG, params)).all())
        else:
            for start in range(0, len(keys), SQLITE_KEY_CHUNK):
                part = list(keys[start : start + SQLITE_KEY_CHUNK])
                rows.extend(
                    (await conn.execute(_FIND_MANY_OTHER, {"org_id": self.org_id, "keys": part})).all()
                )
        settings = (rows[0].org_settings or {}) if rows else {}
        return rows, settings

    async def related(
        self, indicator_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, str, uuid.UUID, str, str]]:
        """(indicator, kind, object id, name, relationship type): actors and campaigns linked either way."""
        conn = await self.session.connection()
        out: list[tuple[uuid.UUID, str, uuid.UUID, str, str]] = []
        if dialect_name(self.session) == "postgresql":
            result = await conn.execute(_RELATED_PG, {"org_id": self.org_id, "ids": list(indicator_ids)})
            return [(a, b, c, d, e) for a, b, c, d, e in result.all()]
        # Four uses of the id list per statement; SQLite caps bound parameters near 32k.
        for start in range(0, len(indicator_ids), ID_CHUNK):
            chunk = list(indicator_ids[start : start + ID_CHUNK])
            result = await conn.execute(_RELATED_OTHER, {"org_id": self.org_id, "ids": chunk})
            out += [(a, b, c, d, e) for a, b, c, d, e in result.all()]
        return out
