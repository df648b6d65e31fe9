"""Indicator rules: normalize, validate, merge duplicates, score, history; set-based on bulk paths."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.billing.service import ensure_room
from raptorflow.intel.common import clean_tags, ensure_may_remove, technique_id_shape
from raptorflow.intel.indicators.normalize import InvalidIndicator, normalize
from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.intel.indicators.schemas import (
    BulkItemResult,
    BulkOut,
    BulkUpdateIn,
    IndicatorCreate,
    IndicatorUpdate,
)
from raptorflow.intel.indicators.scoring import DEFAULT_HALF_LIFE_DAYS, effective_score, half_life_for
from raptorflow.intel.relationships.service import detach_objects
from raptorflow.kit.db import new_id, new_ids, utcnow
from raptorflow.kit.errors import InvalidInput, NotFound, RaptorFlowError, UnknownReference
from raptorflow.kit.pagination import decode_cursor, encode_cursor, keyset_after, parse_sort
from raptorflow.models import Indicator, Project, Workspace
from raptorflow.webhooks.service import emit_many

_ITEM = TypeAdapter(IndicatorCreate)
SORTABLE = {
    "created_at": Indicator.created_at,
    "last_seen": Indicator.last_seen,
    "first_seen": Indicator.first_seen,
    "score": Indicator.score,
    "confidence": Indicator.confidence,
    "value": Indicator.value,
    "type": Indicator.type,
}
BULK_UPDATE_MAX = 100_000
DEFAULTS = {"classification": "unknown", "confidence": 50, "score": 50, "tlp": "amber"}


@dataclass
class _Prepared:
    """A validated bulk item on its way to the database."""

    index: int
    type: str
    value: str
    item: IndicatorCreate
    tags: list[str]
    techniques: list[str]
    duplicates: list[int] = field(default_factory=list)


class ItemRejected(Exception):
    """One bulk item is invalid; carries the field errors."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


def _pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "item"
        out.append({"field": loc, "message": str(err["msg"]).removeprefix("Value error, ")})
    return out


