"""Native rows → STIX 2.1 objects as plain dicts (orjson-ready): the export hot path, no stix2 objects.

STIX ids are stable: an object imported from STIX keeps its producer's id; our own objects get
`<type>--<our UUIDv7 with the version nibble set to 4>`. STIX 2.1 validators want RFC 4122 v1-v5 ids and
a v7's version nibble is always 7, so the rewrite loses nothing: `native_uuid` undoes it.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from raptorflow.sharing.stix.patterns import build

TLP_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# TLP 2.0 marking definitions as published by OASIS (cti-stix-common-objects, tlp-2.0 extension).
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# TLP 1.0 marking definitions predefined by STIX 2.1 §7.2.1.4 (read on import).
TLP1_IDS = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
TLP_BY_MARKING = {v: k for k, v in TLP2_IDS.items()} | {
    v: ("clear" if k == "white" else k) for k, v in TLP1_IDS.items()
}
INDICATOR_TYPES = {
    "malicious": "malicious-activity",
    "suspicious": "anomalous-activity",
    "benign": "benign",
    "unknown": "unknown",
}
CLASSIFICATION_OF = {v: k for k, v in INDICATOR_TYPES.items()} | {
    "compromised": "malicious",
    "attribution": "malicious",
}
_VERSION = 14  # position of the version digit in canonical UUID text


def stix_uuid(native: uuid.UUID | str) -> str:
    """Our UUIDv7 as a STIX-friendly v4-shaped UUID (bijective on v7 ids)."""
    text = str(native)
    return text[:_VERSION] + "4" + text[_VERSION + 1 :]


def native_uuid(stix_id: str) -> uuid.UUID | None:
    """The native id behind a STIX id we minted, or None when it cannot be one."""
    text = stix_id.rsplit("--", 1)[-1]
    if len(text) != 36 or text[_VERSION] != "4":
        return None
    try:
        return uuid.UUID(text[:_VERSION] + "7" + text[_VERSION + 1 :])
    except ValueError:
        return None


def derived_id(stix_type: str, *key: str) -> str:
    """A stable v4-shaped STIX id derived from a key (for objects that are not rows: edges, ATT&CK refs)."""
    digest = hashlib.sha256("\x1f".join((stix_type, *key)).encode()).digest()[:16]
    return f"{stix_type}--{uuid.UUID(bytes=digest, version=4)}"


def object_id(stix_type: str, native: uuid.UUID, stored: str | None) -> str:
    """The STIX id of a native row: the producer's when imported, else derived from ours."""
    if stored and not stored.endswith(str(native)):
        return stored
    return f"{stix_type}--{stix_uuid(native)}"


@functools.lru_cache(maxsize=8192)
def ts(value: datetime) -> str:
    """An RFC 3339 UTC timestamp with millisecond precision, as STIX wants for created/modified."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
        f"{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def ts_exact(value: datetime) -> str:
    """An RFC 3339 UTC timestamp to the microsecond (TAXII date_added, sent back as added_after)."""
    return ts(value)[:-1] + f"{value.microsecond % 1000:03d}Z"


def identity(org_id: uuid.UUID, name: str) -> dict[str, Any]:
    """The organization as a STIX identity (the creator of everything we export)."""
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": f"identity--{stix_uuid(org_id)}",
        "created": "2020-01-01T00:00:00.000Z",
        "modified": "2020-01-01T00:00:00.000Z",
        "name": name,
        "identity_class": "organization",
    }


def tlp_marking(level: str) -> dict[str, Any]:
    """The TLP 2.0 marking definition of a level."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_IDS[level],
        "created": "2022-10-01T00:00:00.000Z",
        "name": "TLP:" + level.upper(),
        "extensions": {TLP_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }


def indicator(row: Any, creator: str) -> dict[str, Any]:
    """A STIX indicator from an INDICATOR_COLUMNS tuple (see repository)."""
    (
        native,
        kind,
        value,
        classification,
        confidence,
        tlp,
        tags,
        description,
        _techniques,
        first_seen,
        valid_from,
        valid_until,
        created_at,
        updated_at,
        stored,
    ) = row
    start = valid_from or first_seen
    out: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": object_id("indicator", native, stored),
        "created_by_ref": creator,
        "created": ts(created_at),
        "modified": ts(updated_at),
        "name": value if len(value) <= 250 else value[:247] + "...",
        "indicator_types": [INDICATOR_TYPES.get(classification, "unknown")],
        "pattern": build(kind, value),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": ts(start),
        "confidence": confidence,
        "object_marking_refs": [TLP2_IDS[tlp]],
    }
    if description:
        out["description"] = description
    if valid_until is not None and valid_until > start:
        out["valid_until"] = ts(valid_until)
    if tags and tags != "[]":
        out["labels"] = orjson.loads(tags) if isinstance(tags, str) else tags
    return out


