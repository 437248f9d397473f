"""Password hashes made elsewhere (R90, R91): recognised at import, verified at login.

Loaded only when a user is imported or an imported hash is verified, so that neither
``import twostep`` nor a login against twostep's own Argon2id hashes pays for it. The
formats are Django's PBKDF2 (``pbkdf2_sha256$``, ``pbkdf2_sha1$``), bcrypt (``$2a$``,
``$2b$``, ``$2y$``, and Django's ``bcrypt$`` and ``bcrypt_sha256$``) and Argon2 (with or
without Django's ``argon2$``). Nothing is computed by hand: PBKDF2 is the standard
library's, bcrypt is pyca's ``bcrypt`` (the ``twostep[import]`` extra), Argon2 is
argon2-cffi's; every comparison is in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import NoReturn

from argon2.exceptions import InvalidHashError

from ._errors import ConfigurationError, InvalidInput

__all__ = ["BCRYPT_EXTRA", "MAX_HASH_LENGTH", "MAX_PBKDF2_ITERATIONS", "normalize", "verify"]

#: The extra that installs what bcrypt hashes need.
BCRYPT_EXTRA = "twostep[import]"
#: Longer than any hash of the formats above; a longer value is refused before parsing.
MAX_HASH_LENGTH = 512
#: A PBKDF2 hash of more iterations would hold a login for seconds: refused at import.
MAX_PBKDF2_ITERATIONS = 10_000_000

_PBKDF2 = {"pbkdf2_sha256": ("sha256", 32), "pbkdf2_sha1": ("sha1", 20)}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_PREFIXES = ("bcrypt_sha256$", "bcrypt$")
_SALT = re.compile(r"[!-#%-~]{1,128}")  # printable ASCII but "$", as Django's salts are
_DIGITS = re.compile(r"[1-9][0-9]{0,9}")
_BCRYPT_MAX_BYTES = 72  # bcrypt reads no further: the libraries that made these hashes cut here


def normalize(password_hash: object) -> str:
    """The hash to store for an imported user, or :class:`InvalidInput` (R90).

    Django's ``argon2$`` prefix is dropped: what is left is argon2-cffi's own format.
    A bcrypt hash needs the ``bcrypt`` package already (:class:`ConfigurationError`).
    """
    if (
        not isinstance(password_hash, str)
        or len(password_hash) > MAX_HASH_LENGTH
        or not password_hash.isascii()
        or not password_hash.isprintable()
        or any(c.isspace() for c in password_hash)
    ):
        return _refuse()
    if password_hash.startswith("argon2$argon2"):
        password_hash = password_hash.removeprefix("argon2")
    if password_hash.startswith("$argon2"):
        return _argon2(password_hash)
    if password_hash.startswith("pbkdf2_"):
        _pbkdf2(password_hash)
        return password_hash
    if _BCRYPT.fullmatch(_bcrypt_part(password_hash)):
        _bcrypt_checkpw(b"", b"")  # refused now rather than at the login: the extra is missing
        return password_hash
    return _refuse()


def verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches a PBKDF2 or bcrypt hash that :func:`normalize` kept."""
    given = password.encode("utf-8")
    if stored.startswith("pbkdf2_"):
        name, iterations, salt, expected = _pbkdf2(stored)
        derived = hashlib.pbkdf2_hmac(name, given, salt, iterations, dklen=len(expected))
        return hmac.compare_digest(derived, expected)
    if stored.startswith("bcrypt_sha256$"):
        # Django's: bcrypt of the hex SHA-256 of the password, so that no byte is cut off.
        given = hashlib.sha256(given).hexdigest().encode("ascii")
    return _bcrypt_checkpw(given[:_BCRYPT_MAX_BYTES], _bcrypt_part(stored).encode("ascii"))


def _refuse() -> NoReturn:
    msg = (
        "password_hash is not a supported hash: Django's pbkdf2_sha256 or pbkdf2_sha1, "
        "bcrypt ($2a$, $2b$, $2y$, bcrypt$, bcrypt_sha256$) or Argon2 (argon2$ or $argon2)"
    )
    raise InvalidInput(msg, reason="invalid_password_hash")


def _argon2(password_hash: str) -> str:
    from argon2 import extract_parameters

    try:
        extract_parameters(password_hash)
    except (InvalidHashError, ValueError):
        return _refuse()
    return password_hash


def _pbkdf2(password_hash: str) -> tuple[str, int, bytes, bytes]:
    """The digest name, iterations, salt and expected key of a Django PBKDF2 hash."""
    parts = password_hash.split("$")
    if len(parts) != 4 or parts[0] not in _PBKDF2:  # noqa: PLR2004 (algorithm$n$salt$hash)
        _refuse()
    algorithm, iterations, salt, encoded = parts
    name, size = _PBKDF2[algorithm]
    if not _DIGITS.fullmatch(iterations) or not _SALT.fullmatch(salt):
        _refuse()
    rounds = int(iterations)
    if rounds > MAX_PBKDF2_ITERATIONS:
        msg = f"a PBKDF2 hash may have at most {MAX_PBKDF2_ITERATIONS} iterations"
        raise InvalidInput(msg, reason="invalid_password_hash")
    try:
        expected = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        _refuse()
    if len(expected) != size:
        _refuse()
    return name, rounds, salt.encode("ascii"), expected


def _bcrypt_part(password_hash: str) -> str:
    """The bcrypt hash itself, without Django's prefix."""
    for prefix in _BCRYPT_PREFIXES:
        if password_hash.startswith(prefix):
            return password_hash.removeprefix(prefix)
    return password_hash


def _bcrypt_checkpw(password: bytes, hashed: bytes) -> bool:
    """Bcrypt (pyca), if installed (``twostep[import]``); empty arguments only check that."""
    try:
        import bcrypt
    except ImportError:
        msg = f"bcrypt password hashes need the bcrypt package: pip install '{BCRYPT_EXTRA}'"
        raise ConfigurationError(msg) from None
    return bool(hashed) and bcrypt.checkpw(password, hashed)
