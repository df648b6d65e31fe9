"""The set-based STIX indicator path (PostgreSQL): rows checked as the indicator bulk path checks them,
staged while the bundle is read, merged in parts.

One plain tuple per indicator (no per-object model): the pattern read as a simple comparison where it is
one (others checked with the stix2-patterns grammar), the value normalized by the platform's one
normalization module, the fields the bulk path would take from `IndicatorCreate`. Pydantic runs only for
the rare values it would change or refuse (surrounding whitespace, length), so reasons stay the same.
The SQL is in sharing.stix.staging.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from raptorflow.auth.principal import Principal
from raptorflow.billing.service import ensure_room
from raptorflow.intel.common import clean_tags
from raptorflow.intel.indicators.normalize import InvalidIndicator, normalize
from raptorflow.intel.indicators.schemas import IndicatorCreate
from raptorflow.kit.errors import InvalidInput
from raptorflow.sharing.stix import render
from raptorflow.sharing.stix.patterns import _READ, grammar_errors, read_simple
from raptorflow.sharing.stix.repository import StixRepository
from raptorflow.sharing.stix.staging import IndicatorStaging
from raptorflow.webhooks.repository import WebhookRepository
from raptorflow.webhooks.service import emit_many

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from raptorflow.sharing.stix.importer import ImportDefaults, ObjectResult

_ITEM = TypeAdapter(IndicatorCreate)
MAX_VALUE = 2048  # IndicatorCreate.value
TAG_CACHE_SIZE = 10_000
MARKS_SEPARATOR = "\x1e"
_NO_ROW = (None,) * 12  # a refused indicator's row: only what the stored-copy check needs
TLP_ORDER = ("clear", "green", "amber", "amber+strict", "red")
# "[object:path = '" → RaptorFlow type: the shape producers write; read_simple decides everything else.
_PREFIXES = {f"[{obj}:{path} = '": kind for (obj, path), kind in _READ.items() if kind != "asn"}


class Rejected(Exception):
    """One object is invalid; the reason says why."""


def parse_ts(value: Any, name: str) -> datetime:
    """An RFC 3339 UTC timestamp of an object, or Rejected naming the property."""
    if not isinstance(value, str):
        raise Rejected(f"{name} must be an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(f"{name} is not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise Rejected(f"{name} must be in UTC (end with Z)")
    return parsed.astimezone(UTC)


def opt_ts(obj: dict[str, Any], name: str) -> datetime | None:
    """An optional timestamp property."""
    return parse_ts(obj[name], name) if obj.get(name) is not None else None


def simple_of(pattern: str) -> tuple[str, str] | None:
    """read_simple, with the common shape (one quoted value without quotes or backslashes) read directly."""
    if pattern[:1] == "[" and pattern.endswith("']"):
        at = pattern.find(" = '")
        kind = _PREFIXES.get(pattern[: at + 4]) if at > 0 else None
        if kind is not None:
            value = pattern[at + 4 : -2]
            if "'" not in value and "\\" not in value:
                if kind in ("ipv4", "ipv6") and "/" in value:
                    kind = "cidr"
                return kind, value
    return read_simple(pattern)


@dataclass(frozen=True, slots=True)
class IndicatorFields:
    """What a STIX indicator says, read and checked the same way on every import path."""

    kind: str
    value: str
    valid_from: datetime
    valid_until: datetime | None
    classification: str
    confidence: int | None
    description: str | None


def indicator_fields(obj: dict[str, Any], default_confidence: int | None) -> IndicatorFields:
    """The pattern (a simple comparison as a typed value, any other valid pattern verbatim as
    `stix-pattern`), validity, classification, confidence and description of a STIX indicator."""
    pattern = obj.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        raise Rejected("pattern is required")
    if obj.get("pattern_type", "stix") != "stix":
        raise Rejected(f"pattern_type {obj.get('pattern_type')!r} is not supported (stix only)")
    valid_from = parse_ts(obj.get("valid_from"), "valid_from")
    valid_until = opt_ts(obj, "valid_until")
    if valid_until is not None and valid_until <= valid_from:
        raise Rejected("valid_until must be after valid_from")
    simple = simple_of(pattern)
    if simple is not None:
        kind, value = simple
    else:
        errors = grammar_errors(pattern)
        if errors:
            raise Rejected("pattern: " + errors[0][:500])
        kind, value = "stix-pattern", pattern.strip()
    classification = "unknown"
    for t in obj.get("indicator_types") or ():
        if isinstance(t, str) and t in render.CLASSIFICATION_OF:
            classification = render.CLASSIFICATION_OF[t]
            break
    confidence = obj.get("confidence")
    if not (isinstance(confidence, int) and not isinstance(confidence, bool) and 0 <= confidence <= 100):
        confidence = default_confidence
    name = obj.get("name")
    description = obj.get("description") if isinstance(obj.get("description"), str) else None
    if not description and isinstance(name, str) and name != value:
        description = name
    description = description[:10_000] if description else None
    return IndicatorFields(kind, value, valid_from, valid_until, classification, confidence, description)


def pydantic_reason(exc: ValidationError) -> str:
    """The reason the bulk path gives for an item pydantic refuses."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "item"
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _edge_space(text: str) -> bool:
    return text[:1].isspace() or text[-1:].isspace()


