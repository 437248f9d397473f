"""Security keys (R100-R109): what twostep asks of py_webauthn, and nothing else.

``webauthn`` (the ``passkeys`` extra) is imported here on first use only, so that
``import twostep`` never loads it. Everything that comes from a browser is parsed and
bounded before any lookup: a malformed response is refused without I/O (R109).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, NamedTuple

from ._domain import SecurityKey, User
from ._errors import ConfigurationError, InvalidCode, InvalidInput
from ._settings import PasskeySettings

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "MAX_ASSERTION_CHARS",
    "MAX_REGISTRATION_CHARS",
    "ParsedAssertion",
    "ParsedRegistration",
    "Verified",
    "assertion_options",
    "library",
    "login_challenge",
    "parse_assertion",
    "parse_registration",
    "registration_options",
    "verify_assertion",
    "verify_registration",
]

#: The longest response taken, in characters: an attestation may carry certificates.
MAX_REGISTRATION_CHARS = 64 * 1024
MAX_ASSERTION_CHARS = 16 * 1024
#: WebAuthn: a credential id has at most 1023 bytes.
MAX_CREDENTIAL_ID_BYTES = 1023
_TRANSPORTS = frozenset({"usb", "nfc", "ble", "internal", "cable", "hybrid", "smart-card"})


def library() -> ModuleType:
    try:
        import webauthn
    except ImportError:
        msg = "security keys need the webauthn package: pip install 'twostep[passkeys]'"
        raise ConfigurationError(msg, reason="passkeys_not_installed") from None
    return webauthn


def _b64(data: bytes) -> str:
    from webauthn.helpers import bytes_to_base64url

    return bytes_to_base64url(data)


def login_challenge(token: str) -> bytes:
    """The WebAuthn challenge of a login challenge (R103), derived from its token.

    Only the holder of the token knows it, it dies with the login challenge (used,
    expired or out of attempts), and nothing more needs storing.
    """
    return hashlib.sha256(b"twostep webauthn login\0" + token.encode()).digest()


def _user_handle(user: User) -> bytes:
    """The WebAuthn user handle: opaque, the same for a user every time, no email in it."""
    return hashlib.sha256(b"twostep webauthn user\0" + user.id.encode()).digest()


def _descriptors(keys: list[SecurityKey]) -> list[Any]:
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(k.credential_id),
            transports=[AuthenticatorTransport(t) for t in k.transports if t in known] or None,
        )
        for k in keys
    ]


def registration_options(
    passkeys: PasskeySettings,
    user: User,
    keys: list[SecurityKey],
    challenge: bytes,
    timeout_ms: int,
) -> str:
    """R101: the options for ``navigator.credentials.create()`` (JSON)."""
    webauthn = library()
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = webauthn.generate_registration_options(
        rp_id=passkeys.rp_id,
        rp_name=passkeys.rp_name or passkeys.rp_id,
        user_id=_user_handle(user),
        user_name=user.email,
        user_display_name=user.email,
        challenge=challenge,
        timeout=timeout_ms,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement(passkeys.user_verification),
        ),
        exclude_credentials=_descriptors(keys),
    )
    return str(webauthn.options_to_json(options))


def assertion_options(
    passkeys: PasskeySettings, challenge: bytes, keys: list[SecurityKey], timeout_ms: int
) -> str:
    """R103, R106: the options for ``navigator.credentials.get()`` (JSON)."""
    webauthn = library()
    from webauthn.helpers.structs import UserVerificationRequirement

    options = webauthn.generate_authentication_options(
        rp_id=passkeys.rp_id,
        challenge=challenge,
        timeout=timeout_ms,
        allow_credentials=_descriptors(keys),
        user_verification=UserVerificationRequirement(passkeys.user_verification),
    )
    return str(webauthn.options_to_json(options))


def _load_json(value: object, limit: int) -> dict[str, Any] | None:
    """The browser's JSON text as an object, or ``None`` if it is not one (or too long)."""
    if not isinstance(value, str) or len(value) > limit:
        return None
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _client_challenge(client_data: bytes) -> bytes:
    from webauthn.helpers import parse_client_data_json

    return bytes(parse_client_data_json(client_data).challenge)


class ParsedRegistration(NamedTuple):
    """A registration response (R101) that parsed; ``challenge`` is its client data's."""

    credential: Any  # webauthn's RegistrationCredential
    challenge: str  # base64url
    transports: tuple[str, ...]

    def __repr__(self) -> str:
        return "ParsedRegistration(<hidden>)"


