"""Exports of indicators: CSV, blocklist text, MISP event JSON, Suricata/Snort rules, STIX (via sharing.stix).

Every format is produced as a stream of chunks from keyset batches, so a million indicators never sit
in memory at once; the HTTP routes and `raptorflow export` use the same generators.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.kit.db import stream_session
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Organization
from raptorflow.sharing.exports.repository import ExportRepository
from raptorflow.sharing.exports.schemas import blocklist_defaults
from raptorflow.sharing.stix import service as stix_service
from raptorflow.sharing.stix.service import Selection

CSV_COLUMNS = (
    "id",
    "type",
    "value",
    "classification",
    "confidence",
    "score",
    "tlp",
    "tags",
    "sources",
    "first_seen",
    "last_seen",
    "valid_until",
    "project_id",
    "description",
)
# Platform type → (MISP attribute type, MISP category).
MISP_TYPES = {
    "ipv4": ("ip-dst", "Network activity"),
    "ipv6": ("ip-dst", "Network activity"),
    "cidr": ("ip-dst", "Network activity"),
    "domain": ("domain", "Network activity"),
    "url": ("url", "Network activity"),
    "email": ("email-src", "Payload delivery"),
    "md5": ("md5", "Payload delivery"),
    "sha1": ("sha1", "Payload delivery"),
    "sha256": ("sha256", "Payload delivery"),
    "sha512": ("sha512", "Payload delivery"),
    "filename": ("filename", "Payload delivery"),
    "mutex": ("mutex", "Artifacts dropped"),
    "registry-key": ("regkey", "Persistence mechanism"),
    "user-agent": ("user-agent", "Network activity"),
    "btc-address": ("btc", "Financial fraud"),
    "asn": ("AS", "Network activity"),
    "cve": ("vulnerability", "External analysis"),
}
RULE_ENGINES = ("suricata", "snort")
# Local sids live above the ranges public rule sets use (ET: 2,000,000-2,999,999; Snort: < 1,000,000).
SID_BASE = 3_000_000_000
SID_SPACE = 1_000_000_000
# Indicator batches read in a session of their own. A stream closes the batches it reads when it is
# closed itself (`aclosing`): a client that leaves mid-file must give the connection back at once.
Batches = AsyncGenerator[Sequence[Row[Any]], None]


async def indicator_batches(
    factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID, filters: dict[str, Any]
) -> Batches:
    """Matching indicators of an org in keyset batches, read in one transaction of their own."""
    async with stream_session(factory) as session:
        await bind_org(session, org_id)
        async for rows in ExportRepository(session, org_id).batches(filters):
            yield rows


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else ""


async def csv_stream(batches: Batches) -> AsyncIterator[bytes]:
    """CSV with a header row; tags and sources joined with `;`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    async with aclosing(batches):
        async for rows in batches:
            buffer.seek(0)
            buffer.truncate()
            for r in rows:
                writer.writerow(
                    (
                        r.id,
                        r.type,
                        r.value,
                        r.classification,
                        r.confidence,
                        r.score,
                        r.tlp,
                        ";".join(r.tags or []),
                        ";".join(r.sources or []),
                        _iso(r.first_seen),
                        _iso(r.last_seen),
                        _iso(r.valid_until),
                        r.project_id or "",
                        r.description or "",
                    )
                )
            yield buffer.getvalue().encode()


async def txt_stream(batches: Batches) -> AsyncIterator[bytes]:
    """One value per line (firewall and proxy blocklists)."""
    async with aclosing(batches):
        async for rows in batches:
            yield ("".join(f"{r.value}\n" for r in rows)).encode()


def _misp_attribute(r: Row[Any]) -> dict[str, Any] | None:
    mapped = MISP_TYPES.get(r.type)
    if mapped is None:
        return None
    misp_type, category = mapped
    return {
        "uuid": str(r.id),
        "type": misp_type,
        "category": category,
        "value": r.value,
        "to_ids": r.classification in ("malicious", "suspicious", "unknown"),
        "comment": r.description or "",
        "timestamp": str(int(r.last_seen.timestamp())),
        "first_seen": _iso(r.first_seen),
        "last_seen": _iso(r.last_seen),
        "Tag": [{"name": f"tlp:{r.tlp}"}, *({"name": t} for t in r.tags or [])],
    }


