"""Settings of the test project: SQLite in a temporary directory, Django's own apps."""

from __future__ import annotations

import tempfile
from pathlib import Path

from twostep import AESGCMKeyring
from twostep.testing import FAST, ManualClock

DATA = Path(tempfile.mkdtemp(prefix="twostep-django-"))

SECRET_KEY = "a key for the tests of this project only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "tests.django_project.apps.TwoStepGlue",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA / "django.db"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Django's own advice for tests: a fast hasher. A real project keeps the default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# twostep: its own store beside Django's database, and the account the users belong to
# (made once by the operator: `twostep` CLI or TwoStep.create_account).
TWOSTEP_DATABASE = DATA / "twostep.db"
TWOSTEP_ISSUER = "Django Example"
TWOSTEP_ACCOUNT_ID = ""  # set by the test, as an operator would
# In production TwoStep reads its keys from TWOSTEP_KEYS or TWOSTEP_KEY_FILE; the tests
# use throwaway keys, cheap hashing and a clock they move.
TWOSTEP_OPTIONS = {"cipher": AESGCMKeyring.generate(), "settings": FAST, "clock": ManualClock()}
