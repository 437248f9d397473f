"""The whole glue between Django's authentication and twostep's second step (R93, R94)."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings

import twostep as ts


@functools.cache
def twostep() -> ts.TwoStep:
    """One service per process (it is thread-safe)."""
    store = ts.SQLiteStore(settings.TWOSTEP_DATABASE)  # or ts.PostgresStore(dsn)
    options: dict[str, Any] = getattr(settings, "TWOSTEP_OPTIONS", {})
    return ts.TwoStep(store, issuer=settings.TWOSTEP_ISSUER, **options)


def create_twostep_user(sender: object, instance: Any, created: bool, **kwargs: object) -> None:
    """post_save of the user model: a twostep user with the same id and no password (R93)."""
    if created:
        twostep().import_user(settings.TWOSTEP_ACCOUNT_ID, instance.email, user_id=str(instance.pk))
