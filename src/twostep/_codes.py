"""The code primitives: TOTP checking with a drift window, and backup codes.

Codes typed by people are normalised strictly: ASCII only, so that '١٢٣٤٥٦'
(Arabic-Indic digits, which ``str.isdigit`` accepts) is refused as malformed.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import struct
from datetime import datetime
from hashlib import sha1 as _sha1
from typing import NamedTuple

from argon2.low_level import Type, hash_secret_raw

from ._crypto import Cipher
from ._domain import BackupCodeSet
from ._errors import InvalidCode
from ._settings import Argon2Params, Settings

__all__ = [
    "BACKUP_ALPHABET",
    "CodeKind",
    "ParsedCode",
    "hash_backup_code",
    "make_backup_codes",
    "matching_step",
    "new_secret",
    "open_totp_key",
    "parse_code",
    "seal_totp_key",
    "secret_key",
]

#: Crockford's base32 alphabet: no i, l, o or u, so nothing reads as another symbol.
BACKUP_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
BACKUP_CODE_LENGTH = 10  # 10 symbols of 5 bits: 50 bits of entropy
_BACKUP_RE = re.compile(r"[0-9a-hjkmnp-tv-z]{10}")
_CROCKFORD_ALIASES = str.maketrans({"o": "0", "i": "1", "l": "1"})
#: Anything longer than this is not a code; refuse before doing any work.
MAX_CODE_CHARS = 64


class CodeKind:
    OTP = "otp"
    BACKUP = "backup"


class ParsedCode(NamedTuple):
    """A typed code, normalised: an OTP's digits or a backup code's symbols.

    A named tuple, not a dataclass: one is made on every code login.
    """

    kind: str
    value: str

    def __repr__(self) -> str:
        return f"ParsedCode(kind={self.kind!r}, value=<hidden>)"


def parse_code(code: object, digits: int) -> ParsedCode:
    """Classify a typed code as an OTP or a backup code, or refuse it as malformed.

    Surrounding whitespace is dropped, and spaces and hyphens inside are ignored
    (apps show "123 456", backup codes are printed "abcde-fghjk"). Any other
    character, or any non-ASCII one, makes the code malformed.
    """
    if not isinstance(code, str):
        msg = "the code must be a string"
        raise InvalidCode(msg, reason="malformed")
    if len(code) > MAX_CODE_CHARS or not code.isascii():
        msg = "the code is malformed"
        raise InvalidCode(msg, reason="malformed")
    compact = code.strip(" \t\r\n").replace(" ", "").replace("-", "").lower()
    if len(compact) == digits and compact.isdigit():  # isascii() above: only 0-9 pass
        return ParsedCode(CodeKind.OTP, compact)
    compact = compact.translate(_CROCKFORD_ALIASES)
    if _BACKUP_RE.fullmatch(compact):
        return ParsedCode(CodeKind.BACKUP, compact)
    msg = "the code is malformed"
    raise InvalidCode(msg, reason="malformed")


def new_secret(settings: Settings) -> str:
    """A fresh base32 TOTP secret of ``settings.secret_bytes`` random bytes, unpadded.

    Any size works: a size not a multiple of 5 ends in a partial base32 group, which
    :func:`secret_key` and authenticator apps decode to the same bytes.
    """
    return base64.b32encode(secrets.token_bytes(settings.secret_bytes)).decode().rstrip("=")


def time_step(now: datetime, period: int) -> int:
    return int(now.timestamp()) // period


def matching_step(secret: str | bytes, code: str, now: datetime, settings: Settings) -> int | None:
    """The time step within the drift window whose OTP equals ``code`` (R4), if any.

    Every step of the window is computed and compared in constant time, so the time
    taken does not say which step matched. When two steps give the same code, the
    latest wins, so that replay protection records the newest step.
    """
    # RFC 4226 HOTP over RFC 6238 time steps, as pyotp computes it, but with the key
    # decoded once and its HMAC pads hashed once: this is the hot path of every login.
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    inner_pad, outer_pad = _hmac_pads(key)
    inner_base, outer_base = _sha1(inner_pad), _sha1(outer_pad)  # noqa: S324 (RFC 6238)
    modulus = 10**settings.totp_digits
    current = time_step(now, settings.totp_period)
    expected = int(code).to_bytes(4, "big")  # at most 9 digits (Settings): 4 bytes hold it
    found: int | None = None
    first = max(0, current - settings.totp_drift)  # no step before the epoch
    for step in range(first, current + settings.totp_drift + 1):
        inner = inner_base.copy()
        inner.update(_STEP.pack(step))
        outer = outer_base.copy()
        outer.update(inner.digest())
        mac = outer.digest()
        value = (_WORD.unpack_from(mac, mac[19] & 0x0F)[0] & 0x7FFFFFFF) % modulus
        if hmac.compare_digest(value.to_bytes(4, "big"), expected):
            found = step
    return found


_STEP = struct.Struct(">Q")  # RFC 4226: the counter as 8 big-endian bytes
_WORD = struct.Struct(">I")  # RFC 4226 dynamic truncation: 4 bytes at the offset
_SHA1_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The inner and outer keys of HMAC-SHA1 (RFC 2104), so that each step is two hashes.

    ``hmac.digest`` sets up the same pads on every call; a TOTP check makes up to three
    calls with one key. Tests compare the result with ``hmac`` and the RFC 6238 vectors.
    """
    if len(key) > _SHA1_BLOCK:
        key = _sha1(key).digest()  # noqa: S324 (RFC 2104 hashes long keys)
    block = key.ljust(_SHA1_BLOCK, b"\0")
    return block.translate(_IPAD), block.translate(_OPAD)


