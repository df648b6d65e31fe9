"""Indicator normalization: normal forms per type, refanging, detection, explicit types, idempotence."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains, urls

from raptorflow.intel.indicators.normalize import (
    TYPE_ALIASES,
    IndicatorType,
    InvalidIndicator,
    Normalized,
    detect,
    normalize,
    normalize_full,
    normalize_many,
    refang,
)

T = IndicatorType

# ----------------------------------------------------------------------------------------------------------
# Valid values: (value, type given or None, expected type, expected normal form)

VALID: list[tuple[str, str | None, IndicatorType, str]] = [
    # ipv4
    ("1.2.3.4", None, T.ipv4, "1.2.3.4"),
    ("0.0.0.0", None, T.ipv4, "0.0.0.0"),
    ("255.255.255.255", "ipv4", T.ipv4, "255.255.255.255"),
    (" 8.8.8.8\n", None, T.ipv4, "8.8.8.8"),
    # ipv6
    ("2001:DB8:0:0:0:0:0:1", None, T.ipv6, "2001:db8::1"),
    ("::1", None, T.ipv6, "::1"),
    ("[2001:db8::1]", "ipv6", T.ipv6, "2001:db8::1"),
    ("::ffff:1.2.3.4", None, T.ipv6, "::ffff:1.2.3.4"),
    ("::ffff:102:304", None, T.ipv6, "::ffff:1.2.3.4"),
    ("FE80::0001", "ipv6", T.ipv6, "fe80::1"),
    # cidr
    ("10.0.0.5/8", None, T.cidr, "10.0.0.0/8"),
    ("192.168.1.0/24", None, T.cidr, "192.168.1.0/24"),
    ("1.2.3.4/32", None, T.cidr, "1.2.3.4/32"),
    ("2001:DB8::1/32", None, T.cidr, "2001:db8::/32"),
    ("10.1.2.3/255.255.0.0", "cidr", T.cidr, "10.1.0.0/16"),
    ("1.2.3.4", "cidr", T.cidr, "1.2.3.4/32"),
    ("::ffff:1.2.3.4/120", "cidr", T.cidr, "::ffff:1.2.3.0/120"),
    # domain
    ("Evil.COM", None, T.domain, "evil.com"),
    ("evil.com.", None, T.domain, "evil.com"),
    ("bücher.de", None, T.domain, "xn--bcher-kva.de"),
    ("BÜCHER.de", "domain", T.domain, "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", None, T.domain, "xn--bcher-kva.de"),
    ("my_host.evil-infra.net", None, T.domain, "my_host.evil-infra.net"),
    ("a.b.c.d.example.co.uk", "hostname", T.domain, "a.b.c.d.example.co.uk"),
    ("例え.テスト", "domain", T.domain, "xn--r8jz45g.xn--zckzah"),  # a retired IANA test TLD: only as given
    ("пример.рф", None, T.domain, "xn--e1afmkfd.xn--p1ai"),
    ("evil\u3002com", None, T.domain, "evil.com"),
    ("i\u2764.ws", None, T.domain, "xn--i-7iq.ws"),
    ("1.2.3.com", None, T.domain, "1.2.3.com"),
    ("x" * 63 + ".com", None, T.domain, "x" * 63 + ".com"),
    # url
    ("http://evil.com", None, T.url, "http://evil.com/"),
    ("HTTP://EVIL.COM:80/a", None, T.url, "http://evil.com/a"),
    ("https://evil.com:443/", None, T.url, "https://evil.com/"),
    ("https://evil.com:8443/x", None, T.url, "https://evil.com:8443/x"),
    ("http://evil.com:443/", None, T.url, "http://evil.com:443/"),
    ("http://evil.com:/x", None, T.url, "http://evil.com/x"),
    ("http://Evil.com/Path/A%2fb?Z=1&a=2#Frag", None, T.url, "http://evil.com/Path/A%2fb?Z=1&a=2#Frag"),
    ("http://evil.com?q=1", None, T.url, "http://evil.com/?q=1"),
    ("http://User:Pass@Evil.com/x", None, T.url, "http://User:Pass@evil.com/x"),
    ("http://bücher.de/ü", None, T.url, "http://xn--bcher-kva.de/ü"),
    ("http://[2001:DB8::1]:8080/x", None, T.url, "http://[2001:db8::1]:8080/x"),
    ("http://1.2.3.4/admin", None, T.url, "http://1.2.3.4/admin"),
    ("http://localhost:8080/", None, T.url, "http://localhost:8080/"),
    ("tcp://1.2.3.4:4444", None, T.url, "tcp://1.2.3.4:4444/"),
    ("ftp://files.evil.com:21/a", None, T.url, "ftp://files.evil.com/a"),
    ("svn+ssh://git.evil.com/repo", None, T.url, "svn+ssh://git.evil.com/repo"),
    ("evil.com/x", None, T.url, "http://evil.com/x"),
    ("evil.com/", None, T.url, "http://evil.com/"),
    ("evil.com:8080/x", None, T.url, "http://evil.com:8080/x"),
    ("1.2.3.4/admin/login.php", None, T.url, "http://1.2.3.4/admin/login.php"),
    ("evil.com", "url", T.url, "http://evil.com/"),
    ("1.2.3.4:8080", "url", T.url, "http://1.2.3.4:8080/"),
    # email
    ("John.Doe+tag@Example.COM", None, T.email, "John.Doe+tag@example.com"),
    ("admin@bücher.de", None, T.email, "admin@xn--bcher-kva.de"),
    ("a@b.co", "email", T.email, "a@b.co"),
    # hashes
    ("D41D8CD98F00B204E9800998ECF8427E", None, T.md5, "d41d8cd98f00b204e9800998ecf8427e"),
    ("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", None, T.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ("E3B0C442" * 8, None, T.sha256, "e3b0c442" * 8),
    ("CF83E135" * 16, None, T.sha512, "cf83e135" * 16),
    ("0" * 32, "md5", T.md5, "0" * 32),
    ("12345678901234567890123456789012", None, T.md5, "12345678901234567890123456789012"),
    # asn
    ("AS13335", None, T.asn, "AS13335"),
    ("as13335", None, T.asn, "AS13335"),
    ("13335", "asn", T.asn, "AS13335"),
    ("ASN 13335", "asn", T.asn, "AS13335"),
    ("AS0", None, T.asn, "AS0"),
    ("AS4294967295", None, T.asn, "AS4294967295"),
    ("AS1.10", None, T.asn, "AS65546"),
    ("AS013335", None, T.asn, "AS13335"),
    # cve
    ("cve-2021-44228", None, T.cve, "CVE-2021-44228"),
    ("CVE-1999-0001", None, T.cve, "CVE-1999-0001"),
    ("CVE-2024-1234567", None, T.cve, "CVE-2024-1234567"),
    ("CVE\u20112021\u201144228", None, T.cve, "CVE-2021-44228"),
    # filename
    ("  invoice.pdf.exe ", "filename", T.filename, "invoice.pdf.exe"),
    ('"my report (final).docx"', "filename", T.filename, "my report (final).docx"),
    ("setup[dot]exe", "filename", T.filename, "setup[dot]exe"),
    # A dotted name is a domain only under a top-level domain of the Public Suffix List (or a special-use one).
    ("3Z4wnG9603it23y.exe", None, T.filename, "3Z4wnG9603it23y.exe"),
    ("payload.bin", None, T.filename, "payload.bin"),
    ("invoice.pdf.dll", None, T.filename, "invoice.pdf.dll"),
    ("payload.bin", "domain", T.domain, "payload.bin"),
    ("evil.co.uk", None, T.domain, "evil.co.uk"),
    ("login.evil.test", None, T.domain, "login.evil.test"),
    ("hidden.onion", None, T.domain, "hidden.onion"),
    # mutex
    ("Global\\MsWinZonesCacheCounterMutexA", "mutex", T.mutex, "Global\\MsWinZonesCacheCounterMutexA"),
    (" )!VoqA.I4 ", "mutex", T.mutex, ")!VoqA.I4"),
    # registry-key
    (
        "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
        None,
        T.registry_key,
        "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
    ),
    ("hkcu\\Software\\Evil", None, T.registry_key, "HKEY_CURRENT_USER\\Software\\Evil"),
    ("HKCR\\.exe", None, T.registry_key, "HKEY_CLASSES_ROOT\\.exe"),
    ("HKU\\S-1-5-21\\x", "registry-key", T.registry_key, "HKEY_USERS\\S-1-5-21\\x"),
    ("HKCC\\System", "registry_key", T.registry_key, "HKEY_CURRENT_CONFIG\\System"),
    (
        "hkey_local_machine\\SYSTEM\\\\CurrentControlSet\\",
        None,
        T.registry_key,
        "HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet",
    ),
    ("Computer\\HKEY_CURRENT_USER\\Software", None, T.registry_key, "HKEY_CURRENT_USER\\Software"),
    ("\\REGISTRY\\MACHINE\\SOFTWARE\\x", None, T.registry_key, "HKEY_LOCAL_MACHINE\\SOFTWARE\\x"),
    ("HKLM", "registry-key", T.registry_key, "HKEY_LOCAL_MACHINE"),
    # user-agent
    (
        "Mozilla/5.0  (Windows NT 10.0;\tWin64)\n  Chrome/120",
        "user-agent",
        T.user_agent,
        "Mozilla/5.0 (Windows NT 10.0; Win64) Chrome/120",
    ),
    ("curl/8.4.0", "useragent", T.user_agent, "curl/8.4.0"),
    # btc-address
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", None, T.btc_address, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", None, T.btc_address, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    (
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        None,
        T.btc_address,
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    ),
    (
        "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
        None,
        T.btc_address,
        "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
    ),
    (
        "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
        None,
        T.btc_address,
        "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
    ),
    # stix-pattern
    ("  [ipv4-addr:value = '1.2.3.4']  ", "stix-pattern", T.stix_pattern, "[ipv4-addr:value = '1.2.3.4']"),
    ("[domain-name:value = 'evil[.]com']", "stix", T.stix_pattern, "[domain-name:value = 'evil[.]com']"),
]


@pytest.mark.parametrize(("value", "given", "kind", "expected"), VALID)
def test_valid_values_normalize(value: str, given: str | None, kind: IndicatorType, expected: str) -> None:
    assert normalize(value, given) == Normalized(kind, expected)


@pytest.mark.parametrize(("value", "given", "kind", "expected"), VALID)
def test_normal_forms_are_fixed_points(
    value: str, given: str | None, kind: IndicatorType, expected: str
) -> None:
    assert normalize(expected, kind) == Normalized(kind, expected)


# ----------------------------------------------------------------------------------------------------------
# Invalid values: (value, type given or None, substring of the reason)

INVALID: list[tuple[str, str | None, str]] = [
    # generic
    ("", None, "value is empty"),
    ("   \t ", None, "value is empty"),
    ('""', "domain", "value is empty"),
    ("\u200b", "mutex", "value is empty"),
    ("a" * 2049, None, "longer than 2048"),
    ("a" * 100_000, "mutex", "longer than 2048"),
    ("hello world", None, "cannot tell the type of this value; give `type`"),
    ("evil", None, "cannot tell the type"),
    ("1A1zP1eP5QGefi2DMPTfTL5SMLv7DivfNa", None, "cannot tell the type"),  # checksum typo: no btc
    ("[ipv4-addr:value = '1.2.3.4']", None, "cannot tell the type"),  # stix-pattern is never detected
    ("1.2.3.4", "foo", "unknown type 'foo'; accepted: ipv4, ipv6, cidr"),
    ("evil\x00.com", None, "NUL"),
    ("mutex\x00", "mutex", "NUL"),
    ("\ud800", "mutex", "lone surrogate"),
    ("\ud800.com", None, "lone surrogate"),
    # ipv4
    ("010.1.1.1", None, "leading zero"),
    ("999.1.1.1", None, "not a valid IPv4 address"),
    ("1.2.3.256", "ipv4", "greater than 255"),
    ("1.2.3", "ipv4", "not a valid IPv4 address"),
    ("::1", "ipv4", "not a valid IPv4 address"),
    ("evil.com", "ipv4", "not a valid IPv4 address"),
    # ipv6
    ("2001:db8::1::2", None, "not a valid IPv6 address"),
    ("fe80::1%eth0", "ipv6", "zone index"),
    ("1.2.3.4", "ipv6", "not a valid IPv6 address"),
    ("12345::", "ipv6", "not a valid IPv6 address"),
    # cidr
    ("10.0.0.0/33", None, "not a valid CIDR block"),
    ("010.0.0.0/8", None, "leading zero"),
    ("2001:db8::/129", None, "not a valid CIDR block"),
    ("evil.com/8", "cidr", "not a valid CIDR block"),
    ("10.0.0.0/", "cidr", "not a valid CIDR block"),
    # domain
    ("evil..com", "domain", "not a valid domain: empty label"),
    ("localhost", "domain", "needs a dot"),
    ("1.2.3.4", "domain", "all digits"),
    ("evil.com/x", "domain", "not a valid domain"),
    ("a" * 64 + ".com", "domain", "longer than 63"),
    (".".join(["abcdefghi"] * 26) + ".com", "domain", "longer than 253"),
    ("ev!l.com", "domain", "characters other than letters, digits, hyphens and underscores"),
    ("evil.c_m", "domain", "top-level domain"),
    # url
    ("http://", None, "not a valid URL: no host"),
    ("http://evil.com/a b", None, "whitespace"),
    ("http://evil.com:99999/", None, "bad port"),
    ("http://evil.com:8o/", None, "bad port"),
    ("http://999.1.1.1/", None, "not a valid URL"),
    ("http://2001:db8::1/", None, "brackets"),
    ("http://[2001:db8::1/", None, "not a valid URL"),
    ("http://ev!l.com/", None, "not a valid URL: host"),
    ("http://1.2.3/", None, "all digits"),
    ("http://evil.com\\@good.com/", None, "backslash"),
    ("mailto:a@b", "url", "not a valid URL"),
    ("just text", "url", "not a valid URL"),
    # email
    ("user@localhost", None, "not a valid email address"),
    ("user@1.2.3.4", None, "not a valid email address"),
    ("a b@evil.com", "email", "not a valid email address"),
    ("@evil.com", "email", "not a valid email address"),
    ("user@", "email", "not a valid email address"),
    ("x" * 65 + "@evil.com", "email", "local part"),
    # hashes
    ("abc", "md5", "md5 needs 32 hex characters"),
    ("g" * 32, "md5", "md5 needs 32 hex characters"),
    ("a" * 32, "sha1", "sha1 needs 40 hex characters"),
    ("a" * 63, "sha256", "sha256 needs 64 hex characters"),
    ("a" * 129, "sha512", "sha512 needs 128 hex characters"),
    # asn
    ("AS4294967296", None, "asn must be between 0 and 4294967295"),
    ("AS" + "9" * 30, None, "asn must be between"),
    ("ASX", "asn", "not a valid asn"),
    ("AS1.70000", None, "asdot"),
    # cve
    ("CVE-2021-123", None, "at least 4 digits"),
    ("CVE-1998-0001", None, "year must be between 1999 and 2100"),
    ("CVE-2101-0001", None, "year must be between 1999 and 2100"),
    ("CVE-2021-044228", None, "no leading zero"),
    ("CVE-21-44228", "cve", "not a valid cve"),
    # filename
    ("C:\\Windows\\evil.exe", "filename", "path separators"),
    ("dir/evil", "filename", "path separators"),
    ("a" * 256, "filename", "longer than 255"),
    ("..", "filename", "filename cannot be"),
    ("a\x01b", "filename", "control characters"),
    # mutex
    ("m" * 256, "mutex", "mutex is longer than 255"),
    # registry-key
    ("Software\\Microsoft", "registry-key", "registry-key must start with a hive"),
    ("HKXX\\Software", "registry-key", "registry-key must start with a hive"),
    ("\\REGISTRY\\NOPE\\x", "registry-key", "registry-key must start with a hive"),
    # user-agent
    ("Mozilla " * 200, "user-agent", "user-agent is longer than 1024"),
    # btc-address
    ("1A1zP1eP5QGefi2DMPTfTL5SMLv7DivfNa", "btc-address", "checksum"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7Divf0a", "btc-address", "not a base58 character"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "btc-address", "bad bech32 checksum"),
    ("bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "btc-address", "mixed case"),
    ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "btc-address", "not a valid btc-address"),
    ("xyz", "btc-address", "not a valid btc-address"),
    # stix-pattern
    ("ipv4-addr:value = '1.2.3.4'", "stix-pattern", "stix-pattern must start with '[' and end with ']'"),
]


@pytest.mark.parametrize(("value", "given", "reason"), INVALID)
def test_invalid_values_are_rejected_with_a_reason(value: str, given: str | None, reason: str) -> None:
    with pytest.raises(InvalidIndicator) as caught:
        normalize(value, given)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("value", "given", "kind"),
    [
        ("1.2.3.999", "ipv4", T.ipv4),
        ("zz", "sha256", T.sha256),
        ("x", "cve", T.cve),
        ("a/b", "filename", T.filename),
        ("HKXX", "registry-key", T.registry_key),
    ],
)
def test_rejections_of_an_explicit_type_name_that_type(value: str, given: str, kind: IndicatorType) -> None:
    with pytest.raises(InvalidIndicator) as caught:
        normalize(value, given)
    assert caught.value.type is kind


# ----------------------------------------------------------------------------------------------------------
# Refanging


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hxxp://evil[.]com/x", "http://evil.com/x"),
        ("hXXps://evil(.)com", "https://evil.com"),
        ("HXXPS[://]evil{.}com", "https://evil.com"),
        ("hxxp[:]//1[.]2[.]3[.]4", "http://1.2.3.4"),
        ("fxp://files[.]evil[.]com", "ftp://files.evil.com"),
        ("evil[dot]com", "evil.com"),
        ("evil(DOT)com", "evil.com"),
        ("evil [.] com", "evil.com"),
        ("user[at]evil[.]com", "user@evil.com"),
        ("user(at)evil.com", "user@evil.com"),
        ("user[@]evil.com", "user@evil.com"),
        ("user [AT] evil [DOT] com", "user@evil.com"),
        ("2001[:]db8[:][:]1", "2001:db8::1"),
        ('  "evil.com"  ', "evil.com"),
        ("<http://evil.com/>", "http://evil.com/"),
        ("'evil.com'", "evil.com"),
        ("\u201cevil.com\u201d", "evil.com"),
        ("ev\u200bil.com\ufeff", "evil.com"),
        ("evil[[.]]com", "evil.com"),
        ("evil.com", "evil.com"),
        ("hxxpool.com", "hxxpool.com"),
        ("meow://evil.com", "meow://evil.com"),
    ],
)
def test_refang(text: str, expected: str) -> None:
    assert refang(text) == expected
    assert refang(expected) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hxxp://evil[.]com", Normalized(T.url, "http://evil.com/")),
        ("evil[.]com", Normalized(T.domain, "evil.com")),
        ("1[.]2[.]3[.]4", Normalized(T.ipv4, "1.2.3.4")),
        ("10[.]0[.]0[.]0/8", Normalized(T.cidr, "10.0.0.0/8")),
        ("admin[at]evil[dot]com", Normalized(T.email, "admin@evil.com")),
        ("evil[.]com/payload[.]exe", Normalized(T.url, "http://evil.com/payload.exe")),
    ],
)
def test_defanged_values_normalize(value: str, expected: Normalized) -> None:
    assert normalize(value) == expected


def test_opaque_types_are_not_refanged() -> None:
    assert normalize("report[.]pdf", "filename").value == "report[.]pdf"
    assert (
        normalize("Mozilla/5.0 (compatible; hxxp://x)", "user-agent").value
        == "Mozilla/5.0 (compatible; hxxp://x)"
    )


# ----------------------------------------------------------------------------------------------------------
# Detection


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("d41d8cd98f00b204e9800998ecf8427e", T.md5),
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", T.sha1),
        ("e3b0c442" * 8, T.sha256),
        ("cf83e135" * 16, T.sha512),
        ("e3b0c442" * 5, T.sha1),
        ("deadbeef" * 3, None),  # hex of no hash length
        ("CVE-2021-44228", T.cve),
        ("AS13335", T.asn),
        ("13335", None),  # bare numbers are ASNs only when the type says so
        ("1.2.3.4", T.ipv4),
        ("999.1.1.1", T.ipv4),  # looks like one; normalize() says why it is not
        ("::1", T.ipv6),
        ("2001:db8::1", T.ipv6),
        ("::ffff:1.2.3.4", T.ipv6),
        ("10.0.0.0/8", T.cidr),
        ("2001:db8::/32", T.cidr),
        ("user@evil.com", T.email),
        ("http://evil.com", T.url),
        ("http://user@evil.com/", T.url),
        ("evil.com/x", T.url),
        ("evil.com?x=1", T.url),
        ("1.2.3.4/admin", T.url),
        ("evil.com", T.domain),
        ("bücher.de", T.domain),
        ("hxxp://evil[.]com", T.url),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", T.btc_address),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", T.btc_address),
        ("HKLM\\Software\\Run", T.registry_key),
        ("HKCR\\.exe", T.registry_key),
        ("HKLM", None),
        ("[file:name = 'x']", None),
        ("hello world", None),
        ("localhost", None),
        ("1.2.3", None),
        ("foo/bar", None),
        ("C:\\Windows\\evil.exe", None),
        ("1.2.3.4:80", None),
        ("", None),
        ("   ", None),
    ],
)
def test_detect(value: str, expected: IndicatorType | None) -> None:
    assert detect(value) is expected


def test_detected_type_is_what_normalize_reports() -> None:
    for value, type_given, kind, _ in VALID:
        if type_given is None:
            assert detect(value) is kind, value


# ----------------------------------------------------------------------------------------------------------
# Explicit types and aliases


@pytest.mark.parametrize(
    ("value", "given", "expected"),
    [
        ("1.2.3.4", "ip", Normalized(T.ipv4, "1.2.3.4")),
        ("2001:DB8::1", "ip", Normalized(T.ipv6, "2001:db8::1")),
        ("::ffff:1.2.3.4", "IP", Normalized(T.ipv6, "::ffff:1.2.3.4")),
        ("1.2.3.4", "IPv4", Normalized(T.ipv4, "1.2.3.4")),
        ("1.2.3.4", " ipv4-addr ", Normalized(T.ipv4, "1.2.3.4")),
        ("evil.com", "FQDN", Normalized(T.domain, "evil.com")),
        ("evil.com", "hostname", Normalized(T.domain, "evil.com")),
        ("evil.com", "domain-name", Normalized(T.domain, "evil.com")),
        ("a" * 64, "SHA-256", Normalized(T.sha256, "a" * 64)),
        ("HKLM\\x", "Registry_Key", Normalized(T.registry_key, "HKEY_LOCAL_MACHINE\\x")),
        ("HKLM\\x", "windows-registry-key", Normalized(T.registry_key, "HKEY_LOCAL_MACHINE\\x")),
        ("curl/8", "user_agent", Normalized(T.user_agent, "curl/8")),
        ("1.2.3.4", T.ipv4, Normalized(T.ipv4, "1.2.3.4")),
        ("1.2.3.4", "", Normalized(T.ipv4, "1.2.3.4")),  # an empty type column means "detect"
        # The given type wins over what detection would say.
        ("evil.com", "filename", Normalized(T.filename, "evil.com")),
        ("evil.com", "mutex", Normalized(T.mutex, "evil.com")),
        (
            "d41d8cd98f00b204e9800998ecf8427e",
            "filename",
            Normalized(T.filename, "d41d8cd98f00b204e9800998ecf8427e"),
        ),
        (
            "d41d8cd98f00b204e9800998ecf8427e.com",
            "domain",
            Normalized(T.domain, "d41d8cd98f00b204e9800998ecf8427e.com"),
        ),
    ],
)
def test_explicit_types(value: str, given: str, expected: Normalized) -> None:
    assert normalize(value, given) == expected


@pytest.mark.parametrize(("value", "given"), [("1.2.3.4/8", "ip"), ("evil.com", "ip"), ("999.1.1.1", "ip")])
def test_ip_alias_rejects_what_is_neither_family(value: str, given: str) -> None:
    with pytest.raises(InvalidIndicator, match="not a valid IPv"):
        normalize(value, given)


def test_aliases_cover_every_type_under_both_spellings() -> None:
    assert TYPE_ALIASES["ip"] is None
    for kind in IndicatorType:
        assert TYPE_ALIASES[kind.value] is kind
        assert TYPE_ALIASES[kind.name] is kind
    assert TYPE_ALIASES["hostname"] is T.domain
    assert TYPE_ALIASES["fqdn"] is T.domain


def test_unknown_type_lists_the_accepted_ones() -> None:
    with pytest.raises(InvalidIndicator) as caught:
        normalize("x", "foo")
    assert all(kind.value in caught.value.reason for kind in IndicatorType)
    assert caught.value.reason.endswith(", ip")


def test_normalized_is_frozen() -> None:
    n = normalize("1.2.3.4")
    with pytest.raises(AttributeError):
        n.value = "5.6.7.8"  # type: ignore[misc]
    assert hash(n) == hash(Normalized(T.ipv4, "1.2.3.4"))


# ----------------------------------------------------------------------------------------------------------
# Bulk


def test_normalize_many_returns_per_item_errors_without_raising() -> None:
    items: list[tuple[str, str | None]] = [
        ("1.2.3.4", None),
        ("", None),
        ("evil[.]com", None),
        ("abc", "md5"),
        ("x", "nonsense"),
        ("hello world", None),
        ("AS13335", "asn"),
    ]
    results = normalize_many(items)
    assert len(results) == len(items)
    assert results[0] == Normalized(T.ipv4, "1.2.3.4")
    assert isinstance(results[1], InvalidIndicator) and results[1].reason == "value is empty"
    assert results[2] == Normalized(T.domain, "evil.com")
    assert isinstance(results[3], InvalidIndicator) and "md5 needs 32 hex characters" in results[3].reason
    assert isinstance(results[4], InvalidIndicator) and "unknown type" in results[4].reason
    assert isinstance(results[5], InvalidIndicator) and "cannot tell" in results[5].reason
    assert results[6] == Normalized(T.asn, "AS13335")


def test_normalize_many_survives_malformed_items() -> None:
    items = [(None, None), ("1.2.3.4",), ("1.2.3.4", 4), ("1.2.3.4", None)]
    results = normalize_many(items)  # type: ignore[arg-type]
    assert [type(r) for r in results] == [InvalidIndicator, InvalidIndicator, InvalidIndicator, Normalized]


def test_normalize_many_takes_any_iterable() -> None:
    results = normalize_many((f"10.0.0.{i}", "ip") for i in range(3))
    assert [r.value for r in results if isinstance(r, Normalized)] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert normalize_many([]) == []


# ----------------------------------------------------------------------------------------------------------
# Properties

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

hashes = (
    st.sampled_from([16, 20, 32, 64])
    .flatmap(lambda n: st.binary(min_size=n, max_size=n))
    .flatmap(lambda raw: st.sampled_from([raw.hex(), raw.hex().upper()]))
)
indicator_like = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=6), st.integers(0, 128)),
    domains(),
    domains().map(str.upper),
    domains().map(lambda d: d + "."),
    urls(),
    st.emails(),
    hashes,
)


@PROPERTY_SETTINGS
@given(indicator_like)
def test_normalization_is_idempotent(value: str) -> None:
    try:
        n = normalize(value)
    except InvalidIndicator:
        return
    assert normalize(n.value, n.type) == n
    assert normalize(n.value) == n


@PROPERTY_SETTINGS
@given(indicator_like)
def test_generated_indicators_are_accepted(value: str) -> None:
    # Strategies make RFC-valid values; hypothesis' domains() can reach 255 characters, DNS stops at 253.
    # Values that refanging changes are out of scope here: an RFC-valid e-mail such as "`@a.be" starts
    # with a quote character, which refanging strips from pasted values on purpose.
    assume(refang(value) == value)
    if len(value.rstrip(".")) <= 253 and len(value) <= 2048:
        normalize(value)


@PROPERTY_SETTINGS
@given(st.ip_addresses())
def test_ip_alias_agrees_with_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    n = normalize(str(address), "ip")
    assert ipaddress.ip_address(n.value) == address
    assert n.type is (T.ipv4 if address.version == 4 else T.ipv6)


@PROPERTY_SETTINGS
@given(domains())
def test_defanged_domains_normalize_like_the_original(domain: str) -> None:
    try:
        plain = normalize(domain)
    except InvalidIndicator:
        return
    assert normalize(domain.replace(".", "[.]")) == plain
    # hypothesis draws TLDs from its own copy of IANA's list; one the Public Suffix List snapshot lacks
    # is detected as a file name, so the domain is asked for by type here.
    assert normalize(domain.replace(".", "(dot)"), "domain") == normalize(domain, "domain")


@PROPERTY_SETTINGS
@given(st.text(max_size=80), st.sampled_from([None, "ip", *[k.value for k in IndicatorType]]))
def test_arbitrary_text_is_either_normalized_idempotently_or_rejected(value: str, given: str | None) -> None:
    try:
        n = normalize(value, given)
    except InvalidIndicator as exc:
        assert exc.reason
        return
    assert normalize(n.value, n.type) == n
    if given is None:
        assert normalize(n.value) == n


# ----------------------------------------------------------------------------------------------------------
# The shortcut for values already in normal form gives exactly the full path's answers (or errors).


def _outcome(value: str, kind: str | None) -> object:
    try:
        return normalize(value, kind)
    except InvalidIndicator as exc:
        return ("error", exc.reason, exc.type)


def _full_outcome(value: str, kind: str | None) -> object:
    try:
        return normalize_full(value, kind)
    except InvalidIndicator as exc:
        return ("error", exc.reason, exc.type)


_NEAR_CANONICAL = [
    "1.2.3.4", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "0.0.0.0", "1.2.3.4.5",
    "as123.45", "as15169", "example.com", "a.b", "x_y.example.com", "example.c_m", "example.123",
    "1.example", "-bad-.example.com", "xn--bcher-kva.example", "cve-2021-44228.example.com",
    "d41d8cd98f00b204e9800998ecf8427e", "D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709", "g41d8cd98f00b204e9800998ecf8427e",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "a" * 64 + ".com",
    "hklm.example.com", "1boatslcvpakabq5rgv8eky7rn5ey2ea2q.com", "bc1.example.org",
    ("a" * 63 + ".") * 3 + "com", ("a" * 63 + ".") * 4 + "com",
    "http://example.com", "https://example.com/", "http://host1.example.net/a1b2/payload.bin",
    "http://host.example.net/p?q=1&r=2#frag", "https://a.b/%41%42", "http://1.2.3.4/x", "http://01.2.3.4/",
    "http://example.123/x", "http://x_y.example.c_m/", "http://-bad-.example.com/", "http://localhost/",
    "http://xn--bcher-kva.example/", "http://xn--zz.example/", "http://example.com/hxxp:/x",
    "http://example.com/a[.]b", "http://example.com/(dot)", "http://example.com/a'", "http://example.com/a>",
    "http://example.com:80/", "http://user@example.com/", "http://example.com/\\x", "httpx://example.com/",
    "http://" + "a" * 64 + ".com/", "http://" + ("a" * 63 + ".") * 4 + "com/", "https://e.com/" + "p" * 2040,
]  # fmt: skip


@pytest.mark.parametrize("kind", [None, "ip", "ipv4", "domain", "md5", "sha1", "sha256", "sha512", "url"])
def test_shortcut_matches_full_path_on_edge_cases(kind: str | None) -> None:
    for value in _NEAR_CANONICAL:
        assert _outcome(value, kind) == _full_outcome(value, kind), (value, kind)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.text(alphabet="0123456789.", min_size=1, max_size=20),
        st.text(alphabet="abcdefABCDEF0123456789", min_size=30, max_size=130),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=80),
        domains(),
        urls(),
        st.builds(
            "{}://{}{}".format,
            st.sampled_from(["http", "https", "HTTP", "hxxp", "ftp"]),
            st.one_of(domains(), st.text(alphabet="abcxyz0123456789._-:@[]", min_size=1, max_size=30)),
            st.text(alphabet="/abcXYZ019-._~!$&*+,;=%?#:@()[]{}'\"<>\\ x", max_size=40),
        ),
    ),
    kind=st.sampled_from([None, "ip", "ipv4", "domain", "md5", "sha256", "asn", "url"]),
)
def test_shortcut_matches_full_path(value: str, kind: str | None) -> None:
    assert _outcome(value, kind) == _full_outcome(value, kind)
