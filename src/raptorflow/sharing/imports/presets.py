"""Published CSV layouts (abuse.ch URLhaus, ThreatFox, Feodo Tracker): their columns, and what a row means.

Each layout is recognized from its header (often itself a `# ` comment line in the published files) or
named as `preset`. A row becomes a value, its type and the per-row fields the CSV reader passes on
(`tags` as one cell of `;`/`,`-separated items, `confidence`, `first_seen`, `last_seen`, `description`):
the family a row names becomes a `malware:<family>` tag, the threat kind a tag, a port a `port:<n>` tag
(indicators have no port field; a tag keeps it visible, filterable with `tag=` and merged by union), and
the feed's reference link the description. Tags are lower-cased like every tag; the description keeps
the family as the feed spells it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

PresetName = Literal["urlhaus", "threatfox", "feodo"]
# The feeds write this where a field has no value (Python's str(None)): it is no tag, family or link.
ABSENT = frozenset({"", "none", "null", "n/a"})
_NAME = re.compile(r"[a-z][a-z0-9_ ]*")


class RowRefused(ValueError):
    """A row of a preset layout that gives no importable value, and why."""


Parsed = tuple[str, str | None, dict[str, Any]]


@dataclass(frozen=True)
class Preset:
    """One published layout: its name, its feed's name (the import's default source), its columns."""

    name: PresetName
    source: str
    columns: tuple[str, ...]
    value_column: str
    parse: Callable[[Mapping[str, str]], Parsed]

    @property
    def gives_confidence(self) -> bool:
        """Whether rows of this layout carry their own confidence."""
        return "confidence_level" in self.columns


def _cell(row: Mapping[str, str], name: str) -> str | None:
    text = row.get(name, "").strip()
    return None if text.lower() in ABSENT else text


def _extra(tags: Iterable[str | None], **fields: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in fields.items() if v}
    cells = [t for t in tags if t]
    if cells:
        out["tags"] = ";".join(cells)
    return out


def _family(name: str | None) -> str | None:
    return f"malware:{name}" if name else None


def _port(text: str | None) -> str | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise RowRefused(f"port {text!r} is not a port number (1-65535)")
    return f"port:{int(text)}"


def _urlhaus(row: Mapping[str, str]) -> Parsed:
    url = _cell(row, "url")
    if url is None:
        raise RowRefused("the url column is empty")
    threat, link = _cell(row, "threat"), _cell(row, "urlhaus_link")
    said = f"URLhaus {threat or 'entry'} {_cell(row, 'id') or ''}".rstrip()
    extra = _extra(
        [threat, _cell(row, "tags")],
        first_seen=_cell(row, "dateadded"),
        # Offline URLs keep the time they were last seen online, so their score decays from then.
        last_seen=_cell(row, "last_online"),
        description=f"{said}; reference {link}" if link else said,
    )
    return url, "url", extra


# ThreatFox `ioc_type` → platform type; other kinds (e.g. sha3_384_hash) are refused with the kind named.
THREATFOX_TYPES = {
    "ip:port": "ip",
    "domain": "domain",
    "url": "url",
    "md5_hash": "md5",
    "sha1_hash": "sha1",
    "sha256_hash": "sha256",
}


def split_ip_port(value: str) -> tuple[str, str | None]:
    """`203.0.113.5:443` or `[2001:db8::1]:443` → (address, port); a bare address has no port."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, None


