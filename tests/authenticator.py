"""A software security key: real WebAuthn ceremonies without a browser (R100-R109).

It reads the options JSON that twostep gives (as ``navigator.credentials`` would), and
answers with the JSON a browser's ``PublicKeyCredential.toJSON()`` gives: a P-256 key
pair made with ``cryptography``, a "none" or "packed" (self) attestation, and ES256
assertions over the authenticator data and the client data's hash, with a signature
counter it keeps (or not: ``counter=False`` always says 0, as many passkeys do).
Every field can be bent, to test what the relying party refuses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "https://app.example.test"
RP_ID = "app.example.test"

UP, UV, AT = 0x01, 0x04, 0x40  # flags: user present, user verified, attested data


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftKey:
    """One credential on a software authenticator."""

    def __init__(self, *, counter: bool = True, fmt: str = "none") -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.counter = counter
        self.sign_count = 0
        self.fmt = fmt

    @property
    def id(self) -> str:
        return b64(self.credential_id)

    def _cose_key(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _next_count(self) -> int:
        if self.counter:
            self.sign_count += 1
        return self.sign_count if self.counter else 0

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def create(
        self,
        options_json: str,
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        challenge: str | None = None,
    ) -> str:
        """``navigator.credentials.create()``: a registration response, as JSON text."""
        options = json.loads(options_json)
        rp = rp_id if rp_id is not None else options["rp"]["id"]
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([UP | AT])
            + struct.pack(">I", self._next_count())
            + bytes(16)  # aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        statement: dict[str, Any] = {}
        if self.fmt == "packed":  # self attestation: signed with the credential's own key
            signed = auth_data + hashlib.sha256(client_data).digest()
            statement = {"alg": -7, "sig": self.private.sign(signed, ec.ECDSA(hashes.SHA256()))}
        attestation = cbor2.dumps({"fmt": self.fmt, "attStmt": statement, "authData": auth_data})
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64(client_data),
                    "attestationObject": b64(attestation),
                    "transports": ["usb", "nfc"],
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "cross-platform",
            }
        )

    def get(
        self,
        options_json: str,
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        challenge: str | None = None,
        sign_count: int | None = None,
        credential_id: bytes | None = None,
    ) -> str:
        """``navigator.credentials.get()``: an assertion, as JSON text."""
        options = json.loads(options_json)
        allowed = [c["id"] for c in options.get("allowCredentials", [])]
        assert not allowed or self.id in allowed or credential_id is not None, "not offered"
        rp = rp_id if rp_id is not None else options["rpId"]
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        count = self._next_count() if sign_count is None else sign_count
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([UP]) + struct.pack(">I", count)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.private.sign(signed, ec.ECDSA(hashes.SHA256()))
        raw = b64(credential_id if credential_id is not None else self.credential_id)
        return json.dumps(
            {
                "id": raw,
                "rawId": raw,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64(client_data),
                    "authenticatorData": b64(auth_data),
                    "signature": b64(signature),
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "cross-platform",
            }
        )
