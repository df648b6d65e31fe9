"""Built-in identity: registration, sign-in with throttling, refresh-token rotation, sign-out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.accounts import invitations
from raptorflow.audit import service as audit
from raptorflow.audit.service import AuditContext
from raptorflow.auth.oidc import ExternalIdentity
from raptorflow.auth.passwords import hash_password, policy_violation, verify_password
from raptorflow.auth.repository import IdentityRepository
from raptorflow.auth.schemas import TokenPair
from raptorflow.auth.tokens import TokenIssuer
from raptorflow.config import Registration, Settings
from raptorflow.kit.crypto import random_token, sha256_hex
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import Conflict, Forbidden, InvalidInput, RaptorFlowError, Unauthorized
from raptorflow.kit.ratelimit import Limiter
from raptorflow.models import AuthSession, RefreshToken, User

ACCOUNT_FAILURES = "5/15 minutes"
IP_FAILURES = "30/15 minutes"


class TooManySignInAttempts(RaptorFlowError):
    """Sign-in is paused for this account or address."""

    status = 429
    title = "Too Many Requests"
    type_slug = "too-many-sign-in-attempts"


class SignInFailed(Unauthorized):
    """Wrong email or password (the failure is audited, so the transaction is kept)."""

    keep_changes = True


def normalize_email(email: str) -> str:
    """Lower-cased, trimmed email (the unique key of built-in accounts)."""
    return email.strip().lower()


@dataclass(frozen=True)
class SignInResult:
    """Tokens and the session they belong to."""

    tokens: TokenPair
    user_id: uuid.UUID
    session_id: uuid.UUID


class AuthService:
    """Rules of built-in identity; never commits (the request owns the transaction)."""

    def __init__(
        self, session: AsyncSession, settings: Settings, issuer: TokenIssuer, limiter: Limiter
    ) -> None:
        self.session = session
        self.settings = settings
        self.issuer = issuer
        self.limiter = limiter
        self.repo = IdentityRepository(session)

    async def register(self, email: str, password: str, name: str, ctx: AuditContext) -> User:
        """Create a built-in account (subject to the registration mode and the password policy)."""
        email = normalize_email(email)
        if self.settings.registration == Registration.closed:
            raise Forbidden("Registration is closed on this server; ask an administrator for an account.")
        if self.settings.registration == Registration.invite and not await invitations.pending_for(
            self.session, email
        ):
            raise Forbidden("Registration is by invitation only and this email has no pending invitation.")
        reason = policy_violation(password, email)
        if reason:
            raise InvalidInput("password", reason)
        if await self.repo.user_by_email(email):
            raise Conflict("An account with this email already exists; sign in instead.")
        user = User(id=new_id(), email=email, name=name.strip(), password_hash=hash_password(password))
        await self.repo.add(user)
        await audit.record(
            self.session, _as(ctx, user.id), "user.register", target_type="user", target_id=user.id
        )
        await invitations.accept_pending(self.session, user, _as(ctx, user.id))
        return user

    async def _throttle_check(self, email: str, ip: str | None) -> None:
        account = self.limiter.item(ACCOUNT_FAILURES)
        per_ip = self.limiter.item(IP_FAILURES)
        for item, key in ((account, "acct:" + sha256_hex(email)), (per_ip, "ip:" + (ip or "unknown"))):
            state = await self.limiter.peek(item, "signin-fail", key)
            if not state.allowed:
                raise TooManySignInAttempts(
                    "Too many failed sign-in attempts; try again later.",
                    headers={"Retry-After": str(max(1, state.reset_after_s))},
                )

    async def sign_in(self, email: str, password: str, ctx: AuditContext) -> SignInResult:
        """Check a password and open a session; failures are slowed per account and per address."""
        email = normalize_email(email)
        await self._throttle_check(email, ctx.ip)
        user = await self.repo.user_by_email(email)
        if not verify_password(user.password_hash if user else None, password) or user is None:
            await self.limiter.hit(
                self.limiter.item(ACCOUNT_FAILURES), "signin-fail", "acct:" + sha256_hex(email)
            )
            await self.limiter.hit(
                self.limiter.item(IP_FAILURES), "signin-fail", "ip:" + (ctx.ip or "unknown")
            )
            await audit.record(
                self.session,
                ctx,
                "auth.sign_in_failed",
                target_type="user" if user else None,
                target_id=user.id if user else None,
            )
            raise SignInFailed("Incorrect email or password.")
        await self.limiter.clear(
            self.limiter.item(ACCOUNT_FAILURES), "signin-fail", "acct:" + sha256_hex(email)
        )
        result = await self.open_session(user, _as(ctx, user.id))
        await audit.record(
            self.session,
            _as(ctx, user.id),
            "auth.sign_in",
            target_type="user",
            target_id=user.id,
            details={"session_id": str(result.session_id)},
        )
        await invitations.accept_pending(self.session, user, _as(ctx, user.id))
        return result

    async def open_session(self, user: User, ctx: AuditContext) -> SignInResult:
        """Create a session with its first refresh token and an access token."""
        now = utcnow()
        auth_session = AuthSession(
            id=new_id(),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_s),
            ip=ctx.ip,
            user_agent=(ctx.user_agent or "")[:500] or None,
        )
        await self.repo.add(auth_session)
        user.last_login_at = now
        refresh = await self._new_refresh(auth_session.id)
        access, ttl = await self.issuer.issue(user.id, auth_session.id)
        return SignInResult(
            TokenPair(access_token=access, refresh_token=refresh, expires_in=ttl), user.id, auth_session.id
        )

    async def _new_refresh(self, session_id: uuid.UUID) -> str:
        token = "rft_" + random_token(32)
        await self.repo.add(
            RefreshToken(
                id=new_id(), session_id=session_id, token_hash=sha256_hex(token), created_at=utcnow()
            )
        )
        return token

    async def refresh(self, token: str, ctx: AuditContext) -> SignInResult:
        """Rotate a refresh token; a token used twice revokes its whole session (family)."""
        now = utcnow()
        row = await self.repo.refresh_token(sha256_hex(token))
        if row is None:
            raise Unauthorized("The refresh token is not valid.")
        auth_session = await self.repo.auth_session(row.session_id)
        if auth_session is None or auth_session.revoked_at is not None or auth_session.expires_at <= now:
            raise Unauthorized("The session has ended; sign in again.")
        if row.used_at is not None:
            auth_session.revoked_at = now
            auth_session.revoked_reason = "refresh-token-reuse"
            await audit.record(
                self.session,
                _as(ctx, auth_session.user_id),
                "auth.refresh_reuse",
                target_type="session",
                target_id=auth_session.id,
            )
            raise ReuseDetected("This refresh token was already used; the session has been revoked.")
        user = await self.repo.user(auth_session.user_id)
        if user is None:
            raise Unauthorized("The session has ended; sign in again.")
        row.used_at = now
        auth_session.last_used_at = now
        new_refresh = await self._new_refresh(auth_session.id)
        access, ttl = await self.issuer.issue(user.id, auth_session.id)
        return SignInResult(
            TokenPair(access_token=access, refresh_token=new_refresh, expires_in=ttl),
            user.id,
            auth_session.id,
        )

    async def logout(self, token: str, ctx: AuditContext) -> None:
        """End the session a refresh token belongs to (unknown tokens are ignored: logout is idempotent)."""
        row = await self.repo.refresh_token(sha256_hex(token))
        if row is None:
            return
        auth_session = await self.repo.auth_session(row.session_id)
        if auth_session and auth_session.revoked_at is None:
            auth_session.revoked_at = utcnow()
            auth_session.revoked_reason = "logout"
            await audit.record(
                self.session,
                _as(ctx, auth_session.user_id),
                "auth.sign_out",
                target_type="session",
                target_id=auth_session.id,
            )

    async def provision_external(self, identity: ExternalIdentity, ctx: AuditContext) -> User:
        """The local user of an external identity, created on its first valid token."""
        user = await self.repo.user_by_external(identity.issuer, identity.subject)
        if user is not None:
            if user.deleted_at is not None:
                raise Unauthorized("This account has been deleted.")
            return user
        email = identity.email
        if email and await self.repo.user_by_email(email):
            # Never merge into an existing account on an unverified claim: that would be a takeover.
            email = None
        user = User(
            id=new_id(),
            email=email,
            name=(identity.email or "").split("@", 1)[0],
            external_issuer=identity.issuer,
            external_subject=identity.subject,
            is_anonymous=identity.is_anonymous,
        )
        await self.repo.add(user)
        await audit.record(
            self.session,
            _as(ctx, user.id),
            "user.provision",
            target_type="user",
            target_id=user.id,
            details={"issuer": identity.issuer},
        )
        if email:
            await invitations.accept_pending(self.session, user, _as(ctx, user.id))
        return user


class ReuseDetected(Unauthorized):
    """A rotated refresh token came back: treated as theft (the revocation is kept)."""

    keep_changes = True


def _as(ctx: AuditContext, user_id: uuid.UUID) -> AuditContext:
    return AuditContext(
        actor_user_id=user_id,
        actor_api_key_id=ctx.actor_api_key_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        request_id=ctx.request_id,
    )