def _threatfox(row: Mapping[str, str]) -> Parsed:
    value, kind = _cell(row, "ioc_value"), (_cell(row, "ioc_type") or "").lower()
    if value is None:
        raise RowRefused("the ioc_value column is empty")
    if kind not in THREATFOX_TYPES:
        raise RowRefused(f"ThreatFox ioc_type {kind!r} is not imported")
    port = None
    if kind == "ip:port":
        value, port = split_ip_port(value)
    threat, family, reference = (
        _cell(row, "threat_type"),
        _cell(row, "malware_printable"),
        _cell(row, "reference"),
    )
    said = " ".join(p for p in ("ThreatFox", threat, family, _paren(_cell(row, "fk_malware"))) if p)
    extra = _extra(
        [threat, _family(family), _cell(row, "tags"), _port(port)],
        confidence=_cell(row, "confidence_level"),
        first_seen=_cell(row, "first_seen_utc"),
        last_seen=_cell(row, "last_seen_utc"),
        description=f"{said}; reference {reference}" if reference else said,
    )
    return value, THREATFOX_TYPES[kind], extra


def _paren(text: str | None) -> str | None:
    return f"({text})" if text else None


def _feodo(row: Mapping[str, str]) -> Parsed:
    address, family = _cell(row, "dst_ip"), _cell(row, "malware")
    if address is None:
        raise RowRefused("the dst_ip column is empty")
    extra = _extra(
        [_family(family), _port(_cell(row, "dst_port"))],
        first_seen=_cell(row, "first_seen_utc"),
        last_seen=_cell(row, "last_online"),
        description=f"Feodo Tracker botnet C2 ({family})" if family else "Feodo Tracker botnet C2",
    )
    return address, "ip", extra


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "urlhaus",
            "abuse.ch URLhaus",
            (
                "id",
                "dateadded",
                "url",
                "url_status",
                "last_online",
                "threat",
                "tags",
                "urlhaus_link",
                "reporter",
            ),
            "url",
            _urlhaus,
        ),
        Preset(
            "threatfox",
            "abuse.ch ThreatFox",
            (
                "first_seen_utc",
                "ioc_id",
                "ioc_value",
                "ioc_type",
                "threat_type",
                "fk_malware",
                "malware_alias",
                "malware_printable",
                "last_seen_utc",
                "confidence_level",
                "reference",
                "tags",
                "anonymous",
                "reporter",
            ),
            "ioc_value",
            _threatfox,
        ),
        Preset(
            "feodo",
            "abuse.ch Feodo Tracker",
            ("first_seen_utc", "dst_ip", "dst_port", "c2_status", "last_online", "malware"),
            "dst_ip",
            _feodo,
        ),
    )
}
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)


def names(header: Sequence[str]) -> list[str]:
    """Header cells as compared: trimmed, lower-case."""
    return [h.strip().lower() for h in header]


def detect(header: Sequence[str]) -> Preset | None:
    """The published layout whose columns are all in this header, if any."""
    present = set(names(header))
    return next((p for p in PRESETS.values() if present.issuperset(p.columns)), None)


def columns_of(preset: Preset, header: Sequence[str] | None) -> dict[str, int]:
    """Index of each of the layout's columns: by name in the header, else the published order."""
    if header is None:
        return {name: at for at, name in enumerate(preset.columns)}
    found = names(header)
    if preset.value_column not in found:
        raise ValueError(
            f"the {preset.name} layout needs a {preset.value_column!r} column; the header has none"
        )
    return {name: found.index(name) for name in preset.columns if name in found}


def header_in_comment(text: str, prefix: str, delimiter: str) -> list[str] | None:
    """The column names a comment line such as `# id,dateadded,url,...` holds, or None for prose."""
    body = text.lstrip()[len(prefix) :].strip()
    if delimiter not in body:
        return None
    cells = next(csv.reader([body], delimiter=delimiter, skipinitialspace=True), [])
    if len(cells) < 2 or not all(_NAME.fullmatch(c) for c in names(cells)):
        return None
    return cells


def sniff(head: bytes) -> Preset | None:
    """The published layout a file's first bytes show in a header line (commented or not), if any."""
    for line in head.decode("utf-8", errors="replace").splitlines()[:64]:
        text = line.strip()
        cells = header_in_comment(text, "#" if text.startswith("#") else "", ",")
        if cells is not None and (found := detect(cells)) is not None:
            return found
    return None
