"""Read an ATT&CK STIX bundle (2.0 or 2.1, plain or gzip, file or URL) into rows for the catalog tables.

The bundle is parsed with orjson into plain dicts: the stix2 object model needs minutes for the 50 MB
Enterprise bundle, this needs well under a second.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from raptorflow.intel.attack.schemas import DOMAINS
from raptorflow.kit.errors import RaptorFlowError

GZIP_MAGIC = b"\x1f\x8b"
# The Enterprise bundle is ~50 MB unpacked (7.5 MB gzipped); these caps leave room to grow and stop bombs.
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 60.0
DEFAULT_DOMAIN = "enterprise-attack"
MAX_VERSION = 16

KIND_OF_TYPE = {
    "x-mitre-tactic": "tactic",
    "attack-pattern": "technique",
    "intrusion-set": "group",
    "malware": "software",
    "tool": "software",
    "course-of-action": "mitigation",
}
KEPT_RELATIONSHIPS = frozenset({"uses", "mitigates", "subtechnique-of"})
KILL_CHAINS = frozenset({"mitre-attack", "mitre-mobile-attack", "mitre-ics-attack"})

# Column widths of attack_objects (PostgreSQL enforces them).
MAX_EXTERNAL_ID = 16
MAX_NAME = 300
MAX_SHORTNAME = 64
MAX_URL = 300
MAX_STIX_ID = 100


class BundleError(RaptorFlowError):
    """The input is not an ATT&CK STIX bundle we can load."""

    status = 422
    title = "Invalid ATT&CK bundle"


@dataclass
class ParsedBundle:
    """Rows ready for upsert, keyed by STIX id (one version per id: the latest `modified`).

    Every row belongs to the bundle's domain: a group MITRE publishes in several domains is stored once
    per domain bundle that carries it.
    """

    domain: str
    attack_version: str | None = None
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    relationships: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: int = 0


def read_file(path: Path) -> bytes:
    """The bytes of a bundle file, gunzipped when it starts with the gzip magic."""
    try:
        size = path.stat().st_size
        if size > MAX_DOWNLOAD_BYTES:
            raise BundleError(f"{path} is {size} bytes; the limit is {MAX_DOWNLOAD_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    return gunzip_if_needed(data)


def fetch_url(
    url: str, *, timeout_s: float = DOWNLOAD_TIMEOUT_S, max_bytes: int = MAX_DOWNLOAD_BYTES
) -> bytes:
    """Download a bundle over HTTP(S) with a timeout and a size cap; gunzipped when needed."""
    if not url.lower().startswith(("https://", "http://")):
        raise BundleError("--url must be an http:// or https:// URL")
    chunks: list[bytes] = []
    received = 0
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise BundleError(f"GET {url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise BundleError(f"{url} is {declared} bytes; the limit is {max_bytes}")
            # iter_raw: the cap applies to what crosses the wire; gzip is undone below, also capped.
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > max_bytes:
                    raise BundleError(f"{url} is larger than the {max_bytes}-byte limit")
                chunks.append(chunk)
            encoding = response.headers.get("content-encoding", "").lower()
    except httpx.HTTPError as exc:
        raise BundleError(f"cannot download {url}: {type(exc).__name__}: {exc}") from None
    data = b"".join(chunks)
    if encoding in ("gzip", "deflate"):
        data = _inflate(data, wbits=31 if encoding == "gzip" else 15)
    return gunzip_if_needed(data)


def gunzip_if_needed(data: bytes) -> bytes:
    """Undo gzip (detected by its magic bytes, not the file name), refusing oversize output."""
    if data[:2] == GZIP_MAGIC:
        return _inflate(data, wbits=31)
    return data


def _inflate(data: bytes, *, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        out = inflater.decompress(data, MAX_BUNDLE_BYTES + 1)
    except zlib.error as exc:
        raise BundleError(f"the compressed bundle is corrupt ({exc})") from None
    if len(out) > MAX_BUNDLE_BYTES or inflater.unconsumed_tail:
        raise BundleError(f"the bundle unpacks to more than {MAX_BUNDLE_BYTES} bytes")
    return out


def _mitre_reference(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    for ref in obj.get("external_references") or ():
        if isinstance(ref, dict) and ref.get("source_name") == "mitre-attack":
            external_id = ref.get("external_id")
            url = ref.get("url")
            return (
                external_id.strip().upper() if isinstance(external_id, str) else None,
                url if isinstance(url, str) and len(url) <= MAX_URL else None,
            )
    return None, None


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _is_hidden(obj: dict[str, Any]) -> bool:
    return obj.get("revoked") is True or obj.get("x_mitre_deprecated") is True


def _bundle_domain(objects: list[Any]) -> str:
    # The matrix names the domain (its external id is e.g. "ics-attack"); without one, the domain most
    # objects list alone in x_mitre_domains (a bundle carries its own domain's objects).
    for obj in objects:
        if isinstance(obj, dict) and obj.get("type") == "x-mitre-matrix":
            external_id, _ = _mitre_reference(obj)
            if external_id:
                return external_id.lower()[:32]
    single = Counter(
        domains[0]
        for obj in objects
        if isinstance(obj, dict) and len(domains := _strings(obj.get("x_mitre_domains"))) == 1
    )
    return single.most_common(1)[0][0][:32] if single else DEFAULT_DOMAIN


def _bundle_version(objects: list[Any]) -> str | None:
    # STIX 2.1 bundles from attack-stix-data carry an x-mitre-collection whose x_mitre_version is the
    # ATT&CK release ("18.1"); bundles assembled from mitre/cti have none.
    for obj in objects:
        if isinstance(obj, dict) and obj.get("type") == "x-mitre-collection":
            version = obj.get("x_mitre_version")
            if isinstance(version, str) and 0 < len(version.strip()) <= MAX_VERSION:
                return version.strip()
    return None


def _object_row(obj: dict[str, Any], kind: str, domain: str) -> dict[str, Any] | None:
    external_id, url = _mitre_reference(obj)
    name = obj.get("name")
    if not external_id or len(external_id) > MAX_EXTERNAL_ID or not isinstance(name, str):
        return None
    description = obj.get("description")
    parent: str | None = None
    if kind == "technique" and (obj.get("x_mitre_is_subtechnique") is True or "." in external_id):
        parent = external_id.split(".", 1)[0]
    shortname = obj.get("x_mitre_shortname") if kind == "tactic" else None
    tactics = (
        [
            phase["phase_name"]
            for phase in obj.get("kill_chain_phases") or ()
            if isinstance(phase, dict)
            and phase.get("kill_chain_name") in KILL_CHAINS
            and isinstance(phase.get("phase_name"), str)
        ]
        if kind == "technique"
        else []
    )
    aliases = _strings(obj.get("aliases") if kind == "group" else obj.get("x_mitre_aliases"))
    return {
        "stix_id": obj["id"],
        "kind": kind,
        "external_id": external_id,
        "name": name[:MAX_NAME],
        "description": description if isinstance(description, str) else "",
        "shortname": shortname[:MAX_SHORTNAME] if isinstance(shortname, str) else None,
        "tactics": tactics,
        "platforms": _strings(obj.get("x_mitre_platforms")),
        "aliases": aliases,
        "parent_external_id": parent,
        "url": url,
        "hidden": _is_hidden(obj),
        "modified": _timestamp(obj.get("modified")),
        "domain": domain,
    }


def _relationship_row(obj: dict[str, Any], domain: str) -> dict[str, Any] | None:
    kind = obj.get("relationship_type")
    source, target = obj.get("source_ref"), obj.get("target_ref")
    if kind not in KEPT_RELATIONSHIPS or not isinstance(source, str) or not isinstance(target, str):
        return None
    # Only relationships between objects the catalog keeps (not campaigns, detection strategies...).
    if source.split("--", 1)[0] not in KIND_OF_TYPE or target.split("--", 1)[0] not in KIND_OF_TYPE:
        return None
    if len(source) > MAX_STIX_ID or len(target) > MAX_STIX_ID:
        return None
    return {
        "stix_id": obj["id"],
        "relationship_type": kind,
        "source_ref": source,
        "target_ref": target,
        "hidden": _is_hidden(obj),
        "domain": domain,
    }


def parse_bundle(data: bytes) -> ParsedBundle:
    """The catalog rows of a STIX 2.0 or 2.1 ATT&CK bundle; other object types are ignored."""
    try:
        bundle = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"the file is not JSON ({exc})") from None
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle":
        raise BundleError('the JSON is not a STIX bundle (no "type": "bundle")')
    objects = bundle.get("objects")
    if not isinstance(objects, list):
        raise BundleError('the bundle has no "objects" list')
    domain = _bundle_domain(objects)
    if domain not in DOMAINS:
        raise BundleError(f"the bundle's domain {domain!r} is not one of {', '.join(DOMAINS)}")
    parsed = ParsedBundle(domain=domain, attack_version=_bundle_version(objects))
    # A bundle may carry several versions of one object: keep the latest `modified` (ON CONFLICT
    # cannot touch one row twice in a statement).
    versions: dict[str, str] = {}
    for obj in objects:
        if not isinstance(obj, dict):
            parsed.skipped += 1
            continue
        stix_type, stix_id = obj.get("type"), obj.get("id")
        if not isinstance(stix_id, str) or len(stix_id) > MAX_STIX_ID:
            parsed.skipped += 1
            continue
        if stix_type == "relationship":
            row = _relationship_row(obj, parsed.domain)
            target = parsed.relationships
        elif isinstance(stix_type, str) and stix_type in KIND_OF_TYPE:
            row = _object_row(obj, KIND_OF_TYPE[stix_type], parsed.domain)
            target = parsed.objects
            if row is None:
                parsed.skipped += 1
        else:
            continue
        if row is None:
            continue
        modified = str(obj.get("modified") or "")
        if stix_id in versions and modified < versions[stix_id]:
            continue
        versions[stix_id] = modified
        target[stix_id] = row
    return parsed
