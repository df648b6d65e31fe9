"""What threat actors, campaigns, vulnerabilities and reports share: columns, filters, sorting, lifecycle.

Each of the four packages keeps its own schemas, endpoints and kind-specific rules; this module holds
the generic repository (parametrized by the ORM class), the generic service and the common schemas.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, cast, exists, false, func, literal, literal_column, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts.schemas import Input
from raptorflow.audit import service as audit
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.attack.schemas import DomainName
from raptorflow.intel.attack.service import navigator_layer
from raptorflow.intel.common import (
    TECHNIQUE_ID,
    TLP,
    Tag,
    TechniqueId,
    clean_tags,
    ensure_may_remove,
    validate_techniques,
)
from raptorflow.intel.relationships.service import detach_objects
from raptorflow.kit.db import dialect_name, new_id, utcnow
from raptorflow.kit.errors import Conflict, InvalidInput, NotFound, UnknownReference
from raptorflow.kit.pagination import decode_cursor, encode_cursor, keyset_after, parse_sort
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Project, Report, ThreatActor, Vulnerability, Workspace

M = TypeVar("M", ThreatActor, Campaign, Vulnerability, Report)

MAX_DESCRIPTION = 20_000
MAX_TECHNIQUES = 1_000
MAX_ALIASES = 100
# Sort keys on nullable columns compare through these stand-ins: NULLs sort lowest (first ascending,
# last descending) and keyset comparisons never meet a NULL.
NULL_DATETIME = datetime(1, 1, 1, tzinfo=UTC)
NULL_NUMBER = -1.0
# CursorParam accepts 512 characters.
MAX_CURSOR = 500


# --- schemas -------------------------------------------------------------------------------------------


class ContextCreate(Input):
    """Fields every context object takes on creation."""

    project_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    tlp: TLP = TLP.amber


class ContextUpdate(Input):
    """Fields every context object lets PATCH change (null clears project and workspace)."""

    project_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    tlp: TLP | None = None


class ContextOut(BaseModel):
    """Fields every context object shows."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    description: str
    tags: list[str]
    tlp: TLP
    archived_at: datetime | None
    stix_id: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


AliasList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=MAX_ALIASES)
]
TechniqueList = Annotated[list[TechniqueId], Field(max_length=MAX_TECHNIQUES)]


@dataclass(frozen=True)
class ContextFilters:
    """The list filters every context kind accepts."""

    q: str | None = None
    tag: str | None = None
    tlp: TLP | None = None
    project_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    archived: bool = False


def _common_filters(
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Case-insensitive substring of the name, aliases, title, CVE id or description.",
        ),
    ] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64, description="Has this tag.")] = None,
    tlp: Annotated[TLP | None, Query(description="This TLP marking.")] = None,
    project_id: Annotated[uuid.UUID | None, Query(description="In this project.")] = None,
    workspace_id: Annotated[uuid.UUID | None, Query(description="In this workspace.")] = None,
    archived: Annotated[
        bool, Query(description="true: only archived objects; false: only active ones.")
    ] = False,
) -> ContextFilters:
    for name, value in (("q", q), ("tag", tag)):
        if value is not None:
            ensure_storable(value, name)
    return ContextFilters(
        q=q,
        tag=tag.strip().lower() if tag else None,
        tlp=tlp,
        project_id=project_id,
        workspace_id=workspace_id,
        archived=archived,
    )


CommonFilters = Annotated[ContextFilters, Depends(_common_filters)]
LayerDomainParam = Annotated[
    DomainName | None,
    Query(
        description="ATT&CK domain of the layer (enterprise-attack, mobile-attack, ics-attack); "
        "default: the domain holding most of the object's techniques."
    ),
]


# --- repository ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """A sortable field: its column, how its cursor value is (de)serialized, its NULL stand-in."""

    column: Any
    kind: Literal["str", "float", "datetime"]
    nullable: bool = False

    def expression(self) -> Any:
        """The ORDER BY / keyset expression (NULLs replaced by the stand-in)."""
        if not self.nullable:
            return self.column
        return func.coalesce(self.column, literal(self.null_value(), self.column.type))

    def null_value(self) -> Any:
        """The stand-in for NULL."""
        return NULL_DATETIME if self.kind == "datetime" else NULL_NUMBER

    def expression_value(self, row: Any) -> Any:
        """The value `expression()` has for a loaded row."""
        value = getattr(row, self.column.key)
        return self.null_value() if value is None else value

    def dump(self, value: Any) -> Any:
        """A row's value as it goes into a cursor."""
        if value is None:
            value = self.null_value()
        return value.isoformat() if isinstance(value, datetime) else value

    def load(self, raw: Any) -> Any:
        """A cursor value back as the column's Python type; ValueError when it is not one."""
        if self.kind == "datetime":
            parsed = datetime.fromisoformat(str(raw))
            if parsed.tzinfo is None:
                raise ValueError("naive datetime")
            return parsed
        if self.kind == "float":
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError("not a number")
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError("not a string")
        return raw


