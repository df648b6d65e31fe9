"""A Razorpay-compatible HTTP server on 127.0.0.1 (orders and payments of the documented REST API).

The real `razorpay` SDK is pointed at it with RAPTORFLOW_RAZORPAY_BASE_URL; tests decide what the
customer does (`pay`), sign webhooks with the real algorithm (`sign`) and make the gateway fail
(`fail_next`: 5xx answers, slow answers, malformed bodies). Lists follow the documented paging of
GET /v1/orders and /v1/payments: newest first, `count` (default 10, at most 100), `skip`, and `from`/`to`
(Unix seconds, inclusive); anything else is a 400 BAD_REQUEST_ERROR, as Razorpay answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY_ID = "rzp_test_raptorflow"
KEY_SECRET = "test-key-secret-0123456789"
WEBHOOK_SECRET = "whsec-current-abcdef"
WEBHOOK_SECRET_PREVIOUS = "whsec-previous-123456"


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """X-Razorpay-Signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def checkout_signature(order_id: str, payment_id: str, secret: str = KEY_SECRET) -> str:
    """What Checkout hands back: HMAC-SHA256 of `order_id|payment_id` with the key secret."""
    return hmac.new(secret.encode(), f"{order_id}|{payment_id}".encode(), hashlib.sha256).hexdigest()


def _rid(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(7)}"


MAX_COUNT = 100  # Razorpay's documented ceiling for `count` on list endpoints


@dataclass
class Fault:
    """How the next matching request fails.

    kind: "status" (a JSON error as Razorpay's servers send it, with `status`), "html" (`status` with an
    HTML page, as a load balancer in front would send), "slow" (the normal answer, `delay_s` late — the
    request still takes effect, like a real timeout), "truncated" (200 with cut-off JSON), "not-object"
    (200 with a JSON array), "wrong-entity" (200 with another object than the one asked for).
    """

    kind: str
    path: str = "/"
    status: int = 503
    delay_s: float = 0.0
    times: int = 1


