"""Bearer tokens from Supabase Auth / an OIDC provider, through the whole app, against a real JWKS server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from raptorflow.app import create_app
from tests.conftest import create_org, make_settings, sign_up, truncate_all

AUDIENCE = "authenticated"
HS_SECRET = "supabase-legacy-jwt-secret-for-tests-0123456789"


class _Jwks:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.kid = "test-" + uuid.uuid4().hex[:8]
        jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.document = {"keys": [{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}]}
        self.up = True


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[str, _Jwks]]:
    """A JWKS endpoint on 127.0.0.1 serving a key the tests sign with."""
    state = _Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not state.up:
                self.send_response(503)
                self.end_headers()
                return
            body = orjson.dumps(state.document)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    issuer = f"http://127.0.0.1:{server.server_port}/auth/v1"
    yield issuer, state
    server.shutdown()
    server.server_close()


def _token(state: _Jwks, issuer: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": issuer, "aud": AUDIENCE, "iat": now, "exp": now + 600, "sub": str(uuid.uuid4())}
    payload.update(claims)
    return jwt.encode(payload, state.private, algorithm="ES256", headers={"kid": state.kid})


@pytest.fixture
async def oidc_client(
    database_url: str, jwks_server: tuple[str, _Jwks], app: Any
) -> AsyncIterator[httpx.AsyncClient]:
    issuer, _state = jwks_server
    external = create_app(
        make_settings(
            database_url,
            oidc_issuer=issuer,
            oidc_jwks_url=issuer + "/.well-known/jwks.json",
            oidc_audience=AUDIENCE,
            oidc_hs256_secret=HS_SECRET,
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=external), base_url="http://t") as http:
        yield http
    await external.state.engine.dispose()
    # The `client` fixture's clean-up is not in play here: empty the tables the same way.
    await truncate_all(app)


async def test_first_token_provisions_the_user_once(
    oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]
) -> None:
    issuer, state = jwks_server
    subject = str(uuid.uuid4())
    token = _token(state, issuer, sub=subject, email="Sam@Example.com")
    first = await oidc_client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200, first.text
    assert first.json()["email"] == "sam@example.com"
    assert first.json()["external"] is True
    again = await oidc_client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {_token(state, issuer, sub=subject)}"}
    )
    assert again.json()["id"] == first.json()["id"]
    created = await oidc_client.post(
        "/api/v1/organizations",
        json={"name": "Ext", "slug": "ext-org"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201


async def test_claims_grant_no_role(oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]) -> None:
    issuer, state = jwks_server
    owner = await sign_up(oidc_client, "real-owner@example.com")
    org_id = await create_org(owner, "guarded")
    token = _token(
        state,
        issuer,
        role="service_role",
        app_metadata={"role": "owner", "orgs": [org_id]},
        user_metadata={"is_admin": True},
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert (await oidc_client.get(f"/api/v1/organizations/{org_id}", headers=headers)).status_code == 404
    assert (await oidc_client.get("/api/v1/organizations", headers=headers)).json()["items"] == []


async def test_anonymous_users_cannot_create_organizations(
    oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]
) -> None:
    issuer, state = jwks_server
    headers = {"Authorization": f"Bearer {_token(state, issuer, is_anonymous=True)}"}
    assert (await oidc_client.get("/api/v1/users/me", headers=headers)).json()["is_anonymous"] is True
    refused = await oidc_client.post(
        "/api/v1/organizations", json={"name": "A", "slug": "anon"}, headers=headers
    )
    assert refused.status_code == 403


async def test_bad_external_tokens_are_401(
    oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]
) -> None:
    issuer, state = jwks_server
    for token in (
        _token(state, issuer, aud="someone-else"),
        _token(state, issuer, exp=int(time.time()) - 3600),
        jwt.encode(
            {"iss": issuer, "aud": AUDIENCE, "sub": "x", "iat": 1, "exp": 2**31},
            "wrong-secret-" * 4,
            algorithm="HS256",
        ),
    ):
        response = await oidc_client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


async def test_legacy_hs256_secret_is_accepted(
    oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]
) -> None:
    issuer, _state = jwks_server
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": issuer,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 60,
            "email": "legacy@example.com",
        },
        HS_SECRET,
        algorithm="HS256",
    )
    response = await oidc_client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["email"] == "legacy@example.com"


async def test_invitation_accepted_on_first_external_sign_in(
    oidc_client: httpx.AsyncClient, jwks_server: tuple[str, _Jwks]
) -> None:
    issuer, state = jwks_server
    owner = await sign_up(oidc_client, "inviter@example.com")
    org_id = await create_org(owner, "invites-ext")
    invited = await oidc_client.post(
        f"/api/v1/organizations/{org_id}/members",
        json={"email": "ext-user@example.com", "role": "editor"},
        headers=owner.headers,
    )
    assert invited.json()["status"] == "invited"
    headers = {"Authorization": f"Bearer {_token(state, issuer, email='ext-user@example.com')}"}
    mine = (await oidc_client.get("/api/v1/users/me/organizations", headers=headers)).json()["items"]
    assert [(o["slug"], o["role"]) for o in mine] == [("invites-ext", "editor")]


async def test_no_keys_at_all_is_503(database_url: str, app: Any) -> None:
    # Nothing listens on port 1: the provider's keys can never be fetched.
    issuer = "http://127.0.0.1:1/auth/v1"
    external = create_app(
        make_settings(
            database_url, oidc_issuer=issuer, oidc_jwks_url=issuer + "/jwks", oidc_audience=AUDIENCE
        )
    )
    private = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    token = jwt.encode(
        {"iss": issuer, "aud": AUDIENCE, "sub": "s", "iat": now, "exp": now + 60},
        private,
        algorithm="ES256",
        headers={"kid": "k"},
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=external), base_url="http://t") as http:
        response = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    await external.state.engine.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
