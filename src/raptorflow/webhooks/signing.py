"""The webhook signature: HMAC-SHA256 over "<timestamp>.<body>", sent as `X-RaptorFlow-Signature`.

Header value: `t=<unix seconds>,v1=<hex digest>`. A receiver recomputes
`hmac_sha256(secret, f"{t}.".encode() + raw_body)`, compares it in constant time with `v1`, and
rejects timestamps older than a few minutes (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-RaptorFlow-Signature"
EVENT_HEADER = "X-RaptorFlow-Event"
DELIVERY_HEADER = "X-RaptorFlow-Delivery"
SECRET_PREFIX = "whsec_"  # noqa: S105 — a prefix, not a secret


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance_s: int = 300, now: int | None = None) -> bool:
    """What a receiver does: True when the header signs `body` with `secret` and is recent enough."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
