"""Built-in accounts: registration, sign-in, ES256 tokens, refresh rotation, throttling, key rotation."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.app import create_app
from raptorflow.auth.tokens import rotate_keys
from raptorflow.kit.db import session_factory
from raptorflow.models import SigningKey
from tests.conftest import PASSWORD, make_settings, sign_in, sign_up


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def test_register_returns_201_and_normalizes_email(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice"}
    )
    assert response.status_code == 201
    assert response.json()["email"] == "alice@example.com"
    assert response.headers["location"] == "/api/v1/users/me"
    again = await client.post(
        "/api/v1/auth/register", json={"email": "alice@example.com", "password": PASSWORD, "name": "A"}
    )
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short-pass", "at least 12"), ("bob@example.com", "email")],
)
async def test_password_policy_names_the_field(client: httpx.AsyncClient, password: str, reason: str) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "bob@example.com", "password": password, "name": "Bob"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["field"] == "password"
    assert reason in error["message"]


async def test_register_refuses_unknown_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "c@example.com", "password": PASSWORD, "name": "C", "role": "owner"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.role"


async def test_register_refuses_a_blank_name_and_trims_one(client: httpx.AsyncClient) -> None:
    blank = await client.post(
        "/api/v1/auth/register", json={"email": "blank@example.com", "password": PASSWORD, "name": "   "}
    )
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body.name"
    padded = await client.post(
        "/api/v1/auth/register", json={"email": "padded@example.com", "password": PASSWORD, "name": "  Dee "}
    )
    assert padded.status_code == 201 and padded.json()["name"] == "Dee"


async def test_registration_closed_and_invite_only(database_url: str) -> None:
    for mode, expected in (("closed", 403), ("invite", 403)):
        app = create_app(make_settings(database_url, registration=mode))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.post(
                "/api/v1/auth/register", json={"email": "d@example.com", "password": PASSWORD, "name": "D"}
            )
        await app.state.engine.dispose()
        assert response.status_code == expected, mode
        assert mode in response.json()["detail"] or "invitation" in response.json()["detail"]


async def test_token_is_es256_with_required_claims(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "erin@example.com")
    tokens = actor.tokens
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "ES256"
    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert key["kty"] == "EC" and "d" not in key
    public = jwt.PyJWK(key).key
    claims = jwt.decode(tokens["access_token"], public, algorithms=["ES256"], audience="raptorflow")
    assert set(claims) >= {"iss", "aud", "sub", "exp", "iat", "jti", "sid"}
    assert claims["sub"] == actor.user_id
    assert claims["exp"] - claims["iat"] == 900
    me = await client.get("/api/v1/users/me", headers=actor.headers)
    assert me.status_code == 200
    assert me.json()["email"] == "erin@example.com"


async def test_wrong_password_and_unknown_email_look_the_same(client: httpx.AsyncClient) -> None:
    await sign_up(client, "frank@example.com")
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": "frank@example.com", "password": "x" * 14}
    )
    unknown = await client.post(
        "/api/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 14}
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)


async def test_failed_sign_ins_are_throttled_per_account(client: httpx.AsyncClient) -> None:
    await sign_up(client, "gina@example.com")
    for _ in range(5):
        response = await client.post(
            "/api/v1/auth/token", data={"username": "gina@example.com", "password": "nope" * 4}
        )
        assert response.status_code == 401
    blocked = await client.post(
        "/api/v1/auth/token", data={"username": "gina@example.com", "password": PASSWORD}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    # Unknown accounts are throttled the same way: the limit reveals nothing.
    for _ in range(5):
        await client.post(
            "/api/v1/auth/token", data={"username": "ghost@example.com", "password": "nope" * 4}
        )
    ghost = await client.post(
        "/api/v1/auth/token", data={"username": "ghost@example.com", "password": "nope" * 4}
    )
    assert ghost.status_code == 429


async def test_refresh_rotates_and_reuse_revokes_the_family(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "hank@example.com")
    first = actor.tokens["refresh_token"]
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json()["refresh_token"]
    assert second != first
    new_access = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    assert (await client.get("/api/v1/users/me", headers=new_access)).status_code == 200
    # The old token comes back: theft. The whole session dies, including the newest tokens.
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": second})).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=new_access)).status_code == 401


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "ivy@example.com")
    out = await client.post("/api/v1/auth/logout", json={"refresh_token": actor.tokens["refresh_token"]})
    assert out.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=actor.headers)).status_code == 401
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": actor.tokens["refresh_token"]})
    assert again.status_code == 401


async def test_forged_tokens_are_refused(client: httpx.AsyncClient) -> None:
    actor = await sign_up(client, "jack@example.com")
    header, payload, signature = actor.tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "00000000-0000-0000-0000-000000000001"
    tampered = f"{header}.{_b64(claims)}.{signature}"
    none_alg = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    jwks = (await client.get("/.well-known/jwks.json")).json()
    pem = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Algorithm confusion: HS256 "signed" with the public key.
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': jwks['keys'][0]['kid']})}.{payload}"
    mac = (
        base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
        .decode()
        .rstrip("=")
    )
    confused = f"{signing_input}.{mac}"
    for token in (tampered, none_alg, confused, "not-a-jwt"):
        response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"


async def test_key_rotation_keeps_old_tokens_valid(client: httpx.AsyncClient, app: Any) -> None:
    actor = await sign_up(client, "kate@example.com")
    old_kid = jwt.get_unverified_header(actor.tokens["access_token"])["kid"]
    owner = create_async_engine(app.state.settings.database_url)
    async with session_factory(owner)() as session:
        new_key = await rotate_keys(session, None)
        await session.commit()
    await owner.dispose()
    assert (await client.get("/api/v1/users/me", headers=actor.headers)).status_code == 200
    # Each process re-reads the keys at most RELOAD_EVERY_S later; do now what that timer would do.
    await app.state.token_issuer.reload(force=True)
    fresh = await sign_in(client, "kate@example.com")
    assert jwt.get_unverified_header(fresh.tokens["access_token"])["kid"] == new_key.kid
    kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_key.kid} <= kids


async def test_private_keys_are_sealed_with_the_secret_key(database_url: str) -> None:
    app = create_app(make_settings(database_url, secret_key="a-long-operator-secret-for-tests"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        actor = await sign_up(http, "leo@example.com")
        assert (await http.get("/api/v1/users/me", headers=actor.headers)).status_code == 200
    owner = create_async_engine(database_url)
    async with session_factory(owner)() as session:
        rows = (await session.scalars(select(SigningKey))).all()
    await owner.dispose()
    await app.state.engine.dispose()
    sealed = [r for r in rows if r.encrypted]
    assert sealed
    assert all("PRIVATE KEY" not in r.private_key for r in sealed)


def test_passwords_are_argon2id_with_library_defaults_unless_configured() -> None:
    from raptorflow.auth import passwords

    passwords.configure()
    try:
        stored = passwords.hash_password("a long enough password")
        assert stored.startswith("$argon2id$") and "m=65536,t=3" in stored
        assert passwords.verify_password(stored, "a long enough password")
        assert not passwords.verify_password(stored, "a long enough passwore")
        assert not passwords.verify_password(None, "a long enough password")
    finally:
        passwords.configure(time_cost=1, memory_kib=1024)