class FakeRazorpay:
    """The server's state: orders and payments by id, and the faults still to inject."""

    def __init__(self, port: int = 0) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        handler = type("Handler", (_Handler,), {"state": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeRazorpay:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, kind: str, path: str = "/", **options: Any) -> Fault:
        """Make the next request whose path starts with `path` fail in the way `kind` names (see Fault)."""
        fault = Fault(kind, path, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, path: str) -> Fault | None:
        """The first pending fault for `path`, used up by this request."""
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def add_orders(self, created_at: list[int]) -> list[str]:
        """Orders of other merchants' customers (not ours) created at the given times; their ids."""
        ids = []
        with self.lock:
            for moment in created_at:
                order = {"id": _rid("order"), "entity": "order", "amount": 100, "amount_paid": 0,
                         "amount_due": 100, "currency": "INR", "receipt": None, "status": "created",
                         "attempts": 0, "notes": {}, "created_at": moment}  # fmt: skip
                self.orders[order["id"]] = order
                ids.append(order["id"])
        return ids

    def pay(
        self,
        order_id: str,
        *,
        status: str = "captured",
        amount: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """The customer pays an order in Checkout: a payment entity as Razorpay stores it."""
        with self.lock:
            order = self.orders[order_id]
            payment = {
                "id": _rid("pay"),
                "entity": "payment",
                "amount": order["amount"] if amount is None else amount,
                "currency": currency or order["currency"],
                "status": status,
                "order_id": order_id,
                "method": "upi",
                "captured": status == "captured",
                "created_at": int(time.time()),
            }
            self.payments[payment["id"]] = payment
            if status == "captured":
                order["status"] = "paid"
                order["amount_paid"] = payment["amount"]
            return dict(payment)

    def event(self, name: str, payment: dict[str, Any] | None = None, **extra: Any) -> bytes:
        """A webhook body as Razorpay sends it."""
        payload: dict[str, Any] = {}
        if payment is not None:
            payload["payment"] = {"entity": payment}
        for key, entity in extra.items():
            payload[key] = {"entity": entity}
        body = {
            "entity": "event",
            "account_id": "acc_test",
            "event": name,
            "contains": sorted(payload),
            "payload": payload,
            "created_at": int(time.time()),
        }
        return json.dumps(body, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    state: FakeRazorpay

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, description: str, code: str = "BAD_REQUEST_ERROR") -> None:
        self._send(status, {"error": {"code": code, "description": description}})

    def _raw(self, status: int, raw: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _faulted(self) -> bool:
        """Apply a pending fault: True when it answered (the request is not processed)."""
        fault = self.state.take_fault(urlsplit(self.path).path)
        if fault is None:
            return False
        if fault.kind == "slow":
            time.sleep(fault.delay_s)
            return False
        if fault.kind == "status":
            code = "GATEWAY_ERROR" if fault.status in (502, 504) else "SERVER_ERROR"
            self._error(
                fault.status, "We are facing some trouble completing your request at the moment.", code
            )
        elif fault.kind == "html":
            self._raw(fault.status, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        elif fault.kind == "truncated":
            self._raw(200, b'{"id": "pay_trunc", "entity": "payment", "amount": 41')
        elif fault.kind == "not-object":
            self._raw(200, b"[]")
        elif fault.kind == "wrong-entity":
            self._send(200, {"id": _rid("pay"), "entity": "payment", "amount": 1, "currency": "INR",
                             "status": "captured", "order_id": _rid("order")})  # fmt: skip
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")
        return True

    def _page(self, entities: list[dict[str, Any]], query: str) -> None:
        """One page of a collection as GET /v1/orders and /v1/payments answer it."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            since, until = int(params.get("from", "0")), int(params.get("to", str(2**62)))
            skip, count = int(params.get("skip", "0")), int(params.get("count", "10"))
        except ValueError:
            self._error(400, "The from, to, count and skip must be integers.")
            return
        if count > MAX_COUNT or count < 1:
            self._error(400, f"The count may not be greater than {MAX_COUNT}.")
            return
        if skip < 0 or since < 0 or until < since:
            self._error(400, "The skip, from and to must be positive and from must not be after to.")
            return
        chosen = [e for e in entities if since <= e["created_at"] <= until]
        chosen.reverse()  # insertion order is creation order: newest first, ties kept stable
        chosen.sort(key=lambda e: e["created_at"], reverse=True)
        items = chosen[skip : skip + count]
        self._send(200, {"entity": "collection", "count": len(items), "items": items})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
        if header != expected:
            self._error(401, "The api key provided is invalid")
            return False
        return True

    def do_POST(self) -> None:
        self.state.requests.append(("POST", self.path))
        if not self._authorized() or self._faulted():
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if urlsplit(self.path).path != "/v1/orders":
            self._error(404, "The requested URL was not found on the server.")
            return
        amount = body.get("amount")
        if not isinstance(amount, int) or amount < 100:
            self._error(400, "The amount must be atleast INR 1.00")
            return
        order = {
            "id": _rid("order"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": body.get("currency", "INR"),
            "receipt": body.get("receipt"),
            "status": "created",
            "attempts": 0,
            "notes": body.get("notes", {}),
            "created_at": int(time.time()),
        }
        with self.state.lock:
            self.state.orders[order["id"]] = order
        self._send(200, order)

    def do_GET(self) -> None:
        self.state.requests.append(("GET", self.path))
        if not self._authorized() or self._faulted():
            return
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        with self.state.lock:
            if segments == ["v1", "orders"]:
                self._page(list(self.state.orders.values()), parts.query)
            elif segments == ["v1", "payments"]:
                self._page(list(self.state.payments.values()), parts.query)
            elif len(segments) == 4 and segments[:2] == ["v1", "orders"] and segments[3] == "payments":
                items = [p for p in self.state.payments.values() if p["order_id"] == segments[2]]
                self._send(200, {"entity": "collection", "count": len(items), "items": items})
            elif len(segments) == 3 and segments[:2] == ["v1", "payments"]:
                payment = self.state.payments.get(segments[2])
                if payment is None:
                    self._error(400, "The id provided does not exist")
                else:
                    self._send(200, payment)
            else:
                self._error(404, "The requested URL was not found on the server.")
