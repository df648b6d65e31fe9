"""Outbound HTTP for feeds and webhooks: timeouts, a response size cap, and an SSRF guard.

The guard runs where the socket is opened (a wrapped httpcore network backend), so the address
checked is the address connected to: a name that resolves to a public address when the URL is saved
and to 127.0.0.1 later (DNS rebinding) is still refused. Loopback, private, link-local, multicast,
reserved and unspecified addresses are refused unless `allow_private` (setting
`RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE`) is true. Names are resolved by the system resolver, or by the DNS
server of `dns_server` (setting `RAPTORFLOW_OUTBOUND_DNS_SERVER`) when one is given.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpcore
import httpx

from raptorflow.config import dns_server_address

USER_AGENT = "RaptorFlow/1 (+https://raptorflow.dev)"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundError(Exception):
    """An outbound call refused or cut short by policy (not a network failure)."""


class UnsafeTarget(OutboundError):
    """The URL points at an address outbound calls may not reach."""


class ResponseTooLarge(OutboundError):
    """The response body exceeded the size cap."""


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_global
        and not (address.is_multicast or address.is_reserved or address.is_loopback or address.is_link_local)
    )


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host and no credentials; UnsafeTarget otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise UnsafeTarget("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are not allowed; use a signing secret instead")
    if port == 0:
        raise UnsafeTarget("port 0 is not a valid port")
    return url


async def _ask(server: tuple[str, int], host: str, timeout_s: float) -> list[IPAddress]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server[0], server[1])]
    resolver.lifetime = timeout_s
    out: list[IPAddress] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        out += [a for a in (ipaddress.ip_address(r.address) for r in answer) if a not in out]
    if not out:
        raise httpcore.ConnectError(f"cannot resolve {host}: no A or AAAA record")
    return out


async def resolve(
    host: str, port: int, dns_server: tuple[str, int] | None = None, timeout_s: float = 10.0
) -> list[IPAddress]:
    """Every address `host` resolves to (through `dns_server` when given, else the system resolver)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    if dns_server is not None:
        return await _ask(dns_server, host, timeout_s)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


async def allowed_addresses(
    host: str,
    port: int,
    *,
    allow_private: bool,
    dns_server: tuple[str, int] | None = None,
    timeout_s: float = 10.0,
) -> list[IPAddress]:
    """The addresses of `host` an outbound call may connect to; UnsafeTarget when there are none."""
    addresses = await resolve(host, port, dns_server, timeout_s)
    if allow_private:
        return addresses
    public = [a for a in addresses if is_public(a)]
    if not public:
        raise UnsafeTarget(
            f"{host} resolves to a loopback, private or reserved address; outbound calls there are "
            "refused (RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE=true allows them)"
        )
    return public


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that pass the policy, checked at connect time."""

    def __init__(self, allow_private: bool, dns_server: tuple[str, int] | None = None) -> None:
        self.allow_private = allow_private
        self.dns_server = dns_server
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await allowed_addresses(
            host,
            port,
            allow_private=self.allow_private,
            dns_server=self.dns_server,
            timeout_s=timeout or 10.0,
        )
        last: Exception | None = None
        for address in addresses:
            try:
                # TLS still verifies the certificate against the URL's host name (httpcore passes it).
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeTarget("unix sockets are not outbound targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@dataclass(frozen=True)
class OutboundResponse:
    """Status, headers and (capped) body of an outbound call."""

    status_code: int
    headers: httpx.Headers
    content: bytes


class OutboundClient:
    """An httpx client with the policy: timeouts, a body cap, no redirects, the SSRF guard."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_bytes: int = 20 * 1024 * 1024,
        allow_private: bool = False,
        dns_server: tuple[str, int] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        transport = httpx.AsyncHTTPTransport(retries=0)
        # httpx has no public hook for the network backend; the pool is rebuilt with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(allow_private, dns_server)
        )
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,  # a redirect could point anywhere; callers see the 3xx instead
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, content: bytes | None = None
    ) -> OutboundResponse:
        """Send one request; raises UnsafeTarget, ResponseTooLarge or an httpx.HTTPError."""
        check_url(url)
        async with self.http.stream(method, url, headers=headers, content=content) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(f"the response declares {declared} bytes (cap {self.max_bytes})")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ResponseTooLarge(f"the response exceeds {self.max_bytes} bytes")
        return OutboundResponse(response.status_code, response.headers, bytes(body))

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self.http.aclose()


def outbound_client(settings: Any) -> OutboundClient:
    """A client configured from settings (outbound_timeout_s, _max_bytes, _allow_private, _dns_server)."""
    server = settings.outbound_dns_server
    return OutboundClient(
        timeout_s=settings.outbound_timeout_s,
        max_bytes=settings.outbound_max_bytes,
        allow_private=settings.outbound_allow_private,
        dns_server=dns_server_address(server) if server else None,
    )
