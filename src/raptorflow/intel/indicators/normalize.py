"""Indicator values in one normal form, so create, bulk, import, lookup, search and export agree on identity.

Every path that takes an indicator value in goes through :func:`normalize` (or :func:`normalize_many` for
batches): the stored value and the looked-up value must be produced by the same code, or duplicates and
missed matches follow. The module is on the bulk-ingest hot path, so cheap string checks come before
regular expressions, and regular expressions before :mod:`ipaddress` or IDNA.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from raptorflow.intel.indicators.btc import BASE58_ALPHABET, base58_error, bech32_error
from raptorflow.intel.indicators.refang import TRIM, refang, trim_opaque

try:
    import idna

    _HAVE_IDNA = True
except ImportError:  # pragma: no cover - idna comes with httpx; the stdlib IDNA 2003 codec is the fallback
    _HAVE_IDNA = False

__all__ = [
    "TYPE_ALIASES",
    "IndicatorType",
    "InvalidIndicator",
    "Normalized",
    "detect",
    "normalize",
    "normalize_many",
    "refang",
]

MAX_LENGTH = 2048
# A value this long cannot come down to MAX_LENGTH by trimming, so it is refused before any work is done.
_MAX_RAW_LENGTH = 4 * MAX_LENGTH


class IndicatorType(StrEnum):
    """The kinds of indicator value the platform stores."""

    ipv4 = "ipv4"
    ipv6 = "ipv6"
    cidr = "cidr"
    domain = "domain"
    url = "url"
    email = "email"
    md5 = "md5"
    sha1 = "sha1"
    sha256 = "sha256"
    sha512 = "sha512"
    asn = "asn"
    cve = "cve"
    filename = "filename"
    mutex = "mutex"
    registry_key = "registry-key"
    user_agent = "user-agent"
    btc_address = "btc-address"
    stix_pattern = "stix-pattern"


def _build_aliases() -> dict[str, IndicatorType | None]:
    T = IndicatorType  # noqa: N806 - a short local alias keeps the table readable
    aliases: dict[str, IndicatorType | None] = {t.value: t for t in T}
    aliases.update(
        {
            # None: the value decides between ipv4 and ipv6.
            "ip": None,
            "ip-address": None,
            "ipv4-addr": T.ipv4,
            "ipv6-addr": T.ipv6,
            "subnet": T.cidr,
            "netblock": T.cidr,
            "domain-name": T.domain,
            "hostname": T.domain,
            "fqdn": T.domain,
            "uri": T.url,
            "email-addr": T.email,
            "email-address": T.email,
            "sha-1": T.sha1,
            "sha-256": T.sha256,
            "sha-512": T.sha512,
            "as": T.asn,
            "autonomous-system": T.asn,
            "cve-id": T.cve,
            "file": T.filename,
            "file-name": T.filename,
            "mutant": T.mutex,
            "regkey": T.registry_key,
            "windows-registry-key": T.registry_key,
            "useragent": T.user_agent,
            "btc": T.btc_address,
            "bitcoin": T.btc_address,
            "bitcoin-address": T.btc_address,
            "stix": T.stix_pattern,
        }
    )
    # Callers spell multi-word names with either separator (enum member names use underscores).
    aliases.update({name.replace("-", "_"): t for name, t in list(aliases.items()) if "-" in name})
    return aliases


TYPE_ALIASES: dict[str, IndicatorType | None] = _build_aliases()

_ACCEPTED_TYPES = ", ".join([t.value for t in IndicatorType] + ["ip"])


class InvalidIndicator(ValueError):
    """A value that is not a valid indicator (of the given type, when one was given)."""

    reason: str
    type: IndicatorType | None

    def __init__(self, reason: str, type: IndicatorType | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.type = type


@dataclass(frozen=True, slots=True)
class Normalized:
    """An indicator value in normal form, with its type."""

    type: IndicatorType
    value: str


# --------------------------------------------------------------------------------------------------------
# Shapes used for detection (compiled once; re.ASCII so that \d never matches other scripts' digits)

_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_HASH_BY_LENGTH = {
    32: IndicatorType.md5,
    40: IndicatorType.sha1,
    64: IndicatorType.sha256,
    128: IndicatorType.sha512,
}
_HASH_LENGTH = {t: n for n, t in _HASH_BY_LENGTH.items()}
_CVE_DASHES = "-_\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_CVE_SHAPE_RE = re.compile(rf"cve[{_CVE_DASHES}]\d+[{_CVE_DASHES}]\d+", re.IGNORECASE | re.ASCII)
_CVE_RE = re.compile(rf"cve[{_CVE_DASHES}](\d{{4}})[{_CVE_DASHES}](\d+)", re.IGNORECASE | re.ASCII)
_ASN_SHAPE_RE = re.compile(r"as\d+(?:\.\d+)?", re.IGNORECASE | re.ASCII)
_ASN_RE = re.compile(r"(?:asn?[\s-]?)?(\d+)(?:\.(\d+))?", re.IGNORECASE | re.ASCII)
_IPV4_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)
_IPV6_SHAPE_RE = re.compile(r"\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?")
_CIDR_SHAPE_RE = re.compile(r"([0-9A-Fa-f:.]+)/\d{1,3}", re.ASCII)
# Local part: RFC 5322 atext and dots (plus non-ASCII for SMTPUTF8); ':' is excluded so URLs never match.
_EMAIL_SHAPE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+@[^@\s/?#\[\]\\:]+")
_EMAIL_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]{1,64}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
_SCHEMELESS_RE = re.compile(r"([^/?#]+)[/?#]")
_URL_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f]")
_BASE58_RE = re.compile(rf"[{BASE58_ALPHABET}]+")
_HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
    "HKPD": "HKEY_PERFORMANCE_DATA",
}
_HIVES.update({full: full for full in list(_HIVES.values())})
_REGISTRY_SHAPE_RE = re.compile(
    r"(?:computer\\)?(?:" + "|".join(sorted(_HIVES, key=len, reverse=True)) + r")\\"
    r"|\\registry\\(?:machine|user)\\",
    re.IGNORECASE,
)
# Labels of letters, digits, hyphens and underscores (underscores occur in real malware infrastructure).
_HOSTNAME_RE = re.compile(r"[a-z0-9_\-]{1,63}(?:\.[a-z0-9_\-]{1,63})*")
# Full stops that IDNA treats as label separators.
_IDN_DOTS_TABLE = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def _is_ipv4_shape(s: str) -> bool:
    return "0" <= s[0] <= "9" and _IPV4_RE.fullmatch(s) is not None


def _is_ipv6_shape(s: str) -> bool:
    return s.count(":") >= 2 and _IPV6_SHAPE_RE.fullmatch(s) is not None


def _is_cidr_shape(s: str) -> bool:
    m = _CIDR_SHAPE_RE.fullmatch(s)
    if m is None:
        return False
    addr = m.group(1)
    return _IPV4_RE.fullmatch(addr) is not None or addr.count(":") >= 2


def _is_host(host: str) -> bool:
    """A dotted domain, an IPv4 address or a bracketed IPv6 address: enough to call `host/path` a URL."""
    if host.startswith("["):
        return host.endswith("]") and _is_ipv6_shape(host)
    if _is_ipv4_shape(host):
        return True
    try:
        _domain(host)
    except InvalidIndicator:
        return False
    return True


def _is_schemeless_authority(authority: str) -> bool:
    """Whether `[userinfo@]host[:port]` names a dotted domain or an IP address."""
    hostport = authority[authority.rfind("@") + 1 :]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return False
        host, port = hostport[: end + 1], hostport[end + 1 :]
        if port and port[0] != ":":
            return False
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return False
    return bool(host) and _is_host(host)


def _is_schemeless_url(s: str) -> bool:
    m = _SCHEMELESS_RE.match(s)
    return m is not None and _is_schemeless_authority(m.group(1))


# Names reserved for special use (RFC 2606, 6761, 7686, 9476; ICANN's .internal) are not public suffixes,
# yet values under them are host names: tests, documentation, mDNS, Tor.
_SPECIAL_USE_TLDS = frozenset(
    {"example", "test", "invalid", "localhost", "local", "onion", "alt", "internal"}
)


@functools.cache
def _known_tlds() -> frozenset[str]:
    """Every top-level label of the Public Suffix List (the snapshot tldextract ships; no network)."""
    # Imported here, once: tldextract pulls in `requests` (a third of a second), which the CLI's quick
    # commands and the workers that never guess a type should not pay for.
    import tldextract

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)
    labels = {suffix.rsplit(".", 1)[-1] for suffix in extractor.tlds}
    punycode = {_idna_label(label) for label in labels if not label.isascii()}
    return frozenset({label.lower() for label in labels if label.isascii()} | punycode | _SPECIAL_USE_TLDS)


def _public_tld(d: str) -> bool:
    """Whether a lower-case, punycoded name ends in a top-level domain that exists (not `.exe`, `.dll`)."""
    return d[d.rfind(".") + 1 :] in _known_tlds()


def _detect(s: str) -> IndicatorType | None:
    """Detection on an already refanged, non-empty value."""
    n = len(s)
    hash_type = _HASH_BY_LENGTH.get(n)
    if hash_type is not None and _HEX_RE.fullmatch(s):
        return hash_type
    c0 = s[0]
    if c0 in "cC" and _CVE_SHAPE_RE.fullmatch(s):
        return IndicatorType.cve
    if c0 in "aA" and _ASN_SHAPE_RE.fullmatch(s):
        return IndicatorType.asn
    if _is_ipv4_shape(s):
        return IndicatorType.ipv4
    if ":" in s and _is_ipv6_shape(s):
        return IndicatorType.ipv6
    if "/" in s and _is_cidr_shape(s):
        return IndicatorType.cidr
    if "@" in s and _EMAIL_SHAPE_RE.fullmatch(s):
        return IndicatorType.email
    if ":" in s and _SCHEME_RE.match(s):
        return IndicatorType.url
    if ("/" in s or "?" in s or "#" in s) and _is_schemeless_url(s):
        return IndicatorType.url
    # Base58 and bech32 shapes are weak (any alphanumeric token fits), so only a valid checksum counts.
    if c0 in "13" and 25 <= n <= 34 and base58_error(s) is None:
        return IndicatorType.btc_address
    if c0 in "bB" and 14 <= n <= 90 and s[:3].lower() == "bc1" and bech32_error(s) is None:
        return IndicatorType.btc_address
    if (c0 in "hHcC\\") and _REGISTRY_SHAPE_RE.match(s):
        return IndicatorType.registry_key
    if "." in s or not s.isascii():  # IDN full stops (U+3002, ...) separate labels too
        if s.isascii():
            d = s.lower()
            if d.endswith("."):
                d = d[:-1]
            if _domain_ascii_ok(d):
                # A dotted name whose last label is no top-level domain is a file name
                # (`3Z4wnG9603it23y.exe`); `type` still makes any such value a domain.
                return IndicatorType.domain if _public_tld(d) else IndicatorType.filename
        else:
            try:
                d = _domain(s)
            except InvalidIndicator:
                return None
            return IndicatorType.domain if _public_tld(d) else IndicatorType.filename
    return None


def detect(value: str) -> IndicatorType | None:
    """The type a value looks like after refanging, or None; normalize() then checks that it is valid."""
    s = refang(value)
    return _detect(s) if s else None


# --------------------------------------------------------------------------------------------------------
# Per-type normalizers: each takes a trimmed, non-empty value and returns the normal form or raises.


def _ipv4(s: str) -> str:
    m = _IPV4_RE.fullmatch(s)
    if m is None:
        raise InvalidIndicator("not a valid IPv4 address", IndicatorType.ipv4)
    for octet in m.groups():
        # 010 is 8 to inet_aton and 10 to most parsers, so it cannot be stored as either.
        if len(octet) > 1 and octet[0] == "0":
            raise InvalidIndicator(
                f"not a valid IPv4 address: octet {octet!r} has a leading zero (octal or decimal?)",
                IndicatorType.ipv4,
            )
        if int(octet) > 255:
            raise InvalidIndicator(
                f"not a valid IPv4 address: octet {octet} is greater than 255", IndicatorType.ipv4
            )
    # Valid octets without leading zeros are already canonical.
    return s


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    # RFC 5952 section 5: IPv4-mapped addresses in mixed notation. Python < 3.13 prints hex groups instead,
    # so spell it out to keep the normal form independent of the Python version.
    mapped = address.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else address.compressed


def _ipv6(s: str) -> str:
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if "%" in s:
        raise InvalidIndicator("not a valid IPv6 address: zone index (%...) not allowed", IndicatorType.ipv6)
    if ":" not in s:
        raise InvalidIndicator("not a valid IPv6 address", IndicatorType.ipv6)
    try:
        address = ipaddress.IPv6Address(s)
    except ValueError as exc:
        raise InvalidIndicator(f"not a valid IPv6 address: {exc}", IndicatorType.ipv6) from None
    return _ipv6_text(address)


def _cidr(s: str) -> str:
    addr, slash, prefix = s.partition("/")
    if "%" in addr:
        raise InvalidIndicator("not a valid CIDR block: zone index (%...) not allowed", IndicatorType.cidr)
    if ":" not in addr:
        if _IPV4_RE.fullmatch(addr) is None:
            raise InvalidIndicator("not a valid CIDR block: address is not IPv4 or IPv6", IndicatorType.cidr)
        try:
            _ipv4(addr)
        except InvalidIndicator as exc:
            raise InvalidIndicator(f"not a valid CIDR block: {exc.reason}", IndicatorType.cidr) from None
    if slash and not prefix:
        raise InvalidIndicator("not a valid CIDR block: empty prefix length", IndicatorType.cidr)
    try:
        # strict=False: host bits are cleared (10.0.0.5/8 -> 10.0.0.0/8). A bare address is a /32 or /128.
        network = ipaddress.ip_network(s, strict=False)
    except ValueError as exc:
        raise InvalidIndicator(f"not a valid CIDR block: {exc}", IndicatorType.cidr) from None
    if isinstance(network, ipaddress.IPv6Network):
        return f"{_ipv6_text(network.network_address)}/{network.prefixlen}"
    return str(network)


def _domain_ascii_ok(d: str) -> bool:
    """Whether a lower-case ASCII name without trailing dot is a valid domain (with a dot and a TLD)."""
    if len(d) > 253 or _HOSTNAME_RE.fullmatch(d) is None:
        return False
    dot = d.rfind(".")
    if dot < 0:
        return False
    tld = d[dot + 1 :]
    return not tld.isdigit() and "_" not in tld


def _idna_label(label: str) -> str:
    """One non-ASCII label to its A-label: IDNA 2008 (UTS 46), else IDNA 2003 for what 2008 forbids."""
    if _HAVE_IDNA:
        try:
            return idna.encode(label, uts46=True, transitional=False).decode("ascii")
        except (UnicodeError, ValueError):
            # IDNA 2008 refuses symbols (emoji domains exist and are used); IDNA 2003 still encodes them.
            pass
    return label.encode("idna").decode("ascii")


def _domain_reason(d: str, need_dot: bool) -> str:
    if not d:
        return "empty name"
    if len(d) > 253:
        return "longer than 253 characters"
    labels = d.split(".")
    if "" in labels:
        return "empty label (consecutive or leading dots)"
    for label in labels:
        if len(label) > 63:
            return f"label {label[:20]!r}... is longer than 63 characters"
        if _HOSTNAME_RE.fullmatch(label) is None:
            return f"label {label!r} has characters other than letters, digits, hyphens and underscores"
    if need_dot and len(labels) < 2:
        return "needs a dot and a top-level domain"
    if labels[-1].isdigit():
        return "top-level domain cannot be all digits"
    return "top-level domain cannot contain underscores"


def _domain(s: str, need_dot: bool = True) -> str:
    """Lower-case, punycoded, without trailing dot; the reason says what is wrong, callers say with what."""
    if s.isascii():
        d = s.lower()
    else:
        labels = s.translate(_IDN_DOTS_TABLE).split(".")
        try:
            d = ".".join(label.lower() if label.isascii() else _idna_label(label) for label in labels)
        except (UnicodeError, ValueError) as exc:
            raise InvalidIndicator(f"IDNA encoding failed ({exc})") from None
    if d.endswith("."):
        d = d[:-1]
    if need_dot:
        if _domain_ascii_ok(d):
            return d
    elif len(d) <= 253 and _HOSTNAME_RE.fullmatch(d) is not None:
        tld = d[d.rfind(".") + 1 :]
        if not tld.isdigit() and "_" not in tld:
            return d
    raise InvalidIndicator(_domain_reason(d, need_dot))


def _domain_type(s: str) -> str:
    try:
        return _domain(s)
    except InvalidIndicator as exc:
        raise InvalidIndicator(f"not a valid domain: {exc.reason}", IndicatorType.domain) from None


def _url_host(host: str) -> str:
    if not host:
        raise InvalidIndicator("not a valid URL: no host", IndicatorType.url)
    try:
        if host[0] == "[":
            if not host.endswith("]"):
                raise InvalidIndicator("unclosed '[' in host")
            return f"[{_ipv6(host[1:-1])}]"
        if _is_ipv4_shape(host):
            return _ipv4(host)
        # URLs may name single-label hosts (localhost, intranet names); a domain indicator may not.
        return _domain(host, need_dot=False)
    except InvalidIndicator as exc:
        raise InvalidIndicator(f"not a valid URL: host {host!r}: {exc.reason}", IndicatorType.url) from None


def _url(s: str) -> str:
    m = _URL_RE.fullmatch(s)
    if _URL_FORBIDDEN_RE.search(s):
        raise InvalidIndicator(
            "not a valid URL: contains whitespace or control characters", IndicatorType.url
        )
    if m is None:
        # Without a scheme, host/path (or a bare host, when the url type was asked for) is an http URL,
        # provided the host is a dotted domain or an IP address: "mailto:a@b" must not become one.
        m = _SCHEMELESS_RE.match(s + "/")
        if m is None or not _is_schemeless_authority(m.group(1)):
            raise InvalidIndicator("not a valid URL: expected scheme://host/path", IndicatorType.url)
        m = _URL_RE.fullmatch("http://" + s)
        if m is None:  # pragma: no cover - "http://" followed by anything always matches
            raise InvalidIndicator("not a valid URL", IndicatorType.url)
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    if "\\" in authority:
        # Browsers read '\' as '/' in http(s) URLs, so http://a.com\@b.com has two readings; refuse it.
        raise InvalidIndicator("not a valid URL: backslash before the path", IndicatorType.url)
    at = authority.rfind("@")
    userinfo = authority[: at + 1]  # kept byte for byte, '@' included
    hostport = authority[at + 1 :]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise InvalidIndicator("not a valid URL: unclosed '[' in host", IndicatorType.url)
        host, after = hostport[: end + 1], hostport[end + 1 :]
        if after and after[0] != ":":
            raise InvalidIndicator("not a valid URL: junk after ']' in host", IndicatorType.url)
        port = after[1:] if after else ""
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        if ":" in host:
            raise InvalidIndicator(
                "not a valid URL: bad host (IPv6 hosts need [brackets])", IndicatorType.url
            )
    host = _url_host(host)
    port_text = ""
    if port:
        if not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > 65535:
            raise InvalidIndicator(f"not a valid URL: bad port {port!r}", IndicatorType.url)
        number = int(port)
        if _DEFAULT_PORTS.get(scheme) != number:
            port_text = f":{number}"
    # An empty path is '/' (as browsers have it); everything after the host is otherwise kept as is.
    if not rest.startswith("/"):
        rest = "/" + rest
    return f"{scheme}://{userinfo}{host}{port_text}{rest}"


def _email(s: str) -> str:
    local, at, domain = s.rpartition("@")
    if not at or not local or not domain:
        raise InvalidIndicator("not a valid email address: expected local@domain", IndicatorType.email)
    if _EMAIL_LOCAL_RE.fullmatch(local) is None:
        raise InvalidIndicator(
            "not a valid email address: local part must be 1-64 characters without spaces, '@' or quotes",
            IndicatorType.email,
        )
    try:
        domain = _domain(domain)
    except InvalidIndicator as exc:
        raise InvalidIndicator(
            f"not a valid email address: domain: {exc.reason}", IndicatorType.email
        ) from None
    return f"{local}@{domain}"


def _hash(kind: IndicatorType) -> Callable[[str], str]:
    length = _HASH_LENGTH[kind]

    def normalize_hash(s: str) -> str:
        if len(s) == length and _HEX_RE.fullmatch(s):
            return s.lower()
        detail = f"got {len(s)}" if len(s) != length else "found a non-hex character"
        raise InvalidIndicator(f"{kind} needs {length} hex characters ({detail})", kind)

    return normalize_hash


def _asn(s: str) -> str:
    m = _ASN_RE.fullmatch(s)
    if m is None:
        raise InvalidIndicator("not a valid asn: expected AS<number>, e.g. AS13335", IndicatorType.asn)
    high, low = m.group(1), m.group(2)
    if low is not None:
        # asdot notation (RFC 5396): AS1.10 is 1 * 65536 + 10.
        if len(high) > 5 or len(low) > 5 or int(high) > 65535 or int(low) > 65535:
            raise InvalidIndicator("asn in asdot notation needs two numbers of 0-65535", IndicatorType.asn)
        number = int(high) * 65536 + int(low)
    else:
        # Length check first: int() of a 2000-digit string is wasted work.
        if len(high.lstrip("0")) > 10 or int(high) > 4294967295:
            raise InvalidIndicator("asn must be between 0 and 4294967295", IndicatorType.asn)
        number = int(high)
    return f"AS{number}"


def _cve(s: str) -> str:
    m = _CVE_RE.fullmatch(s)
    if m is None:
        raise InvalidIndicator("not a valid cve: expected CVE-YYYY-NNNN", IndicatorType.cve)
    year, sequence = m.group(1), m.group(2)
    if not 1999 <= int(year) <= 2100:
        raise InvalidIndicator("cve year must be between 1999 and 2100", IndicatorType.cve)
    if len(sequence) < 4:
        raise InvalidIndicator("cve sequence number needs at least 4 digits", IndicatorType.cve)
    # CVE ids have 4-digit sequences zero-padded, longer ones never, so CVE-2021-044228 is no id at all.
    if len(sequence) > 4 and sequence[0] == "0":
        raise InvalidIndicator(
            "cve sequence numbers longer than 4 digits have no leading zero", IndicatorType.cve
        )
    return f"CVE-{year}-{sequence}"


def _filename(s: str) -> str:
    if "/" in s or "\\" in s:
        raise InvalidIndicator(
            "filename cannot contain path separators (/ or \\); give the base name", IndicatorType.filename
        )
    if len(s) > 255:
        raise InvalidIndicator("filename is longer than 255 characters", IndicatorType.filename)
    if s in (".", ".."):
        raise InvalidIndicator("filename cannot be '.' or '..'", IndicatorType.filename)
    if any(ord(c) < 0x20 or c == "\x7f" for c in s):
        raise InvalidIndicator("filename contains control characters", IndicatorType.filename)
    return s


def _mutex(s: str) -> str:
    if len(s) > 255:
        raise InvalidIndicator("mutex is longer than 255 characters", IndicatorType.mutex)
    return s


def _registry_key(s: str) -> str:
    # Key names cannot be empty or contain '\', so doubled and trailing backslashes carry no meaning
    # (they come from escaped strings); collapse them until stable, trimming what that exposes.
    while True:
        collapsed = "\\".join(part for part in s.split("\\") if part).strip(TRIM)
        if collapsed == s:
            break
        s = collapsed
    parts = s.split("\\") if s else []
    if len(parts) > 1 and parts[0].upper() == "COMPUTER":  # regedit's address bar
        parts = parts[1:]
    if len(parts) > 1 and parts[0].upper() == "REGISTRY":  # kernel-style \REGISTRY\MACHINE\...
        native = {"MACHINE": "HKEY_LOCAL_MACHINE", "USER": "HKEY_USERS"}.get(parts[1].upper())
        parts = [native, *parts[2:]] if native else []
    hive = _HIVES.get(parts[0].upper()) if parts else None
    if hive is None:
        raise InvalidIndicator(
            "registry-key must start with a hive: HKLM, HKCU, HKCR, HKU, HKCC or their HKEY_ names",
            IndicatorType.registry_key,
        )
    return "\\".join([hive, *parts[1:]])


def _user_agent(s: str) -> str:
    s = " ".join(s.split())
    if len(s) > 1024:
        raise InvalidIndicator("user-agent is longer than 1024 characters", IndicatorType.user_agent)
    return s


def _stix_pattern(s: str) -> str:
    if not (s.startswith("[") and s.endswith("]")):
        raise InvalidIndicator(
            "stix-pattern must start with '[' and end with ']'", IndicatorType.stix_pattern
        )
    return s


def _btc_address(s: str) -> str:
    if s[:3].lower() == "bc1":
        error = bech32_error(s)
        normal = s.lower()
    elif s[0] in "13":
        error = base58_error(s)
        normal = s
    else:
        error = "expected a mainnet address starting with 1, 3 or bc1"
        normal = s
    if error is not None:
        raise InvalidIndicator(f"not a valid btc-address: {error}", IndicatorType.btc_address)
    return normal


_NORMALIZERS: dict[IndicatorType, Callable[[str], str]] = {
    IndicatorType.ipv4: _ipv4,
    IndicatorType.ipv6: _ipv6,
    IndicatorType.cidr: _cidr,
    IndicatorType.domain: _domain_type,
    IndicatorType.url: _url,
    IndicatorType.email: _email,
    IndicatorType.md5: _hash(IndicatorType.md5),
    IndicatorType.sha1: _hash(IndicatorType.sha1),
    IndicatorType.sha256: _hash(IndicatorType.sha256),
    IndicatorType.sha512: _hash(IndicatorType.sha512),
    IndicatorType.asn: _asn,
    IndicatorType.cve: _cve,
    IndicatorType.filename: _filename,
    IndicatorType.mutex: _mutex,
    IndicatorType.registry_key: _registry_key,
    IndicatorType.user_agent: _user_agent,
    IndicatorType.btc_address: _btc_address,
    IndicatorType.stix_pattern: _stix_pattern,
}

# Free-form values: defanging markers such as "(dot)" can be genuine content, so they are not refanged.
_OPAQUE = frozenset(
    {
        IndicatorType.filename,
        IndicatorType.mutex,
        IndicatorType.registry_key,
        IndicatorType.user_agent,
        IndicatorType.stix_pattern,
    }
)

_AUTO = object()  # "no type given", distinct from None which TYPE_ALIASES uses for "ip"


def _resolve_type(type: str) -> IndicatorType | object | None:
    if not isinstance(type, str):
        raise InvalidIndicator("type must be a string")
    key = type.strip().lower()
    if not key:
        return _AUTO
    if key in TYPE_ALIASES:
        return TYPE_ALIASES[key]
    key = key.replace("_", "-").replace(" ", "-")
    if key in TYPE_ALIASES:
        return TYPE_ALIASES[key]
    raise InvalidIndicator(f"unknown type {type.strip()!r}; accepted: {_ACCEPTED_TYPES}")


def _too_long() -> InvalidIndicator:
    return InvalidIndicator(f"value is longer than {MAX_LENGTH} characters")


# Explicit types the shortcut below may answer for ("ip" is IPv4 for a dotted quad).
_FAST_TYPES = {
    "ip": IndicatorType.ipv4,
    "ipv4": IndicatorType.ipv4,
    "domain": IndicatorType.domain,
    "url": IndicatorType.url,
    **{t.value: t for t in _HASH_LENGTH},
}
# Values already in normal form, the bulk of every feed: a dotted-quad IPv4 without leading zeros, a hex
# hash, a lower-case ASCII domain, an http(s) URL on such a domain. `_already_normal` recognises them
# with one or two regex matches and gives the answer the full path (refang, detection, per-type checks)
# would give; tests/intel/test_normalize.py holds the two to the same answers.
_CANONICAL_IPV4_RE = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}", re.ASCII
)
_DOTTED_HOSTNAME_RE = re.compile(r"[a-z0-9_\-]{1,63}(?:\.[a-z0-9_\-]{1,63})+")
# An http(s) URL in normal form: lower-case scheme and host name, no user info, no port, and after the
# host only characters that neither refanging (brackets, parentheses, braces, quotes, ':' after hxxp),
# trimming (quotes, <>, whitespace) nor the URL checks (controls, backslash) would touch.
_CANONICAL_URL_RE = re.compile(
    r"https?://([a-z0-9_\-]{1,63}(?:\.[a-z0-9_\-]{1,63})+)((?:/[A-Za-z0-9\-._~!$&*+,;=%/?#]*)?)", re.ASCII
)


def _already_normal(value: str) -> Normalized | None:
    n = len(value)
    hash_type = _HASH_BY_LENGTH.get(n)
    if hash_type is not None:
        return Normalized(hash_type, value.lower()) if _HEX_RE.fullmatch(value) else None
    if value[:4] == "http":
        url = _CANONICAL_URL_RE.fullmatch(value) if n <= MAX_LENGTH else None
        if url is None:
            return None
        host = url.group(1)
        tld = host[host.rfind(".") + 1 :]
        if len(host) > 253 or tld.isdigit() or "_" in tld:
            return None
        return Normalized(IndicatorType.url, value if url.group(2) else value + "/")
    if n > 253:
        return None
    if _CANONICAL_IPV4_RE.fullmatch(value):
        return Normalized(IndicatorType.ipv4, value)
    if _DOTTED_HOSTNAME_RE.fullmatch(value):
        tld = value[value.rfind(".") + 1 :]
        if (
            tld.isdigit()
            or "_" in tld
            or (value[0] == "a" and _ASN_SHAPE_RE.fullmatch(value))
            or tld not in _known_tlds()
        ):
            return None
        return Normalized(IndicatorType.domain, value)
    return None


def normalize(value: str, type: str | None = None) -> Normalized:
    """The normal form of a value, of the given type or else the detected one; raises InvalidIndicator."""
    if isinstance(value, str) and (type is None or type in _FAST_TYPES):
        quick = _already_normal(value)
        if quick is not None and (type is None or _FAST_TYPES[type] is quick.type):
            return quick
    return normalize_full(value, type)


def normalize_full(value: str, type: str | None = None) -> Normalized:
    """`normalize` without the shortcut for values already in normal form (tests compare the two)."""
    if not isinstance(value, str):
        raise InvalidIndicator("value must be a string")
    if len(value) > _MAX_RAW_LENGTH:
        raise _too_long()
    # Neither can be stored: PostgreSQL text refuses NUL, UTF-8 refuses lone surrogates (from bad JSON).
    if "\x00" in value:
        raise InvalidIndicator("value contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidIndicator("value is not valid Unicode (lone surrogate)") from None
    kind = _AUTO if type is None else _resolve_type(type)

    if isinstance(kind, IndicatorType) and kind in _OPAQUE:
        s = trim_opaque(value)
        if not s:
            raise InvalidIndicator("value is empty", kind)
        if len(s) > MAX_LENGTH:
            raise _too_long()
        return Normalized(kind, _NORMALIZERS[kind](s))

    s = refang(value)
    if not s:
        raise InvalidIndicator("value is empty")
    if len(s) > MAX_LENGTH:
        raise _too_long()
    if kind is _AUTO:
        detected = _detect(s)
        if detected is None:
            raise InvalidIndicator("cannot tell the type of this value; give `type`")
        if detected is IndicatorType.registry_key:
            # Detected on the refanged text, but normalized like an explicit registry-key: verbatim.
            s = trim_opaque(value)
            if len(s) > MAX_LENGTH:
                raise _too_long()
        kind = detected
    elif kind is None:
        # The "ip" alias: the value says which family.
        kind = IndicatorType.ipv6 if ":" in s else IndicatorType.ipv4
    assert isinstance(kind, IndicatorType)
    return Normalized(kind, _NORMALIZERS[kind](s))


def normalize_many(values: Iterable[tuple[str, str | None]]) -> list[Normalized | InvalidIndicator]:
    """normalize() over (value, type) pairs: one result per pair, in order; errors returned, never raised."""
    results: list[Normalized | InvalidIndicator] = []
    append = results.append
    for item in values:
        try:
            value, kind = item
            append(normalize(value, kind))
        except InvalidIndicator as exc:
            append(exc)
        except Exception as exc:
            # One malformed item (not a pair, not a string, or a bug) must not fail the whole batch.
            append(InvalidIndicator(f"could not normalize this item ({exc.__class__.__name__}: {exc})"))
    return results
