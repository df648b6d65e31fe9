"""Billing fixtures: a Razorpay-compatible server and the app with billing enabled, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.billing.plans import seed_defaults
from tests.billing.fake_razorpay import (
    KEY_ID,
    KEY_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_PREVIOUS,
    FakeRazorpay,
)
from tests.conftest import Actor, create_org, make_settings, sign_up, truncate_all


@pytest.fixture(scope="session")
def razorpay() -> Iterator[FakeRazorpay]:
    """The Razorpay test double on 127.0.0.1 (port chosen by the OS)."""
    server = FakeRazorpay().start()
    yield server
    server.stop()


def billing_settings(database_url: str, razorpay: FakeRazorpay, **overrides: Any) -> Any:
    """Settings with billing on and Razorpay pointed at the test double."""
    values: dict[str, Any] = {
        "billing_enabled": True,
        "razorpay_key_id": KEY_ID,
        "razorpay_key_secret": KEY_SECRET,
        "razorpay_webhook_secret": WEBHOOK_SECRET,
        "razorpay_webhook_secret_previous": WEBHOOK_SECRET_PREVIOUS,
        "razorpay_base_url": razorpay.url,
        "billing_seller_state": "KA",
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture(scope="session")
async def billing_app(database_url: str, razorpay: FakeRazorpay) -> AsyncIterator[Any]:
    """The application with billing enabled."""
    application = create_app(billing_settings(database_url, razorpay))
    yield application
    await application.state.engine.dispose()


async def seed_plans(application: Any) -> None:
    """The migration's plans (the per-test clean-up empties every table)."""
    async with application.state.session_factory() as session:
        await seed_defaults(session)
        await session.commit()


@pytest.fixture
async def bclient(billing_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the billing-enabled app; tables emptied after each test."""
    await seed_plans(billing_app)
    transport = httpx.ASGITransport(app=billing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await truncate_all(billing_app)
    await billing_app.state.limiter.storage.reset()
    await billing_app.state.token_issuer.reload(force=True)


async def owner_with_org(http: httpx.AsyncClient, slug: str = "acme") -> tuple[Actor, str]:
    """A signed-up owner and their new org."""
    owner = await sign_up(http, f"owner-{slug}@example.com")
    return owner, await create_org(owner, slug)
