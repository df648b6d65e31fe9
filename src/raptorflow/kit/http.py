"""Outbound HTTP for feeds and webhooks: timeouts, a response size cap, and an SSRF guard.

The guard runs where the socket is opened (a wrapped httpcore network backend), so the address
checked is the address connected to: a name that resolves to a public address when the URL is saved
and to 127.0.0.1 later (DNS rebinding) is still refused. Loopback, private, link-local, multicast,
reserved and unspecified addresses are refused unless `allow_private` (setting
`RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE`) is true.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

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


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
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


async def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses of `host` an outbound call may connect to; UnsafeTarget when there are none."""
    addresses = await resolve(host, port)
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

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await allowed_addresses(host, port, allow_private=self.allow_private)
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
        self, *, timeout_s: float = 10.0, max_bytes: int = 20 * 1024 * 1024, allow_private: bool = False
    ) -> None:
        self.max_bytes = max_bytes
        transport = httpx.AsyncHTTPTransport(retries=0)
        # httpx has no public hook for the network backend; the pool is rebuilt with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(allow_private)
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
    """A client configured from settings (outbound_timeout_s, outbound_max_bytes, outbound_allow_private)."""
    return OutboundClient(
        timeout_s=settings.outbound_timeout_s,
        max_bytes=settings.outbound_max_bytes,
        allow_private=settings.outbound_allow_private,
    )