def attack_pattern(technique_id: str, catalog: Any | None) -> dict[str, Any]:
    """An ATT&CK technique as a STIX attack-pattern (the catalog's own id when it is loaded)."""
    url = f"https://attack.mitre.org/techniques/{technique_id.replace('.', '/')}/"
    return {
        "type": "attack-pattern",
        "spec_version": "2.1",
        "id": catalog.stix_id if catalog is not None else derived_id("attack-pattern", technique_id),
        "created": "2017-05-31T21:30:00.000Z",
        "modified": ts(catalog.modified)
        if catalog is not None and catalog.modified
        else "2017-05-31T21:30:00.000Z",
        "name": catalog.name if catalog is not None else technique_id,
        "external_references": [
            {
                "source_name": "mitre-attack",
                "external_id": technique_id,
                "url": catalog.url if catalog and catalog.url else url,
            }
        ],
    }


def _common(stix_type: str, row: Any, creator: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": stix_type,
        "spec_version": "2.1",
        "id": object_id(stix_type, row.id, row.stix_id),
        "created_by_ref": creator,
        "created": ts(row.created_at),
        "modified": ts(row.updated_at),
        "object_marking_refs": [TLP2_IDS[row.tlp]],
    }
    if row.description:
        out["description"] = row.description
    if row.tags:
        out["labels"] = list(row.tags)
    return out


def context(kind: str, row: Any, creator: str, refs: list[str] | None = None) -> dict[str, Any]:
    """A threat-actor (or intrusion-set when imported as one), campaign, vulnerability or report."""
    if kind == "threat-actor":
        stix_type = "intrusion-set" if (row.stix_id or "").startswith("intrusion-set--") else "threat-actor"
        out = _common(stix_type, row, creator)
        out["name"] = row.name
        if row.aliases:
            out["aliases"] = list(row.aliases)
        if row.first_seen:
            out["first_seen"] = ts(row.first_seen)
        if row.last_seen and (row.first_seen is None or row.last_seen >= row.first_seen):
            out["last_seen"] = ts(row.last_seen)
        if row.motivation:
            out["primary_motivation"] = row.motivation
        if stix_type == "threat-actor" and row.sophistication:
            out["sophistication"] = row.sophistication
        return out
    if kind == "campaign":
        out = _common("campaign", row, creator)
        out["name"] = row.name
        if row.aliases:
            out["aliases"] = list(row.aliases)
        if row.objective:
            out["objective"] = row.objective
        if row.first_seen:
            out["first_seen"] = ts(row.first_seen)
        if row.last_seen and (row.first_seen is None or row.last_seen >= row.first_seen):
            out["last_seen"] = ts(row.last_seen)
        return out
    if kind == "vulnerability":
        out = _common("vulnerability", row, creator)
        out["name"] = row.cve_id
        out["external_references"] = [{"source_name": "cve", "external_id": row.cve_id}]
        return out
    out = _common("report", row, creator)
    out["name"] = row.title
    out["report_types"] = ["threat-report"]
    out["published"] = ts(row.published or row.created_at)
    # STIX requires a non-empty object_refs: a report referencing nothing we export names its author.
    out["object_refs"] = refs or [creator]
    if row.body and "description" not in out:
        out["description"] = row.body
    return out


def relationship(row: Any, source: str, target: str, creator: str) -> dict[str, Any]:
    """A STIX relationship between two exported objects."""
    out = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": object_id("relationship", row.id, row.stix_id),
        "created_by_ref": creator,
        "created": ts(row.created_at),
        "modified": ts(row.updated_at),
        "relationship_type": row.relationship_type,
        "source_ref": source,
        "target_ref": target,
    }
    if row.description:
        out["description"] = row.description
    if row.confidence is not None:
        out["confidence"] = row.confidence
    return out


def technique_edge(
    source: str, technique: str, target: str, creator: str, relationship_type: str
) -> dict[str, Any]:
    """`indicates` / `uses` from an exported object to an ATT&CK attack-pattern."""
    return {
        "type": "relationship",
        "spec_version": "2.1",
        "id": derived_id("relationship", source, relationship_type, technique),
        "created_by_ref": creator,
        "created": "2020-01-01T00:00:00.000Z",
        "modified": "2020-01-01T00:00:00.000Z",
        "relationship_type": relationship_type,
        "source_ref": source,
        "target_ref": target,
    }


def sighting(row: Any, indicator_ref: str, creator: str) -> dict[str, Any]:
    """A STIX sighting of an exported indicator."""
    out: dict[str, Any] = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": object_id("sighting", row.id, row.stix_id),
        "created_by_ref": creator,
        "created": ts(row.created_at),
        "modified": ts(row.updated_at),
        "sighting_of_ref": indicator_ref,
        "count": max(0, min(int(row.count), 999_999_999)),
        "first_seen": ts(row.first_seen),
        "last_seen": ts(max(row.last_seen, row.first_seen)),
    }
    text = " — ".join(p for p in (row.where, row.source, row.note) if p)
    if text:
        out["description"] = text
    return out
