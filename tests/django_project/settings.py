"""Settings of the test project: SQLite in a temporary directory, Django's own apps, twostep's."""

from __future__ import annotations

import tempfile
from pathlib import Path

from twostep import AESGCMKeyring
from twostep.testing import FAST, ManualClock

DATA = Path(tempfile.mkdtemp(prefix="twostep-django-"))
#: The project's key, as TWOSTEP_KEYS would hold it (`manage.py twostep` reads it there).
KEY_LINE = AESGCMKeyring.new_key_line()

SECRET_KEY = "a key for the tests of this project only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "French")]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "twostep.integrations.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "twostep.integrations.django.middleware.TwoStepMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA / "django.db"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Django's own advice for tests: a fast hasher. A real project keeps the default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "twostep:login"
LOGIN_REDIRECT_URL = "/"

# twostep: its own store beside Django's database, and the account the users belong to
# (made once by the operator: `manage.py twostep create-account NAME`). The tests use
# throwaway keys, cheap hashing and a clock they move; a project leaves OPTIONS out and
# keeps its keys in TWOSTEP_KEYS, TWOSTEP_KEY_FILE or the key file `twostep init` wrote.
TWOSTEP = {
    "DATABASE": DATA / "twostep.db",
    "ISSUER": "Django Example",
    "ACCOUNT_ID": "",  # set by the tests, as an operator would
    "OPTIONS": {
        "cipher": AESGCMKeyring.from_string(KEY_LINE),
        "settings": FAST,
        "clock": ManualClock(),
    },
}