@dataclass
class IndicatorRows:
    """Builds the staging tuple (staging.STAGING_COLUMNS order) of each STIX indicator of one import."""

    project_id: uuid.UUID | None
    default_tags: list[str]
    default_tlp: str
    confidence: int | None
    source: str | None
    now: datetime
    # Marking-ref keys of rows whose TLP waits for the bundle's own marking definitions.
    deferred: set[str] = field(default_factory=set)
    _tags: dict[tuple[str, ...], str | Rejected] = field(default_factory=dict)
    _source_checked: bool = False

    def row(self, index: int, obj: dict[str, Any], modified: datetime | None) -> tuple[Any, ...]:
        """The staging row of a valid indicator; Rejected with the reason otherwise."""
        f = indicator_fields(obj, self.confidence)
        kind, value, valid_from, valid_until = f.kind, f.value, f.valid_from, f.valid_until
        classification, confidence, description = f.classification, f.confidence, f.description
        tlp, marks = self._tlp(obj)
        tags = self._tags_json(obj)
        value, description = self._as_bulk_item(value, kind, description, tags)
        try:
            normal = normalize(value, kind)
        except InvalidIndicator as exc:
            raise Rejected(f"{'type' if 'unknown type' in exc.reason else 'value'}: {exc.reason}") from None
        return (
            index,
            obj["id"],
            modified,
            normal.type.value,
            normal.value,
            classification,
            confidence,
            tlp,
            marks,
            tags,
            description,
            valid_from,
            valid_until,
            valid_from if valid_from <= self.now else None,
            orjson.dumps(obj).decode(),
        )

    def _as_bulk_item(
        self, value: str, kind: str, description: str | None, tags: str
    ) -> tuple[str, str | None]:
        """(value, description) as IndicatorCreate reads them (whitespace stripped, lengths checked)."""
        if (
            self._source_checked
            and value
            and len(value) <= MAX_VALUE
            and not _edge_space(value)
            and not (description and _edge_space(description))
        ):
            return value, description
        item = {
            "value": value,
            "type": kind,
            "project_id": self.project_id,
            "confidence": None,
            "tags": orjson.loads(tags),
            "description": description,
            "source": self.source,
        }
        try:
            checked = _ITEM.validate_python(item)
        except ValidationError as exc:
            raise Rejected(pydantic_reason(exc)) from None
        if not self._source_checked:
            self.source = checked.source
            self._source_checked = True
        return checked.value, checked.description

    def _tlp(self, obj: dict[str, Any]) -> tuple[str | None, str | None]:
        """(TLP, None) from the standard TLP markings; (None, key) when the bundle's own markings decide."""
        refs = obj.get("object_marking_refs") or ()
        strongest: str | None = None
        if isinstance(refs, list):
            for ref in refs:
                if not isinstance(ref, str):
                    continue
                level = render.TLP_BY_MARKING.get(ref)
                if level is None:
                    key = MARKS_SEPARATOR.join(r for r in refs if isinstance(r, str))
                    self.deferred.add(key)
                    return None, key
                if strongest is None or TLP_ORDER.index(level) > TLP_ORDER.index(strongest):
                    strongest = level
        return strongest or self.default_tlp, None

    def _tags_json(self, obj: dict[str, Any]) -> str:
        raw = obj.get("labels")
        key: tuple[str, ...] | None = None
        if raw is None or isinstance(raw, list):
            key = tuple(raw or ())
            try:
                cached = self._tags.get(key)
            except TypeError:  # a label that is not a string (a list, a dict)
                key, cached = None, None
            if cached is not None:
                if isinstance(cached, Rejected):
                    raise cached
                return cached
        labels = [str(x)[:64] for x in raw or () if isinstance(x, str) and x.strip()]
        try:
            out: str | Rejected = orjson.dumps(clean_tags([*labels, *self.default_tags])[:50]).decode()
        except InvalidInput as exc:
            out = Rejected(f"labels: {exc.detail}")
        if key is not None and len(self._tags) < TAG_CACHE_SIZE:
            self._tags[key] = out
        if isinstance(out, Rejected):
            raise out
        return out