class ContextRepository(TenantRepository, Generic[M]):
    """SQL shared by the four context kinds of one org; subclasses set the model and their specifics."""

    model: type[M]
    sort_keys: ClassVar[dict[str, SortKey]] = {}
    # Plain text columns and JSON lists of strings that `q` searches.
    text_columns: ClassVar[tuple[str, ...]] = ()
    list_columns: ClassVar[tuple[str, ...]] = ()

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return dialect_name(self.session) == "postgresql"

    async def get(self, object_id: uuid.UUID) -> M | None:
        """One object of this org by id."""
        return await self.session.scalar(self.scoped(select(self.model).where(self.model.id == object_id)))

    async def add(self, obj: M) -> None:
        """Insert an object."""
        self.session.add(obj)
        await self.session.flush()

    async def remove(self, obj: M) -> None:
        """Delete an object."""
        await self.session.delete(obj)
        await self.session.flush()

    async def flush(self) -> None:
        """Write pending changes (so constraint failures surface inside the service)."""
        await self.session.flush()

    async def holder_of(self, column: str, value: str, other_than: uuid.UUID | None = None) -> M | None:
        """Another object of the org whose `column` equals `value`, ignoring case (folded by the database)."""
        col = getattr(self.model, column)
        stmt = self.scoped(select(self.model).where(func.lower(col) == func.lower(literal(value))))
        if other_than is not None:
            stmt = stmt.where(self.model.id != other_than)
        return await self.session.scalar(stmt.limit(1))

    async def owns(self, model: type[Project] | type[Workspace], object_id: uuid.UUID) -> bool:
        """True when the project or workspace belongs to this org."""
        found = await self.session.scalar(
            select(model.id).where(model.org_id == self.org_id, model.id == object_id)
        )
        return found is not None

    def _elements(self, column: Any) -> Any:
        """A JSON list column as a table of its string elements (for correlated EXISTS)."""
        if self.postgres:
            return func.jsonb_array_elements_text(column).table_valued("value")
        return func.json_each(column).table_valued("value")

    def list_contains(self, column: Any, item: str) -> ColumnElement[bool]:
        """`item` is an element of a JSON list column."""
        if self.postgres:
            return column.op("@>")(cast(func.jsonb_build_array(item), postgresql.JSONB))  # type: ignore[no-any-return]
        each = self._elements(column)
        return exists(select(literal_column("1")).select_from(each).where(each.c.value == item))

    def _search(self, q: str) -> ColumnElement[bool]:
        # icontains folds both sides in the database (ILIKE on PostgreSQL), so they fold alike.
        clauses: list[ColumnElement[bool]] = [
            getattr(self.model, name).icontains(q, autoescape=True) for name in self.text_columns
        ]
        for name in self.list_columns:
            each = self._elements(getattr(self.model, name))
            clauses.append(
                exists(
                    select(literal_column("1"))
                    .select_from(each)
                    .where(each.c.value.icontains(q, autoescape=True))
                )
            )
        return or_(*clauses) if clauses else false()

    def common_conditions(self, filters: ContextFilters) -> list[ColumnElement[bool]]:
        """WHERE clauses for the filters every kind shares."""
        m = self.model
        out: list[ColumnElement[bool]] = [
            m.archived_at.is_not(None) if filters.archived else m.archived_at.is_(None)
        ]
        if filters.q:
            out.append(self._search(filters.q))
        if filters.tag:
            out.append(self.list_contains(m.tags, filters.tag))
        if filters.tlp is not None:
            out.append(m.tlp == filters.tlp.value)
        if filters.project_id is not None:
            out.append(m.project_id == filters.project_id)
        if filters.workspace_id is not None:
            out.append(m.workspace_id == filters.workspace_id)
        return out

    def kind_conditions(self, extra: dict[str, Any]) -> list[ColumnElement[bool]]:
        """WHERE clauses for the kind's own filters (none by default)."""
        return []

    async def page(
        self,
        filters: ContextFilters,
        extra: dict[str, Any],
        sort: list[tuple[str, bool]],
        after: list[Any] | None,
        limit: int,
    ) -> Sequence[M]:
        """One page in `sort` order (id breaks ties), continuing after the row whose key is `after`."""
        keys = [(self.sort_keys[name].expression(), desc) for name, desc in sort]
        keys.append((self.model.id, False))
        stmt = self.scoped(select(self.model)).where(
            *self.common_conditions(filters), *self.kind_conditions(extra)
        )
        if after is not None:
            stmt = stmt.where(keyset_after(keys, after))
        order = [col.desc() if desc else col.asc() for col, desc in keys]
        return (await self.session.scalars(stmt.order_by(*order).limit(limit))).all()


