"""Streaming readers of import formats: bytes in, (line, value, type, extra) records or rejections out.

CSV and text are read line by line from the chunks as they arrive (bounded memory whatever the file
size); MISP events are JSON documents read whole (orjson), then walked attribute by attribute.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from raptorflow.sharing.imports import presets
from raptorflow.sharing.imports.presets import Preset

# MISP attribute type → platform type ("ip" = v4 or v6, decided by the value); composite types such as
# `filename|md5` are split on `|` and give one indicator per known part.
MISP_TYPES: dict[str, str | None] = {
    "ip-dst": "ip",
    "ip-src": "ip",
    "ip-dst|port": "ip",
    "ip-src|port": "ip",
    "domain": "domain",
    "hostname": "domain",
    "domain|ip": "domain",
    "url": "url",
    "link": "url",
    "uri": None,
    "email": "email",
    "email-src": "email",
    "email-dst": "email",
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
    "filename": "filename",
    "filename|md5": "md5",
    "filename|sha1": "sha1",
    "filename|sha256": "sha256",
    "AS": "asn",
    "vulnerability": "cve",
    "btc": "btc-address",
    "mutex": "mutex",
    "regkey": "registry-key",
    "user-agent": "user-agent",
}
VALUE_COLUMNS = ("value", "indicator", "ioc", "observable", "url", "domain", "ip", "hash")
MAPPED = ("value", "type", "tags", "description", "confidence", "score", "first_seen", "last_seen")
MAX_REJECTIONS = 100
COMMENT_PREFIXES = ("#", "//", ";")


@dataclass
class Record:
    """One value to import, with optional per-row fields (tags, confidence, ...)."""

    line: int
    value: str
    type: str | None = None
    extra: dict[str, Any] | None = None


@dataclass
class Rejection:
    """One input row that cannot be imported, and why."""

    line: int
    value: str
    reason: str


@dataclass
class CsvMapping:
    """Which CSV columns hold what (names when the file has a header, else 0-based indexes), or a preset.

    With neither columns nor a preset, a header naming a published layout's columns selects that preset
    (`detected` says which, once the header was read).
    """

    value: str | int | None = None
    type: str | int | None = None
    tags: str | int | None = None
    description: str | int | None = None
    confidence: str | int | None = None
    score: str | int | None = None
    first_seen: str | int | None = None
    last_seen: str | int | None = None
    delimiter: str = ","
    has_header: bool | None = None
    comment_prefix: str = "#"
    preset: str | None = None
    columns: dict[str, int] = field(default_factory=dict)
    detected: Preset | None = None

    def named(self) -> bool:
        """Whether some column is given by name (so the file has a header)."""
        return any(isinstance(getattr(self, n), str) for n in MAPPED)

    def mapped(self) -> bool:
        """Whether the caller said which column holds what."""
        return any(getattr(self, n) is not None for n in MAPPED)


async def lines_of(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    """Complete lines, a chunk's worth at a time (UTF-8, BOM dropped, invalid bytes replaced)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    rest = ""
    async for chunk in chunks:
        text = rest + decoder.decode(chunk)
        lines = text.split("\n")
        rest = lines.pop()
        if lines:
            yield lines
    tail = rest + decoder.decode(b"", final=True)
    if tail:
        yield [tail]


async def text_records(chunks: AsyncIterator[bytes], type_hint: str | None) -> AsyncIterator[list[Record]]:
    """One value per line; blank lines and comments (#, //, ;) skipped, trailing ` # comment` cut."""
    number = 0
    async for lines in lines_of(chunks):
        batch = []
        for raw in lines:
            number += 1
            line = raw.strip()
            if not line or line.startswith(COMMENT_PREFIXES):
                continue
            cut = line.find(" #")
            if cut > 0:
                line = line[:cut].rstrip()
            batch.append(Record(number, line, type_hint))
        if batch:
            yield batch


