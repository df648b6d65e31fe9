"""The outbound HTTP client: SSRF guard at connect time, size cap, timeout, no redirects."""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from raptorflow.kit.http import OutboundClient, ResponseTooLarge, UnsafeTarget, check_url, is_public


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/big-declared":
            self.send_response(200)
            self.send_header("content-length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 5000)
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            time.sleep(1.0)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A local HTTP server with a few misbehaving routes."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_loopback_is_refused_unless_allowed(server: str, host: str) -> None:
    port = server.rsplit(":", 1)[1]
    client = OutboundClient()
    with pytest.raises(UnsafeTarget):
        await client.request("GET", f"http://{host}:{port}/")
    await client.aclose()


async def test_allowed_private_target_and_caps(server: str) -> None:
    client = OutboundClient(allow_private=True, max_bytes=2048, timeout_s=0.3)
    try:
        ok = await client.request("GET", server + "/")
        assert (ok.status_code, ok.content) == (200, b"ok")
        with pytest.raises(ResponseTooLarge):
            await client.request("GET", server + "/big-declared")
        with pytest.raises(ResponseTooLarge):
            await client.request("GET", server + "/big-chunked")
        with pytest.raises(httpx.TimeoutException):
            await client.request("GET", server + "/slow")
        redirected = await client.request("GET", server + "/redirect")
        assert redirected.status_code == 302  # not followed: a redirect may point anywhere
    finally:
        await client.aclose()


def test_address_classes_and_url_checks() -> None:
    public = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"]
    private = ["10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "169.254.169.254", "0.0.0.0", "::1",
               "fc00::1", "fe80::1", "::ffff:127.0.0.1", "224.0.0.1", "100.64.0.1", "203.0.113.9"]  # fmt: skip
    assert all(is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(is_public(ipaddress.ip_address(a)) for a in private)
    for url in (
        "ftp://example.com/",
        "http:///nohost",
        "http://user:pw@example.com/",
        "http://example.com:0/",
    ):
        with pytest.raises(UnsafeTarget):
            check_url(url)
    assert check_url("https://example.com/hook") == "https://example.com/hook"
