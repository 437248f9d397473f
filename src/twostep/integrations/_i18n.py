"""What the adapters tell people, in their language: gettext catalogues shipped here.

The core's exception texts stay English (they are for developers); the adapters show
:func:`message` instead, through the catalogue of the language the request asks for
(``Accept-Language``) or the host sets. English is the source language; each other
language is ``locale/<language>/LC_MESSAGES/twostep.po``, compiled to ``.mo`` beside
it. No framework is imported here.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Mapping
from pathlib import Path

import twostep as ts

__all__ = ["DOMAIN", "LANGUAGES", "LOCALE_DIR", "N_", "message", "negotiate", "translations"]

DOMAIN = "twostep"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The languages shipped, the source language first.
LANGUAGES = ("en", "fr")

Translations = gettext.NullTranslations


def N_(text: str) -> str:  # noqa: N802 (the name gettext's tools look for)
    """Marks ``text`` for the catalogue where it is written; it is translated where shown."""
    return text


@functools.cache
def translations(language: str) -> Translations:
    """The catalogue of ``language`` (one of :data:`LANGUAGES`); English if none ships."""
    if language not in LANGUAGES[1:]:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language])


def negotiate(accept_language: str | None, default: str = LANGUAGES[0]) -> str:
    """The shipped language that an ``Accept-Language`` header prefers most; else ``default``.

    ``fr-CH, fr;q=0.9, en;q=0.8`` gives ``fr``; a language with ``q=0`` is refused;
    unknown languages and malformed parts are skipped.
    """
    best, best_q = default, 0.0
    for position, part in enumerate((accept_language or "")[:1000].split(",")):
        tag, _, params = part.strip().partition(";")
        language = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        q -= position * 1e-6  # among equals, the first listed wins
        if language in LANGUAGES and q > best_q:
            best, best_q = language, q
    return best


_NOT_ALLOWED = {
    "owner_only": N_("Only an owner can do this."),
    "owner_or_manager_only": N_("Only owners and managers can open Administration."),
    "account_requires_two_factor": N_("Your account requires 2FA, so you cannot turn it off."),
    "account_does_not_require_two_factor": N_(
        "Reset is for accounts that require 2FA: turn 2FA off and on again instead."
    ),
    "two_factor_off": N_("Turn 2FA on first."),
    "two_factor_already_on": N_("2FA is already on."),
    "target_is_self": N_("Not for your own user: use your Security page for your own settings."),
    "target_in_other_account": N_("No such user in your account."),
    "no_enrollment_in_progress": N_("Start setting up 2FA first."),
    "two_factor_required": N_("Your account requires 2FA: set it up first."),
    "step_up_required": N_(
        "This change needs a recent code: confirm with a code from your app, then retry."
    ),
    "last_owner": N_("The account must keep an active owner: make someone else owner first."),
    "no_second_factor_in_session": N_(
        "Only a login with a code can remember this device: log in with a code first."
    ),
    "too_many_security_keys": N_("You have as many security keys as allowed: remove one first."),
    "security_key_name_taken": N_("You have a security key of that name: choose another."),
    "security_key_registered": N_("That security key is registered already."),
    "unknown_security_key": N_("No such security key."),
    "no_security_key": N_("You have no security key."),
    "last_second_factor": N_(
        "Your account requires 2FA and this key is your only second factor: add another first."
    ),
}
_SESSION = {
    "revoked": N_("You were logged out. Please log in again."),
    "expired": N_("Your session expired. Please log in again."),
    "two_factor_required": N_("Your account requires 2FA. Log in to set it up."),
}
_CODE = {
    "malformed": N_("That is not a code: type the 6 digits from your app, or a backup code."),
    "replayed": N_(
        "That code was already used: wait for the next code, or use another backup code."
    ),
    "sign_count": N_("That security key may have been copied: it was refused."),
}
_INPUT = {
    "code_required": N_("You have 2FA: enter a code from your app, or a backup code."),
    "password_too_short": N_("That password is too short."),
    "password_too_long": N_("That password is too long."),
    "invalid_password": N_("That password is not valid."),
    "invalid_email": N_("That is not an email address."),
    "invalid_grace_period": N_("The grace period is from 0 to 90 days."),
    "invalid_name": N_("Give the security key a name of 1 to 64 characters."),
    "invalid_credential": N_("The security key's answer was not understood. Try again."),
}
_CHALLENGE = {
    "too_many_attempts": N_("Too many wrong codes. Please log in again."),
    "unknown": N_("Your login is no longer valid. Please log in again."),
}


def _pick(table: Mapping[str, str], reason: str, default: str) -> str:
    return table.get(reason, default)


def message(error: ts.TwoStepError, t: Translations) -> str:
    """What to tell a person about a refusal (R61), in the language of ``t``."""
    _ = t.gettext
    match error:
        case ts.Throttled():
            return _("Too many failed attempts. Try again in %(seconds)d seconds.") % {
                "seconds": error.retry_after
            }
        case ts.InvalidCode():
            text = _(_pick(_CODE, error.reason, N_("That code is not right.")))
            if error.attempts_left is not None and error.reason != "malformed":
                text += " " + _("Attempts left: %(left)d.") % {"left": max(error.attempts_left, 0)}
            return text
        case ts.InvalidCredentials():
            return _("Email or password is wrong.")
        case ts.ChallengeExpired():
            return _(_pick(_CHALLENGE, error.reason, N_("That took too long. Please start again.")))
        case ts.NotAllowed():
            if error.reason in _NOT_ALLOWED:
                return _(_NOT_ALLOWED[error.reason])
            return _("Not allowed (%(reason)s).") % {"reason": error.reason}
        case ts.SessionInvalid():
            return _(_pick(_SESSION, error.reason, N_("Please log in.")))
        case ts.UnknownUser():
            return _("No such user.")
        case ts.EmailTaken():
            return _("That email is already taken.")
        case ts.InvalidInput():
            if error.reason in _INPUT:
                return _(_INPUT[error.reason])
            return _("That input is not valid (%(reason)s).") % {"reason": error.reason}
        case _:
            return _("Something went wrong (%(reason)s).") % {"reason": error.reason}
