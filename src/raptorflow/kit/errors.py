"""One error base and its RFC 9457 problem+json rendering."""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://raptorflow.dev/problems/"

_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def title_for(status: int) -> str:
    """The standard reason phrase of an HTTP status."""
    return _STATUS_TITLES.get(status, "Error")


def slug_for(status: int) -> str:
    """A stable problem-type slug for a bare status."""
    return title_for(status).lower().replace(" ", "-")


class RaptorFlowError(Exception):
    """A failure the client should see as a problem document."""

    status: int = 400
    title: str = "Bad Request"
    type_slug: str | None = None
    # True when the work done before the error must still be committed (e.g. an audit entry of a
    # failed sign-in, or the revocation that follows a stolen refresh token).
    keep_changes: bool = False

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def type_uri(self) -> str:
        """The problem's `type` URI."""
        return PROBLEM_BASE + (self.type_slug or slug_for(self.status))


class NotFound(RaptorFlowError):
    """Nothing here (or nothing you may know exists)."""

    status = 404
    title = "Not Found"

    def __init__(self, detail: str = "The resource does not exist.") -> None:
        super().__init__(detail)


class UnknownReference(RaptorFlowError):
    """A field names an object the org does not have: 404 as for an id in the path, naming the field."""

    status = 404
    title = "Not Found"

    def __init__(self, field: str, kind: str) -> None:
        message = f"no such {kind} in this organization"
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class Conflict(RaptorFlowError):
    """The request conflicts with the current state."""

    status = 409
    title = "Conflict"


class Forbidden(RaptorFlowError):
    """Authenticated, but not allowed."""

    status = 403
    title = "Forbidden"


class Unauthorized(RaptorFlowError):
    """No valid credentials."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str = "Authentication is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class BadRequest(RaptorFlowError):
    """Malformed request outside the JSON body (headers, parameters)."""

    status = 400
    title = "Bad Request"


class InvalidParameter(BadRequest):
    """A query parameter or header that cannot be read (400), naming it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}", errors=[{"field": name, "message": message}])


class InvalidInput(RaptorFlowError):
    """Input that is well-formed but breaks a rule, naming the field."""

    status = 422
    title = "Unprocessable Content"
    type_slug = "validation-error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class ServiceUnavailable(RaptorFlowError):
    """A dependency is down."""

    status = 503
    title = "Service Unavailable"


def problem_body(
    *,
    status: int,
    title: str,
    detail: str,
    request_id: str | None,
    type_uri: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object of a problem document."""
    body: dict[str, Any] = {
        "type": type_uri or PROBLEM_BASE + slug_for(status),
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return body
