"""What an enrolment shows the user (R10): the otpauth URI, its QR code, the secret as text."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import segno

__all__ = ["Enrollment", "provisioning_uri"]


def provisioning_uri(secret: str, *, issuer: str, label: str, digits: int, period: int) -> str:
    """The key-URI format authenticator apps scan: ``otpauth://totp/ISSUER:LABEL?...``.

    Issuer and label are percent-encoded (a ':' or a space in either would otherwise
    change their meaning); the issuer also goes in the query, as the format recommends.
    """
    path = f"{quote(issuer, safe='')}:{quote(label, safe='@')}"
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": digits,
            "period": period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{path}?{query}"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """An enrolment waiting for its confirming code: show the QR code and the key.

    The secret is what the user must see; it is never shown in ``repr``.
    """

    secret: str = field(repr=False)
    uri: str = field(repr=False)
    issuer: str
    label: str
    expires_at: datetime

    @property
    def secret_groups(self) -> str:
        """The secret in groups of four, for reading or typing by hand."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))

    def _qr(self) -> segno.QRCode:
        import segno  # imported here: most requests never draw a QR code

        return segno.make_qr(self.uri, error="m")

    def qr_svg(self, *, scale: int = 4, light: str | None = "#ffffff") -> str:
        """The QR code as an SVG document, dark modules on a ``light`` background.

        The background is white by default, so that the code scans on a dark page too;
        ``light=None`` leaves it transparent.
        """
        out = io.BytesIO()
        self._qr().save(out, kind="svg", scale=scale, xmldecl=False, light=light)
        return out.getvalue().decode()

    def qr_png(self, *, scale: int = 4) -> bytes:
        """The QR code as PNG bytes."""
        out = io.BytesIO()
        self._qr().save(out, kind="png", scale=scale)
        return out.getvalue()

    def qr_text(self) -> str:
        """The QR code drawn with block characters, for a terminal."""
        out = io.StringIO()
        self._qr().terminal(out=out, compact=True)
        return out.getvalue()
