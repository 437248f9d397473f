"""A twostep user for each Django user: the same id, their email, no twostep password (R93)."""

from __future__ import annotations

from typing import Any

import twostep as ts

from . import conf

__all__ = ["import_user", "role_of"]


def role_of(user: Any) -> ts.Role:  # noqa: ANN401 (the project's user model)
    """A superuser is an owner of the account, staff a manager, anyone else a member."""
    if user.is_superuser:
        return ts.Role.OWNER
    return ts.Role.MANAGER if user.is_staff else ts.Role.MEMBER


def import_user(user: Any) -> bool:  # noqa: ANN401 (ditto)
    """Give ``user`` a twostep user; ``False`` if they had one already.

    ``InvalidInput`` (reason ``"no_email"``) for a user without an email: twostep
    needs one, unique, as the label in authenticator apps; ``EmailTaken`` if another
    twostep user has it.
    """
    email = getattr(user, user.get_email_field_name(), "") or ""
    if not email:
        msg = "the user has no email address"
        raise ts.InvalidInput(msg, reason="no_email")
    try:
        conf.service().import_user(
            conf.config().account_id, email, role=role_of(user), user_id=str(user.pk)
        )
    except ts.InvalidInput as error:
        if error.reason == "user_id_taken":  # imported before, or meanwhile
            return False
        raise
    return True
