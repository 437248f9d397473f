"""twostep's typed errors as the words a user reads, in the request's language (R61).

Each error's stable ``reason`` picks a message; an unknown reason falls back to the
message of its type. No message holds a secret.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

import twostep as ts

__all__ = ["message", "status"]

_BY_REASON: dict[str, Promise] = {
    # InvalidCode
    "malformed": _("That is not a code: type the code your app shows, or a backup code."),
    "wrong": _("That code did not work."),
    "replayed": _("That code was used already: wait for the next one."),
    # ChallengeExpired
    "expired": _("This step has expired: please start again."),
    "too_many_attempts": _("Too many wrong codes: please start again."),
    # SessionInvalid
    "revoked": _("You were logged out: please log in again."),
    "two_factor_required": _("Your account requires two-step login: please log in again."),
    # NotAllowed
    "owner_only": _("Only an owner of the account can do that."),
    "owner_or_manager_only": _("Only an owner or a manager of the account can see that."),
    "account_requires_two_factor": _(
        "Your account requires two-step login: it cannot be turned off."
    ),
    "account_does_not_require_two_factor": _("Your account does not require two-step login."),
    "two_factor_off": _("Two-step login is not turned on."),
    "two_factor_already_on": _("Two-step login is already turned on."),
    "target_is_self": _("You cannot do that to yourself; use your security page."),
    "target_in_other_account": _("That user is not in your account."),
    "other_account": _("That is not in your account."),
    "last_owner": _("The account must keep an active owner."),
    "step_up_required": _("Confirm with a code from your app first, then try again."),
    "no_enrollment_in_progress": _("No set-up is under way: please start again."),
    "has_password": _("This user logs in with a twostep password, not through this site."),
    # UnknownUser, InvalidCredentials
    "unknown_user": _("No such user."),
    "no_email": _("Your user has no email address."),
    "invalid_credentials": _("This user cannot log in."),
}

_BY_TYPE: tuple[tuple[type[ts.TwoStepError], Promise], ...] = (
    (ts.InvalidCode, _("That code did not work.")),
    (ts.ChallengeExpired, _("This step has expired: please start again.")),
    (ts.SessionInvalid, _("Your session has ended: please log in again.")),
    (ts.NotAllowed, _("You are not allowed to do that.")),
    (ts.InvalidInput, _("That input is not valid.")),
    (ts.StoreError, _("The service is unavailable: please try again in a moment.")),
)


def message(error: ts.TwoStepError) -> str:
    """What to tell the user about ``error``, translated."""
    if isinstance(error, ts.Throttled):
        return ngettext(
            "Too many attempts: try again in %(seconds)d second.",
            "Too many attempts: try again in %(seconds)d seconds.",
            error.retry_after,
        ) % {"seconds": error.retry_after}
    text = str(_BY_REASON.get(error.reason, ""))
    if isinstance(error, ts.InvalidCode) and error.attempts_left is not None:
        left = ngettext(
            "%(count)d attempt left.", "%(count)d attempts left.", error.attempts_left
        ) % {"count": error.attempts_left}
        text = f"{text} {left}"
    if text:
        return text
    for kind, fallback in _BY_TYPE:
        if isinstance(error, kind):
            return str(fallback)
    return str(_("Something went wrong: please try again."))


def status(error: ts.TwoStepError) -> int:
    """The HTTP status a page refused by ``error`` is sent with."""
    if isinstance(error, ts.Throttled):
        return 429
    if isinstance(error, ts.NotAllowed):
        return 403
    if isinstance(error, ts.StoreError):
        return 503
    if isinstance(error, ts.UnknownUser):
        return 404
    return 400
