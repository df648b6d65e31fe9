"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when an account does not exist, so both paths cost the same time. Made on first
# use: hashing at import cost every process (each CLI command, each worker) a quarter of a second.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH  # computed once per process, with the configured cost
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("raptorflow-timing-equalizer")
    return _DUMMY_HASH


def configure(*, time_cost: int | None = None, memory_kib: int | None = None) -> None:
    """Set the argon2id cost for new hashes (existing hashes verify with their own parameters)."""
    global _hasher, _DUMMY_HASH  # one hasher per process, chosen at start-up
    defaults = PasswordHasher()
    _hasher = PasswordHasher(
        time_cost=time_cost or defaults.time_cost,
        memory_cost=memory_kib or defaults.memory_cost,
        parallelism=defaults.parallelism,
    )
    _DUMMY_HASH = None


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, spend the same time and say no."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def policy_violation(password: str, email: str | None) -> str | None:
    """Why a password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if email and password.strip().lower() == email.strip().lower():
        return "must not be the email address"
    if email and password.strip().lower() == email.split("@", 1)[0].lower():
        return "must not be the email's user name"
    return None
