"""Outbound HTTP for feeds and webhooks: timeouts, a response size cap, and an SSRF guard.

The guard runs where the socket is opened (a wrapped httpcore network backend), so the address
checked is the address connected to: a name that resolves to a public address when the URL is saved
and to 127.0.0.1 later (DNS rebinding) is still refused. Loopback, private, link-local, multicast,
reserved and unspecified addresses are refused unless `allow_private` (setting
`RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE`) is true. Names are resolved by the system resolver, or by the DNS
server of `dns_server` (setting `RAPTORFLOW_OUTBOUND_DNS_SERVER`) when one is given.

Redirects are not followed unless a client is built with `max_redirects` (feeds: their hosts do redirect,
to a CDN say). Each hop is then a new request: its URL passes `check_url`, its connection passes the
guard, an https→http hop is refused, and credentials go on only to the same origin (httpx's rule).
Blocking libraries that speak HTTP through `requests` (taxii2-client) are given a session whose adapter
sends through an `OutboundClient` (`send_through`), so they get the same policy.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpcore
import httpx
import requests
import requests.adapters
import requests.structures
import requests.utils

from raptorflow.config import dns_server_address

USER_AGENT = "RaptorFlow/1 (+https://raptorflow.dev)"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundError(Exception):
    """An outbound call refused or cut short by policy (not a network failure)."""


class UnsafeTarget(OutboundError):
    """The URL points at an address outbound calls may not reach."""


class ResponseTooLarge(OutboundError):
    """The response body exceeded the size cap."""


class RedirectRefused(OutboundError):
    """A redirect the policy does not follow (too many hops, or https to http)."""


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
        raise UnsafeTarget("credentials in the URL are not allowed")
    if port == 0:
        raise UnsafeTarget("port 0 is not a valid port")
    return url


def check_target(url: str, *, allow_private: bool) -> str:
    """`check_url`, plus what is refused before any lookup: localhost and literal non-public addresses.

    A name is let through: the guard checks what it resolves to at each connection (it may change).
    """
    check_url(url)
    if allow_private:
        return url
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        raise UnsafeTarget(
            "loopback targets are refused (RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE=true allows them)"
        )
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return url
    if not is_public(address):
        raise UnsafeTarget(
            f"{address} is a loopback, private or reserved address; outbound calls there are refused "
            "(RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE=true allows them)"
        )
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
    """Status, headers and (capped) body of an outbound call, and the URL that answered."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str = ""


class OutboundClient:
    """An httpx client with the policy: timeouts, a body cap, checked redirects only, the SSRF guard."""

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        max_bytes: int = 20 * 1024 * 1024,
        allow_private: bool = False,
        dns_server: tuple[str, int] | None = None,
        max_redirects: int = 0,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.auth = auth
        transport = httpx.AsyncHTTPTransport(retries=0)
        # httpx has no public hook for the network backend; the pool is rebuilt with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(allow_private, dns_server)
        )
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            # Redirects are followed hop by hop in `_send`, so that each hop is checked; none by httpx.
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    async def _send(self, request: httpx.Request) -> httpx.Response:
        check_url(str(request.url))
        auth: httpx.Auth | None = self.auth
        hops = 0
        while True:
            response = await self.http.send(request, auth=auth, stream=True)
            target = response.next_request
            if target is None or self.max_redirects == 0:
                return response  # without max_redirects the caller sees the 3xx itself
            # A redirect's body is never read: only where it points matters.
            await response.aclose()
            hops += 1
            where = f"{request.url} redirects to {target.url}"
            if hops > self.max_redirects:
                raise RedirectRefused(f"more than {self.max_redirects} redirects ({where})")
            if request.url.scheme == "https" and target.url.scheme != "https":
                raise RedirectRefused(f"{where}: a redirect from https to http is refused")
            try:
                check_url(str(target.url))
            except UnsafeTarget as exc:
                raise UnsafeTarget(f"{where}: {exc}") from None
            # httpx built the next request without Authorization when it leaves the origin; the auth
            # flow is not run again, so credentials never follow a redirect to another host.
            request, auth = target, None

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, content: bytes | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The answer with its body unread; raises UnsafeTarget, RedirectRefused or an httpx.HTTPError."""
        response = await self._send(self.http.build_request(method, url, headers=headers, content=content))
        try:
            yield response
        finally:
            await response.aclose()

    async def body(
        self, response: httpx.Response, max_bytes: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The body of a streamed answer in pieces; ResponseTooLarge past `max_bytes` (default: the cap)."""
        cap = self.max_bytes if max_bytes is None else max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"the response declares {declared} bytes (cap {cap})")
        size = 0
        async for chunk in response.aiter_bytes(1024 * 1024):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"the response exceeds {cap} bytes")
            yield chunk

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, content: bytes | None = None
    ) -> OutboundResponse:
        """Send one request; raises UnsafeTarget, ResponseTooLarge, RedirectRefused or an httpx.HTTPError."""
        async with self.stream(method, url, headers=headers, content=content) as response:
            body = bytearray()
            async for chunk in self.body(response):
                body += chunk
        return OutboundResponse(response.status_code, response.headers, bytes(body), str(response.url))

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self.http.aclose()


def outbound_client(
    settings: Any,
    *,
    timeout_s: float | None = None,
    max_redirects: int = 0,
    auth: httpx.Auth | None = None,
) -> OutboundClient:
    """A client configured from settings (outbound_timeout_s, _max_bytes, _allow_private, _dns_server)."""
    server = settings.outbound_dns_server
    return OutboundClient(
        timeout_s=settings.outbound_timeout_s if timeout_s is None else timeout_s,
        max_bytes=settings.outbound_max_bytes,
        allow_private=settings.outbound_allow_private,
        dns_server=dns_server_address(server) if server else None,
        max_redirects=max_redirects,
        auth=auth,
    )


class _RequestsBridge(requests.adapters.BaseAdapter):
    """A requests adapter that sends each request through an OutboundClient on an event loop."""

    def __init__(self, client: OutboundClient, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.client = client
        self.loop = loop

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        """Answer a prepared request (the client's timeouts, TLS and no-proxy policy apply, not these)."""
        body = request.body.encode() if isinstance(request.body, str) else request.body
        if body is not None and not isinstance(body, bytes):
            raise TypeError("only bodies given as bytes or text can be sent")
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()}
        call = self.client.request(request.method or "GET", request.url or "", headers=headers, content=body)
        answer = asyncio.run_coroutine_threadsafe(call, self.loop).result()
        response = requests.Response()
        response.status_code = answer.status_code
        response.reason = httpx.codes.get_reason_phrase(answer.status_code)
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        # httpx has already decoded any Content-Encoding: the body is handed over as it is.
        response.raw = io.BytesIO(answer.content)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = answer.url
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close: the OutboundClient belongs to the caller."""


def send_through(
    session: requests.Session, client: OutboundClient, loop: asyncio.AbstractEventLoop
) -> requests.Session:
    """Make every request of `session` go through `client` (use the session in a thread, not `loop`).

    For blocking libraries run with `asyncio.to_thread` while `loop` is free to do the sending.
    """
    bridge = _RequestsBridge(client, loop)
    session.mount("http://", bridge)
    session.mount("https://", bridge)
    session.trust_env = False  # no proxies or .netrc from the environment, like the OutboundClient
    session.max_redirects = 0  # the client has followed (and checked) every redirect already
    return session
