"""The generated role-matrix and isolation tests (tests/test_rbac.py, tests/test_isolation.py) over the
billing routes, with billing enabled and Razorpay played by the local test double."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from raptorflow.billing.plans import set_plan
from tests import test_isolation, test_rbac
from tests.billing import route_examples
from tests.billing.fake_razorpay import FakeRazorpay

BILLING = "/api/v1/billing"


@pytest.fixture
async def billing_only(billing_app: Any, razorpay: FakeRazorpay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the generated tests at the billing routes only; lift the member limit the casts exceed."""
    monkeypatch.setattr(route_examples, "FAKE", {"server": razorpay})
    rbac_ops = test_rbac.org_scoped_operations
    iso_ops = test_isolation.parameterized_operations
    iso_headers = test_isolation.header_operations
    monkeypatch.setattr(
        test_rbac, "org_scoped_operations", lambda app: [o for o in rbac_ops(app) if o[1].startswith(BILLING)]
    )

    def billing_parameterized(app: Any) -> list[tuple[str, str, list[str]]]:
        # The original checks every path of the app first (other domains' in-progress routes too).
        spec = app.openapi()
        return sorted(
            (method.upper(), path, test_rbac.PATH_PARAM.findall(path))
            for path in spec["paths"]
            if path.startswith(BILLING) and test_rbac.PATH_PARAM.findall(path)
            for method in spec["paths"][path]
            if method in test_rbac.HTTP_METHODS
        )

    assert iso_ops is not None
    monkeypatch.setattr(test_isolation, "parameterized_operations", billing_parameterized)
    monkeypatch.setattr(
        test_isolation,
        "header_operations",
        lambda app: [o for o in iso_headers(app) if o[1].startswith(BILLING)],
    )
    async with billing_app.state.session_factory() as session:
        await set_plan(session, "free", {"max_members": None})
        # An upgrade that stays possible whatever earlier calls bought (orders are made last-but-few).
        await set_plan(session, "scale", {"name": "Scale", "price_paise": 700_000, "rank": 5})
        await session.commit()
    yield


async def test_role_matrix_on_billing_routes(
    bclient: httpx.AsyncClient, billing_app: Any, billing_only: None
) -> None:
    """Viewers and editors get 403 on every billing route; admins and owners succeed."""
    assert len(test_rbac.org_scoped_operations(billing_app)) >= 10
    await test_rbac.test_role_matrix_holds_on_every_org_scoped_route(bclient, billing_app)


async def test_other_orgs_billing_objects_answer_like_random_ids(
    bclient: httpx.AsyncClient, billing_app: Any, billing_only: None
) -> None:
    """Another org's invoices (and org header) answer 404 exactly like random ids."""
    await test_isolation.test_owner_of_another_org_gets_404_like_a_random_id_everywhere(bclient, billing_app)