class IndicatorService:
    """Indicators of one org, for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = IndicatorRepository(session, ctx.org_id)

    # --- create and merge ----------------------------------------------------------------------

    def _prepare(self, index: int, raw: Any) -> _Prepared:
        if isinstance(raw, IndicatorCreate):
            item = raw
        else:
            try:
                item = _ITEM.validate_python(raw)
            except ValidationError as exc:
                raise ItemRejected(_pydantic_errors(exc)) from None
        try:
            normalized = normalize(item.value, item.type)
        except InvalidIndicator as exc:
            raise ItemRejected(
                [{"field": "type" if _type_error(exc) else "value", "message": exc.reason}]
            ) from None
        try:
            tags = clean_tags(item.tags)
            techniques = technique_id_shape(item.attack_techniques)
        except InvalidInput as exc:
            raise ItemRejected(exc.errors or [{"field": "item", "message": exc.detail}]) from None
        if item.valid_from and item.valid_until and item.valid_until <= item.valid_from:
            raise ItemRejected([{"field": "valid_until", "message": "must be after valid_from"}])
        if item.first_seen and item.last_seen and item.last_seen < item.first_seen:
            raise ItemRejected([{"field": "last_seen", "message": "must not be before first_seen"}])
        return _Prepared(index, normalized.type.value, normalized.value, item, tags, techniques)

    async def bulk(self, items: Sequence[Any]) -> BulkOut:
        """Create or merge many indicators in a few set-based statements; bad items reject only themselves."""
        now = utcnow()
        results: dict[int, BulkItemResult] = {}
        prepared: list[_Prepared] = []
        for index, raw in enumerate(items):
            try:
                prepared.append(self._prepare(index, raw))
            except ItemRejected as exc:
                results[index] = BulkItemResult(index=index, status="rejected", errors=exc.errors)
        prepared = await self._check_references(prepared, results)

        # One row per (type, value): later duplicates in the same batch merge into the first.
        unique: dict[tuple[str, str], _Prepared] = {}
        for p in prepared:
            first = unique.get((p.type, p.value))
            if first is None:
                unique[(p.type, p.value)] = p
            else:
                first.duplicates.append(p.index)
                _fold(first, p)

        # Insert first: a batch of new indicators (the common ingest case) costs one statement; only the
        # keys that already existed are read back for merging.
        keys = list(unique)
        new_rows = [
            self._new_row(unique[k], now, ident) for k, ident in zip(keys, new_ids(len(keys)), strict=True)
        ]
        id_of_new = {(r["type"], r["value"]): r["id"] for r in new_rows}
        inserted = await self.repo.insert_new(new_rows)
        # Plan limit (billing on only): counted after the insert so merges never count; a refusal rolls back.
        await ensure_room(self.session, self.ctx.org_id, "indicators", adding=len(inserted), written=True)
        existing = await self.repo.by_keys([k for k in keys if k not in inserted])
        updates, history = self._merges(unique, existing, now)
        await self.repo.update_rows(updates)
        await self.repo.add_history(history)
        await self._announce(new_rows, inserted, existing, updates)

        for key, p in unique.items():
            if key in inserted:
                ident, status = id_of_new[key], "created"
            else:
                ident, status = existing[key].id, "merged"
            results[p.index] = BulkItemResult(index=p.index, status=status, id=ident)
            for dup in p.duplicates:
                results[dup] = BulkItemResult(index=dup, status="merged", id=ident)
        ordered = [results[i] for i in range(len(items))]
        counts = {s: sum(1 for r in ordered if r.status == s) for s in ("created", "merged", "rejected")}
        return BulkOut(results=ordered, **counts)

    async def _announce(
        self,
        new_rows: list[dict[str, Any]],
        inserted: set[tuple[str, str]],
        existing: dict[tuple[str, str], Indicator],
        updates: list[dict[str, Any]],
    ) -> None:
        """Outbound webhooks: indicator.created / indicator.updated, delivered after the commit."""

        def created() -> list[dict[str, Any]]:  # built only when a webhook wants indicator.created
            return [
                _event(r["id"], r["type"], r["value"], r["score"])
                for r in new_rows
                if (r["type"], r["value"]) in inserted
            ]

        changed = {u["id"] for u in updates}
        updated = [
            _event(row.id, row.type, row.value, row.score) for row in existing.values() if row.id in changed
        ]
        await emit_many(self.session, self.ctx.org_id, "indicator.created", created)
        await emit_many(self.session, self.ctx.org_id, "indicator.updated", updated)

    async def _check_references(
        self, prepared: list[_Prepared], results: dict[int, BulkItemResult]
    ) -> list[_Prepared]:
        projects = await self.repo.existing_ids(
            Project, {p.item.project_id for p in prepared if p.item.project_id}
        )
        workspaces = await self.repo.existing_ids(
            Workspace, {p.item.workspace_id for p in prepared if p.item.workspace_id}
        )
        known = await self.repo.known_techniques({t for p in prepared for t in p.techniques})
        kept = []
        for p in prepared:
            error = None
            if p.item.project_id and p.item.project_id not in projects:
                error = {"field": "project_id", "message": "no such project in this organization"}
            elif p.item.workspace_id and p.item.workspace_id not in workspaces:
                error = {"field": "workspace_id", "message": "no such workspace in this organization"}
            elif known is not None and any(t not in known for t in p.techniques):
                missing = ", ".join(t for t in p.techniques if t not in known)
                error = {"field": "attack_techniques", "message": f"unknown ATT&CK technique(s): {missing}"}
            if error:
                results[p.index] = BulkItemResult(index=p.index, status="rejected", errors=[error])
            else:
                kept.append(p)
        return kept

    def _new_row(self, p: _Prepared, now: datetime, ident: uuid.UUID) -> dict[str, Any]:
        item = p.item
        first_seen = item.first_seen or item.last_seen or now
        return {
            "id": ident,
            "org_id": self.ctx.org_id,
            "type": p.type,
            "value": p.value,
            "project_id": item.project_id,
            "workspace_id": item.workspace_id,
            "classification": item.classification.value
            if item.classification
            else DEFAULTS["classification"],
            "confidence": item.confidence if item.confidence is not None else DEFAULTS["confidence"],
            "score": item.score if item.score is not None else DEFAULTS["score"],
            "tlp": item.tlp.value if item.tlp else DEFAULTS["tlp"],
            "tags": p.tags,
            "sources": [item.source] if item.source else [],
            "description": item.description or "",
            "attack_techniques": p.techniques,
            "first_seen": first_seen,
            # Decay counts from when a source last asserted the value: its last_seen, else now (when
            # it reached us), never an old first_seen or valid_from. Imports and STIX staging say the
            # same in SQL (tests/intel/test_decay_origin.py holds all paths to it).
            "last_seen": max(item.last_seen or now, first_seen),
            "valid_from": item.valid_from,
            "valid_until": item.valid_until,
            "false_positive": False,
            "false_positive_reason": None,
            "archived_at": None,
            "sightings_count": 0,
            "stix_id": None,
            "created_by": self.ctx.principal.user_id,
            "created_at": now,
            "updated_at": now,
        }

    def _merges(
        self,
        unique: dict[tuple[str, str], _Prepared],
        existing: dict[tuple[str, str], Indicator],
        now: datetime,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for key, row in existing.items():
            p = unique.get(key)
            if p is None:
                continue
            item = p.item
            merged: dict[str, Any] = {}
            tags = row.tags + [t for t in p.tags if t not in row.tags]
            if tags != row.tags:
                merged["tags"] = tags
            if item.source and item.source not in row.sources:
                merged["sources"] = [*row.sources, item.source]
            if item.confidence is not None and item.confidence > row.confidence:
                merged["confidence"] = item.confidence
            seen = item.last_seen or now
            if seen > row.last_seen:
                merged["last_seen"] = seen
            if item.first_seen and item.first_seen < row.first_seen:
                merged["first_seen"] = item.first_seen
            techniques = row.attack_techniques + [t for t in p.techniques if t not in row.attack_techniques]
            if techniques != row.attack_techniques:
                merged["attack_techniques"] = techniques
            if item.description and not row.description:
                merged["description"] = item.description
            if not merged:
                continue
            history.append(self._history_row(row.id, "merged", _diff(row, merged), now))
            updates.append({"id": row.id, "updated_at": now, **merged})
        return updates, history

    def _history_row(
        self, indicator_id: uuid.UUID, action: str, changes: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        return {
            "id": new_id(),
            "org_id": self.ctx.org_id,
            "indicator_id": indicator_id,
            "action": action,
            "actor_user_id": self.ctx.principal.user_id,
            "actor_api_key_id": self.ctx.principal.api_key_id,
            "changes": changes,
            "created_at": now,
        }

    async def create(self, body: IndicatorCreate) -> tuple[Indicator, bool]:
        """Create one indicator, or merge into the existing one; returns it and whether it is new."""
        try:
            prepared = self._prepare(0, body)
        except ItemRejected as exc:
            first = exc.errors[0]
            raise InvalidInput(first["field"], first["message"]) from None
        out = await self.bulk([prepared.item])
        result = out.results[0]
        if result.status == "rejected":
            first = (result.errors or [{"field": "value", "message": "rejected"}])[0]
            raise InvalidInput(first["field"], first["message"])
        assert result.id is not None
        return await self.get(result.id, fresh=True), result.status == "created"

    # --- single-object operations ----------------------------------------------------------------

    async def get(self, indicator_id: uuid.UUID, *, fresh: bool = False) -> Indicator:
        """One indicator of the org, or 404."""
        row = await self.repo.get(indicator_id)
        if row is None:
            raise NotFound()
        if fresh:
            await self.session.refresh(row)
        return row

    async def update(self, indicator_id: uuid.UUID, body: IndicatorUpdate) -> Indicator:
        """Change analyst fields; records who changed what."""
        row = await self.get(indicator_id)
        changes = body.model_dump(exclude_unset=True, mode="python")
        if "tags" in changes:
            changes["tags"] = clean_tags(changes["tags"] or [])
        if "attack_techniques" in changes:
            ids = technique_id_shape(changes["attack_techniques"] or [])
            known = await self.repo.known_techniques(ids)
            if known is not None and set(ids) - known:
                raise InvalidInput(
                    "attack_techniques", "unknown ATT&CK technique(s): " + ", ".join(sorted(set(ids) - known))
                )
            changes["attack_techniques"] = ids
        for field_name in ("classification", "tlp"):
            if field_name in changes:
                if changes[field_name] is None:
                    raise InvalidInput(field_name, "cannot be null")
                changes[field_name] = changes[field_name].value
        for field_name in ("confidence", "score", "description"):
            if field_name in changes and changes[field_name] is None:
                raise InvalidInput(field_name, "cannot be null")
        for field_name, model in (("project_id", Project), ("workspace_id", Workspace)):
            value = changes.get(field_name)
            if value is not None and value not in await self.repo.existing_ids(model, [value]):
                raise UnknownReference(field_name, field_name.removesuffix("_id"))
        valid_from = changes.get("valid_from", row.valid_from)
        valid_until = changes.get("valid_until", row.valid_until)
        if valid_from and valid_until and valid_until <= valid_from:
            raise InvalidInput("valid_until", "must be after valid_from")
        diff = _diff(row, changes)
        if diff:
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            await self.repo.add_history([self._history_row(row.id, "updated", diff, row.updated_at)])
            await self.session.flush()
            await emit_many(
                self.session,
                self.ctx.org_id,
                "indicator.updated",
                [_event(row.id, row.type, row.value, row.score)],
            )
        return row

    async def delete(self, indicator_id: uuid.UUID) -> None:
        """Delete an indicator (editors: their own; admins: any)."""
        row = await self.get(indicator_id)
        ensure_may_remove(self.ctx, row.created_by)
        await detach_objects(self.session, self.ctx.org_id, [row.id])
        await self.repo.delete(row)

    async def set_archived(self, indicator_id: uuid.UUID, archived: bool) -> Indicator:
        """Archive or restore an indicator."""
        row = await self.get(indicator_id)
        ensure_may_remove(self.ctx, row.created_by)
        if (row.archived_at is not None) != archived:
            now = utcnow()
            row.archived_at = now if archived else None
            row.updated_at = now
            await self.repo.add_history(
                [self._history_row(row.id, "archived" if archived else "unarchived", {}, now)]
            )
            await self.session.flush()
        return row

    async def set_false_positive(self, indicator_id: uuid.UUID, reason: str | None) -> Indicator:
        """Mark (reason given) or clear (None) a false positive."""
        row = await self.get(indicator_id)
        now = utcnow()
        flag = reason is not None
        if row.false_positive != flag or row.false_positive_reason != reason:
            row.false_positive = flag
            row.false_positive_reason = reason
            row.updated_at = now
            await self.repo.add_history(
                [
                    self._history_row(
                        row.id,
                        "false_positive" if flag else "false_positive_cleared",
                        {"reason": reason} if flag else {},
                        now,
                    )
                ]
            )
            await self.session.flush()
        return row

    async def history(
        self, indicator_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Who changed what and when, newest first; creation is the last entry."""
        row = await self.get(indicator_id)
        position = decode_cursor(cursor)
        before = _uuid_or_422(position.get("before")) if position else None
        if position and position.get("done"):
            return [], None
        entries = await self.repo.history(row.id, limit, before)
        items = [
            {
                "action": e.action,
                "actor_user_id": e.actor_user_id,
                "actor_api_key_id": e.actor_api_key_id,
                "changes": e.changes,
                "at": e.created_at,
            }
            for e in entries
        ]
        if len(entries) == limit:
            return items, encode_cursor({"before": str(entries[-1].id)})
        items.append(
            {
                "action": "created",
                "actor_user_id": row.created_by,
                "actor_api_key_id": None,
                "changes": {},
                "at": row.created_at,
            }
        )
        return items, None

    # --- lists -----------------------------------------------------------------------------------

    async def list_page(
        self, filters: dict[str, Any], sort: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Indicator], str | None]:
        """A filtered, sorted, keyset-paged list."""
        order = parse_sort(sort, SORTABLE, "-created_at")
        stmt = self.repo.filtered(filters, utcnow())
        return await self._paged(stmt, order, limit, cursor)

    async def search(self, q: str, limit: int, cursor: str | None) -> tuple[list[Indicator], str | None]:
        """Substring search over value, description and tags; newest first."""
        term = q.strip()
        if not term:
            raise InvalidInput("q", "give something to search for")
        if "\x00" in term:
            raise InvalidInput("q", "must not contain a NUL character (U+0000)")
        order = [("created_at", True)]
        # The page is chosen among the search's candidates before the rows are read (PostgreSQL).
        narrowed = self.repo.search(term, limit=limit, after=_position(order, cursor))
        stmt = narrowed.where(Indicator.archived_at.is_(None))
        return await self._paged(stmt, order, limit, cursor)

    async def _paged(
        self, stmt: Any, order: list[tuple[str, bool]], limit: int, cursor: str | None
    ) -> tuple[list[Indicator], str | None]:
        columns = [(SORTABLE[name], desc) for name, desc in order] + [(Indicator.id, order[-1][1])]
        parsed = _position(order, cursor)
        if parsed is not None:
            stmt = stmt.where(keyset_after(columns, parsed))
        stmt = stmt.order_by(*[(c.desc() if d else c.asc()) for c, d in columns])
        rows = list(await self.repo.page(stmt, limit))
        next_cursor = None
        if len(rows) == limit:
            last = rows[-1]
            next_cursor = encode_cursor(
                {"k": [_cursor_dump(getattr(last, n)) for n, _d in order] + [str(last.id)]}
            )
        return rows, next_cursor

    async def bulk_update(self, body: BulkUpdateIn) -> int:
        """Set tags, classification or archived on every indicator matching a filter."""
        f = body.filter.model_dump(exclude_none=True, mode="python")
        if not f:
            raise InvalidInput(
                "filter", "give at least one condition (an empty filter would touch everything)"
            )
        for key in ("classification", "tlp"):
            if key in f:
                f[key] = f[key].value
        if "tag" in f:
            f["tag"] = clean_tags([f["tag"]], "filter.tag")[0]
        s = body.set
        if (
            s.tags is None
            and s.add_tags is None
            and s.remove_tags is None
            and s.classification is None
            and s.archived is None
        ):
            raise InvalidInput("set", "give at least one field to set")
        if s.tags is not None and (s.add_tags or s.remove_tags):
            raise InvalidInput("set.tags", "use either tags or add_tags/remove_tags")
        now = utcnow()
        stmt = self.repo.filtered(f, now)
        values: dict[str, Any] = {"updated_at": now}
        if s.classification is not None:
            values["classification"] = s.classification.value
        if s.archived is not None:
            if s.archived:
                ensure_may_remove(self.ctx, None)
            values["archived_at"] = now if s.archived else None
        if s.tags is None and not s.add_tags and not s.remove_tags:
            return await self.repo.bulk_set(stmt, values)
        # Tag edits differ per row: read the matching rows, then one executemany update.
        rows = await self.repo.matching(stmt, BULK_UPDATE_MAX + 1)
        if len(rows) > BULK_UPDATE_MAX:
            raise RaptorFlowError(
                f"The filter matches more than {BULK_UPDATE_MAX} indicators; narrow it for a tag change.",
                status=422,
                errors=[{"field": "filter", "message": "too broad for a tag change"}],
            )
        new_tags = clean_tags(s.tags, "set.tags") if s.tags is not None else None
        add = clean_tags(s.add_tags or [], "set.add_tags")
        remove = set(clean_tags(s.remove_tags or [], "set.remove_tags"))
        updates = []
        for row in rows:
            tags = (
                list(new_tags) if new_tags is not None else row.tags + [t for t in add if t not in row.tags]
            )
            tags = [t for t in tags if t not in remove]
            updates.append({"id": row.id, "tags": tags, **values})
        await self.repo.update_rows(updates)
        return len(rows)

    async def stats(self) -> dict[str, Any]:
        """Counts for dashboards."""
        return await self.repo.stats(utcnow() - timedelta(days=30))

    async def half_lives(self) -> dict[str, Any]:
        """The org's decay overrides."""
        return await self.repo.half_lives()

    async def scoring_settings(self) -> dict[str, float | None]:
        """Effective half-life per type: defaults with the org's overrides applied."""
        overrides = await self.repo.half_lives()
        return {t: half_life_for(t, overrides) for t in DEFAULT_HALF_LIFE_DAYS}

    async def set_scoring(self, overrides: dict[str, float | None]) -> dict[str, float | None]:
        """Replace the org's half-life overrides (admin)."""
        clean: dict[str, float | None] = {}
        for raw_type, days in overrides.items():
            name = raw_type.strip().lower()
            if name not in DEFAULT_HALF_LIFE_DAYS:
                raise InvalidInput(f"half_life_days.{raw_type}", "unknown indicator type")
            if days is not None and not (0.01 <= days <= 36_500):
                raise InvalidInput(
                    f"half_life_days.{raw_type}", "between 0.01 and 36500 days, or null for never"
                )
            clean[name] = days
        await self.repo.set_half_lives(clean)
        return await self.scoring_settings()


