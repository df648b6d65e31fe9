"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from raptorflow.auth import passwords
from raptorflow.kit.types import NOT_BLANK_NO_NUL, has_nul


def _no_nul(value: str) -> str:
    if has_nul(value):
        raise ValueError("must not contain a NUL character (U+0000)")
    return value


class RegisterIn(BaseModel):
    """A new built-in account."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320)
    # The length policy (auth/passwords.py) as the document shows it; the policy says what is wrong.
    password: str = Field(
        max_length=1024,
        json_schema_extra={"minLength": passwords.MIN_LENGTH, "maxLength": passwords.MAX_LENGTH},
    )
    # Stripped first: a name of spaces only is no name.
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        Field(json_schema_extra={"pattern": NOT_BLANK_NO_NUL}),
        AfterValidator(_no_nul),
    ]


class TokenPair(BaseModel):
    """Tokens returned by sign-in and refresh."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class RefreshIn(BaseModel):
    """A refresh token to rotate or revoke."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=10, max_length=200)


class JWKS(BaseModel):
    """A JSON Web Key Set."""

    keys: list[dict[str, str]]
