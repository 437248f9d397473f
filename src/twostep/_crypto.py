"""Secrets at rest: the ``Cipher`` port and its AES-GCM keyring.

Each sealed value names the key that sealed it (``v1.<key id>.<base64>``), so keys
rotate without downtime: new values use the current key, old ones keep opening
with the old keys until ``twostep rotate-key`` has re-sealed them.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from ._errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "AESGCMKeyring",
    "Cipher",
    "KEYS_ENV",
    "KEY_FILE_ENV",
    "key_file_for",
    "shown_key_id",
]

KEYS_ENV = "TWOSTEP_KEYS"
KEY_FILE_ENV = "TWOSTEP_KEY_FILE"
_VERSION = "v1"
_KEY_BYTES = 32  # AES-256
_DATED_ID_LENGTH = 19  # "k", 14 digits of UTC time, 4 hex digits


class Cipher(Protocol):
    """Authenticated encryption for secrets at rest."""

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        """Encrypt and authenticate ``plaintext``, bound to ``context``."""
        ...

    def open(self, sealed: str, *, context: bytes) -> bytes:
        """Decrypt a value made by :meth:`seal` with the same ``context``."""
        ...

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` is under the current key (else rotation re-seals it)."""
        ...


_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def key_file_for(database: str | os.PathLike[str]) -> str | None:
    """Where ``twostep init`` puts the key of a SQLite database: ``<database>.key``.

    ``None`` for a PostgreSQL DSN, whose key file is named by ``TWOSTEP_KEY_FILE``.
    """
    path = os.fspath(database)
    return None if path.startswith(_POSTGRES_PREFIXES) else f"{path}.key"


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_SHOWN_ID_MAX = 32  # a longer "id" may be key material pasted in the wrong place


def shown_key_id(key_id: str) -> str | None:
    """A key id as a message may show it (``'k1'``), or ``None`` if it may be key material."""
    if key_id.isascii() and key_id.isalnum() and len(key_id) <= _SHOWN_ID_MAX:
        return repr(key_id)
    return None


def _named(key_id: str, position: int) -> str:
    """A key as a message names it: by its id if it looks like one, else by its place."""
    shown = shown_key_id(key_id)
    return f"key {shown}" if shown is not None else f"key {position}"


def _parse_key(item: str, position: int, source: str) -> tuple[str, bytes]:
    """One ``ID:BASE64`` key line; errors name ``source`` and the key, never the key."""
    key_id, sep, encoded = item.partition(":")
    if not sep:
        msg = f"{source}: key {position} is not written ID:BASE64"
        raise ConfigurationError(msg)
    if not key_id.isalnum():
        msg = f"{source}: key {position} needs an alphanumeric id before its colon"
        raise ConfigurationError(msg)
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character beyond ASCII
        msg = f"{source}: {_named(key_id, position)} is not valid base64 (cut short?)"
        raise ConfigurationError(msg) from None
    if len(key) != _KEY_BYTES:
        msg = (
            f"{source}: {_named(key_id, position)} is {len(key)} bytes, "
            f"not {_KEY_BYTES} (AES-256; cut short?)"
        )
        raise ConfigurationError(msg)
    return key_id, key