class StagedIndicators:
    """The indicators of one import on PostgreSQL: COPYed as read, merged in parts, refusals by position."""

    def __init__(
        self,
        session: AsyncSession,
        org_id: uuid.UUID,
        defaults: ImportDefaults,
        actor: Principal,
        collection_id: uuid.UUID | None,
        now: datetime,
    ) -> None:
        self.staging = IndicatorStaging(session, org_id)
        self.session = session
        self.org_id = org_id
        self.project_id = defaults.project_id
        self.actor = actor
        self.collection_id = collection_id
        self.now = now
        self.rows = IndicatorRows(
            project_id=defaults.project_id,
            default_tags=defaults.tags,
            default_tlp=defaults.tlp or "amber",
            confidence=defaults.confidence,
            source=defaults.source,
            now=now,
        )
        self.errors: dict[int, str] = {}
        self.dropped: list[int] = []
        # Staged rows a later copy replaced: a part merged meanwhile must not report on them.
        self.superseded: set[int] = set()
        self.project_ok: bool | None = None

    def row(self, index: int, obj: dict[str, Any], modified: datetime | None) -> tuple[Any, ...]:
        """The staging row of an indicator; a refused one is noted and staged for the stored-copy check."""
        try:
            return self.rows.row(index, obj, modified)
        except Rejected as exc:
            self.errors[index] = str(exc)
            return (index, obj["id"], modified, *_NO_ROW)

    def supersede(self, position: int) -> None:
        """A later copy of the same id replaces the row at `position`."""
        self.dropped.append(position)
        self.errors.pop(position, None)
        self.superseded.add(position)

    def taken(self) -> tuple[dict[int, str], list[int]]:
        """The refusals and superseded copies noted so far (they concern rows staged so far)."""
        taken = self.errors, self.dropped
        self.errors, self.dropped = {}, []
        return taken

    async def flush(self, rows: list[tuple[Any, ...]], results: list[ObjectResult], part: bool) -> None:
        """COPY a window's rows; merge everything staged when a part is complete."""
        taken = self.taken() if part else None
        if not self.staging.started:
            await self.staging.start()
        await self.staging.copy(rows)
        if taken is not None:
            await self.merge(results, taken, {}, final=False)

    async def merge(
        self,
        results: list[ObjectResult],
        taken: tuple[dict[int, str], list[int]],
        marks: dict[str, str],
        *,
        final: bool,
    ) -> None:
        """Stored-copy check, refusals, one merge and the stored objects of what is staged.

        `marks`: the TLP of each deferred marking-ref key (the bundle's own marking definitions).
        """
        errors, dropped = taken
        staging = self.staging
        await staging.prepare(dropped, marks)
        for position, state, kind, native in await staging.stored_state():
            if position in self.superseded:
                continue
            result = results[position]
            result.status = state
            if native is not None and kind:
                result.native_kind, result.native_id = kind, native
        for position, reason in errors.items():
            if results[position].status != "unchanged" and position not in self.superseded:
                results[position].status, results[position].reason = "rejected", reason
        if self.project_id is not None and self.project_ok is None:
            self.project_ok = await StixRepository(self.session, self.org_id).project_exists(self.project_id)
        if self.project_id is not None and not self.project_ok:
            for position in await staging.exclude_all():
                results[position].status = "rejected"
                results[position].reason = "project_id: no such project in this organization"
        created = 0
        for position, native, new, merged in await staging.merge(
            now=self.now,
            project_id=self.project_id,
            source=self.rows.source,
            created_by=self.actor.user_id,
            actor_api_key_id=self.actor.api_key_id,
        ):
            created += bool(new)
            if position in self.superseded:
                continue
            result = results[position]
            result.native_kind, result.native_id = "indicator", native
            if merged and result.status == "created":
                result.reason = "merged into an existing indicator with the same value"
        # Plan limit (billing on only): counted after the insert so merges never count; a refusal rolls back.
        await ensure_room(self.session, self.org_id, "indicators", adding=created, written=True)
        if await WebhookRepository(self.session, self.org_id).active():
            events: dict[str, list[dict[str, Any]]] = {"created": [], "updated": []}
            for native, kind, value, score, outcome in await staging.announced():
                events[outcome].append({"id": str(native), "type": kind, "value": value, "score": score})
            await emit_many(self.session, self.org_id, "indicator.created", events["created"])
            await emit_many(self.session, self.org_id, "indicator.updated", events["updated"])
        await staging.store(self.now, self.collection_id)
        if not final:
            await staging.reset()
