"""Checks of arguments at the edge: wrong type, shape or size is refused before any work."""

from __future__ import annotations

from ._domain import RequiredOf, Role
from ._errors import InvalidInput
from ._settings import Settings

MAX_EMAIL = 254
MAX_NAME = 200
MAX_ID = 64
MAX_TOKEN = 128
MAX_CLIENT = 256
MAX_COUNT = 10_000
_ROLES = frozenset(member.value for member in Role)
_REQUIRED_OF = frozenset(member.value for member in RequiredOf)


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
        msg = f"{what} must be a string"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    if not value.strip() or len(value) > max_len or not _printable(value):
        msg = f"{what} must be 1 to {max_len} printable characters"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    return value


def email(value: object) -> str:
    address = text(value, "email", MAX_EMAIL).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        msg = "email must look like name@example.org"
        raise InvalidInput(msg, reason="invalid_email")
    return address


def identifier(value: object, what: str) -> str:
    return text(value, what, MAX_ID)


def role(value: object) -> Role:
    if isinstance(value, str) and value in _ROLES:
        return Role(value)
    msg = "role must be one of owner, manager, member"
    raise InvalidInput(msg, reason="invalid_role")


def required_of(value: object) -> RequiredOf:
    if isinstance(value, str) and value in _REQUIRED_OF:
        return RequiredOf(value)
    msg = "of must be one of everyone, admins"
    raise InvalidInput(msg, reason="invalid_of")


def token(value: object, what: str) -> str:
    """A token the host got from ``twostep`` (e.g. a cookie): ASCII, bounded; shape only."""
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN or not value.isascii():
        msg = f"{what} must be a token given by twostep"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    return value


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        msg = f"{what} must be True or False"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    return value


def client(value: object) -> str | None:
    if value is None:
        return None
    return text(value, "client", MAX_CLIENT)


def password(value: object, settings: Settings, *, new: bool) -> str:
    """A password to hash or verify: a string of valid Unicode, within the size limits."""
    if not isinstance(value, str):
        msg = "password must be a string"
        raise InvalidInput(msg, reason="invalid_password")
    if len(value) > settings.max_password_bytes or (
        len(value.encode("utf-8", "surrogatepass")) > settings.max_password_bytes
    ):
        msg = "password is too long"
        raise InvalidInput(msg, reason="password_too_long")
    if not utf8(value):
        msg = "password must be valid Unicode text"
        raise InvalidInput(msg, reason="invalid_password")
    if new and len(value) < settings.min_password_length:
        msg = "password is too short"
        raise InvalidInput(msg, reason="password_too_short")
    return value


def count(value: object, what: str) -> int:
    """A page size or batch size: an int from 1 to 10,000."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
        msg = f"{what} must be an int from 1 to {MAX_COUNT}"
        raise InvalidInput(msg, reason=f"invalid_{what}")
    return value


def login_email(value: object) -> str:
    """An email as typed at a login or a reset: any text an email could be, kept as is.

    Looser than :func:`email` (an address that was never valid simply matches no user),
    but never empty, huge, or with a NUL byte or another control character (R73).
    """
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_EMAIL
        or not utf8(value)
        or not value.isprintable()
    ):
        msg = "email must be a non-empty string of printable characters"
        raise InvalidInput(msg, reason="invalid_email")
    return value
