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
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ._errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["AESGCMKeyring", "Cipher", "KEYS_ENV", "KEY_FILE_ENV"]

KEYS_ENV = "TWOSTEP_KEYS"
KEY_FILE_ENV = "TWOSTEP_KEY_FILE"
_VERSION = "v1"
_KEY_BYTES = 32  # AES-256


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


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


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

    @staticmethod
    def new_key_line(key_id: str | None = None) -> str:
        """A new random key written as ``ID:BASE64``."""
        key_id = key_id or secrets.token_hex(4)
        return f"{key_id}:{base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()}"

    @classmethod
    def generate(cls) -> AESGCMKeyring:
        """A keyring with one new random key (for tests and throwaway demos)."""
        return cls.from_string(cls.new_key_line())

    @classmethod
    def from_string(cls, text: str) -> AESGCMKeyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for written in text.replace("\n", ",").split(","):
            item = written.strip()
            if not item or item.startswith("#"):
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep:
                msg = "a key must be written ID:BASE64"
                raise ConfigurationError(msg)
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                msg = f"key {key_id!r} is not valid base64"
                raise ConfigurationError(msg) from None
            order.append(key_id)
        if not order:
            msg = "no key given"
            raise ConfigurationError(msg)
        return cls(keys, order[0])

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AESGCMKeyring:
        """Keys from ``TWOSTEP_KEYS``, else from the file ``TWOSTEP_KEY_FILE`` names."""
        env = os.environ if environ is None else environ
        if env.get(KEYS_ENV):
            return cls.from_string(env[KEYS_ENV])
        if env.get(KEY_FILE_ENV):
            return cls.from_string(Path(env[KEY_FILE_ENV]).read_text())
        msg = (
            f"no encryption key: set {KEYS_ENV} or {KEY_FILE_ENV} (see `twostep init`), "
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