async def misp_stream(batches: Batches, *, org_name: str, info: str, now: datetime) -> AsyncIterator[bytes]:
    """One MISP event (the JSON MISP's "Add event from JSON" and feeds take) holding every indicator."""
    event_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"raptorflow:{org_name}:{info}:{now.isoformat()}")
    head = {
        "uuid": str(event_uuid),
        "info": info,
        "date": now.date().isoformat(),
        "timestamp": str(int(now.timestamp())),
        "published": False,
        "analysis": "2",
        "threat_level_id": "2",
        "distribution": "0",
        "Orgc": {"name": org_name},
        "Tag": [],
    }
    prefix = orjson.dumps({"Event": head})[:-2]  # without the closing "}}"
    yield prefix + b',"Attribute":['
    first = True
    async with aclosing(batches):
        async for rows in batches:
            parts = []
            for r in rows:
                attribute = _misp_attribute(r)
                if attribute is not None:
                    parts.append(orjson.dumps(attribute))
            if parts:
                yield (b"" if first else b",") + b",".join(parts)
                first = False
    yield b"]}}"


def stable_sid(kind: str, value: str) -> int:
    """The same rule for the same indicator always gets the same sid (a digest of what it matches)."""
    digest = hashlib.sha256(f"{kind}:{value}".encode()).digest()
    return SID_BASE + int.from_bytes(digest[:8], "big") % SID_SPACE


def _msg(text: str) -> str:
    # `;`, `"` and `\` end or escape rule options; a message needs none of them.
    return "".join(c for c in text if c not in ';"\\|' and c.isprintable())[:200]


def _content(text: str) -> str:
    """A rule `content` value: characters with a meaning in rules written as |hex|."""
    out = []
    for c in text:
        if c in ';"\\|:' or not c.isprintable() or ord(c) > 126:
            out.append("|" + " ".join(f"{b:02X}" for b in c.encode()) + "|")
        else:
            out.append(c)
    return "".join(out)


def _dns_labels(domain: str) -> str:
    """A domain in DNS wire form for Snort 2 content matching: |03|www|04|evil|03|com|00|."""
    return "".join(f"|{len(label):02X}|{_content(label)}" for label in domain.split(".")) + "|00|"


def _split_url(url: str) -> tuple[str, str, str]:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    return scheme.lower(), host, slash + path if slash else "/"


Builder = Callable[[int], str]


def _rule(header: str, msg: str, options: str, suffix: str) -> Builder:
    """A rule builder: `header (msg:...; options sid:N; suffix)` once the sid is known."""
    return lambda sid: f'{header} (msg:"{_msg(msg)}"; {options}sid:{sid}; {suffix})'


def _domain_rules(engine: str, value: str, tag: str, suffix: str) -> list[tuple[str, Builder]]:
    c = _content(value)
    if engine == "suricata":
        return [
            (
                f"dns:{value}",
                _rule("alert dns $HOME_NET any -> any any", tag + " DNS query",
                      f'dns.query; dotprefix; content:".{c}"; nocase; endswith; ', suffix),
            ),
            (
                f"sni:{value}",
                _rule("alert tls $HOME_NET any -> $EXTERNAL_NET any", tag + " TLS SNI",
                      f'tls.sni; dotprefix; content:".{c}"; nocase; endswith; ', suffix),
            ),
        ]  # fmt: skip
    return [
        (
            f"dns:{value}",
            _rule("alert udp $HOME_NET any -> any 53", tag + " DNS query",
                  f'content:"|01 00 00 01|"; offset:2; depth:4; content:"{_dns_labels(value)}"; nocase; '
                  "distance:0; fast_pattern; ", suffix),
        ),
        (
            f"sni:{value}",
            _rule("alert tcp $HOME_NET any -> $EXTERNAL_NET 443", tag + " TLS SNI",
                  'flow:established,to_server; content:"|16 03|"; depth:2; content:"|01|"; offset:5; '
                  "depth:1; "
                  f'content:"{c}"; nocase; distance:0; fast_pattern; ', suffix),
        ),
    ]  # fmt: skip


