"""A Razorpay-compatible HTTP server on 127.0.0.1 (orders and payments of the documented REST API).

The real `razorpay` SDK is pointed at it with RAPTORFLOW_RAZORPAY_BASE_URL; tests decide what the
customer does (`pay`) and sign webhooks with the real algorithm (`sign`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
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


class FakeRazorpay:
    """The server's state: orders and payments by id."""

    def __init__(self, port: int = 0) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
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

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY_SECRET}".encode()).decode()
        if header != expected:
            self._error(401, "The api key provided is invalid")
            return False
        return True

    def do_POST(self) -> None:
        self.state.requests.append(("POST", self.path))
        if not self._authorized():
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
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        with self.state.lock:
            if segments == ["v1", "orders"]:
                query = parse_qs(parts.query)
                since = int(query.get("from", ["0"])[0])
                skip, count = int(query.get("skip", ["0"])[0]), int(query.get("count", ["10"])[0])
                items = [o for o in self.state.orders.values() if o["created_at"] >= since][
                    skip : skip + count
                ]
                self._send(200, {"entity": "collection", "count": len(items), "items": items})
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