class AESGCMKeyring:
    """AES-256-GCM with named keys; the first key given is the current one.

    Keys are written as ``ID:BASE64`` and separated by commas, newest first, in the
    environment variable ``TWOSTEP_KEYS`` or in the file named by
    ``TWOSTEP_KEY_FILE`` (``twostep init`` makes one).
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            msg = "the current key id is not among the keys"
            raise ConfigurationError(msg)
        for key_id, key in keys.items():
            if not key_id.isalnum() or len(key) != _KEY_BYTES:
                msg = "each key needs an alphanumeric id and 32 bytes (AES-256)"
                raise ConfigurationError(msg)
        # Imported here, not at the top: cryptography costs `import twostep` ~10 ms.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead: dict[str, AESGCM] = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    def __repr__(self) -> str:
        return f"AESGCMKeyring(current={self._current!r}, keys={sorted(self._aead)!r})"

    @property
    def current_key_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of every key, the current one first."""
        return (self._current, *(key_id for key_id in self._aead if key_id != self._current))

    @staticmethod
    def new_key_line(key_id: str | None = None, *, created: datetime | None = None) -> str:
        """A new random key written as ``ID:BASE64``.

        Without ``key_id``, the id carries the key's creation time (``created``, by
        default now), so that resealing can refuse an older key listed first:
        ``k`` + ``YYYYMMDDhhmmss`` (UTC) + 4 random hex digits, e.g. ``k20260302170001a3f9``.
        """
        if key_id is None:
            when = (created or datetime.now(UTC)).astimezone(UTC)
            key_id = f"k{when:%Y%m%d%H%M%S}{secrets.token_hex(2)}"
        return f"{key_id}:{base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()}"

    @staticmethod
    def key_created(key_id: str) -> datetime | None:
        """When the key was made, if its id says so (as :meth:`new_key_line` writes it)."""
        digits, tail = key_id[1:15], key_id[15:]
        if not (
            len(key_id) == _DATED_ID_LENGTH
            and key_id[0] == "k"
            and digits.isascii()
            and digits.isdigit()
            and all(c in "0123456789abcdef" for c in tail)
        ):
            return None
        try:
            return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            return None

    @classmethod
    def generate(cls) -> AESGCMKeyring:
        """A keyring with one new random key (for tests and throwaway demos)."""
        return cls.from_string(cls.new_key_line())

    @classmethod
    def from_string(cls, text: str, *, source: str = "the key list") -> AESGCMKeyring:
        """Keys from key lines (``ID:BASE64``, by commas or lines; ``#`` starts a comment).

        A malformed list raises :class:`ConfigurationError` naming ``source`` and the
        key (by its id, or by its place in the list), never the key material.
        """
        keys: dict[str, bytes] = {}
        for written in text.replace("\n", ",").split(","):
            item = written.strip()
            if not item or item.startswith("#"):
                continue
            key_id, key = _parse_key(item, len(keys) + 1, source)
            if key_id in keys:
                msg = (
                    f"{source}: key id {key_id!r} is listed twice; each key needs its own id "
                    "(of two, one would silently win)"
                )
                raise ConfigurationError(msg)
            keys[key_id] = key
        if not keys:
            msg = f"{source}: no key given"
            raise ConfigurationError(msg)
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, source: str | None = None) -> AESGCMKeyring:
        """Keys from a UTF-8 file of key lines, such as the one ``twostep init`` writes.

        A file that is missing, unreadable, not UTF-8 or malformed raises
        :class:`ConfigurationError` naming ``source`` (by default, the file).
        """
        # open(), not pathlib: importing pathlib would add ~4 ms to `import twostep`.
        source = source if source is not None else f"the key file {os.fspath(path)}"
        try:
            with open(path, "rb") as file:  # noqa: PTH123 (see above)
                data = file.read()
        except OSError as error:
            msg = f"{source}: cannot read the key file: {error.strerror or type(error).__name__}"
            raise ConfigurationError(msg) from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            msg = f"{source}: the key file is not UTF-8 text"
            raise ConfigurationError(msg) from None
        return cls.from_string(text, source=source)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        database: str | os.PathLike[str] | None = None,
    ) -> AESGCMKeyring:
        """Keys from ``TWOSTEP_KEYS``, else from the file ``TWOSTEP_KEY_FILE`` names.

        With ``database`` (a SQLite file path), else from ``<database>.key`` if it
        exists: the key file ``twostep init --database <database>`` writes, found as the
        ``twostep`` command finds it. A PostgreSQL DSN has no such file.
        """
        env = os.environ if environ is None else environ
        if env.get(KEYS_ENV):
            return cls.from_string(env[KEYS_ENV], source=KEYS_ENV)
        if env.get(KEY_FILE_ENV):
            path = env[KEY_FILE_ENV]
            return cls.from_file(path, source=f"{KEY_FILE_ENV} ({path})")
        beside = None if database is None else key_file_for(database)
        if beside is not None and os.path.exists(beside):  # noqa: PTH110 (see from_file)
            return cls.from_file(beside)
        where = f", or keep the key file of `twostep init` at {beside}" if beside else ""
        msg = (
            f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV} (see `twostep init`){where}, "
            "or pass cipher=; twostep does not store TOTP secrets in plaintext"
        )
        raise ConfigurationError(msg)

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        nonce = secrets.token_bytes(12)
        body = self._aead[self._current].encrypt(nonce, plaintext, context)
        encoded = base64.urlsafe_b64encode(nonce + body).decode()
        return f"{_VERSION}.{self._current}.{encoded}"

    def open(self, sealed: str, *, context: bytes) -> bytes:
        version, _, rest = sealed.partition(".")
        key_id, _, encoded = rest.partition(".")
        aead = self._aead.get(key_id)
        if version != _VERSION or aead is None:
            msg = f"a stored secret is sealed with an unknown key ({key_id!r})"
            raise StoreError(msg)
        try:
            # What base64.urlsafe_b64decode does, without its two Python layers.
            raw = binascii.a2b_base64(encoded.encode().translate(_FROM_URLSAFE))
            return aead.decrypt(raw[:12], raw[12:], context)
        except (binascii.Error, ValueError):
            msg = "a stored secret failed authentication"
            raise StoreError(msg) from None
        except Exception as error:
            from cryptography.exceptions import InvalidTag

            if isinstance(error, InvalidTag):
                msg = "a stored secret failed authentication"
                raise StoreError(msg) from None
            raise

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{_VERSION}.{self._current}.")
