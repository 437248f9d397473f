"""The example's settings: Django's defaults, plus the lines marked ``twostep``.

Every value can come from the environment: ``DJANGO_SECRET_KEY``, ``DJANGO_DATABASE``
(Django's SQLite file), ``TWOSTEP_DATABASE``, ``TWOSTEP_ACCOUNT_ID`` and, for plain http
in development only, ``TWOSTEP_INSECURE_COOKIES=1``. Keys: ``TWOSTEP_KEYS``,
``TWOSTEP_KEY_FILE`` or the key file ``manage.py twostep init`` writes.
"""

import os
import secrets
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_hex(32)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
USE_I18N = True
LANGUAGES = [("en", "English"), ("fr", "Français")]
ROOT_URLCONF = "examples.django_app.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DATABASE") or HERE / "django-example.db",
    }
}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "twostep.integrations.django",  # twostep
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "twostep.integrations.django.middleware.TwoStepMiddleware",  # twostep
]
LOGIN_URL = "twostep:login"  # twostep
LOGIN_REDIRECT_URL = "/"

TWOSTEP = {  # twostep
    "DATABASE": os.environ.get("TWOSTEP_DATABASE") or HERE / "twostep-example.db",
    "ISSUER": "twostep Django example",
    "ACCOUNT_ID": os.environ.get("TWOSTEP_ACCOUNT_ID", ""),
    "SECURE_COOKIES": os.environ.get("TWOSTEP_INSECURE_COOKIES") != "1",
}