def _resolve(mapping: CsvMapping, header: list[str] | None) -> dict[str, int]:
    """Column indexes of each mapped field; the value column is guessed from the header when not given."""
    names = [h.strip().lower() for h in header] if header is not None else None
    out: dict[str, int] = {}
    for name in MAPPED:
        wanted = getattr(mapping, name)
        if wanted is None:
            if names is not None and name in names:
                out[name] = names.index(name)
            continue
        if isinstance(wanted, int):
            out[name] = wanted
        elif names is not None and wanted.strip().lower() in names:
            out[name] = names.index(wanted.strip().lower())
        else:
            raise ValueError(f"column {wanted!r} is not in the header")
    if "value" not in out:
        guess = next((names.index(c) for c in VALUE_COLUMNS if names and c in names), None)
        out["value"] = guess if guess is not None else 0
    return out


def _looks_like_header(row: list[str]) -> bool:
    lowered = {c.strip().lower() for c in row}
    return bool(lowered & {*VALUE_COLUMNS, "type", "tags"})


def _layout(
    mapping: CsvMapping, row: list[str], commented: list[str] | None
) -> tuple[dict[str, int], Preset | None, bool]:
    """(column indexes, preset, whether `row` is the header) once the first row that is not a comment is read.

    A header is the first row when `has_header` says so, or when it names columns; published feeds put it
    in a comment line before the rows instead (`# id,dateadded,url,...`), which counts unless the caller
    said there is no header.
    """
    if mapping.has_header is True:
        header, skip = row, True
    elif mapping.has_header is False:
        header, skip = None, False
    elif commented is not None:
        header, skip = commented, presets.names(row) == presets.names(commented)
    elif mapping.named() or presets.detect(row) is not None or _looks_like_header(row):
        header, skip = row, True
    else:
        header, skip = None, False
    preset = presets.PRESETS[mapping.preset] if mapping.preset else None
    if preset is None and header is not None and not mapping.mapped():
        preset = presets.detect(header)
    if preset is not None:
        return presets.columns_of(preset, header), preset, skip
    return _resolve(mapping, header), None, skip


def _commented_header(row: list[str], mapping: CsvMapping) -> list[str] | None:
    """Column names in a comment line (the published feeds' header), when they look like one."""
    cells = presets.header_in_comment(mapping.delimiter.join(row), mapping.comment_prefix, mapping.delimiter)
    if cells is None:
        return None
    wanted = {
        str(getattr(mapping, n)).strip().lower() for n in MAPPED if isinstance(getattr(mapping, n), str)
    }
    found = set(presets.names(cells))
    if presets.detect(cells) is not None or _looks_like_header(cells) or (wanted and wanted <= found):
        return cells
    return None


def _preset_record(line: int, row: list[str], columns: dict[str, int], preset: Preset) -> Record | Rejection:
    cells = {name: row[at] for name, at in columns.items() if at < len(row)}
    try:
        value, kind, extra = preset.parse(cells)
    except presets.RowRefused as exc:
        return Rejection(line, cells.get(preset.value_column, "").strip(), str(exc))
    return Record(line, value, kind, extra)


async def csv_records(
    chunks: AsyncIterator[bytes], mapping: CsvMapping, type_hint: str | None
) -> AsyncIterator[list[Record | Rejection]]:
    """Rows of a CSV file as records (column mapping or preset, comment lines, optional header).

    Fields may be quoted and separated by `", "` as some feeds write them (spaces after a delimiter are
    skipped).
    """
    number = 0
    columns: dict[str, int] | None = None
    preset: Preset | None = None
    commented: list[str] | None = None
    prefix = mapping.comment_prefix
    async for lines in lines_of(chunks):
        kept = [ln.rstrip("\r") for ln in lines]
        start = number
        number += len(kept)
        batch: list[Record | Rejection] = []
        for offset, row in enumerate(csv.reader(kept, delimiter=mapping.delimiter, skipinitialspace=True)):
            line_no = start + offset + 1
            if not row:
                continue
            if prefix and row[0].lstrip().startswith(prefix):
                if columns is None:
                    commented = _commented_header(row, mapping) or commented
                continue
            if columns is None:
                columns, preset, is_header = _layout(mapping, row, commented)
                mapping.columns, mapping.detected = columns, preset
                if is_header:
                    continue
            if preset is not None:
                batch.append(_preset_record(line_no, row, columns, preset))
                continue
            value_at = columns["value"]
            if value_at >= len(row):
                batch.append(Record(line_no, "", None, {"_error": "the value column is missing"}))
                continue
            value = row[value_at].strip()
            if not value:
                continue
            kind = type_hint
            extra: dict[str, Any] | None = None
            for name, at in columns.items():
                if name == "value" or at >= len(row):
                    continue
                cell = row[at].strip()
                if not cell:
                    continue
                if name == "type":
                    kind = cell
                else:
                    if extra is None:
                        extra = {}
                    extra[name] = cell
            batch.append(Record(line_no, value, kind, extra))
        if batch:
            yield batch


