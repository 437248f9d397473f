"""Checks of arguments at the edge: wrong type, shape or size is refused before any work."""

from __future__ import annotations

from ._domain import Role
from ._errors import InvalidInput
from ._settings import Settings

MAX_EMAIL = 254
MAX_NAME = 200
MAX_ID = 64
MAX_TOKEN = 128
MAX_CLIENT = 256


def utf8(value: str) -> bool:
    """Whether ``value`` encodes to UTF-8, as storing and hashing need (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: str) -> bool:
    return value.isprintable()


def text(value: object, what: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string", reason=f"invalid_{what}")
    if not value.strip() or len(value) > max_len or not _printable(value):
        raise InvalidInput(
            f"{what} must be 1 to {max_len} printable characters", reason=f"invalid_{what}"
        )
    return value


def email(value: object) -> str:
    address = text(value, "email", MAX_EMAIL).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise InvalidInput("email must look like name@example.org", reason="invalid_email")
    return address


def identifier(value: object, what: str) -> str:
    return text(value, what, MAX_ID)


def role(value: object) -> Role:
    try:
        if not isinstance(value, str):
            raise ValueError
        return Role(value)
    except ValueError:
        raise InvalidInput(
            "role must be one of owner, manager, member", reason="invalid_role"
        ) from None


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False", reason=f"invalid_{what}")
    return value


def client(value: object) -> str | None:
    if value is None:
        return None
    return text(value, "client", MAX_CLIENT)


def password(value: object, settings: Settings, *, new: bool) -> str:
    """A password to hash or verify: a string of valid Unicode, within the size limits."""
    if not isinstance(value, str):
        raise InvalidInput("password must be a string", reason="invalid_password")
    if len(value) > settings.max_password_bytes or (
        len(value.encode("utf-8", "surrogatepass")) > settings.max_password_bytes
    ):
        raise InvalidInput("password is too long", reason="password_too_long")
    if not utf8(value):
        raise InvalidInput("password must be valid Unicode text", reason="invalid_password")
    if new and len(value) < settings.min_password_length:
        raise InvalidInput("password is too short", reason="password_too_short")
    return value


def count(value: object, what: str) -> int:
    """A page size or batch size: an int from 1 to 10,000."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
        raise InvalidInput(f"{what} must be an int from 1 to 10000", reason=f"invalid_{what}")
    return value