def parse_registration(value: object) -> ParsedRegistration:
    """R109: the JSON of ``PublicKeyCredential.toJSON()`` after ``create()``, or InvalidInput."""
    library()
    from webauthn.helpers import parse_registration_credential_json

    msg = "not a security key registration response"
    loaded = _load_json(value, MAX_REGISTRATION_CHARS)
    if loaded is None:
        raise InvalidInput(msg, reason="invalid_credential")
    try:
        credential = parse_registration_credential_json(loaded)
        challenge = _client_challenge(credential.response.client_data_json)
    except Exception:  # noqa: BLE001 (whatever the parser raises, the input is malformed)
        raise InvalidInput(msg, reason="invalid_credential") from None
    transports = tuple(
        sorted({t.value for t in credential.response.transports or () if t in _TRANSPORTS})
    )
    return ParsedRegistration(credential, _b64(challenge), transports)


class Verified(NamedTuple):
    """What a verified registration gives to store (R101)."""

    credential_id: str
    public_key: bytes
    sign_count: int

    def __repr__(self) -> str:
        return "Verified(<hidden>)"


def verify_registration(
    passkeys: PasskeySettings, parsed: ParsedRegistration, challenge: bytes
) -> Verified:
    """R101: the new credential, if its response answers ``challenge`` for our party."""
    webauthn = library()
    try:
        verified = webauthn.verify_registration_response(
            credential=parsed.credential,
            expected_challenge=challenge,
            expected_rp_id=passkeys.rp_id,
            expected_origin=list(passkeys.origins),
            require_user_verification=passkeys.user_verification == "required",
        )
    except Exception:  # noqa: BLE001 (any failure of the check is a refusal, never a crash)
        msg = "the security key's registration response is not valid"
        raise InvalidCode(msg, reason="wrong") from None
    credential_id = bytes(verified.credential_id)
    if not 0 < len(credential_id) <= MAX_CREDENTIAL_ID_BYTES:
        msg = "the security key's credential id is too long"
        raise InvalidCode(msg, reason="wrong")
    return Verified(
        _b64(credential_id), bytes(verified.credential_public_key), int(verified.sign_count)
    )


class ParsedAssertion(NamedTuple):
    """An assertion (R103) that parsed: the key it names and its client data's challenge."""

    credential: Any  # webauthn's AuthenticationCredential
    credential_id: str  # base64url
    challenge: str  # base64url

    def __repr__(self) -> str:
        return "ParsedAssertion(<hidden>)"


def parse_assertion(value: object) -> ParsedAssertion:
    """R109: the JSON of ``PublicKeyCredential.toJSON()`` after ``get()``, or a malformed code."""
    library()
    from webauthn.helpers import parse_authentication_credential_json

    msg = "not a security key assertion"
    loaded = _load_json(value, MAX_ASSERTION_CHARS)
    if loaded is None:
        raise InvalidCode(msg, reason="malformed")
    try:
        credential = parse_authentication_credential_json(loaded)
        raw_id = bytes(credential.raw_id)
        challenge = _client_challenge(credential.response.client_data_json)
    except Exception:  # noqa: BLE001 (whatever the parser raises, the input is malformed)
        raise InvalidCode(msg, reason="malformed") from None
    if not 0 < len(raw_id) <= MAX_CREDENTIAL_ID_BYTES:
        raise InvalidCode(msg, reason="malformed")
    return ParsedAssertion(credential, _b64(raw_id), _b64(challenge))


def verify_assertion(
    passkeys: PasskeySettings, parsed: ParsedAssertion, challenge: bytes, key: SecurityKey
) -> int:
    """R103: the authenticator's new sign count, if the assertion is right for ``key``.

    The counter itself is judged by :meth:`SecurityKey.used` (R104), after the
    signature: a forged response must not pass for a cloned key.
    """
    webauthn = library()
    try:
        verified = webauthn.verify_authentication_response(
            credential=parsed.credential,
            expected_challenge=challenge,
            expected_rp_id=passkeys.rp_id,
            expected_origin=list(passkeys.origins),
            credential_public_key=key.public_key,
            credential_current_sign_count=0,
            require_user_verification=passkeys.user_verification == "required",
        )
    except Exception:  # noqa: BLE001 (any failure of the check is a refusal, never a crash)
        msg = "the security key is not valid"
        raise InvalidCode(msg, reason="wrong") from None
    return int(verified.new_sign_count)
