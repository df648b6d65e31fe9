"""STIX patterns for RaptorFlow indicator types: build one from (type, value), read a simple one back.

Only the two directions of a *simple comparison* (`[object:path = 'value']`) live here; any other
pattern is checked with the `stix2-patterns` grammar and kept verbatim as a `stix-pattern` indicator.
"""

from __future__ import annotations

import re

from stix2patterns.validator import run_validator

# RaptorFlow type → (STIX object type, object path). CIDRs are ipv4-addr/ipv6-addr values (STIX allows
# CIDR notation there); the family is read from the value.
PATHS: dict[str, tuple[str, str]] = {
    "ipv4": ("ipv4-addr", "value"),
    "ipv6": ("ipv6-addr", "value"),
    "domain": ("domain-name", "value"),
    "url": ("url", "value"),
    "email": ("email-addr", "value"),
    "md5": ("file", "hashes.MD5"),
    "sha1": ("file", "hashes.'SHA-1'"),
    "sha256": ("file", "hashes.'SHA-256'"),
    "sha512": ("file", "hashes.'SHA-512'"),
    "asn": ("autonomous-system", "number"),
    "cve": ("vulnerability", "name"),
    "filename": ("file", "name"),
    "mutex": ("mutex", "name"),
    "registry-key": ("windows-registry-key", "key"),
    "user-agent": ("network-traffic", "extensions.'http-request-ext'.request_header.'User-Agent'"),
    "btc-address": ("x-cryptocurrency-wallet", "address"),
}

# (object type, path) → RaptorFlow type, with the spellings producers use for the same property.
_READ: dict[tuple[str, str], str] = {v: k for k, v in PATHS.items() if k not in ("ipv4", "ipv6")}
_READ.update(
    {
        ("ipv4-addr", "value"): "ipv4",
        ("ipv6-addr", "value"): "ipv6",
        ("file", "hashes.'MD5'"): "md5",
        ("file", "hashes.md5"): "md5",
        ("file", "hashes.SHA1"): "sha1",
        ("file", "hashes.'SHA1'"): "sha1",
        ("file", "hashes.SHA256"): "sha256",
        ("file", "hashes.'SHA256'"): "sha256",
        ("file", "hashes.SHA512"): "sha512",
        ("file", "hashes.'SHA512'"): "sha512",
        ("email-message", "from_ref.value"): "email",
        ("email-message", "sender_ref.value"): "email",
        ("x509-certificate", "hashes.'SHA-256'"): "sha256",
        ("cryptocurrency-wallet", "address"): "btc-address",
        ("cryptocurrency-wallet", "value"): "btc-address",
    }
)

_SIMPLE = re.compile(
    r"^\[\s*([a-z0-9][a-z0-9-]*):((?:[A-Za-z0-9_-]+|'[^']+')(?:\.(?:[A-Za-z0-9_-]+|'[^']+'))*)\s*=\s*"
    r"(?:'((?:[^'\\]|\\.)*)'|(\d+))\s*\]$",
    re.ASCII | re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


def quote(value: str) -> str:
    """A STIX pattern string literal (single quotes; backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build(indicator_type: str, value: str) -> str:
    """The STIX pattern of a RaptorFlow indicator (verbatim for `stix-pattern`)."""
    if indicator_type == "stix-pattern":
        return value
    if indicator_type == "cidr":
        kind = "ipv6-addr" if ":" in value else "ipv4-addr"
        return f"[{kind}:value = {quote(value)}]"
    if indicator_type == "asn":
        return f"[autonomous-system:number = {int(value.upper().removeprefix('AS').split('.')[0])}]"
    object_type, path = PATHS[indicator_type]
    return f"[{object_type}:{path} = {quote(value)}]"


def read_simple(pattern: str) -> tuple[str, str] | None:
    """(RaptorFlow type, raw value) when `pattern` is one equality on a supported observable, else None."""
    match = _SIMPLE.match(pattern.strip())
    if match is None:
        return None
    object_type, path, text, number = match.groups()
    kind = _READ.get((object_type, path))
    if kind is None:
        return None
    if number is not None:
        return ("asn", f"AS{number}") if kind == "asn" else None
    if kind == "asn":
        return None
    value = _UNESCAPE.sub(r"\1", text)
    if kind in ("ipv4", "ipv6") and "/" in value:
        kind = "cidr"
    return kind, value


def grammar_errors(pattern: str) -> list[str]:
    """Errors of the STIX 2.1 pattern grammar (empty when the pattern is valid)."""
    try:
        return [str(e) for e in run_validator(pattern, stix_version="2.1")]
    except Exception as exc:  # the ANTLR front end raises on some malformed input instead of reporting
        return [f"{type(exc).__name__}: {exc}"]