# --- service -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How a context kind differs from the others, as the generic service needs it."""

    label: str  # "threat actor", for messages
    stix_type: str  # "threat-actor", for stix ids
    unique: str | None = None  # the column unique per org (409 naming it)
    default_sort: str = "-created_at"


R = TypeVar("R", bound=ContextRepository[Any])


class ContextService(Generic[M, R]):
    """Create, read, list, update, archive and delete one kind of context object; never commits."""

    kind: ClassVar[Kind]
    repo_class: type[R]
    model: type[M]

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = self.repo_class(session, ctx.org_id)

    async def get(self, object_id: uuid.UUID) -> M:
        """One object of the caller's org, or 404 (also for another org's id)."""
        obj: M | None = await self.repo.get(object_id)
        if obj is None:
            raise NotFound()
        return obj

    async def page(
        self,
        filters: ContextFilters,
        *,
        sort: str | None,
        cursor: str | None,
        limit: int,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Sequence[M], str | None]:
        """A page of objects and the cursor of the next one (None on the last page)."""
        keys = self.repo.sort_keys
        spec = parse_sort(sort, keys, self.kind.default_sort)
        canonical = ",".join(("-" if desc else "") + name for name, desc in spec)
        after = await self._after(decode_cursor(cursor), canonical, spec)
        rows = await self.repo.page(filters, extra or {}, spec, after, limit)
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            values = [keys[name].dump(getattr(last, name)) for name, _ in spec]
            next_cursor = encode_cursor({"sort": canonical, "key": values, "id": str(last.id)})
            if len(next_cursor) > MAX_CURSOR:
                # Long names or titles would not fit the cursor parameter: point at the row instead.
                next_cursor = encode_cursor({"sort": canonical, "id": str(last.id)})
        return rows, next_cursor

    async def _after(
        self, cursor: dict[str, Any] | None, canonical: str, spec: list[tuple[str, bool]]
    ) -> list[Any] | None:
        if cursor is None:
            return None
        if cursor.get("sort") != canonical:
            raise InvalidInput("cursor", "this cursor belongs to another sort order")
        keys = self.repo.sort_keys
        try:
            last_id = uuid.UUID(str(cursor.get("id")))
            if "key" not in cursor:
                row = await self.repo.get(last_id)
                if row is None:
                    raise InvalidInput("cursor", "the object this page ended with is gone; start again")
                return [keys[name].expression_value(row) for name, _ in spec] + [last_id]
            raw = cursor["key"]
            if not isinstance(raw, list) or len(raw) != len(spec):
                raise ValueError("wrong key length")
            return [keys[name].load(v) for (name, _), v in zip(spec, raw, strict=True)] + [last_id]
        except ValueError:
            raise InvalidInput("cursor", "not a cursor returned by this API") from None

    async def create(self, body: BaseModel) -> M:
        """Validate and insert a new object owned by the caller."""
        values = await self.clean(body.model_dump(), None)
        await self._ensure_unique(values, None)
        object_id = new_id()
        obj = self.model(
            id=object_id,
            org_id=self.ctx.org_id,
            created_by=self.ctx.principal.user_id,
            stix_id=f"{self.kind.stix_type}--{object_id}",
            **values,
        )
        await self.repo.add(obj)
        return obj

    async def update(self, object_id: uuid.UUID, body: BaseModel) -> M:
        """Apply the fields the client sent (PATCH)."""
        obj = await self.get(object_id)
        changes = body.model_dump(exclude_unset=True)
        values = await self.clean(changes, obj)
        await self._ensure_unique(values, obj)
        for name, value in values.items():
            setattr(obj, name, value)
        obj.updated_at = utcnow()
        await self.repo.flush()
        return obj

    async def archive(self, object_id: uuid.UUID) -> M:
        """Hide an object from default lists (its creator, or an admin)."""
        obj = await self.get(object_id)
        ensure_may_remove(self.ctx, obj.created_by)
        if obj.archived_at is None:
            obj.archived_at = utcnow()
            await self.repo.flush()
        return obj

    async def unarchive(self, object_id: uuid.UUID) -> M:
        """Bring an archived object back (its creator, or an admin)."""
        obj = await self.get(object_id)
        ensure_may_remove(self.ctx, obj.created_by)
        if obj.archived_at is not None:
            obj.archived_at = None
            await self.repo.flush()
        return obj

    async def delete(self, object_id: uuid.UUID) -> None:
        """Delete an object for good (its creator, or an admin); audited."""
        obj = await self.get(object_id)
        ensure_may_remove(self.ctx, obj.created_by)
        await detach_objects(self.session, self.ctx.org_id, [obj.id])
        await self.repo.remove(obj)
        await audit.record(
            self.session,
            self.ctx.audit(),
            f"{self.kind.stix_type}.delete",
            org_id=self.ctx.org_id,
            target_type=self.kind.stix_type,
            target_id=object_id,
        )

    async def attack_layer(self, object_id: uuid.UUID, domain: str | None = None) -> dict[str, Any]:
        """An ATT&CK Navigator layer of the object's techniques in one domain (default: most of them)."""
        obj = await self.get(object_id)
        title = self.display_name(obj)
        description = f"ATT&CK techniques of the {self.kind.label} {title} (RaptorFlow {obj.id})."
        # Rows written by importers are not guaranteed to hold well-formed ids: skip the others.
        stored = getattr(obj, "attack_techniques", None) or []
        ids = [t for t in stored if isinstance(t, str) and TECHNIQUE_ID.match(t.strip().upper())]
        return await navigator_layer(self.session, title, description, ids, domain)

    def display_name(self, obj: M) -> str:
        """The object's human name."""
        return str(getattr(obj, "name", obj.id))

    # --- validation hooks ------------------------------------------------------------------------------

    async def clean(self, values: dict[str, Any], current: M | None) -> dict[str, Any]:
        """Common rules (tags, TLP, project and workspace of this org, techniques, seen order)."""
        for name, value in values.items():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    ensure_storable(text, name)
        # Timestamps leave in UTC whatever offset they came with, as they do once read back.
        out: dict[str, Any] = {
            k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in values.items()
        }
        if "tags" in out:
            out["tags"] = clean_tags(out["tags"])
        if "tlp" in out:
            out["tlp"] = TLP(out["tlp"]).value
        for name, model in (("project_id", Project), ("workspace_id", Workspace)):
            wanted = out.get(name)
            if wanted is not None and not await self.repo.owns(model, wanted):
                raise UnknownReference(name, name.removesuffix("_id"))
        if "attack_techniques" in out:
            out["attack_techniques"] = await validate_techniques(self.session, out["attack_techniques"])
        if "aliases" in out:
            out["aliases"] = clean_aliases(out["aliases"])
        check_seen_order(out, current)
        return out

    async def _ensure_unique(self, values: dict[str, Any], current: M | None) -> None:
        column = self.kind.unique
        if column is None or column not in values:
            return
        other = await self.repo.holder_of(column, values[column], current.id if current else None)
        if other is not None:
            raise Conflict(
                f"A {self.kind.label} with this {column} exists in the organization.",
                errors=[{"field": column, "message": f"already used by {other.id}"}],
            )


def ensure_storable(text: str, field: str) -> None:
    """Refuse what no database column can hold: NUL (PostgreSQL text) and lone surrogates (UTF-8)."""
    if "\x00" in text:
        raise InvalidInput(field, "must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "must be valid Unicode (no lone surrogates)") from None


def clean_aliases(aliases: list[str]) -> list[str]:
    """Trimmed aliases, duplicates (ignoring case) dropped, first spelling kept."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in aliases:
        alias = raw.strip()
        if not alias:
            raise InvalidInput("aliases", "aliases cannot be empty")
        if alias.lower() not in seen:
            seen.add(alias.lower())
            out.append(alias)
    return out


def check_seen_order(values: dict[str, Any], current: Any) -> None:
    """last_seen may not precede first_seen (422 naming last_seen), taking unchanged values from `current`."""
    if "first_seen" not in values and "last_seen" not in values:
        return
    first = values.get("first_seen", getattr(current, "first_seen", None))
    last = values.get("last_seen", getattr(current, "last_seen", None))
    if first is not None and last is not None and last < first:
        raise InvalidInput("last_seen", "must not be before first_seen")
