"""Who is calling: a user (built-in or external token) or an API key, and their org context."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from raptorflow.audit.service import AuditContext
from raptorflow.auth.permissions import Role


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    key_org_id: uuid.UUID | None = None
    key_role: Role | None = None
    is_anonymous: bool = False
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    @property
    def is_api_key(self) -> bool:
        """True for machine callers."""
        return self.api_key_id is not None

    def audit(self) -> AuditContext:
        """The audit context of this caller."""
        return AuditContext(
            actor_user_id=self.user_id,
            actor_api_key_id=self.api_key_id,
            ip=self.ip,
            user_agent=self.user_agent,
            request_id=self.request_id,
        )


@dataclass(frozen=True)
class OrgContext:
    """A principal acting inside one organization with a role."""

    principal: Principal
    org_id: uuid.UUID
    role: Role

    def audit(self) -> AuditContext:
        """The audit context of this caller."""
        return self.principal.audit()
