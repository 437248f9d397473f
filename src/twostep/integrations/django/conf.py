"""The ``TWOSTEP`` setting of a Django project, and the one ``TwoStep`` per process it makes.

Read by the app's views, middleware and commands; see :class:`Config` for the keys.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

import twostep as ts

__all__ = ["Config", "config", "reset", "service"]

#: The request session's keys: the twostep session token, and the login under way.
SESSION_KEY = "twostep_session"
CHALLENGE_KEY = "twostep_challenge"
PENDING_USER_KEY = "twostep_pending_user"

_KNOWN = frozenset(
    {
        "DATABASE",
        "ISSUER",
        "ACCOUNT_ID",
        "OPTIONS",
        "IMPORT_USERS",
        "EXEMPT_PATHS",
        "SECURE_COOKIES",
        "LOGIN_REDIRECT_URL",
    }
)


@dataclass(frozen=True)
class Config:
    """``settings.TWOSTEP``, a dict with these keys (only the first three are needed).

    - ``DATABASE``: a SQLite file path or a ``postgresql://`` DSN (``TWOSTEP_DATABASE``
      in the environment otherwise); keys come from ``TWOSTEP_KEYS``,
      ``TWOSTEP_KEY_FILE`` or the ``<database>.key`` file ``twostep init`` writes.
    - ``ISSUER``: the name authenticator apps show.
    - ``ACCOUNT_ID``: the twostep account the project's users belong to
      (``manage.py twostep create-account NAME`` prints one).
    - ``OPTIONS``: more keyword arguments for ``TwoStep`` (``settings``, ``clock``,
      ``cipher``, ``on_event``).
    - ``IMPORT_USERS`` (default ``True``): a Django user without a twostep user gets
      one at their first second step (same id, their email, no twostep password).
    - ``EXEMPT_PATHS``: path prefixes the middleware lets through without the second
      step (e.g. ``"/static/"``); the app's own login, code and logout pages always are.
    - ``SECURE_COOKIES`` (default ``True``): session and CSRF cookies are ``Secure``
      unless the project set ``SESSION_COOKIE_SECURE`` / ``CSRF_COOKIE_SECURE`` itself.
      ``False`` only for plain http in development.
    - ``LOGIN_REDIRECT_URL``: where a completed login goes without ``next`` (default:
      Django's ``LOGIN_REDIRECT_URL``).
    """

    database: str
    issuer: str
    account_id: str
    options: dict[str, Any] = field(default_factory=dict)
    import_users: bool = True
    exempt_paths: tuple[str, ...] = ()
    secure_cookies: bool = True
    login_redirect_url: str = "/"


def config() -> Config:
    """The ``TWOSTEP`` setting, checked; ``ImproperlyConfigured`` says what is wrong."""
    raw: object = getattr(settings, "TWOSTEP", None)
    if not isinstance(raw, dict):
        msg = "TWOSTEP must be a dict in the settings (see twostep.integrations.django.conf)"
        raise ImproperlyConfigured(msg)
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        msg = f"TWOSTEP: unknown key(s) {', '.join(map(str, unknown))}"
        raise ImproperlyConfigured(msg)
    database = raw.get("DATABASE") or os.environ.get("TWOSTEP_DATABASE")
    if not database:
        msg = "TWOSTEP['DATABASE'] (or TWOSTEP_DATABASE) names the SQLite file or DSN"
        raise ImproperlyConfigured(msg)
    issuer = raw.get("ISSUER")
    if not isinstance(issuer, str) or not issuer:
        msg = "TWOSTEP['ISSUER'] is the name authenticator apps show"
        raise ImproperlyConfigured(msg)
    exempt = raw.get("EXEMPT_PATHS", ())
    return Config(
        database=os.fspath(database),
        issuer=issuer,
        account_id=str(raw.get("ACCOUNT_ID") or ""),
        options=dict(raw.get("OPTIONS", {})),
        import_users=bool(raw.get("IMPORT_USERS", True)),
        exempt_paths=(exempt,) if isinstance(exempt, str) else tuple(exempt),
        secure_cookies=bool(raw.get("SECURE_COOKIES", True)),
        login_redirect_url=str(raw.get("LOGIN_REDIRECT_URL") or settings.LOGIN_REDIRECT_URL),
    )


_lock = threading.Lock()
_service: ts.TwoStep | None = None
_store: ts.Store | None = None


def service() -> ts.TwoStep:
    """The project's ``TwoStep``, made on first use; one per process (it is thread-safe)."""
    global _service, _store  # noqa: PLW0603 (the one service of the process)
    with _lock:
        if _service is None:
            conf = config()
            _store = open_store(conf.database)
            try:
                _service = ts.TwoStep(_store, issuer=conf.issuer, **conf.options)
            except BaseException:
                _store.close()
                _store = None
                raise
        return _service


def reset() -> None:
    """Forget the service (closing its store): the next use reads the settings again."""
    global _service, _store  # noqa: PLW0603 (see service())
    with _lock:
        if _store is not None:
            _store.close()
        _service = _store = None


def open_store(database: str) -> ts.Store:
    """A ``PostgresStore`` for a ``postgresql://`` DSN, else a ``SQLiteStore`` (created)."""
    if database.startswith(("postgresql://", "postgres://")):
        from twostep.stores.postgres import PostgresStore

        return PostgresStore(database)
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    return ts.SQLiteStore(database)
