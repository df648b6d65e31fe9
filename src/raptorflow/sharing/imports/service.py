"""Import rules: accept an upload (kept in the database, not on local disk), queue its job, ingest it.

Uploads are stored as 1 MB chunks in `import_chunks` during the request: any API process may take the
upload and any worker may run the job (no local files as state, DESIGN §1); the chunks are deleted when
the import ends. Ingestion streams the chunks through a format reader, normalizes every value with the
platform's one normalization module, and writes set-based: COPY + one merge on PostgreSQL, the
indicator bulk path a thousand rows at a time on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit import service as audit
from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.intel.common import MAX_TAG_LENGTH, clean_tags
from raptorflow.intel.indicators.normalize import TYPE_ALIASES, InvalidIndicator, normalize
from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.intel.indicators.service import DEFAULTS, IndicatorService
from raptorflow.jobs.service import FINAL, JobService, enqueue
from raptorflow.kit.db import dialect_name, new_id, utcnow
from raptorflow.kit.errors import InvalidInput, NotFound, RaptorFlowError, UnknownReference
from raptorflow.kit.jobs import JobContext
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.models import ImportRun, Job, Project
from raptorflow.sharing.imports import parsers, presets
from raptorflow.sharing.imports.parsers import CsvMapping, Record, Rejection
from raptorflow.sharing.imports.presets import Preset
from raptorflow.sharing.imports.repository import ImportRepository, PgStaging, iter_chunks
from raptorflow.sharing.imports.schemas import ImportOptions
from raptorflow.sharing.stix import service as stix_service
from raptorflow.sharing.stix.importer import ImportDefaults as StixDefaults
from raptorflow.sharing.stix.importer import Importer
from raptorflow.sharing.stix.importer import ImportReport as StixReport
from raptorflow.webhooks.service import emit

CHUNK = 1024 * 1024
MAX_UPLOAD = 512 * 1024 * 1024
SQLITE_BATCH = 1000
# Staged rows per merge statement: the merge of one part runs while the next is parsed. A file of fewer
# rows is one merge, so repeated values inside it fold together exactly as the bulk path folds them.
MERGE_ROWS = 200_000
TAG_CACHE_SIZE = 10_000
TASK = "imports.run"


class ImportCancelled(Exception):
    """Someone cancelled the import's job; the handler stops."""


class AllRejected(ValueError):
    """Records were read and not one could be imported: the import fails with the reason."""


@dataclass
class Tally:
    """What an ingestion did so far."""

    processed: int = 0
    created: int = 0
    merged: int = 0
    rejected: int = 0
    bytes_read: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, line: int, value: str, reason: str) -> None:
        """Count a rejection; keep the first 100 reasons."""
        self.rejected += 1
        if len(self.rejections) < parsers.MAX_REJECTIONS:
            self.rejections.append({"line": line, "value": value[:200], "reason": reason})

    def all_rejected(self) -> str | None:
        """Why nothing was imported when every record read was rejected (None if any got in or none came)."""
        if self.processed == 0 or self.rejected < self.processed:
            return None
        first = self.rejections[0] if self.rejections else None
        where = f"; first: line {first['line']} {first['value']!r}: {first['reason']}" if first else ""
        return f"every record was rejected ({self.rejected} of {self.processed}){where}"

    def counts(self) -> dict[str, int]:
        """Counts for job progress."""
        return {
            "created": self.created,
            "merged": self.merged,
            "rejected": self.rejected,
            "bytes_read": self.bytes_read,
        }