_BASE32_TEXT = re.compile(r"[A-Za-z2-7]+")
# RFC 4648 base32 symbols to the digits int(..., 32) reads, so that a whole secret
# decodes in one C call (base64.b32decode is pure Python, several us per call).
_BASE32_AS_INT = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz",
    b"0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnop",
)


def secret_key(secret: str) -> bytes:
    """The bytes of a base32 secret (unpadded, any case), as pyotp decodes it."""
    if len(secret) % 8 == 0 and _BASE32_TEXT.fullmatch(secret):
        digits = secret.encode().translate(_BASE32_AS_INT)
        return int(digits, 32).to_bytes(len(secret) * 5 // 8, "big")
    padded = secret + "=" * (-len(secret) % 8)
    return base64.b32decode(padded, casefold=True)


def hash_backup_code(code: str, salt: bytes, params: Argon2Params) -> bytes:
    """The Argon2id digest of a normalised backup code under its set's salt."""
    return hash_secret_raw(
        code.encode(),
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )


def format_backup_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def make_backup_codes(count: int, params: Argon2Params) -> tuple[tuple[str, ...], BackupCodeSet]:
    """``count`` new codes as shown to the user once, and the set to store (hashed)."""
    salt = secrets.token_bytes(16)
    plain = tuple(
        "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
        for _ in range(count)
    )
    digests = tuple(hash_backup_code(code, salt, params) for code in plain)
    shown = tuple(format_backup_code(code) for code in plain)
    return shown, BackupCodeSet(salt=salt, digests=digests, used=(False,) * count)


#: Sealed TOTP secrets hold the raw key after this byte (earlier ones, the base32 text).
_RAW_KEY = b"\0"


def _sealing_context(user_id: str) -> bytes:
    # Binds a sealed secret to its user: a secret copied to another row will not open.
    return f"twostep:totp:{user_id}".encode()


def seal_totp_key(cipher: Cipher, user_id: str, key: bytes) -> str:
    """A TOTP key sealed for its user: the raw key after a zero byte."""
    return cipher.seal(_RAW_KEY + key, context=_sealing_context(user_id))


def open_totp_key(cipher: Cipher, user_id: str, sealed: str) -> bytes:
    """The TOTP key of a sealed secret: raw, or (sealed before) its base32 text."""
    plain = cipher.open(sealed, context=_sealing_context(user_id))
    if plain[:1] == _RAW_KEY:
        return plain[1:]
    return secret_key(plain.decode())  # base32 text never starts with a zero byte
