"""The Django app: ``INSTALLED_APPS += ["twostep.integrations.django"]``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed

from . import conf

#: Cookie settings the app makes secure unless the project set them itself.
SECURE_COOKIE_SETTINGS = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")


class TwoStepConfig(AppConfig):
    """twostep's second step for the users of ``django.contrib.auth``."""

    name = "twostep.integrations.django"
    label = "twostep"
    verbose_name = "twostep"
    default = True

    def ready(self) -> None:
        """Secure cookies by default, the service reset with its settings, the checks."""
        secure_cookies()
        setting_changed.connect(_setting_changed)
        checks.register(check_settings, checks.Tags.security)


def secure_cookies() -> None:
    """``Secure`` session and CSRF cookies, unless set by the project or turned off."""
    raw = getattr(settings, "TWOSTEP", None)
    if isinstance(raw, dict) and raw.get("SECURE_COOKIES", True) is False:
        return
    for name in SECURE_COOKIE_SETTINGS:
        if not settings.is_overridden(name):
            setattr(settings, name, True)


def _setting_changed(*, setting: str, **_: Any) -> None:  # noqa: ANN401 (Django's signal)
    if setting == "TWOSTEP":
        conf.reset()


def check_settings(**_: Any) -> list[checks.CheckMessage]:  # noqa: ANN401 (Django's checks)
    """The ``TWOSTEP`` setting is valid, the middleware is in place, cookies are secure."""
    found: list[checks.CheckMessage] = []
    try:
        conf.config()
    except Exception as error:  # noqa: BLE001 (reported as a check, whatever it is)
        found.append(checks.Error(str(error), id="twostep.E001"))
    middleware = list(settings.MIDDLEWARE)
    ours = "twostep.integrations.django.middleware.TwoStepMiddleware"
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    if (
        ours not in middleware
        or auth not in middleware
        or middleware.index(ours) < middleware.index(auth)
    ):
        found.append(
            checks.Error(
                f"{ours} must be in MIDDLEWARE, after {auth}: it enforces the second step",
                id="twostep.E002",
            )
        )
    if not settings.DEBUG:
        found.extend(
            checks.Warning(
                f"{name} is False: the cookie that holds the login is sent over plain http",
                id="twostep.W001",
            )
            for name in SECURE_COOKIE_SETTINGS
            if not getattr(settings, name)
        )
    return found
