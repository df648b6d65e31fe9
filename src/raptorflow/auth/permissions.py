"""Roles, permissions and the one matrix that maps them (documented in the README)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Roles in an organization, weakest first."""

    viewer = "viewer"
    editor = "editor"
    admin = "admin"
    owner = "owner"

    @property
    def rank(self) -> int:
        """Position in viewer < editor < admin < owner."""
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        """True when this role includes everything `other` may do."""
        return self.rank >= other.rank


_RANK = {Role.viewer: 0, Role.editor: 1, Role.admin: 2, Role.owner: 3}


class Permission(StrEnum):
    """Everything a route can require inside an organization."""

    org_read = "org:read"
    org_update = "org:update"
    org_delete = "org:delete"
    members_read = "members:read"
    members_manage = "members:manage"
    ownership_transfer = "ownership:transfer"
    workspaces_read = "workspaces:read"
    workspaces_write = "workspaces:write"
    api_keys_manage = "api-keys:manage"
    audit_read = "audit:read"
    intel_read = "intel:read"
    intel_write = "intel:write"
    intel_admin = "intel:admin"
    billing_read = "billing:read"
    billing_manage = "billing:manage"
    jobs_read = "jobs:read"
    jobs_manage = "jobs:manage"
    webhooks_manage = "webhooks:manage"


# The minimum role for each permission. One table, read by `require()` and by the README.
MATRIX: dict[Permission, Role] = {
    Permission.org_read: Role.viewer,
    Permission.members_read: Role.viewer,
    Permission.workspaces_read: Role.viewer,
    Permission.intel_read: Role.viewer,
    Permission.intel_write: Role.editor,
    Permission.workspaces_write: Role.admin,
    Permission.org_update: Role.admin,
    Permission.members_manage: Role.admin,
    Permission.api_keys_manage: Role.admin,
    Permission.audit_read: Role.admin,
    Permission.intel_admin: Role.admin,
    Permission.billing_read: Role.admin,
    Permission.billing_manage: Role.admin,
    Permission.jobs_read: Role.viewer,
    Permission.jobs_manage: Role.editor,
    Permission.webhooks_manage: Role.admin,
    Permission.org_delete: Role.owner,
    Permission.ownership_transfer: Role.owner,
}


def allows(role: Role, permission: Permission) -> bool:
    """True when `role` holds `permission`."""
    return role.at_least(MATRIX[permission])