@dataclass
class Defaults:
    """Resolved import options: what every indicator gets unless its row says otherwise."""

    project_id: uuid.UUID | None
    tags: list[str]
    tlp: str
    confidence: int
    score: int
    classification: str
    source: str | None
    type: str | None
    confidence_given: bool
    created_by: uuid.UUID | None
    csv: dict[str, Any] | None = None
    preset: str | None = None
    classification_given: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any], created_by: uuid.UUID | None) -> Defaults:
        """From an import's stored options."""
        confidence = options.get("confidence")
        csv_options = options.get("csv") or None
        return cls(
            project_id=uuid.UUID(options["project_id"]) if options.get("project_id") else None,
            tags=list(options.get("tags") or []),
            tlp=str(options.get("tlp") or DEFAULTS["tlp"]),
            confidence=int(str(confidence if confidence is not None else DEFAULTS["confidence"])),
            score=int(str(options["score"] if options.get("score") is not None else DEFAULTS["score"])),
            classification=str(options.get("classification") or DEFAULTS["classification"]),
            source=options.get("source"),
            type=options.get("type"),
            confidence_given=confidence is not None
            or bool(csv_options and csv_options.get("confidence_column") is not None),
            created_by=created_by,
            csv=csv_options,
            preset=options.get("preset"),
            classification_given=options.get("classification") is not None,
        )

    def adopt(self, preset: Preset) -> None:
        """What a published layout implies when the import's options do not say: its feed as the source,
        `malicious` (the feeds list only bad things), and its rows' confidence counting as given."""
        self.source = self.source or preset.source
        if not self.classification_given:
            self.classification = "malicious"
        self.confidence_given = self.confidence_given or preset.gives_confidence


def options_dict(options: ImportOptions) -> dict[str, Any]:
    """Validated options as stored with the import (tags cleaned, enums as text)."""
    out = options.model_dump(mode="json", exclude_none=True, include=set(ImportOptions.model_fields))
    out["tags"] = clean_tags(options.tags)
    if options.type is not None:
        if options.type.strip().lower() not in TYPE_ALIASES:
            raise InvalidInput("type", f"unknown indicator type {options.type!r}")
        out["type"] = options.type.strip().lower()
    if options.preset is not None and options.csv is not None:
        given = [f"{n}_column" for n in parsers.MAPPED if getattr(options.csv, f"{n}_column") is not None]
        if given:
            what = f"csv.{given[0]}"
            raise InvalidInput(what, f"the {options.preset} preset names its own columns; leave out {what}")
    return out


def guess_format(filename: str, head: bytes) -> str | None:
    """The import format a file most likely has, from its name and first bytes."""
    name = filename.lower()
    start = head.lstrip()[:4096]
    if start.startswith((b"{", b"[")):
        if b'"bundle"' in start or b'"spec_version"' in start:
            return "stix"
        if b'"Event"' in start or b'"Attribute"' in start or b'"response"' in start:
            return "misp"
    # URLhaus publishes its CSV as `csv.txt`: a published layout's header says CSV whatever the name.
    if presets.sniff(head) is not None:
        return "csv"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".txt", ".list", ".lst")):
        return "text"
    if name.endswith(".json"):
        return "stix" if b"bundle" in start else "misp"
    return None


# --- ingestion (jobs) ------------------------------------------------------------------------------


def _tags_of(extra: dict[str, Any]) -> list[str]:
    raw = extra.get("tags")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else str(raw).replace("|", ";").replace(",", ";").split(";")
    out = []
    for tag in items:
        cleaned = str(tag).strip().lower()
        # Feeds write `None` (Python's str(None)) for a row without tags: that is no tag.
        if cleaned in presets.ABSENT:
            continue
        if len(cleaned) <= MAX_TAG_LENGTH and cleaned not in out:
            out.append(cleaned)
    return out