def to_out(row: Indicator, now: datetime, half_lives: dict[str, Any]) -> dict[str, Any]:
    """An indicator with its effective score and breakdown, ready for JSON."""
    breakdown = effective_score(
        indicator_type=row.type,
        score=row.score,
        last_seen=row.last_seen,
        sightings_count=row.sightings_count,
        false_positive=row.false_positive,
        now=now,
        half_lives=half_lives,
    )
    return {
        "id": row.id,
        "type": row.type,
        "value": row.value,
        "project_id": row.project_id,
        "workspace_id": row.workspace_id,
        "classification": row.classification,
        "confidence": row.confidence,
        "score": row.score,
        "effective_score": breakdown.effective,
        "score_breakdown": breakdown.as_dict(),
        "tlp": row.tlp,
        "tags": row.tags,
        "sources": row.sources,
        "description": row.description,
        "attack_techniques": row.attack_techniques,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "valid_from": row.valid_from,
        "valid_until": row.valid_until,
        "expired": row.valid_until is not None and row.valid_until <= now,
        "false_positive": row.false_positive,
        "false_positive_reason": row.false_positive_reason,
        "archived": row.archived_at is not None,
        "archived_at": row.archived_at,
        "sightings_count": row.sightings_count,
        "stix_id": row.stix_id,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _event(indicator_id: uuid.UUID, kind: str, value: str, score: int) -> dict[str, Any]:
    """The data of an indicator event (webhooks compare `score` with their threshold)."""
    return {"id": str(indicator_id), "type": kind, "value": value, "score": score}


def _fold(first: _Prepared, later: _Prepared) -> None:
    """Merge a later duplicate of the same batch into the first occurrence."""
    first.tags += [t for t in later.tags if t not in first.tags]
    first.techniques += [t for t in later.techniques if t not in first.techniques]
    a, b = first.item, later.item
    updates: dict[str, Any] = {}
    if b.confidence is not None and (a.confidence is None or b.confidence > a.confidence):
        updates["confidence"] = b.confidence
    if b.last_seen and (a.last_seen is None or b.last_seen > a.last_seen):
        updates["last_seen"] = b.last_seen
    if updates:
        first.item = a.model_copy(update=updates)


def _diff(row: Indicator, changes: dict[str, Any]) -> dict[str, Any]:
    """{field: [old, new]} for values that really change, JSON-ready."""
    out: dict[str, Any] = {}
    for key, new in changes.items():
        old = getattr(row, key)
        if old != new:
            out[key] = [_cursor_dump(old), _cursor_dump(new)]
    return out


def _cursor_dump(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _position(order: list[tuple[str, bool]], cursor: str | None) -> list[Any] | None:
    """The sort key (order's columns, then id) a cursor continues after; None for the first page."""
    position = decode_cursor(cursor)
    if not position:
        return None
    values = position.get("k")
    if not isinstance(values, list) or len(values) != len(order) + 1:
        raise InvalidInput("cursor", "not a cursor for this sort order")
    try:
        return [_cursor_value(name, v) for (name, _d), v in zip([*order, ("id", False)], values, strict=True)]
    except ValueError:
        raise InvalidInput("cursor", "not a cursor returned by this API") from None


def _cursor_value(name: str, value: Any) -> Any:
    if name in ("created_at", "last_seen", "first_seen"):
        parsed = datetime.fromisoformat(str(value))
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed
    if name == "id":
        return uuid.UUID(str(value))
    if name in ("score", "confidence"):
        if not isinstance(value, int):
            raise ValueError("int")
        return value
    if not isinstance(value, str):
        raise ValueError("str")
    return value


def _uuid_or_422(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput("cursor", "not a cursor returned by this API") from None


def _type_error(exc: InvalidIndicator) -> bool:
    return "unknown type" in exc.reason