def _event_list(document: Any) -> list[dict[str, Any]]:
    """Events of a MISP export: one event, a list of events, or a `response` wrapper."""
    if isinstance(document, dict) and "response" in document:
        document = document["response"]
    items = document if isinstance(document, list) else [document]
    out = []
    for item in items:
        if isinstance(item, dict):
            event = item.get("Event", item)
            if isinstance(event, dict):
                out.append(event)
    return out


def _tag_names(node: dict[str, Any]) -> list[str]:
    return [
        t["name"] for t in node.get("Tag") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]


def _attributes(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for attribute in event.get("Attribute") or []:
        if isinstance(attribute, dict):
            yield attribute
    for obj in event.get("Object") or []:
        if isinstance(obj, dict):
            for attribute in obj.get("Attribute") or []:
                if isinstance(attribute, dict):
                    yield attribute


def misp_records(data: bytes) -> Iterator[Record | Rejection]:
    """Records of MISP event JSON: attributes and object attributes, event and attribute tags, TLP tags."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield Rejection(0, "", f"not JSON: {exc}")
        return
    events = _event_list(document)
    if not events:
        yield Rejection(0, "", 'no MISP event found (expected {"Event": {...}})')
        return
    number = 0
    for event in events:
        event_tags = _tag_names(event)
        for attribute in _attributes(event):
            number += 1
            yield from _misp_attribute(number, attribute, event_tags, str(event.get("info") or ""))


def _misp_attribute(
    number: int, attribute: dict[str, Any], event_tags: Iterable[str], info: str
) -> Iterator[Record | Rejection]:
    misp_type = str(attribute.get("type") or "")
    raw = attribute.get("value")
    if not isinstance(raw, str):
        yield Rejection(number, str(raw)[:200], "attribute without a text value")
        return
    if misp_type not in MISP_TYPES or MISP_TYPES[misp_type] is None:
        yield Rejection(number, raw[:200], f"MISP attribute type {misp_type!r} is not imported")
        return
    kind = MISP_TYPES[misp_type]
    tags = [*event_tags, *_tag_names(attribute)]
    extra: dict[str, Any] = {"tags": tags}
    comment = attribute.get("comment")
    if isinstance(comment, str) and comment:
        extra["description"] = comment
    elif info:
        extra["description"] = info
    for stamp in ("first_seen", "last_seen"):
        if isinstance(attribute.get(stamp), str) and attribute[stamp]:
            extra[stamp] = attribute[stamp]
    if "|" in misp_type:
        left, _, right = raw.partition("|")
        if misp_type.startswith("filename|"):
            yield Record(number, left, "filename", extra)
            yield Record(number, right, kind, extra)
        else:
            yield Record(number, left, kind, extra)
            if misp_type == "domain|ip":
                yield Record(number, right, "ip", extra)
        return
    yield Record(number, raw, "ip" if kind == "ip" else kind, extra)


def split_tlp(tags: Iterable[str]) -> tuple[list[str], str | None]:
    """Tags without `tlp:*` ones, and the TLP they name (MISP and STIX style), if any."""
    out, tlp = [], None
    for tag in tags:
        lowered = tag.strip().lower()
        if lowered.startswith("tlp:"):
            level = lowered[4:].replace("white", "clear")
            if level in ("clear", "green", "amber", "amber+strict", "red"):
                tlp = level
            continue
        out.append(tag)
    return out, tlp