def _int_0_100(value: Any, name: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number 0-100") from None
    if not 0 <= number <= 100:
        raise ValueError(f"{name} must be between 0 and 100")
    return number


def _when(value: Any, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _staged_tags(extra: dict[str, Any], defaults: Defaults) -> tuple[str | None, str | None]:
    """(tags JSON as staged, TLP named by a tlp:* tag) of a row."""
    row_tags, tlp = parsers.split_tlp(_tags_of(extra))
    # Staged already merged with the import's default tags (defaults first), as the JSON stored.
    tags = [*defaults.tags, *(t for t in row_tags if t not in defaults.tags)] if row_tags else None
    return (orjson.dumps(tags).decode() if tags is not None else None), tlp


def stage_row(
    record: Record, defaults: Defaults, tag_cache: dict[Any, tuple[str | None, str | None]] | None = None
) -> tuple[Any, ...]:
    """The staging tuple of one record (normalized); raises ValueError/InvalidIndicator with the reason.

    `tag_cache` remembers the staged tags of each raw tags cell: files repeat a few tag sets a million
    times, and the cleaning is pure (same cell, same defaults, same result).
    """
    kind = record.type or defaults.type
    n = normalize(record.value, kind)
    extra = record.extra
    if extra is None:
        return (n.type.value, n.value, None, None, None, None, None, None, None, None)
    if "_error" in extra:
        raise ValueError(extra["_error"])
    raw_tags = extra.get("tags")
    if tag_cache is not None and isinstance(raw_tags, str):
        cached = tag_cache.get(raw_tags)
        if cached is None:
            cached = _staged_tags(extra, defaults)
            if len(tag_cache) < TAG_CACHE_SIZE:
                tag_cache[raw_tags] = cached
        tags_json, tlp = cached
    else:
        tags_json, tlp = _staged_tags(extra, defaults)
    if len(extra) == 1 and raw_tags is not None:  # the common CSV shape: value, type, tags
        return (n.type.value, n.value, tags_json, None, None, tlp, None, None, None, None)
    first_seen = _when(extra["first_seen"], "first_seen") if extra.get("first_seen") else None
    last_seen = _when(extra["last_seen"], "last_seen") if extra.get("last_seen") else None
    return (
        n.type.value,
        n.value,
        tags_json,
        _int_0_100(extra["confidence"], "confidence") if extra.get("confidence") is not None else None,
        _int_0_100(extra["score"], "score") if extra.get("score") is not None else None,
        tlp,
        None,
        str(extra["description"])[:10_000] if extra.get("description") else None,
        first_seen,
        last_seen,
    )


def _bulk_item(row: tuple[Any, ...], defaults: Defaults) -> dict[str, Any]:
    """A staged row as an item of the indicator bulk path (SQLite)."""
    kind, value, tags, confidence, score, tlp, classification, description, first_seen, last_seen = row
    item: dict[str, Any] = {
        "value": value,
        "type": kind,
        "tags": orjson.loads(tags) if tags else defaults.tags,
        "tlp": tlp or defaults.tlp,
        "score": score if score is not None else defaults.score,
        "classification": classification or defaults.classification,
    }
    if confidence is not None or defaults.confidence_given:
        item["confidence"] = confidence if confidence is not None else defaults.confidence
    for name, given in (
        ("project_id", defaults.project_id),
        ("source", defaults.source),
        ("description", description),
        ("first_seen", first_seen),
        ("last_seen", last_seen),
    ):
        if given is not None:
            item[name] = given
    return item


def _system_ctx(org_id: uuid.UUID, user_id: uuid.UUID | None) -> OrgContext:
    """The caller a job acts as: the user who started the import, with editor rights."""
    return OrgContext(principal=Principal(user_id=user_id), org_id=org_id, role=Role.editor)


async def ingest(
    ctx: JobContext,
    batches: AsyncIterator[Sequence[Record | Rejection]],
    defaults: Defaults,
    tally: Tally,
    *,
    history: dict[str, Any],
) -> None:
    """Normalize and write every record; progress after each batch; ImportCancelled when cancelled."""
    assert ctx.org_id is not None
    org_id = ctx.org_id
    async with ctx.transaction() as probe:
        postgres = dialect_name(probe) == "postgresql"
        if defaults.project_id is not None:
            known = await IndicatorRepository(probe, org_id).existing_ids(Project, [defaults.project_id])
            if not known:
                raise ValueError("the import's project no longer exists")
    if postgres:
        await _ingest_postgres(ctx, batches, defaults, tally, history)
    else:
        await _ingest_sqlite(ctx, batches, defaults, tally)
    reason = tally.all_rejected()
    if reason is not None:
        raise AllRejected(reason)


def _stage_batch(
    batch: Sequence[Record | Rejection],
    defaults: Defaults,
    tally: Tally,
    tag_cache: dict[Any, tuple[str | None, str | None]] | None = None,
) -> list[tuple[Any, ...]]:
    rows = []
    for record in batch:
        tally.processed += 1
        if isinstance(record, Rejection):
            tally.reject(record.line, record.value, record.reason)
            continue
        try:
            rows.append(stage_row(record, defaults, tag_cache))
        except (InvalidIndicator, ValueError) as exc:
            tally.reject(record.line, record.value, getattr(exc, "reason", None) or str(exc))
    return rows


async def _ingest_postgres(
    ctx: JobContext,
    batches: AsyncIterator[Sequence[Record | Rejection]],
    defaults: Defaults,
    tally: Tally,
    history: dict[str, Any],
) -> None:
    tag_cache: dict[Any, tuple[str | None, str | None]] = {}
    created_before, merged_before = tally.created, tally.merged
    async with ctx.transaction() as session:
        staging = PgStaging(session, ctx.org_id)  # type: ignore[arg-type]
        await staging.start()
        staged = unmerged = 0
        merging: asyncio.Task[tuple[int, int]] | None = None
        try:
            async for batch in batches:
                # Parsing and normalizing (this process) overlaps the previous merge (PostgreSQL).
                rows = _stage_batch(batch, defaults, tally, tag_cache)
                if merging is not None:
                    _count(tally, await merging)
                    merging = None
                    await staging.clear()
                staged += len(rows)
                unmerged += len(rows)
                await staging.copy(rows)
                if unmerged >= MERGE_ROWS:
                    merging = asyncio.create_task(
                        staging.merge(now=utcnow(), **_merge_args(defaults, history))
                    )
                    unmerged = 0
                await ctx.progress(tally.processed, None, **tally.counts())
                if await ctx.is_cancelled():
                    raise ImportCancelled()
            if merging is not None:
                _count(tally, await merging)
                merging = None
            if unmerged:
                _count(tally, await staging.merge(now=utcnow(), **_merge_args(defaults, history)))
        finally:
            if merging is not None:
                merging.cancel()
                with contextlib.suppress(BaseException):
                    await merging
        # Rows repeating a value of the same file (in one merge) count as merged, as on the bulk path.
        counted = (tally.created - created_before) + (tally.merged - merged_before)
        tally.merged += staged - counted
    await ctx.progress(tally.processed, tally.processed, **tally.counts())


def _merge_args(defaults: Defaults, history: dict[str, Any]) -> dict[str, Any]:
    """The import-wide values of a merge, read when it runs (a preset found in the header adds some)."""
    return {
        "created_by": defaults.created_by,
        "project_id": defaults.project_id,
        "defaults": {
            "confidence": defaults.confidence,
            "score": defaults.score,
            "tlp": defaults.tlp,
            "classification": defaults.classification,
        },
        "default_tags": defaults.tags,
        "source": defaults.source,
        "confidence_given": defaults.confidence_given,
        "history": history,
    }


def _count(tally: Tally, outcome: tuple[int, int]) -> None:
    created, merged = outcome
    tally.created += created
    tally.merged += merged


async def _ingest_sqlite(
    ctx: JobContext,
    batches: AsyncIterator[Sequence[Record | Rejection]],
    defaults: Defaults,
    tally: Tally,
) -> None:
    org_ctx = _system_ctx(ctx.org_id, defaults.created_by)  # type: ignore[arg-type]
    async for batch in batches:
        rows = _stage_batch(batch, defaults, tally)
        for start in range(0, len(rows), SQLITE_BATCH):
            if start and await ctx.is_cancelled():
                raise ImportCancelled()
            items = [_bulk_item(r, defaults) for r in rows[start : start + SQLITE_BATCH]]
            # A transaction per thousand rows: SQLite has one writer, others must get a turn.
            async with ctx.transaction() as session:
                out = await IndicatorService(session, org_ctx).bulk(items)
            tally.created += out.created
            tally.merged += out.merged
            for result in out.results:
                if result.status == "rejected":
                    error = (result.errors or [{"message": "rejected"}])[0]
                    tally.reject(0, items[result.index]["value"], error.get("message", "rejected"))
        await ctx.progress(tally.processed, None, **tally.counts())
        if await ctx.is_cancelled():
            raise ImportCancelled()
    await ctx.progress(tally.processed, tally.processed, **tally.counts())


async def counted(chunks: AsyncIterator[bytes], tally: Tally) -> AsyncIterator[bytes]:
    """Pass chunks through, counting bytes read (progress of streamed formats)."""
    async for chunk in chunks:
        tally.bytes_read += len(chunk)
        yield chunk


async def _whole(chunks: AsyncIterator[bytes]) -> bytes:
    parts = [c async for c in chunks]
    return b"".join(parts)


async def record_batches(
    fmt: str, chunks: AsyncIterator[bytes], defaults: Defaults
) -> AsyncIterator[Sequence[Record | Rejection]]:
    """Batches of records of a csv, text or misp source."""
    if fmt == "text":
        async for batch in parsers.text_records(chunks, defaults.type):
            yield batch
    elif fmt == "csv":
        options = defaults.csv or {}
        mapping = CsvMapping(
            value=options.get("value_column"),
            type=options.get("type_column"),
            tags=options.get("tags_column"),
            description=options.get("description_column"),
            confidence=options.get("confidence_column"),
            score=options.get("score_column"),
            first_seen=options.get("first_seen_column"),
            last_seen=options.get("last_seen_column"),
            delimiter=options.get("delimiter", ","),
            has_header=options.get("has_header"),
            comment_prefix=options.get("comment_prefix", "#"),
            preset=defaults.preset,
        )
        adopted = False
        async for rows in parsers.csv_records(chunks, mapping, defaults.type):
            if not adopted and mapping.detected is not None:
                defaults.adopt(mapping.detected)
                adopted = True
            yield rows
    elif fmt == "misp":
        records = list(parsers.misp_records(await _whole(chunks)))
        for start in range(0, len(records), 20_000):
            yield records[start : start + 20_000]
    else:
        raise ValueError(f"format {fmt!r} has no record reader")


async def run_import(ctx: JobContext, import_id: uuid.UUID) -> dict[str, Any]:
    """The job: ingest an uploaded import and record its outcome."""
    assert ctx.org_id is not None
    org_id = ctx.org_id
    async with ctx.transaction() as session:
        repo = ImportRepository(session, org_id)
        row = await repo.get(import_id)
        if row is None:
            return {"error": "import not found"}
        if row.status in FINAL:
            return {"status": row.status}
        fmt, options, created_by = row.format, dict(row.options), row.created_by
        await repo.set(import_id, status="running", error=None)
    defaults = Defaults.from_options(options, created_by)
    tally = Tally()
    chunks = counted(iter_chunks(ctx.session_factory, org_id, import_id), tally)
    status, error = "succeeded", None
    try:
        if fmt == "stix":
            await run_stix(ctx, chunks, defaults, tally)
        else:
            await ingest(
                ctx,
                record_batches(fmt, chunks, defaults),
                defaults,
                tally,
                history={"import_id": str(import_id)},
            )
    except ImportCancelled:
        status = "cancelled"
    except ValueError as exc:
        status, error = "failed", str(exc)
    await finish_import(ctx, import_id, status, error, tally)
    return {"status": status, **tally.counts(), "processed": tally.processed}


async def finish_import(
    ctx: JobContext,
    import_id: uuid.UUID,
    status: str,
    error: str | None,
    tally: Tally,
    also: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """Record an import's outcome and forget its uploaded bytes (with `also`, in the same transaction)."""
    assert ctx.org_id is not None
    async with ctx.transaction() as session:
        repo = ImportRepository(session, ctx.org_id)
        await repo.set(
            import_id,
            status=status,
            error=error,
            total=tally.processed,
            processed=tally.processed,
            created=tally.created,
            merged=tally.merged,
            rejected=tally.rejected,
            rejections=tally.rejections,
            finished_at=utcnow(),
        )
        await repo.drop_chunks(import_id)
        if also is not None:
            await also(session)
        counts = {"created": tally.created, "merged": tally.merged, "rejected": tally.rejected}
        await emit(session, ctx.org_id, "import.finished", {"id": str(import_id), "status": status, **counts})


async def run_stix(ctx: JobContext, chunks: AsyncIterator[bytes], defaults: Defaults, tally: Tally) -> None:
    """A STIX bundle through the STIX mapping (sharing.stix), in one transaction, read in windows."""
    assert ctx.org_id is not None
    async with ctx.transaction() as session:
        importer = Importer(
            session, ctx.org_id, _stix_defaults(defaults), Principal(user_id=defaults.created_by), None
        )
        try:
            report = await importer.run_chunks(chunks)
        except InvalidInput as exc:
            raise ValueError(exc.detail) from None
    await _tally_stix(ctx, report, tally)
    reason = tally.all_rejected()
    if reason is not None:
        raise AllRejected(reason)


async def import_stix(ctx: JobContext, data: bytes | list[Any], defaults: Defaults, tally: Tally) -> None:
    """STIX objects (a bundle's bytes or a list) through the STIX mapping, in one transaction."""
    assert ctx.org_id is not None
    async with ctx.transaction() as session:
        try:
            report = await stix_service.import_bundle(
                session,
                ctx.org_id,
                data,
                defaults=_stix_defaults(defaults),
                actor=Principal(user_id=defaults.created_by),
            )
        except InvalidInput as exc:
            raise ValueError(exc.detail) from None
    await _tally_stix(ctx, report, tally)


def _stix_defaults(defaults: Defaults) -> StixDefaults:
    return StixDefaults(
        project_id=defaults.project_id,
        tags=defaults.tags,
        tlp=defaults.tlp if defaults.tlp != DEFAULTS["tlp"] else None,
        confidence=defaults.confidence if defaults.confidence_given else None,
        source=defaults.source,
    )


async def _tally_stix(ctx: JobContext, report: StixReport, tally: Tally) -> None:
    for result in report.results:
        tally.processed += 1
        if result.status == "created":
            tally.created += 1
        elif result.status in ("updated", "unchanged"):
            tally.merged += 1
        elif result.status == "rejected":
            tally.reject(result.index, result.id or "", result.reason or "rejected")
    await ctx.progress(tally.processed, tally.processed, **tally.counts())


# --- the API side ------------------------------------------------------------------------------------


class ImportService:
    """Imports of one org for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = ImportRepository(session, ctx.org_id)

    async def create(
        self, fmt: str | None, filename: str, options: ImportOptions, chunks: AsyncIterator[bytes]
    ) -> tuple[ImportRun, Job]:
        """Store the upload, queue its job (run after commit)."""
        stored = options_dict(options)
        if options.preset is not None:
            if fmt not in (None, "csv"):
                raise InvalidInput("preset", "presets are CSV layouts: give format csv or leave it out")
            fmt = "csv"
        if options.project_id is not None:
            found = await IndicatorRepository(self.session, self.ctx.org_id).existing_ids(
                Project, [options.project_id]
            )
            if not found:
                raise UnknownReference("project_id", "project")
        row = ImportRun(
            id=new_id(),
            org_id=self.ctx.org_id,
            format=fmt or "text",
            filename=filename[:300],
            size_bytes=0,
            options=stored,
            status="queued",
            processed=0,
            created=0,
            merged=0,
            rejected=0,
            rejections=[],
            created_by=self.ctx.principal.user_id,
        )
        self.session.add(row)
        await self.session.flush()
        size, seq, head = 0, 0, b""
        async for piece in _rechunk(chunks):
            if seq == 0:
                head = piece[:4096]
            size += len(piece)
            if size > MAX_UPLOAD:
                raise RaptorFlowError(
                    f"The file is larger than {MAX_UPLOAD // (1024 * 1024)} MB.", status=413
                )
            await self.repo.add_chunk(row.id, seq, piece)
            seq += 1
        if size == 0:
            raise InvalidInput("file", "the file is empty")
        if fmt is None:
            guessed = guess_format(filename, head)
            if guessed is None:
                raise InvalidInput("format", "cannot tell the format of this file; give `format`")
            row.format = guessed
        row.size_bytes = size
        job = await enqueue(
            self.session,
            self.ctx.org_id,
            TASK,
            {"import_id": str(row.id)},
            created_by=self.ctx.principal.user_id,
        )
        row.job_id = job.id
        await audit.record(
            self.session,
            self.ctx.audit(),
            "import.created",
            org_id=self.ctx.org_id,
            target_type="import",
            target_id=row.id,
            details={"format": row.format, "filename": row.filename, "size_bytes": size},
        )
        await self.session.flush()
        return row, job

    async def get(self, import_id: uuid.UUID) -> tuple[ImportRun, Job | None]:
        """One import and its job, or 404."""
        row = await self.repo.get(import_id)
        if row is None:
            raise NotFound()
        job = await JobService(self.session, self.ctx.org_id).repo.get(row.job_id) if row.job_id else None
        return row, job

    async def page(
        self, limit: int, cursor: str | None, feed_id: uuid.UUID | None = None
    ) -> tuple[list[tuple[ImportRun, Job | None]], str | None]:
        """Newest first."""
        values = decode_cursor(cursor)
        before = None
        if values is not None:
            try:
                before = uuid.UUID(str(values["before"]))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = list(await self.repo.page(before, limit, feed_id))
        jobs = JobService(self.session, self.ctx.org_id).repo
        out = [(r, await jobs.get(r.job_id) if r.job_id and r.status not in FINAL else None) for r in rows]
        nxt = encode_cursor({"before": str(rows[-1].id)}) if len(rows) == limit else None
        return out, nxt

    async def cancel(self, import_id: uuid.UUID) -> tuple[ImportRun, Job | None]:
        """Stop an import (queued: at once; running: at its next batch); one already over is left as is."""
        row, job = await self.get(import_id)
        if row.status in FINAL:
            return row, job
        if job is not None and job.status not in FINAL:
            job = await JobService(self.session, self.ctx.org_id).cancel(job.id)
            if job.status == "cancelled":
                await self.repo.set(row.id, status="cancelled", finished_at=utcnow())
                await self.repo.drop_chunks(row.id)
                await self.session.refresh(row)
        await audit.record(
            self.session,
            self.ctx.audit(),
            "import.cancelled",
            org_id=self.ctx.org_id,
            target_type="import",
            target_id=row.id,
        )
        return row, job


async def _rechunk(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The same bytes in pieces of CHUNK (the last one shorter)."""
    buffer = bytearray()
    async for piece in chunks:
        buffer += piece
        while len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    if buffer:
        yield bytes(buffer)


def view(row: ImportRun, job: Job | None) -> dict[str, Any]:
    """An import as the API shows it: live counts from its job while it runs."""
    status, processed = row.status, row.processed
    counts: dict[str, Any] = {"created": row.created, "merged": row.merged, "rejected": row.rejected}
    bytes_read = row.size_bytes if status in FINAL else 0
    error = row.error
    if status not in FINAL and job is not None:
        processed = int(job.processed or 0)
        live = job.counts or {}
        counts = {k: int(live.get(k, 0)) for k in ("created", "merged", "rejected")}
        bytes_read = int(live.get("bytes_read", 0))
        if job.status in ("failed", "cancelled"):
            status, error = job.status, job.last_error or error
        elif job.status == "running" or job.attempts:
            status = "running"
    return {
        "id": row.id,
        "job_id": row.job_id,
        "feed_id": row.feed_id,
        "format": row.format,
        "filename": row.filename,
        "size_bytes": row.size_bytes,
        "status": status,
        "total": row.total if row.status in FINAL else None,
        "processed": processed,
        "bytes_read": bytes_read,
        **counts,
        "rejections": row.rejections or [],
        "error": error,
        "options": row.options,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
    }
