"""External (Supabase / OIDC) bearer tokens: JWKS fetch and caching, algorithms, claims, issuer routing."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from raptorflow.auth import oidc
from raptorflow.auth.oidc import (
    ExternalIdentity,
    ExternalKeysUnavailable,
    ExternalTokenInvalid,
    ExternalTokenVerifier,
)

ISSUER = "https://project.supabase.co/auth/v1"
AUDIENCE = "authenticated"
HS_SECRET = "legacy-supabase-jwt-secret-0123456789abcdef"
CACHE_S = 60

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    alg: str
    kid: str
    private: PrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            data: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, rsa.RSAPublicKey):
            data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_key(alg: str, kid: str | None = None) -> SigningKey:
    private: PrivateKey
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(alg, kid or f"{alg.lower()}-{secrets.token_hex(4)}", private)


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {alg: _new_key(alg) for alg in ("ES256", "RS256", "EdDSA")}


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose keys and failure mode a test can change."""

    keys: list[dict[str, Any]]
    status: int = 200
    body: bytes | None = None
    gate: threading.Event | None = None
    requests: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def hit(self) -> None:
        with self._lock:
            self.requests += 1

    def start(self) -> None:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.hit()
                if state.gate is not None:
                    state.gate.wait(10)
                body = state.body if state.body is not None else json.dumps({"keys": state.keys}).encode()
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def server(keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    srv = JwksServer(keys=[k.jwk for k in keys.values()])
    srv.start()
    yield srv
    srv.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(oidc, "_monotonic", fake)
    return fake


@pytest.fixture
def make_verifier(server: JwksServer, clock: FakeClock) -> Callable[..., ExternalTokenVerifier]:
    def make(**overrides: Any) -> ExternalTokenVerifier:
        args: dict[str, Any] = {
            "jwks_url": server.url,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "cache_seconds": CACHE_S,
            "timeout_s": 3.0,
        }
        args.update(overrides)
        return ExternalTokenVerifier(**args)

    return make


@pytest.fixture
def verifier(make_verifier: Callable[..., ExternalTokenVerifier]) -> ExternalTokenVerifier:
    return make_verifier()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "3f1c0d9e-user",
        "iat": now,
        "exp": now + 300,
        "email": "  Alice@Example.COM ",
        "is_anonymous": False,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def sign(key: SigningKey, *, kid: str | None = None, alg: str | None = None, **overrides: Any) -> str:
    with warnings.catch_warnings():
        # Lets a test sign with a deliberately weak key.
        warnings.simplefilter("ignore")
        return jwt.encode(
            claims(**overrides), key.private, algorithm=alg or key.alg, headers={"kid": kid or key.kid}
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """Build a token by hand, for shapes jwt.encode refuses to produce."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = (
        b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


# --- valid tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_valid_asymmetric_tokens_verify(
    alg: str, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    identity = await verifier.verify(sign(keys[alg]))
    assert identity == ExternalIdentity(
        issuer=ISSUER, subject="3f1c0d9e-user", email="alice@example.com", is_anonymous=False
    )


@pytest.mark.parametrize(
    ("claim", "expected"), [(True, True), (False, False), ("true", False), (1, False), (None, False)]
)
async def test_is_anonymous_only_when_claim_is_literally_true(
    claim: Any, expected: bool, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    identity = await verifier.verify(sign(keys["ES256"], is_anonymous=claim))
    assert identity.is_anonymous is expected


@pytest.mark.parametrize(("claim", "expected"), [(None, None), ("", None), (123, None), ("B@X.IO", "b@x.io")])
async def test_email_is_normalised_or_none(
    claim: Any, expected: str | None, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    identity = await verifier.verify(sign(keys["ES256"], email=claim))
    assert identity.email == expected


async def test_privilege_claims_grant_nothing(
    keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    token = sign(
        keys["ES256"],
        role="service_role",
        app_metadata={"provider": "email", "roles": ["admin"]},
        user_metadata={"is_admin": True},
    )
    identity = await verifier.verify(token)
    assert dataclasses.asdict(identity) == {
        "issuer": ISSUER,
        "subject": "3f1c0d9e-user",
        "email": "alice@example.com",
        "is_anonymous": False,
    }


async def test_clock_skew_within_leeway_is_tolerated(
    keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    now = int(time.time())
    await verifier.verify(sign(keys["ES256"], exp=now - 10, iat=now - 400))
    await verifier.verify(sign(keys["ES256"], iat=now + 20))


# --- rejected claims ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # Times as offsets from the moment the test runs (collection may be minutes earlier).
        ({"exp": -120, "iat": -600}, "token expired"),
        ({"iat": 300}, "token not yet valid"),
        ({"nbf": 300}, "token not yet valid"),
        ({"iss": "https://evil.example/auth/v1"}, "issuer mismatch"),
        ({"aud": "someone-else"}, "audience mismatch"),
        ({"sub": None}, "missing claim sub"),
        ({"sub": ""}, "missing claim sub"),
        ({"exp": None}, "missing claim exp"),
        ({"iat": None}, "missing claim iat"),
        ({"iss": None}, "missing claim iss"),
        ({"aud": None}, "missing claim aud"),
    ],
)
async def test_bad_claims_are_rejected(
    overrides: dict[str, Any], reason: str, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    now = int(time.time())
    claims = {
        k: now + v if k in ("exp", "iat", "nbf") and isinstance(v, int) else v for k, v in overrides.items()
    }
    with pytest.raises(ExternalTokenInvalid, match=rf"^{reason}$"):
        await verifier.verify(sign(keys["ES256"], **claims))


async def test_audience_unchecked_when_not_configured_but_still_required(
    keys: dict[str, SigningKey], make_verifier: Callable[..., ExternalTokenVerifier]
) -> None:
    verifier = make_verifier(audience=None)
    assert (await verifier.verify(sign(keys["ES256"], aud="whatever"))).subject == "3f1c0d9e-user"
    with pytest.raises(ExternalTokenInvalid, match=r"^missing claim aud$"):
        await verifier.verify(sign(keys["ES256"], aud=None))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.e30"])
async def test_malformed_tokens_are_rejected(token: str, verifier: ExternalTokenVerifier) -> None:
    with pytest.raises(ExternalTokenInvalid):
        await verifier.verify(token)


# --- keys and algorithms --------------------------------------------------------------------------


async def test_unknown_kid_signed_by_unknown_key_is_rejected(
    server: JwksServer, verifier: ExternalTokenVerifier
) -> None:
    stranger = _new_key("ES256", kid="not-on-the-server")
    with pytest.raises(ExternalTokenInvalid, match=r"^unknown signing key$"):
        await verifier.verify(sign(stranger))


async def test_known_kid_signed_by_another_key_is_rejected(
    keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    impostor = _new_key("ES256", kid=keys["ES256"].kid)
    with pytest.raises(ExternalTokenInvalid, match=r"^invalid signature$"):
        await verifier.verify(sign(impostor))


async def test_token_alg_must_match_the_keys_algorithm(
    keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    # An ES256 signature presented under the RSA key's kid.
    with pytest.raises(ExternalTokenInvalid, match=r"^algorithm not allowed$"):
        await verifier.verify(sign(keys["ES256"], kid=keys["RS256"].kid))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS384", "HS512", "ES512", "PS256", ""])
async def test_other_algorithms_are_rejected(
    alg: str, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    token = forge({"alg": alg, "typ": "JWT", "kid": keys["ES256"].kid}, claims(), None)
    with pytest.raises(ExternalTokenInvalid, match=r"^algorithm not allowed$"):
        await verifier.verify(token)


async def test_weak_rsa_key_from_jwks_is_refused(server: JwksServer, verifier: ExternalTokenVerifier) -> None:
    weak = SigningKey("RS256", "weak-rsa", rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - the point of the test
    server.keys.append(weak.jwk)
    with pytest.raises(ExternalTokenInvalid, match=r"^signing key not acceptable$"):
        await verifier.verify(sign(weak))


async def test_symmetric_key_published_in_jwks_is_never_used(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    oct_secret = secrets.token_bytes(32)
    server.keys.append({"kty": "oct", "k": _b64(oct_secret), "kid": "hmac-1", "use": "sig", "alg": "HS256"})
    with pytest.raises(ExternalTokenInvalid, match=r"^algorithm not allowed$"):
        await verifier.verify(forge({"alg": "HS256", "kid": "hmac-1"}, claims(), oct_secret))
    with pytest.raises(ExternalTokenInvalid, match=r"^unknown signing key$"):
        await verifier.verify(sign(keys["ES256"], kid="hmac-1"))


# --- HS256 (Supabase legacy secret) ---------------------------------------------------------------


async def test_hs256_rejected_without_secret(server: JwksServer, verifier: ExternalTokenVerifier) -> None:
    token = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    with pytest.raises(ExternalTokenInvalid, match=r"^algorithm not allowed$"):
        await verifier.verify(token)


async def test_hs256_accepted_with_right_secret_without_touching_jwks(
    server: JwksServer, make_verifier: Callable[..., ExternalTokenVerifier]
) -> None:
    verifier = make_verifier(hs256_secret=HS_SECRET)
    identity = await verifier.verify(jwt.encode(claims(is_anonymous=True), HS_SECRET, algorithm="HS256"))
    assert identity == ExternalIdentity(ISSUER, "3f1c0d9e-user", "alice@example.com", True)
    assert server.requests == 0


async def test_hs256_only_verifier(make_verifier: Callable[..., ExternalTokenVerifier]) -> None:
    verifier = make_verifier(jwks_url=None, hs256_secret=HS_SECRET)
    assert (
        await verifier.verify(jwt.encode(claims(), HS_SECRET, algorithm="HS256"))
    ).subject == "3f1c0d9e-user"


async def test_hs256_rejected_with_wrong_secret(make_verifier: Callable[..., ExternalTokenVerifier]) -> None:
    verifier = make_verifier(hs256_secret=HS_SECRET)
    token = jwt.encode(claims(), "another-secret-that-is-long-enough-0123456789", algorithm="HS256")
    with pytest.raises(ExternalTokenInvalid, match=r"^invalid signature$"):
        await verifier.verify(token)


async def test_hs256_claims_are_checked_too(make_verifier: Callable[..., ExternalTokenVerifier]) -> None:
    verifier = make_verifier(hs256_secret=HS_SECRET)
    with pytest.raises(ExternalTokenInvalid, match=r"^issuer mismatch$"):
        await verifier.verify(jwt.encode(claims(iss="https://other"), HS_SECRET, algorithm="HS256"))


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
@pytest.mark.parametrize(
    ("secret", "reason"), [(None, "algorithm not allowed"), (HS_SECRET, "invalid signature")]
)
async def test_public_key_used_as_hmac_secret_is_rejected(
    alg: str,
    secret: str | None,
    reason: str,
    keys: dict[str, SigningKey],
    make_verifier: Callable[..., ExternalTokenVerifier],
) -> None:
    key = keys[alg]
    verifier = make_verifier(hs256_secret=secret)
    await verifier.verify(sign(key))  # the public key is cached, as an attacker would hope
    forged = forge({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(), key.public_pem())
    with pytest.raises(ExternalTokenInvalid, match=rf"^{reason}$"):
        await verifier.verify(forged)


def test_short_hs256_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="hs256_secret"):
        ExternalTokenVerifier(jwks_url=None, issuer=ISSUER, audience=AUDIENCE, hs256_secret="short")


# --- JWKS fetching and caching --------------------------------------------------------------------


async def test_keys_are_cached(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier, clock: FakeClock
) -> None:
    for _ in range(5):
        for key in keys.values():
            await verifier.verify(sign(key))
    clock.advance(CACHE_S - 1)
    await verifier.verify(sign(keys["ES256"]))
    assert server.requests == 1


async def test_key_rotation_new_kid_triggers_refetch(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier, clock: FakeClock
) -> None:
    await verifier.verify(sign(keys["ES256"]))
    rotated = _new_key("ES256", kid="rotated-2")
    server.keys.append(rotated.jwk)
    clock.advance(6)
    assert (await verifier.verify(sign(rotated))).subject == "3f1c0d9e-user"
    assert server.requests == 2
    await verifier.verify(sign(keys["ES256"]))
    assert server.requests == 2


async def test_cache_expires_and_removed_keys_stop_verifying(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier, clock: FakeClock
) -> None:
    await verifier.verify(sign(keys["RS256"]))
    server.keys = [keys["ES256"].jwk]
    clock.advance(CACHE_S + 1)
    with pytest.raises(ExternalTokenInvalid, match=r"^unknown signing key$"):
        await verifier.verify(sign(keys["RS256"]))
    assert server.requests == 2


async def test_cache_lifetime_is_capped_at_600_seconds(
    server: JwksServer,
    keys: dict[str, SigningKey],
    make_verifier: Callable[..., ExternalTokenVerifier],
    clock: FakeClock,
) -> None:
    verifier = make_verifier(cache_seconds=3600)
    await verifier.verify(sign(keys["ES256"]))
    clock.advance(601)
    await verifier.verify(sign(keys["ES256"]))
    assert server.requests == 2


def _break(server: JwksServer, mode: str) -> None:
    if mode == "500":
        server.status = 500
    elif mode == "503-html":
        server.status, server.body = 503, b"<html>down</html>"
    elif mode == "bad-json":
        server.body = b"{not json"
    elif mode == "not-an-object":
        server.body = b"[1, 2, 3]"
    elif mode == "no-keys":
        server.keys = []
    elif mode == "redirect":
        server.status = 302
    else:
        server.stop()


FAILURES = ["500", "503-html", "bad-json", "not-an-object", "no-keys", "redirect", "stopped"]


@pytest.mark.parametrize("mode", FAILURES)
async def test_failed_refetch_keeps_cached_keys(
    mode: str,
    server: JwksServer,
    keys: dict[str, SigningKey],
    verifier: ExternalTokenVerifier,
    clock: FakeClock,
) -> None:
    await verifier.verify(sign(keys["ES256"]))
    _break(server, mode)
    clock.advance(CACHE_S + 1)
    # Expired cache: the refetch fails, the known kid keeps verifying.
    assert (await verifier.verify(sign(keys["ES256"]))).subject == "3f1c0d9e-user"
    if mode != "stopped":
        assert server.requests == 2
    clock.advance(6)
    # Unknown kid: another failed refetch must not turn into "keys unavailable".
    with pytest.raises(ExternalTokenInvalid, match=r"^unknown signing key$"):
        await verifier.verify(sign(_new_key("ES256", kid="never-seen")))
    assert (await verifier.verify(sign(keys["EdDSA"]))).subject == "3f1c0d9e-user"


@pytest.mark.parametrize("mode", FAILURES)
async def test_no_keys_ever_is_unavailable_then_recovers(
    mode: str,
    server: JwksServer,
    keys: dict[str, SigningKey],
    verifier: ExternalTokenVerifier,
    clock: FakeClock,
) -> None:
    _break(server, mode)
    with pytest.raises(ExternalKeysUnavailable):
        await verifier.verify(sign(keys["ES256"]))
    # Straight away again: answered from memory, the endpoint is not hammered.
    with pytest.raises(ExternalKeysUnavailable):
        await verifier.verify(sign(keys["ES256"]))
    if mode == "stopped":
        return
    assert server.requests == 1
    server.status, server.body, server.keys = 200, None, [k.jwk for k in keys.values()]
    clock.advance(6)
    assert (await verifier.verify(sign(keys["ES256"]))).subject == "3f1c0d9e-user"
    assert server.requests == 2


async def test_fetch_timeout_gives_unavailable(
    server: JwksServer, keys: dict[str, SigningKey], make_verifier: Callable[..., ExternalTokenVerifier]
) -> None:
    server.gate = threading.Event()
    verifier = make_verifier(timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(ExternalKeysUnavailable):
        await verifier.verify(sign(keys["ES256"]))
    assert time.monotonic() - started < 3


async def test_burst_of_unknown_kids_fetches_at_most_once(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier, clock: FakeClock
) -> None:
    await verifier.verify(sign(keys["ES256"]))
    clock.advance(6)
    tokens = [sign(keys["ES256"], kid=f"bogus-{secrets.token_hex(8)}") for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, ExternalTokenInvalid) and str(r) == "unknown signing key" for r in results)
    assert server.requests <= 2
    # And sequentially, inside the cooldown: no fetch at all.
    for token in tokens:
        with pytest.raises(ExternalTokenInvalid):
            await verifier.verify(token)
    assert server.requests <= 2


async def test_cold_burst_of_unknown_kids_fetches_once(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    tokens = [sign(keys["ES256"], kid=f"bogus-{secrets.token_hex(8)}") for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, ExternalTokenInvalid) for r in results)
    assert server.requests == 1


async def test_concurrent_cold_verifications_share_one_fetch(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    tokens = [sign(key, sub=f"user-{i}") for i in range(7) for key in keys.values()]
    identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert sorted(i.subject for i in identities) == sorted(f"user-{i}" for i in range(7) for _ in keys)
    assert server.requests == 1


async def test_known_kid_does_not_wait_for_a_slow_refresh(
    server: JwksServer,
    keys: dict[str, SigningKey],
    make_verifier: Callable[..., ExternalTokenVerifier],
    clock: FakeClock,
) -> None:
    verifier = make_verifier(timeout_s=10)
    await verifier.verify(sign(keys["ES256"]))
    server.gate = threading.Event()
    clock.advance(CACHE_S + 1)
    refreshing = asyncio.create_task(verifier.verify(sign(keys["ES256"], sub="first")))
    for _ in range(200):
        if server.requests == 2:
            break
        await asyncio.sleep(0.01)
    assert server.requests == 2
    identity = await asyncio.wait_for(verifier.verify(sign(keys["RS256"], sub="second")), timeout=2)
    assert identity.subject == "second"
    server.gate.set()
    assert (await refreshing).subject == "first"


# --- issuer routing and configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "....",
        "\x00\xff",
        f"{_b64(b'{}')}.{_b64(b'[1,2]')}.sig",
        f"{_b64(b'{}')}.{_b64(b'not json')}.sig",
        forge({"alg": "none"}, {"iss": ["https://project.supabase.co/auth/v1"]}, None),
    ],
)
def test_handles_is_false_for_garbage(token: str, verifier: ExternalTokenVerifier) -> None:
    assert verifier.handles(token) is False


def test_handles_routes_by_issuer(
    server: JwksServer, keys: dict[str, SigningKey], verifier: ExternalTokenVerifier
) -> None:
    assert verifier.handles(sign(keys["ES256"])) is True
    assert verifier.handles(sign(keys["ES256"], iss="https://other.example")) is False
    assert verifier.handles(sign(keys["ES256"], iss=None)) is False
    assert server.requests == 0


@pytest.mark.parametrize(
    "config",
    [
        {"jwks_url": "http://127.0.0.1:9/jwks", "issuer": None, "audience": AUDIENCE},
        {"jwks_url": "http://127.0.0.1:9/jwks", "issuer": "", "audience": AUDIENCE},
        {"jwks_url": None, "issuer": ISSUER, "audience": AUDIENCE},
    ],
)
async def test_unconfigured_verifier_handles_and_accepts_nothing(
    config: dict[str, Any], keys: dict[str, SigningKey]
) -> None:
    verifier = ExternalTokenVerifier(**config)
    assert verifier.configured is False
    assert verifier.handles(sign(keys["ES256"])) is False
    assert verifier.handles(sign(keys["ES256"], iss=None)) is False
    with pytest.raises(ExternalTokenInvalid):
        await verifier.verify(sign(keys["ES256"]))


def test_jwks_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="scheme"):
        ExternalTokenVerifier(jwks_url="file:///etc/passwd", issuer=ISSUER, audience=AUDIENCE)
