"""Checks of arguments at the edge: wrong type, shape or size is refused before any work."""

from __future__ import annotations

from ._domain import Role
from ._errors import InvalidInput

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