def _url_rules(engine: str, value: str, tag: str, suffix: str) -> list[tuple[str, Builder]]:
    scheme, host, path = _split_url(value)
    h, p = _content(host), _content(path)
    if scheme != "http":
        # An encrypted URL's path is invisible to a sensor: its host in the TLS SNI is what can be seen.
        if engine == "suricata":
            options = f'tls.sni; content:"{h}"; nocase; bsize:{len(host)}; '
            return [(f"sni:{host}", _rule("alert tls $HOME_NET any -> $EXTERNAL_NET any", tag + " TLS SNI",
                                          options, suffix))]  # fmt: skip
        options = (
            f'flow:established,to_server; content:"|16 03|"; depth:2; content:"{h}"; nocase; distance:0; '
        )
        return [(f"sni:{host}", _rule("alert tcp $HOME_NET any -> $EXTERNAL_NET 443", tag + " TLS SNI",
                                      options + "fast_pattern; ", suffix))]  # fmt: skip
    if engine == "suricata":
        options = (
            f'flow:established,to_server; http.host; content:"{h}"; nocase; endswith; '
            f'http.uri; content:"{p}"; startswith; '
        )
        return [
            (f"url:{value}", _rule("alert http $HOME_NET any -> $EXTERNAL_NET any", tag, options, suffix))
        ]
    options = (
        f'flow:established,to_server; content:"{h}"; http_header; nocase; '
        f'content:"{p}"; http_uri; fast_pattern; '
    )
    return [
        (f"url:{value}", _rule("alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS", tag, options, suffix))
    ]


def rules_for(engine: str, r: Row[Any]) -> list[tuple[str, Builder]]:
    """(sid key, rule builder taking the sid) for one indicator; empty for types sensors cannot match."""
    value, kind = r.value, r.type
    tag = f"RaptorFlow {kind} {value}"
    suffix = f"metadata:raptorflow_id {r.id}, tlp {r.tlp}; classtype:trojan-activity; rev:1;"
    if kind in ("ipv4", "ipv6", "cidr"):
        return [
            (f"ip:{value}", _rule(f"alert ip $HOME_NET any -> [{value}] any", tag, "", suffix)),
            (
                f"ip-in:{value}",
                _rule(f"alert ip [{value}] any -> $HOME_NET any", tag + " inbound", "", suffix),
            ),
        ]
    if kind == "domain":
        return _domain_rules(engine, value, tag, suffix)
    if kind == "url":
        return _url_rules(engine, value, tag, suffix)
    return []


async def rules_stream(batches: Batches, engine: str) -> AsyncIterator[bytes]:
    """Suricata or Snort rules for IPs, domains (DNS and TLS SNI) and URLs, each with a stable sid."""
    yield (
        f"# RaptorFlow {engine} rules; sids {SID_BASE}-{SID_BASE + SID_SPACE - 1} "
        "derive from what a rule matches\n"
    ).encode()
    used: set[int] = set()
    async with aclosing(batches):
        async for rows in batches:
            lines = []
            for r in rows:
                for key, build in rules_for(engine, r):
                    sid = stable_sid(engine, key)
                    # A digest collision inside one file moves the later rule to the next free sid.
                    while sid in used:
                        sid = SID_BASE + (sid - SID_BASE + 1) % SID_SPACE
                    used.add(sid)
                    lines.append(build(sid) + "\n")
            if lines:
                yield "".join(lines).encode()


async def org_name(session: AsyncSession, org_id: uuid.UUID) -> str:
    """The display name of an org (MISP `Orgc`)."""
    name = await session.scalar(select(Organization.name).where(Organization.id == org_id))
    return str(name or org_id)


def stix_stream(
    factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID, filters: dict[str, Any]
) -> AsyncIterator[bytes]:
    """A STIX 2.1 bundle of the matching indicators, built by the STIX mapping (sharing.stix)."""
    return stix_service.stream_bundle(factory, org_id, Selection(indicators=filters))


FORMATS = ("csv", "txt", "stix", "misp", "suricata", "snort")


def stream_for(
    fmt: str,
    factory: async_sessionmaker[AsyncSession],
    org_id: uuid.UUID,
    filters: dict[str, Any],
    *,
    org: str,
    now: datetime,
) -> AsyncIterator[bytes]:
    """The chunks of an export in one of FORMATS (the CLI's entry; routes call the streams directly)."""
    if fmt == "stix":
        return stix_stream(factory, org_id, filters)
    if fmt in ("txt", "suricata", "snort"):
        filters = blocklist_defaults(filters)
    batches = indicator_batches(factory, org_id, filters)
    if fmt == "csv":
        return csv_stream(batches)
    if fmt == "txt":
        return txt_stream(batches)
    if fmt == "misp":
        return misp_stream(batches, org_name=org, info="RaptorFlow export", now=now)
    if fmt in RULE_ENGINES:
        return rules_stream(batches, fmt)
    raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
