"""Razorpay through its official SDK: orders, payments, and signature checks that never raise 500."""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any, cast

import razorpay as razorpay_sdk
import requests
from razorpay.errors import BadRequestError, GatewayError, ServerError, SignatureVerificationError

from raptorflow.billing.mode import RazorpayKeys
from raptorflow.kit.errors import BadRequest, RaptorFlowError

_HEX_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
PAGE_SIZE = 100  # the largest `count` Razorpay's list endpoints accept
# Razorpay's payment states in the order a payment moves through them (`failed` undoes none of the later).
PAYMENT_STATES = ("created", "failed", "authorized", "captured", "refunded")


class PaymentGatewayError(RaptorFlowError):
    """Razorpay refused, failed, or answered something unusable (502)."""

    status = 502
    title = "Bad Gateway"
    type_slug = "payment-gateway"


class PaymentGatewayTimeout(PaymentGatewayError):
    """Razorpay did not answer within RAPTORFLOW_RAZORPAY_TIMEOUT_S (504)."""

    status = 504
    title = "Gateway Timeout"
    type_slug = "payment-gateway-timeout"


class GatewayNotFound(Exception):
    """Razorpay does not know the id."""


def payment_problem(entity: dict[str, Any]) -> str | None:
    """Why `entity` is not a usable payment (string id, integer amount, currency, known status), or None."""
    if not isinstance(entity.get("id"), str) or type(entity.get("amount")) is not int:
        return "The payment has no id or no integer amount."
    if not isinstance(entity.get("currency"), str) or entity.get("status") not in PAYMENT_STATES:
        return "The payment has no currency or no known status."
    return None


def well_formed_signature(signature: str | None) -> str:
    """The signature if it is 64 lowercase hex characters; 400 otherwise (before the SDK sees it).

    razorpay-python compares with hmac.compare_digest, which raises TypeError on non-ASCII strings,
    and encodes with bytes(str, 'utf-8'), which raises TypeError on bytes: neither may become a 500.
    """
    if not signature:
        raise BadRequest("The X-Razorpay-Signature header is missing.")
    if not signature.isascii() or not _HEX_SIGNATURE.match(signature):
        raise BadRequest("The signature is malformed: expected 64 hexadecimal characters.")
    return signature


class Gateway:
    """The SDK client for one set of keys; blocking SDK calls run in a worker thread."""

    def __init__(self, keys: RazorpayKeys) -> None:
        self.keys = keys
        session = requests.Session()
        self.client = razorpay_sdk.Client(
            auth=(keys.key_id, keys.key_secret), base_url=keys.base_url, session=session
        )
        self.client.set_app_details({"title": "RaptorFlow", "version": "1"})

    def verify_payment(self, order_id: str, payment_id: str, signature: str) -> bool:
        """HMAC-SHA256 with the key secret over `order_id|payment_id` (the SDK's own check)."""
        well_formed_signature(signature)
        try:
            self.client.utility.verify_payment_signature(
                {
                    "razorpay_order_id": order_id,
                    "razorpay_payment_id": payment_id,
                    "razorpay_signature": signature,
                }
            )
        except (SignatureVerificationError, TypeError, ValueError):
            return False
        return True

    def verify_webhook(self, body: bytes, signature: str | None) -> bool:
        """The raw body against every configured webhook secret (two during a rotation)."""
        sig = well_formed_signature(signature)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The webhook body is not UTF-8.") from None
        for secret in self.keys.webhook_secrets:
            try:
                if self.client.utility.verify_webhook_signature(text, sig, secret):
                    return True
            except (SignatureVerificationError, TypeError, ValueError):
                continue
        return False

    async def _call(self, fn: Any, *args: Any) -> dict[str, Any]:
        timeout = self.keys.timeout_s
        # requests bounds each connect and read by `timeout`; the outer bound catches a trickling answer.
        call = functools.partial(fn, *args, timeout=timeout)
        try:
            result = await asyncio.wait_for(asyncio.to_thread(call), 2 * timeout + 1)
        except BadRequestError as exc:
            if "does not exist" in str(exc).lower() or "not found" in str(exc).lower():
                raise GatewayNotFound(str(exc)) from None
            raise PaymentGatewayError(f"Razorpay refused the request: {exc}") from None
        except (requests.Timeout, TimeoutError):
            raise PaymentGatewayTimeout(
                f"Razorpay did not answer within {timeout:g} s; nothing was recorded, try again."
            ) from None
        except (GatewayError, ServerError, requests.RequestException) as exc:
            raise PaymentGatewayError(
                f"Razorpay could not be reached or failed ({type(exc).__name__}); try again."
            ) from None
        if not isinstance(result, dict):
            raise PaymentGatewayError("Razorpay answered something that is not a JSON object; try again.")
        return cast(dict[str, Any], result)

    async def create_order(
        self, amount_paise: int, currency: str, receipt: str, notes: dict[str, str]
    ) -> dict[str, Any]:
        """POST /v1/orders."""
        body = {"amount": amount_paise, "currency": currency, "receipt": receipt, "notes": notes}
        return await self._call(self.client.order.create, body)

    async def fetch_payment(self, payment_id: str) -> dict[str, Any]:
        """GET /v1/payments/{id}: that payment, well-formed, or 502."""
        found = await self._call(self.client.payment.fetch, payment_id, {})
        problem = payment_problem(found)
        if found.get("id") != payment_id or problem:
            raise PaymentGatewayError(
                f"Razorpay answered with something other than payment {payment_id} "
                f"({problem or 'another id'}); try again."
            )
        return found

    async def order_payments(self, order_id: str) -> list[dict[str, Any]]:
        """GET /v1/orders/{id}/payments."""
        found = await self._call(self.client.order.payments, order_id, {})
        return [dict(p) for p in found.get("items", [])]

    async def orders_since(self, from_ts: int, to_ts: int) -> list[dict[str, Any]]:
        """GET /v1/orders?from=&to= (every page of at most PAGE_SIZE, Razorpay's maximum `count`)."""
        out: list[dict[str, Any]] = []
        skip = 0
        while True:
            page = await self._call(
                self.client.order.all, {"from": from_ts, "to": to_ts, "count": PAGE_SIZE, "skip": skip}
            )
            items = [dict(i) for i in page.get("items", [])]
            out += items
            if len(items) < PAGE_SIZE:
                return out
            skip += PAGE_SIZE
