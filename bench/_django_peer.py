"""The peer on Django: django-otp's TOTP devices and Django's database sessions, on SQLite.

Imported only by ``peers.py``, and only when Django and django-otp are installed (the
``bench`` extra). Django is configured once per process, on one SQLite file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import django
import pyotp
from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher

PASSWORD = "correct horse battery staple"


class LoweredArgon2(Argon2PasswordHasher):
    """Argon2id at the cost ``peers.LOWERED`` gives twostep's side (t=1, m=1024 KiB, p=1)."""

    time_cost = 1
    memory_cost = 1024
    parallelism = 1


class Clock:
    """The time django-otp checks codes at: moved by hand, as twostep's ``ManualClock``."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


CLOCK = Clock()


def setup(db_path: str, synchronous: str) -> None:
    """Configure Django on ``db_path`` (WAL, ``synchronous``) and create its tables."""
    settings.configure(
        SECRET_KEY="bench-" + "k" * 50,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django_otp",
            "django_otp.plugins.otp_totp",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": db_path,
                "OPTIONS": {
                    "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}",
                    # Writers take the lock at BEGIN, as twostep's do: two processes
                    # that upgrade a read lock would otherwise fail with "locked".
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 30,
                },
            }
        },
        PASSWORD_HASHERS=["_django_peer.LoweredArgon2"],
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        USE_TZ=True,
    )
    django.setup()
    from django_otp.plugins.otp_totp import models

    models.time = CLOCK  # type: ignore[assignment]  # the step django-otp checks a code at


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@dataclass
class Person:
    """A Django user with a confirmed TOTP device (django-otp's defaults: 6 digits, 30 s, ±1)."""

    username: str
    user_id: int
    device_id: str
    totp: pyotp.TOTP

    def code(self) -> str:
        return self.totp.at(CLOCK.now)


def make_people(count: int, prefix: str) -> list[Person]:
    import base64

    from django.contrib.auth.models import User
    from django_otp.plugins.otp_totp.models import TOTPDevice

    people = []
    for i in range(count):
        user = User.objects.create_user(f"{prefix}{i}", password=PASSWORD)
        device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
        assert (device.digits, device.step, device.tolerance) == (6, 30, 1)
        secret = base64.b32encode(device.bin_key).decode()
        people.append(Person(user.username, user.pk, device.persistent_id, pyotp.TOTP(secret)))
    return people


def code_step(people: list[Person]) -> Callable[[], float]:
    """``django_otp.verify_token`` for each person, with a valid code; seconds per check."""
    from django.contrib.auth.models import User
    from django_otp import verify_token

    users = [User.objects.get(pk=p.user_id) for p in people]

    def sample() -> float:
        CLOCK.now += 60  # two steps: no code is a replay (django-otp's last_t)
        codes = [p.code() for p in people]
        start = time.perf_counter()
        for user, person, code in zip(users, people, codes, strict=True):
            assert verify_token(user, person.device_id, code) is not None
        return (time.perf_counter() - start) / len(people)

    return sample


def _login(user: object) -> str:
    """A session for ``user``, as ``django.contrib.auth.login`` makes one; its key."""
    from django.contrib.auth import login
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")  # type: ignore[arg-type]
    request.session.save()
    key = request.session.session_key
    assert key is not None
    return key


def session_check(people: list[Person]) -> Callable[[], float]:
    """What a request with a session costs: the session loaded, then ``get_user``."""
    from django.contrib.auth import get_user
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    keys = [_login(User.objects.get(pk=p.user_id)) for p in people]

    def sample() -> float:
        requests = [HttpRequest() for _ in keys]
        start = time.perf_counter()
        for request, key in zip(requests, keys, strict=True):
            request.session = SessionStore(key)  # what SessionMiddleware does
            assert get_user(request).is_authenticated
        return (time.perf_counter() - start) / len(keys)

    return sample


def full_logins(people: list[Person], seconds: float) -> int:
    """Full logins (password, code, session) for ``seconds``; how many were done."""
    from django.contrib.auth import authenticate, login
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest
    from django_otp import login as otp_login
    from django_otp import verify_token

    done = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        CLOCK.now += 60
        for person in people:
            user = authenticate(username=person.username, password=PASSWORD)
            assert user is not None
            device = verify_token(user, person.device_id, person.code())
            assert device is not None
            request = HttpRequest()
            request.session = SessionStore()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            otp_login(request, device)
            request.session.save()
            done += 1
    return done
